"""Quasar pseudo-continuum: power law + Fe II (UV and optical) + Balmer continuum.

``f(λ) = A (λ/3000 Å)^α + B·FeII_UV(λ; FWHM) + C·FeII_opt(λ; FWHM) + D·BaC(λ)``, fitted
to line-free rest-frame windows (:data:`WINDOWS`, those of PyQSOFit / Shen et al. 2011).
For each α on a grid (and each Fe II FWHM on a small grid) the amplitudes are linear and
solved by least squares with non-negativity imposed by dropping negative terms; the best
(α, FWHM) by χ² wins. Vectorised over the grid (one batched normal-equation solve) because
it runs for every spectrum.

Fe II templates are arrays passed in (the driver reads Vestergaard & Wilkes 2001 +
Salviander 2007 + Tsuzuki 2006 UV and Boroson & Green 1992 optical from
``../shared/data/real/qso_templates``); they are broadened by a Gaussian in log λ.
The Balmer continuum is Grandi (1982)'s optically thick form (T_e = 15,000 K,
τ_BE = 1) below the Balmer edge 3646 Å.

The host galaxy (z < 0.8) is subtracted before this fit when an SSP grid is available
(:mod:`desilab.outflows.host`); otherwise narrow-line fits carry a local linear continuum
and a stellar Balmer absorption term instead (:mod:`desilab.outflows.lines`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

__all__ = ["WINDOWS", "ContinuumFit", "balmer_continuum", "broaden_template", "fit_continuum"]

C_KMS = 299792.458
#: Line-free rest-frame windows [Å] (PyQSOFit defaults, after Shen et al. 2011).
WINDOWS = np.array(
    [
        [1150.0, 1170.0],
        [1275.0, 1290.0],
        [1350.0, 1360.0],
        [1445.0, 1465.0],
        [1690.0, 1705.0],
        [1770.0, 1810.0],
        [1970.0, 2400.0],
        [2480.0, 2675.0],
        [2925.0, 3400.0],
        [3775.0, 3832.0],
        [4000.0, 4050.0],
        [4200.0, 4230.0],
        [4435.0, 4640.0],
        [5100.0, 5535.0],
        [6005.0, 6035.0],
        [6110.0, 6250.0],
        [6800.0, 7000.0],
        [7160.0, 7180.0],
        [7500.0, 7800.0],
        [8050.0, 8150.0],
    ]
)
ALPHA_GRID = np.arange(-3.0, 1.0001, 0.05)
FE_FWHM_GRID = (1500.0, 3000.0, 6000.0)
BALMER_EDGE = 3646.0


def balmer_continuum(lam_rest: np.ndarray, t_e: float = 15000.0, tau_be: float = 1.0) -> np.ndarray:
    """Grandi (1982) Balmer continuum, normalised to 1 at the edge (0 above it)."""
    lam = np.asarray(lam_rest, dtype=np.float64)
    h, c, k = 6.62607015e-27, 2.99792458e10, 1.380649e-16
    lcm = lam * 1e-8
    with np.errstate(over="ignore"):
        bb = 2 * h * c**2 / lcm**5 / np.expm1(h * c / (lcm * k * t_e))
    out = bb * (1.0 - np.exp(-tau_be * (lam / BALMER_EDGE) ** 3))
    out = np.where(lam <= BALMER_EDGE, out, 0.0)
    edge = np.interp(BALMER_EDGE - 1.0, lam, out) if lam.min() < BALMER_EDGE else 1.0
    return out / (edge if edge > 0 else 1.0)


def broaden_template(wave: np.ndarray, flux: np.ndarray, fwhm_kms: float, native_kms: float = 0.0) -> np.ndarray:
    """Gaussian-broaden a template on a log-λ grid to *fwhm_kms* (minus its native width)."""
    dlog = np.median(np.diff(np.log(wave)))
    sig = np.sqrt(max((fwhm_kms / 2.3548) ** 2 - native_kms**2, 0.0)) / C_KMS / dlog
    return gaussian_filter1d(flux, sig) if sig > 0.3 else flux.copy()


@dataclass
class ContinuumFit:
    """Best continuum for one spectrum: model on the observed grid, components, parameters."""

    model: np.ndarray
    powerlaw: np.ndarray
    feii: np.ndarray
    balmer: np.ndarray
    alpha: float
    fe_fwhm: float
    amplitudes: np.ndarray
    chi2: float
    npix: int


def _basis(
    lam_rest: np.ndarray,
    fe_uv: tuple[np.ndarray, np.ndarray] | None,
    fe_opt: tuple[np.ndarray, np.ndarray] | None,
    fwhm: float,
) -> list[np.ndarray]:
    out = []
    for tpl in (fe_uv, fe_opt):
        if tpl is None:
            out.append(np.zeros_like(lam_rest))
            continue
        tw, tf = tpl
        b = broaden_template(tw, tf, fwhm, native_kms=900.0 / 2.3548)
        out.append(np.interp(lam_rest, tw, b, left=0.0, right=0.0))
    out.append(balmer_continuum(lam_rest))
    return out


def fit_continuum(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: float,
    fe_uv: tuple[np.ndarray, np.ndarray] | None = None,
    fe_opt: tuple[np.ndarray, np.ndarray] | None = None,
    alpha_grid: np.ndarray = ALPHA_GRID,
    fe_fwhm_grid: tuple[float, ...] = FE_FWHM_GRID,
    windows: np.ndarray = WINDOWS,
    extra_mask: np.ndarray | None = None,
) -> ContinuumFit:
    """Fit the pseudo-continuum of one spectrum in the line-free windows.

    Parameters
    ----------
    wave, flux, ivar
        Observed grid [Å], dereddened flux and masked ivar ``(npix,)``.
    z
        Redshift for the rest frame.
    fe_uv, fe_opt
        (rest wavelength [Å], flux) Fe II templates, or None to leave that term out.
    alpha_grid, fe_fwhm_grid
        Grids searched for the power-law slope (f_λ ∝ λ^α) and Fe II FWHM [km/s].
    windows
        Rest-frame fit windows [Å].
    extra_mask
        Pixels to exclude besides ivar = 0 (e.g. BAL troughs), True = exclude.

    Returns
    -------
    ContinuumFit
        With zero model and ``npix = 0`` when fewer than 10 window pixels are usable.
    """
    lam_rest = np.asarray(wave, dtype=np.float64) / (1.0 + z)
    inwin = np.any((lam_rest[:, None] >= windows[:, 0]) & (lam_rest[:, None] <= windows[:, 1]), axis=1)
    use = inwin & (ivar > 0) & np.isfinite(flux)
    if extra_mask is not None:
        use &= ~extra_mask
    idx = np.flatnonzero(use)
    zeros = np.zeros_like(lam_rest)
    if idx.size < 10:
        return ContinuumFit(zeros, zeros, zeros, zeros, np.nan, np.nan, np.zeros(4), np.nan, int(idx.size))
    y, w = flux[idx], ivar[idx]
    best: tuple[float, float, float, np.ndarray, list[np.ndarray]] | None = None
    pl = (lam_rest[idx, None] / 3000.0) ** alpha_grid[None, :]  # (p, nalpha)
    for fwhm in fe_fwhm_grid:
        others = _basis(lam_rest, fe_uv, fe_opt, fwhm)
        keep = [b for b in others if np.any(b[idx] != 0)]
        nb = 1 + len(keep)
        a = np.empty((alpha_grid.size, idx.size, nb))
        a[:, :, 0] = pl.T
        for j, b in enumerate(keep):
            a[:, :, j + 1] = b[idx]
        aw = a * w[None, :, None]
        ata = np.matmul(aw.transpose(0, 2, 1), a) + 1e-12 * np.eye(nb)
        aty = np.matmul(aw.transpose(0, 2, 1), y)
        sol = np.linalg.solve(ata, aty[:, :, None])[:, :, 0]
        # non-negative amplitudes: refit without the negative terms (one pass)
        neg = sol < 0
        if neg.any():
            for ia in np.flatnonzero(neg.any(axis=1)):
                ok = ~neg[ia]
                ok[0] = True
                s = np.zeros(nb)
                s[ok] = np.linalg.lstsq(ata[ia][np.ix_(ok, ok)], aty[ia][ok], rcond=None)[0]
                sol[ia] = np.maximum(s, 0.0)
        model = np.matmul(a, sol[:, :, None])[:, :, 0]
        chi2 = ((y[None, :] - model) ** 2) @ w
        ia = int(np.argmin(chi2))
        if best is None or chi2[ia] < best[0]:
            full = [np.zeros_like(lam_rest)] * 3
            full = others
            best = (float(chi2[ia]), float(alpha_grid[ia]), fwhm, sol[ia], [b for b in full])
            best_keep = [any(np.array_equal(b, k) for k in keep) for b in full]
    assert best is not None
    chi2, alpha, fwhm, amps, full = best
    amp_all = np.zeros(4)
    amp_all[0] = amps[0]
    j = 1
    for i, present in enumerate(best_keep):
        if present:
            amp_all[i + 1] = amps[j]
            j += 1
    powerlaw = amp_all[0] * (lam_rest / 3000.0) ** alpha
    feii = amp_all[1] * full[0] + amp_all[2] * full[1]
    balmer = amp_all[3] * full[2]
    return ContinuumFit(
        model=powerlaw + feii + balmer,
        powerlaw=powerlaw,
        feii=feii,
        balmer=balmer,
        alpha=alpha,
        fe_fwhm=fwhm,
        amplitudes=amp_all,
        chi2=chi2,
        npix=int(idx.size),
    )
