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


@numba.njit(cache=True, nogil=True)
def gauss_normal_eq(
    u: np.ndarray,
    si2: np.ndarray,
    c_lam: np.ndarray,
    x_cont: np.ndarray,
    p: np.ndarray,
    flux: np.ndarray,
    dflux: np.ndarray,
    term_v: np.ndarray,
    term_s: np.ndarray,
    term_s2: np.ndarray,
    ia: int,
    ib: int,
    y: np.ndarray,
    w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model, χ², JᵀWJ and JᵀW r per spectrum without materialising the (n, k, P) Jacobian."""
    nt, n, npix = u.shape
    k = p.shape[1]
    model = np.zeros((n, npix))
    chi2 = np.zeros(n)
    jtj = np.zeros((n, k, k))
    g = np.zeros((n, k))
    jac = np.zeros((k, npix))
    for i in range(n):
        jac[:, :] = 0.0
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
                if w[i, j] == 0.0:
                    continue
                st2 = s * s + si2[i, j]
                d = u[t, i, j] - v
                x = d * d / st2
                if x > 100.0:
                    continue
                gg = c_lam[i, j] / math.sqrt(st2) * math.exp(-0.5 * x)
                fg = f * gg
                model[i, j] += fg
                a = fg / st2
                jac[iv, j] += a * d
                jac[isg, j] += a * (x - 1.0) * s
                if isg2 >= 0:
                    jac[isg2, j] += a * (x - 1.0) * s
                for q in range(k):
                    dq = dflux[i, t, q]
                    if dq != 0.0:
                        jac[q, j] += dq * gg
        for j in range(npix):
            model[i, j] += p[i, ia] + p[i, ib] * x_cont[i, j]
            jac[ia, j] = 1.0
            jac[ib, j] = x_cont[i, j]
            wj = w[i, j]
            if wj == 0.0:
                continue
            r = y[i, j] - model[i, j]
            chi2[i] += wj * r * r
            for a1 in range(k):
                ja = jac[a1, j] * wj
                if ja == 0.0:
                    continue
                g[i, a1] += ja * r
                for a2 in range(a1, k):
                    jtj[i, a1, a2] += ja * jac[a2, j]
        for a1 in range(k):
            for a2 in range(a1 + 1, k):
                jtj[i, a2, a1] = jtj[i, a1, a2]
    return model, chi2, jtj, g
