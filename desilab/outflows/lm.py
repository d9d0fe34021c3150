"""Batched, box-bounded Levenberg–Marquardt for many small least-squares problems at once.

Hand-written (instead of looping ``scipy.optimize.least_squares``) because the problems are
tiny (≲ 20 parameters, ≲ 500 pixels) and numerous: one vectorised step for all spectra
amortises Python overhead; ``bench/outflows.py`` measures the gain against a
per-spectrum ``scipy.optimize.curve_fit`` of the same model. The model supplies the
normal equations directly (``JᵀWJ``, ``JᵀW r``), so the (N, k, npix) Jacobian need not be
materialised (the numba backend never does).

The model object must provide ``normal(P, rows, y, w) -> (model, chi2, JᵀWJ, JᵀWr)`` with
``P`` of shape ``(n, k)`` for the spectra ``rows``. Bounds are enforced by projection
after every step (parameters are clipped into ``[lo, hi]``); a step is kept per spectrum
only if it lowers χ².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["LMResult", "NormalEquations", "batched_lm"]


class NormalEquations(Protocol):
    """What :func:`batched_lm` needs from a model."""

    def normal(
        self, p: np.ndarray, rows: np.ndarray, y: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass
class LMResult:
    """Batched fit result.

    Attributes
    ----------
    params
        ``(N, k)`` best-fit parameters.
    cov
        ``(N, k, k)`` covariance ``(Jᵀ W J)⁻¹`` at the solution (absolute σ: ivar taken as
        known; parameters pinned at a bound get their row/column set to 0).
    chi2
        ``(N,)`` χ² at the solution; ``ndata`` ``(N,)`` the number of weighted pixels.
    model
        ``(N, npix)`` best-fit model.
    at_bound
        ``(N, k)`` True where a parameter ended on a bound.
    n_iter
        Iterations run.
    err_unbounded
        ``(N, k)`` 1σ errors from the full ``(Jᵀ W J)⁻¹`` with no parameter held at its
        bound: the curvature error of a parameter that ended on a bound (whose ``cov``
        entries are 0), e.g. a doublet ratio at its physical limit.
    """

    params: np.ndarray
    cov: np.ndarray
    chi2: np.ndarray
    ndata: np.ndarray
    model: np.ndarray
    at_bound: np.ndarray
    n_iter: int = 0
    err_unbounded: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> LMResult:
        """The result of rows *rows* (indices or a boolean mask) of the batch."""
        return LMResult(
            params=self.params[rows],
            cov=self.cov[rows],
            chi2=self.chi2[rows],
            ndata=self.ndata[rows],
            model=self.model[rows],
            at_bound=self.at_bound[rows],
            n_iter=self.n_iter,
            err_unbounded=None if self.err_unbounded is None else self.err_unbounded[rows],
        )


def batched_lm(
    fun: NormalEquations,
    p0: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    n_iter: int = 40,
    lam0: float = 1e-2,
    tol: float = 1e-5,
    index: np.ndarray | None = None,
) -> LMResult:
    """Minimise ``Σ w (y − model(P))²`` for every row independently.

    Parameters
    ----------
    fun
        Model with ``normal(P, rows, y, w)``.
    p0
        Starting parameters ``(N, k)``; clipped into the bounds.
    y, w
        Data and weights (inverse variances; 0 = ignore) ``(N, npix)``.
    lo, hi
        Bounds ``(k,)``, or ``(N, k)`` per row (``lo == hi`` holds a parameter fixed).
    n_iter
        Maximum iterations (converged rows drop out).
    lam0
        Initial damping (Marquardt scaling by the diagonal of JᵀWJ).
    tol
        Relative χ² improvement below which a row counts as converged.
    index
        ``(N,)`` row of the model (``fun.normal``'s *rows*) that each problem row is
        (default: row *i* is model row *i*); lets several starts of one spectrum, or a
        subset of them, share the model's per-spectrum arrays.

    Returns
    -------
    LMResult
    """
    p = np.clip(np.array(p0, dtype=np.float64), lo, hi)
    n, k = p.shape
    lo_r = np.broadcast_to(lo, p.shape)
    hi_r = np.broadcast_to(hi, p.shape)
    lam = np.full(n, lam0)
    index = np.arange(n) if index is None else np.asarray(index)
    model, chi2, jtj, g = fun.normal(p, index, y, w)
    active = np.ones(n, dtype=bool)
    eye = np.eye(k)
    it = 0
    for it in range(1, n_iter + 1):  # noqa: B007
        if not active.any():
            break
        a = np.flatnonzero(active)
        ja, ga = jtj[a], g[a]
        diag = np.einsum("nkk->nk", ja)
        damped = ja + lam[a, None, None] * (diag[:, :, None] * eye) + 1e-12 * eye
        try:
            step = np.linalg.solve(damped, ga[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = np.stack([np.linalg.lstsq(m, v, rcond=None)[0] for m, v in zip(damped, ga, strict=True)])
        trial = np.clip(p[a] + step, lo_r[a], hi_r[a])
        m_t, c_t, j_t, g_t = fun.normal(trial, index[a], y[a], w[a])
        better = c_t < chi2[a]
        idx = a[better]
        gain = (chi2[idx] - c_t[better]) / np.maximum(chi2[idx], 1e-30)
        p[idx] = trial[better]
        model[idx], chi2[idx], jtj[idx], g[idx] = m_t[better], c_t[better], j_t[better], g_t[better]
        lam[idx] = np.maximum(lam[idx] / 5.0, 1e-7)
        worse = a[~better]
        lam[worse] *= 8.0
        done = np.zeros(n, dtype=bool)
        done[idx[gain < tol]] = True
        done[worse[lam[worse] > 1e8]] = True
        active &= ~done
    # np.clip puts a parameter exactly on its bound, so equality is the test
    at_bound = (p <= lo_r) | (p >= hi_r)
    free = ~at_bound
    # invert on the free parameters only (pinned ones have no curvature information)
    jtj_f = np.where(free[:, :, None] & free[:, None, :], jtj, 0.0) + np.where(~free, 1.0, 0.0)[:, :, None] * eye
    try:
        cov = np.linalg.inv(jtj_f)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(jtj_f, hermitian=True)
    cov = np.where(free[:, :, None] & free[:, None, :], cov, 0.0)
    ndata = (w > 0).sum(axis=1)
    err_u = np.sqrt(np.maximum(np.einsum("nkk->nk", cov), 0.0))
    if at_bound.any():  # only rows with a pinned parameter need the unconstrained inverse
        rb = np.flatnonzero(at_bound.any(axis=1))
        diag = np.einsum("nkk->nk", jtj[rb])
        # Jacobi-scaled for conditioning; a parameter with no curvature at all gets ∞
        d = np.sqrt(np.where(diag > 0, diag, 1.0))
        scaled = jtj[rb] / (d[:, :, None] * d[:, None, :]) + 1e-12 * eye
        try:
            inv = np.linalg.inv(scaled)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(scaled, hermitian=True)
        var = np.einsum("nkk->nk", inv) / d**2
        err_u[rb] = np.where(diag > 0, np.sqrt(np.maximum(var, 0.0)), np.inf)
    return LMResult(
        params=p, cov=cov, chi2=chi2, ndata=ndata, model=model, at_bound=at_bound, n_iter=it, err_unbounded=err_u
    )
