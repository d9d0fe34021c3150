"""Quasar spectra onto one rest-frame grid: resampling, masks, normalisation, weights.

The rest-frame grid (:func:`rest_grid`) is log-spaced: ``REST_NPIX = 4000`` pixels of
``REST_DLOGLAM = 2.5e-4`` dex (≈ 173 km/s) from ``REST_LAMBDA_MIN = 800`` Å to 7998 Å.
It holds DESI's 3600–9824 Å at every redshift 0.23 ≲ z ≲ 3.5 fully, and part of it at any
redshift; a quasar covers ~1850 of the 4000 pixels. The rest of the grid is missing
data (``weight = 0``).

Resampling conserves flux: each output pixel receives the mean of the input flux density
over its extent, computed from the cumulative integral of the *good* input pixels
(``ivar > 0`` and ``mask == 0``) and interpolated at the output pixel edges — one
vectorised ``searchsorted`` for all spectra at once, no Python loop over objects. The
variance of an output pixel is the overlap-weighted sum of the input variances divided
by the square of the good length (partial input pixels count by their overlap, a
≤ 1-pixel approximation at each edge). Output pixels less than half covered by good
input are missing.

Weights (multiplied into ``ivar``): the Lyα forest (rest < 1216 Å minus 10 Å) gets
``forest_weight`` (0 by default: the forest is a stochastic absorber field, not something
a continuum model should reconstruct), and observed pixels within ±``sky_halfwidth`` of
strong sky lines (:data:`SKY_LINES`) get ``sky_weight`` (0.25 by default): DESI
sky-subtraction residuals live there.

Normalisation is robust: the median of the good, non-forest flux in rest 1280–7000 Å
(falling back to all good pixels) — flux is divided by it and ivar multiplied by its
square. Objects with fewer than ``min_good`` good pixels, or a non-positive scale, are
flagged ``valid = False``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from desilab.errors import InputError

__all__ = [
    "REST_DLOGLAM",
    "REST_LAMBDA_MIN",
    "REST_NPIX",
    "SKY_LINES",
    "Preprocessed",
    "preprocess",
    "resample_flux_conserving",
    "rest_grid",
    "rest_grid_edges",
    "sky_weights",
]

REST_LAMBDA_MIN = 800.0
"""First pixel centre of the rest-frame grid [Å]."""
REST_DLOGLAM = 2.5e-4
"""Pixel size of the rest-frame grid [dex] (≈ 173 km/s)."""
REST_NPIX = 4000
"""Number of rest-frame pixels."""
LYA = 1215.67

SKY_LINES = np.array(
    [
        5577.34,  # [O I] — the strongest optical sky line
        5889.95,  # Na D
        5895.92,
        6300.30,  # [O I]
        6363.78,
        6863.96,  # O2 B band (telluric)
        7276.41,  # OH
        7316.28,
        7340.89,
        7571.75,
        7605.0,  # O2 A band (telluric)
        7750.64,
        7794.11,
        7913.71,
        7993.33,
        8344.60,
        8399.17,
        8430.17,
        8761.32,
        8827.10,
        8885.85,
        8919.61,
        8958.09,
        9001.41,
        9375.96,
        9439.66,
        9502.83,
        9567.69,
        9641.01,
        9792.36,
    ]
)
"""Strong night-sky emission and telluric features [Å, air-ish], whose residuals are down-weighted."""


def rest_grid() -> np.ndarray:
    """Pixel centres of the rest-frame grid [Å] (float64, ``REST_NPIX`` values)."""
    return REST_LAMBDA_MIN * 10.0 ** (REST_DLOGLAM * np.arange(REST_NPIX))


def rest_grid_edges() -> np.ndarray:
    """Pixel edges of the rest-frame grid [Å] (``REST_NPIX + 1`` values, geometric midpoints)."""
    return REST_LAMBDA_MIN * 10.0 ** (REST_DLOGLAM * (np.arange(REST_NPIX + 1) - 0.5))


def _edges_from_centres(wave: np.ndarray) -> np.ndarray:
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[wave[0] - (mid[0] - wave[0])], mid, [wave[-1] + (wave[-1] - mid[-1])]])


def sky_weights(wave: np.ndarray, weight: float = 0.25, halfwidth: float = 4.0) -> np.ndarray:
    """Per observed pixel, *weight* within ±*halfwidth* Å of a :data:`SKY_LINES` entry, else 1."""
    w = np.ones_like(wave, dtype=np.float64)
    near = np.abs(wave[:, None] - SKY_LINES[None, :]).min(axis=1) <= halfwidth
    w[near] = weight
    return w


def _interp_rows(cum: np.ndarray, edges_in: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of *cum* (on *edges_in*) at the matching row of *x*."""
    n, m = x.shape
    idx = np.searchsorted(edges_in, x.ravel(), side="right").reshape(n, m) - 1
    idx = np.clip(idx, 0, len(edges_in) - 2)
    x0 = edges_in[idx]
    frac = np.clip((x - x0) / (edges_in[idx + 1] - x0), 0.0, 1.0)
    lo = np.take_along_axis(cum, idx, axis=1)
    hi = np.take_along_axis(cum, idx + 1, axis=1)
    return lo + frac * (hi - lo)


def resample_flux_conserving(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, out_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample many spectra sharing one input grid onto per-spectrum output edges.

    Parameters
    ----------
    wave
        Input pixel centres (n_in,), increasing.
    flux, ivar
        (n, n_in); pixels with ``ivar <= 0`` or non-finite values are missing.
    out_edges
        (n, n_out + 1) output pixel edges in the same units as *wave*, increasing per row.

    Returns
    -------
    flux_out, ivar_out, coverage
        (n, n_out): mean flux density over the good part of each output pixel, its
        inverse variance (0 where missing), and the good fraction of the pixel covered.
    """
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64))
    out_edges = np.atleast_2d(np.asarray(out_edges, dtype=np.float64))
    if flux.shape != ivar.shape or flux.shape[1] != wave.size:
        raise InputError(f"flux {flux.shape}, ivar {ivar.shape} and wave ({wave.size},) disagree", parameter="flux")
    edges = _edges_from_centres(wave)
    dl = np.diff(edges)
    good = (ivar > 0) & np.isfinite(flux) & np.isfinite(ivar)
    g = good.astype(np.float64)
    f = np.where(good, flux, 0.0)
    var = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0)
    zero = np.zeros((flux.shape[0], 1))
    cum_g = np.concatenate([zero, np.cumsum(g * dl, axis=1)], axis=1)
    cum_f = np.concatenate([zero, np.cumsum(f * dl, axis=1)], axis=1)
    cum_v = np.concatenate([zero, np.cumsum(var * dl * dl, axis=1)], axis=1)
    G = np.diff(_interp_rows(cum_g, edges, out_edges), axis=1)
    F = np.diff(_interp_rows(cum_f, edges, out_edges), axis=1)
    V = np.diff(_interp_rows(cum_v, edges, out_edges), axis=1)
    width = np.diff(out_edges, axis=1)
    coverage = G / width
    ok = coverage >= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_out = np.where(ok, F / np.where(ok, G, 1.0), 0.0)
        # V/G^2 is the variance of the mean; partial input pixels enter by their overlap
        var_out = np.where(ok, V / np.where(ok, G, 1.0) ** 2, np.inf)
        ivar_out = np.where(ok & (var_out > 0), 1.0 / var_out, 0.0)
    return flux_out, ivar_out, coverage


@dataclass
class Preprocessed:
    """Spectra on the rest-frame grid, normalised, with their weights.

    Attributes
    ----------
    flux
        (n, REST_NPIX) float32 normalised flux (0 where missing).
    ivar
        (n, REST_NPIX) float32 inverse variance *including* the forest and sky weights
        (0 where missing or masked); this is the likelihood weight.
    z
        (n,) redshifts used to de-redshift.
    scale
        (n,) normalisation (input flux units).
    snr
        (n,) median S/N per rest pixel over the weighted pixels.
    valid
        (n,) whether the spectrum has enough good pixels and a positive scale.
    targetid
        (n,) int64 identifiers.
    """

    flux: np.ndarray
    ivar: np.ndarray
    z: np.ndarray
    scale: np.ndarray
    snr: np.ndarray
    valid: np.ndarray
    targetid: np.ndarray

    def __len__(self) -> int:
        return int(self.flux.shape[0])

    def subset(self, idx: np.ndarray) -> Preprocessed:
        """Rows *idx* (an index array or a boolean mask)."""
        return Preprocessed(*(getattr(self, k)[idx] for k in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[Preprocessed]) -> Preprocessed:
        """Rows of several sets, in order."""
        keys = list(Preprocessed.__dataclass_fields__)
        return Preprocessed(*(np.concatenate([getattr(p, k) for p in parts]) for k in keys))


def preprocess(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    targetid: np.ndarray | None = None,
    forest_weight: float = 0.0,
    sky_weight: float = 0.25,
    sky_halfwidth: float = 4.0,
    min_good: int = 200,
) -> Preprocessed:
    """De-redshift, resample, weight and normalise observed spectra.

    Parameters
    ----------
    wave
        Observed pixel centres [Å] (n_in,), e.g. the 7781-pixel combined DESI grid.
    flux, ivar
        (n, n_in) observed flux and inverse variance.
    z
        (n,) redshifts (one spectrum per object).
    mask
        (n, n_in) DESI bit mask; non-zero pixels are missing.
    targetid
        (n,) identifiers (default 0…n−1).
    forest_weight
        Weight of rest pixels blueward of Lyα − 10 Å (0 = masked).
    sky_weight, sky_halfwidth
        Weight and half-width [Å] around :data:`SKY_LINES` in the observed frame.
    min_good
        Minimum number of weighted rest pixels for ``valid``.

    Returns
    -------
    Preprocessed
    """
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    ivar = np.atleast_2d(np.asarray(ivar, dtype=np.float64)).copy()
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    n = flux.shape[0]
    if z.shape != (n,):
        raise InputError(f"z has shape {z.shape}, expected ({n},)", parameter="z")
    if np.any(~np.isfinite(z)) or np.any(z <= -0.5):
        raise InputError("redshifts must be finite and > -0.5", parameter="z")
    if not (0.0 <= forest_weight <= 1.0 and 0.0 <= sky_weight <= 1.0):
        raise InputError("weights must lie in [0, 1]", parameter="forest_weight/sky_weight")
    if mask is not None:
        ivar[np.asarray(mask) != 0] = 0.0
    ivar *= sky_weights(np.asarray(wave, dtype=np.float64), sky_weight, sky_halfwidth)[None, :]
    out_edges = rest_grid_edges()[None, :] * (1.0 + z[:, None])
    f_out, iv_out, _cov = resample_flux_conserving(wave, flux, ivar, out_edges)
    lam = rest_grid()
    forest = lam < (LYA - 10.0)
    iv_out[:, forest] *= forest_weight
    good = iv_out > 0
    norm_region = good & (lam >= 1280.0) & (lam <= 7000.0)
    fmask = np.where(norm_region, f_out, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN scale -> invalid
        scale = np.nanmedian(fmask, axis=1)
        fallback = np.nanmedian(np.where(good, f_out, np.nan), axis=1)
    scale = np.where(np.isfinite(scale), scale, fallback)
    ngood = good.sum(axis=1)
    valid = np.isfinite(scale) & (scale > 0) & (ngood >= min_good)
    s = np.where(valid, scale, 1.0)
    fn = np.where(good, f_out / s[:, None], 0.0)
    ivn = np.where(good, iv_out * s[:, None] ** 2, 0.0)
    fn[~valid] = 0.0
    ivn[~valid] = 0.0
    snr_pix = np.where(ivn > 0, np.abs(fn) * np.sqrt(ivn), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snr = np.nan_to_num(np.nanmedian(snr_pix, axis=1), nan=0.0)
    tid = np.arange(n, dtype=np.int64) if targetid is None else np.asarray(targetid, dtype=np.int64)
    return Preprocessed(
        flux=fn.astype(np.float32),
        ivar=ivn.astype(np.float32),
        z=z,
        scale=np.where(valid, scale, np.nan),
        snr=snr,
        valid=valid,
        targetid=tid,
    )
