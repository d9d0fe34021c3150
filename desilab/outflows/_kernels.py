"""numba kernel for the Gaussian-sum model and its Jacobian (the fit's hot loop).

Hand-written with numba because the numpy version spends most of its time allocating
(N, P) temporaries for each of ~6 terms and ~10 operations per term; the fused loop
skips pixels beyond 10σ of each line. ``bench/outflows.py`` compares both backends.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, fastmath=False, nogil=True)
def gauss_model_jac(
    u: np.ndarray,  # (T, n, P) velocity of each term's line at each pixel
    si2: np.ndarray,  # (n, P) instrumental σ²
    c_lam: np.ndarray,  # (n, P) c / (λ √2π)
    x_cont: np.ndarray,  # (n, P) λ/λc − 1
    p: np.ndarray,  # (n, k)
    flux: np.ndarray,  # (n, T) term fluxes
    dflux: np.ndarray,  # (n, T, k) dF/dp
    term_v: np.ndarray,  # (T,) index of v parameter
    term_s: np.ndarray,  # (T,) index of σ parameter
    term_s2: np.ndarray,  # (T,) index of a σ added to it (linked groups), −1 for none
    ia: int,
    ib: int,
) -> tuple[np.ndarray, np.ndarray]:
    nt, n, npix = u.shape
    k = p.shape[1]
    model = np.zeros((n, npix))
    jac = np.zeros((n, k, npix))
    for i in range(n):
        for t in range(nt):
            iv = term_v[t]
            isg = term_s[t]
            isg2 = term_s2[t]
            v = p[i, iv]
            s = p[i, isg]
            if isg2 >= 0:
                s += p[i, isg2]
            f = flux[i, t]
            for j in range(npix):
                st2 = s * s + si2[i, j]
                d = u[t, i, j] - v
                x = d * d / st2
                if x > 100.0:
                    continue
                g = c_lam[i, j] / math.sqrt(st2) * math.exp(-0.5 * x)
                fg = f * g
                model[i, j] += fg
                a = fg / st2
                jac[i, iv, j] += a * d
                jac[i, isg, j] += a * (x - 1.0) * s
                if isg2 >= 0:
                    jac[i, isg2, j] += a * (x - 1.0) * s
                for q in range(k):
                    dq = dflux[i, t, q]
                    if dq != 0.0:
                        jac[i, q, j] += dq * g
        for j in range(npix):
            model[i, j] += p[i, ia] + p[i, ib] * x_cont[i, j]
            jac[i, ia, j] = 1.0
            jac[i, ib, j] = x_cont[i, j]
    return model, jac


#: Gaussians are evaluated within ``CUT_SIGMA`` σ of their centre (exp(−½·8²) ≈ 1e-14).
CUT_SIGMA = 8.0


@numba.njit(cache=True, nogil=True)
def gauss_normal_eq(
    u: np.ndarray,  # (T, N, P) velocity of each term's line at each pixel (non-decreasing in P)
    si2: np.ndarray,  # (N, P) instrumental σ²
    c_lam: np.ndarray,  # (N, P) c / (λ √2π)
    x_cont: np.ndarray,  # (N, P) λ/λc − 1
    rows: np.ndarray,  # (n,) rows of the four arrays above that are evaluated
    p: np.ndarray,  # (n, k)
    flux: np.ndarray,  # (n, T) term fluxes
    dfl_val: np.ndarray,  # (n, T, 2) dF/dp for the (at most two) flux parameters of each term
    dfl_idx: np.ndarray,  # (T, 2) their parameter indices (−1: none)
    term_v: np.ndarray,  # (T,) index of v parameter
    term_s: np.ndarray,  # (T,) index of σ parameter
    term_s2: np.ndarray,  # (T,) index of a σ added to it (linked groups), −1 for none
    ia: int,
    ib: int,
    y: np.ndarray,  # (n, P)
    w: np.ndarray,  # (n, P) weights (0 = ignore)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model, χ², JᵀWJ and JᵀW r per spectrum without materialising the (n, k, P) Jacobian.

    Sparse in pixels: each Gaussian term is evaluated only on the pixel range within
    ``CUT_SIGMA`` σ of its centre (found by binary search, *u* being sorted per row), each
    parameter's Jacobian row is non-zero only on the union of its terms' ranges, and
    ``JᵀWJ[a, b]`` sums over the intersection of the ranges of *a* and *b* (contiguous
    loops that vectorise).
    """
    nt, _, npix = u.shape
    n, k = p.shape
    model = np.zeros((n, npix))
    chi2 = np.zeros(n)
    jtj = np.zeros((n, k, k))
    g = np.zeros((n, k))
    for i in range(n):
        ri = rows[i]
        jac = np.zeros((k, npix))
        plo = np.full(k, npix, dtype=np.int64)
        phi = np.zeros(k, dtype=np.int64)
        si2max = 0.0
        for j in range(npix):
            if si2[ri, j] > si2max:
                si2max = si2[ri, j]
        for t in range(nt):
            iv = term_v[t]
            isg = term_s[t]
            isg2 = term_s2[t]
            v = p[i, iv]
            s = p[i, isg]
            if isg2 >= 0:
                s += p[i, isg2]
            half = CUT_SIGMA * math.sqrt(s * s + si2max)
            j0 = np.searchsorted(u[t, ri], v - half)
            j1 = np.searchsorted(u[t, ri], v + half, side="right")
            if j1 <= j0:
                continue
            f = flux[i, t]
            q0 = dfl_idx[t, 0]
            q1 = dfl_idx[t, 1]
            d0 = dfl_val[i, t, 0]
            d1 = dfl_val[i, t, 1]
            for j in range(j0, j1):
                st2 = s * s + si2[ri, j]
                d = u[t, ri, j] - v
                x = d * d / st2
                gg = c_lam[ri, j] / math.sqrt(st2) * math.exp(-0.5 * x)
                fg = f * gg
                model[i, j] += fg
                a = fg / st2
                jac[iv, j] += a * d
                ds = a * (x - 1.0) * s
                jac[isg, j] += ds
                if isg2 >= 0:
                    jac[isg2, j] += ds
                if q0 >= 0:
                    jac[q0, j] += d0 * gg
                if q1 >= 0:
                    jac[q1, j] += d1 * gg
            for q in (iv, isg, isg2, q0, q1):
                if q >= 0:
                    plo[q] = min(plo[q], j0)
                    phi[q] = max(phi[q], j1)
        plo[ia] = 0
        phi[ia] = npix
        plo[ib] = 0
        phi[ib] = npix
        r = np.empty(npix)
        c2 = 0.0
        for j in range(npix):
            m = model[i, j] + p[i, ia] + p[i, ib] * x_cont[ri, j]
            model[i, j] = m
            jac[ia, j] = 1.0
            jac[ib, j] = x_cont[ri, j]
            rj = y[i, j] - m
            r[j] = w[i, j] * rj  # weighted residual
            c2 += r[j] * rj
        chi2[i] = c2
        for a1 in range(k):
            lo1 = plo[a1]
            hi1 = phi[a1]
            acc = 0.0
            for j in range(lo1, hi1):
                acc += jac[a1, j] * r[j]
            g[i, a1] = acc
            for a2 in range(a1, k):
                lo = max(lo1, plo[a2])
                hi = min(hi1, phi[a2])
                acc = 0.0
                for j in range(lo, hi):
                    acc += jac[a1, j] * w[i, j] * jac[a2, j]
                jtj[i, a1, a2] = acc
                jtj[i, a2, a1] = acc
    return model, chi2, jtj, g
