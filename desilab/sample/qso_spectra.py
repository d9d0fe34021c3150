"""Pure-numpy spectral models of quasars as DESI sees them (no file access).

Two steps, each usable alone (the outflow and anomaly pipelines use them for their own
injection tests):

1. :func:`render_intrinsic` turns a :class:`QuasarParams` into noiseless flux densities
   on any observed-frame grid: power-law continuum, Fe II UV + optical pseudo-continuum,
   Balmer continuum, host galaxy, emission lines (pixel-integrated Gaussians), BAL troughs,
   the Lyα forest, an optional superposed star, and Galactic (Fitzpatrick 1999) reddening.
2. :func:`observe` turns noiseless per-arm flux into what a DESI coadd holds: resolution
   convolution with a DESI-like band-diagonal resolution matrix (returned, for the
   RESOLUTION HDUs), photon + sky + read noise from a per-arm throughput model, sky-line
   subtraction residuals, cosmic-ray masks, and ivar.

:func:`bal_indices` measures BI and AI from a continuum-normalised spectrum in the
``baltools`` convention (the DR1 BAL catalog) or the ``classical`` one (Weymann et al.
1991; Trump et al. 2006); it gives the truth values of the injected troughs.
:func:`profile_stats` gives FWHM, σ, v50, v10, w80 of any sum of Gaussian components.

Units: wavelengths in vacuum Å; observed flux densities in 1e-17 erg/s/cm²/Å after
:func:`scale_to_magnitude`; velocities in km/s, negative = blueshifted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.special import erf

from desilab.sample import builtin_templates as bt
from desilab.sample.builtin_templates import C_KMS, FeTemplates

__all__ = [
    "BAL_LINES",
    "NDIAG",
    "Component",
    "ModelParts",
    "Observed",
    "QuasarParams",
    "Trough",
    "apply_resolution",
    "bal_indices",
    "broadened_feii",
    "forest_transmission",
    "gaussian_pixel_integral",
    "mw_transmission",
    "observe",
    "profile_stats",
    "render_intrinsic",
    "resolution_data",
    "scale_to_magnitude",
    "synthetic_mag",
    "trough_transmission",
]

NDIAG = 11
"""Number of resolution-matrix diagonals (DESI: 11, offsets +5 … −5)."""

BAL_LINES: dict[str, float] = {
    "CIV": 1549.0,
    "SIIV": 1398.0,
    "NV": 1240.81,
    "LYA": 1215.67,
    "ALIII": 1857.40,
    "MGII": 2799.12,
    "FEII_2382": 2382.77,
    "FEII_2600": 2600.17,
    "FEII_2344": 2344.21,
}
"""Reference wavelengths [Å] of BAL ions. CIV and SIIV use baltools' 1549 and 1398 Å, so
trough speeds are comparable with the DR1 BAL catalog; v = c (λ_rest/λ_ion − 1)."""

LYA = 1215.67
LYB = 1025.72
LYLIMIT = 911.75


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


@dataclass
class Component:
    """One Gaussian emission component.

    Attributes
    ----------
    line
        Line name (``LINES`` in :mod:`~desilab.sample.builtin_templates`).
    kind
        ``"broad"``, ``"vbc"`` (very broad base of a broad line), ``"narrow"`` (core),
        ``"outflow"`` (blueshifted wing), ``"peak2"`` (second peak of a double-peaked line).
    wave
        Vacuum rest wavelength [Å].
    flux
        Rest-frame line flux in model units (power-law continuum = 1 at 3000 Å, times Å).
    sigma_kms
        Gaussian sigma [km/s] (intrinsic).
    vshift_kms
        Velocity of the Gaussian centre relative to systemic [km/s].
    """

    line: str
    kind: str
    wave: float
    flux: float
    sigma_kms: float
    vshift_kms: float = 0.0


@dataclass
class Trough:
    """One broad absorption trough of one ion.

    Attributes
    ----------
    ion
        Key of :data:`BAL_LINES`.
    vmin, vmax
        Trough edges as positive outflow speeds [km/s] (vmin < vmax), as baltools stores
        them; a redshifted (infalling) trough has negative values.
    depth
        Maximum absorbed fraction (0–1) of the unabsorbed flux.
    edge_kms
        Softness of the edges (tanh scale) [km/s].
    slope
        Depth change across the trough: depth × (1 − slope × x), x = (s − vmin)/(vmax − vmin).
    bumps
        Internal structure: ``(x_centre, x_width, amplitude)`` Gaussians added to the
        relative depth profile (negative amplitudes make partly filled gaps), so that
        troughs are not flat-bottomed boxes.
    """

    ion: str
    vmin: float
    vmax: float
    depth: float
    edge_kms: float = 300.0
    slope: float = 0.0
    bumps: tuple[tuple[float, float, float], ...] = ()


@dataclass
class QuasarParams:
    """Everything :func:`render_intrinsic` needs to draw one quasar (rest-frame model units).

    Attributes
    ----------
    z
        Systemic redshift.
    alpha_lambda
        Power-law index, F_λ ∝ λ^α (VB01: α_ν = −0.44 ⇒ α_λ = −1.56).
    feii_uv_ew, feii_opt_ew
        Fe II equivalent widths [Å] in 2200–3090 Å and 4434–4684 Å (against the power law).
    fwhm_feii
        Fe II velocity broadening FWHM [km/s].
    balmer_frac
        Balmer continuum / power law at 3000 Å.
    host_frac
        Host-galaxy fraction of the total continuum at rest 5100 Å (0 = none).
    host_d4000, host_sigma
        Host 4000 Å break and stellar velocity dispersion [km/s].
    components
        The emission lines.
    troughs
        BAL (or redshifted) troughs.
    forest
        Apply the Lyα forest (and Lyman-limit suppression).
    ebv_mw
        Galactic E(B−V) [mag] applied as Fitzpatrick (1999) R_V = 3.1.
    star_kind, star_frac
        Superposed star ("F"/"K"/"M") and its fraction of the r-band flux (anomaly).
    forest_seed
        Seed of this object's forest realisation.
    """

    z: float
    alpha_lambda: float = -1.56
    feii_uv_ew: float = 60.0
    feii_opt_ew: float = 20.0
    fwhm_feii: float = 3000.0
    balmer_frac: float = 0.2
    host_frac: float = 0.0
    host_d4000: float = 1.6
    host_sigma: float = 180.0
    components: list[Component] = field(default_factory=list)
    troughs: list[Trough] = field(default_factory=list)
    forest: bool = True
    ebv_mw: float = 0.0
    star_kind: str = ""
    star_frac: float = 0.0
    forest_seed: int = 0


@dataclass
class ModelParts:
    """Noiseless model pieces on an observed grid (model units until scaled).

    ``total = (agn × bal + host) × forest × mw + star``, where ``agn = continuum + lines``.
    ``unabsorbed`` is the same without BAL troughs and forest (the "continuum" that a
    perfect BAL finder would divide by). All are observed-frame flux densities.
    """

    wave: np.ndarray
    continuum: np.ndarray
    lines: np.ndarray
    host: np.ndarray
    bal: np.ndarray
    forest: np.ndarray
    mw: np.ndarray
    star: np.ndarray
    total: np.ndarray
    unabsorbed: np.ndarray

    def scaled(self, factor: float) -> ModelParts:
        """Every flux component multiplied by *factor* (transmissions unchanged)."""
        return ModelParts(
            self.wave,
            self.continuum * factor,
            self.lines * factor,
            self.host * factor,
            self.bal,
            self.forest,
            self.mw,
            self.star * factor,
            self.total * factor,
            self.unabsorbed * factor,
        )


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------


def gaussian_pixel_integral(edges: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    """Fraction of a unit Gaussian falling in each pixel between consecutive *edges*."""
    cdf = 0.5 * (1.0 + erf((edges - centre) / (np.sqrt(2.0) * sigma)))
    return np.diff(cdf)


def _pixel_edges(wave: np.ndarray) -> np.ndarray:
    mid = 0.5 * (wave[1:] + wave[:-1])
    return np.concatenate([[wave[0] - (mid[0] - wave[0])], mid, [wave[-1] + (wave[-1] - mid[-1])]])


def add_lines(
    wave_rest: np.ndarray, edges_rest: np.ndarray, components: list[Component], nsig: float = 6.0
) -> np.ndarray:
    """Sum of Gaussians on a rest-frame grid (flux per rest Å).

    Components narrower than 4 pixels are integrated over each pixel (erf differences);
    broader ones are sampled at pixel centres (error < 0.1% of the flux).
    """
    out = np.zeros_like(wave_rest)
    width = np.diff(edges_rest)
    lo_all, hi_all = edges_rest[0], edges_rest[-1]
    for c in components:
        if c.flux == 0.0:
            continue
        centre = c.wave * (1.0 + c.vshift_kms / C_KMS)
        sig = c.wave * c.sigma_kms / C_KMS
        if centre + nsig * sig < lo_all or centre - nsig * sig > hi_all:
            continue
        lo = int(np.searchsorted(edges_rest, centre - nsig * sig)) - 1
        hi = int(np.searchsorted(edges_rest, centre + nsig * sig)) + 1
        lo, hi = max(lo, 0), min(hi, wave_rest.size)
        if hi <= lo:
            continue
        if sig < 4.0 * width[min(max((lo + hi) // 2, 0), width.size - 1)]:
            frac = gaussian_pixel_integral(edges_rest[lo : hi + 1], centre, sig)
            out[lo:hi] += c.flux * frac / width[lo:hi]
        else:
            x = (wave_rest[lo:hi] - centre) / sig
            out[lo:hi] += c.flux / (np.sqrt(2.0 * np.pi) * sig) * np.exp(-0.5 * x * x)
    return out


@lru_cache(maxsize=256)
def _feii_broadened(kind: str, shared_dir: str | None, fwhm_bin: int) -> tuple[np.ndarray, np.ndarray]:
    tpl = bt.feii_templates(kind, shared_dir)
    fwhm = 500.0 * 1.03**fwhm_bin
    sigma_pix = fwhm / 2.3548 / (C_KMS * np.log(10.0) * (tpl.logw[1] - tpl.logw[0]))
    if kind == "real":  # the real templates already carry ~900 km/s (BG92) intrinsic widths
        sigma_pix = np.sqrt(max(sigma_pix**2 - (900.0 / 2.3548 / 69.0) ** 2, 0.25))
    half = int(np.ceil(5 * sigma_pix))
    x = np.arange(-half, half + 1)
    kern = np.exp(-0.5 * (x / sigma_pix) ** 2)
    kern /= kern.sum()
    return np.convolve(tpl.uv, kern, mode="same"), np.convolve(tpl.opt, kern, mode="same")


def broadened_feii(
    templates: FeTemplates, fwhm_kms: float, shared_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fe II UV and optical templates broadened to *fwhm_kms* (3% FWHM bins, cached).

    Returns
    -------
    (logw, uv, opt)
        log10 rest wavelength grid and the two unit-EW templates.
    """
    fwhm_bin = int(np.clip(np.round(np.log(max(fwhm_kms, 500.0) / 500.0) / np.log(1.03)), 0, 120))
    uv, opt = _feii_broadened(templates.name, shared_dir, fwhm_bin)
    return templates.logw, uv, opt


def trough_transmission(lam_rest: np.ndarray, troughs: list[Trough]) -> np.ndarray:
    """Product of the troughs' transmissions at rest wavelengths *lam_rest*."""
    trans = np.ones_like(lam_rest)
    for t in troughs:
        lam0 = BAL_LINES[t.ion]
        speed = -C_KMS * (lam_rest / lam0 - 1.0)  # positive = outflow
        lo = lam0 * (1.0 - (t.vmax + 6 * t.edge_kms) / C_KMS)
        hi = lam0 * (1.0 - (t.vmin - 6 * t.edge_kms) / C_KMS)
        sel = (lam_rest >= lo) & (lam_rest <= hi)
        if not np.any(sel):
            continue
        s = speed[sel]
        box = 0.25 * (1 + np.tanh((s - t.vmin) / t.edge_kms)) * (1 + np.tanh((t.vmax - s) / t.edge_kms))
        frac = np.clip((s - t.vmin) / max(t.vmax - t.vmin, 1.0), 0.0, 1.0)
        rel = 1.0 - t.slope * frac
        for xc, xw, amp in t.bumps:
            rel = rel + amp * np.exp(-0.5 * ((frac - xc) / xw) ** 2)
        depth = np.clip(t.depth * rel, 0.0, 0.995)
        trans[sel] *= 1.0 - depth * box
    return trans


@lru_cache(maxsize=1)
def _balmer_table() -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(500.0, 4600.0, 0.5)
    return grid, bt.balmer_continuum(grid)


@lru_cache(maxsize=1)
def _forest_calibration(sigma_g: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """Mean transmission ⟨exp(−a·e^{σg−σ²/2})⟩ over g ~ N(0,1) on a grid of *a* (Gauss–Hermite)."""
    x, w = np.polynomial.hermite.hermgauss(60)
    a = np.logspace(-4, 2.5, 400)
    lognorm = np.exp(sigma_g * np.sqrt(2.0) * x - 0.5 * sigma_g**2)
    mean = (w[None, :] * np.exp(-a[:, None] * lognorm[None, :])).sum(axis=1) / np.sqrt(np.pi)
    return a, mean


def tau_eff(z_abs: np.ndarray) -> np.ndarray:
    """Lyα effective optical depth, τ_eff = 0.0018 (1+z)^3.92 (Faucher-Giguère et al. 2008)."""
    return 0.0018 * (1.0 + np.asarray(z_abs)) ** 3.92


def forest_transmission(wave_obs: np.ndarray, z: float, seed: int, sigma_g: float = 1.6) -> np.ndarray:
    """Lyα (+Lyβ) forest and Lyman-limit transmission for a quasar at redshift *z*.

    A log-normal optical-depth field, τ = a(z) exp(σ g − σ²/2), with g a correlated
    Gaussian field along the sightline (a 1.2-pixel and a 10-pixel smoothing of white
    noise), and a(z) calibrated so that the mean transmission is exp(−τ_eff(z)) of
    Faucher-Giguère et al. (2008). Lyβ absorbs with 0.19 × the Lyα optical depth of the
    same absorbers; below the Lyman limit the flux is suppressed by e^{-2}.
    """
    lam_rest = wave_obs / (1.0 + z)
    trans = np.ones_like(wave_obs)
    in_forest = lam_rest < LYA
    if not np.any(in_forest):
        return trans
    rng = np.random.default_rng(seed)
    n = wave_obs.size
    g = np.zeros(n)
    for sig_pix, weight in ((1.2, 0.8), (10.0, 0.6)):
        half = int(4 * sig_pix)
        xk = np.arange(-half, half + 1)
        kern = np.exp(-0.5 * (xk / sig_pix) ** 2)
        kern /= np.sqrt((kern**2).sum())
        g += weight * np.convolve(rng.standard_normal(n + 2 * half), kern, mode="valid")
    g /= np.hypot(0.8, 0.6)
    a_grid, mean_grid = _forest_calibration(sigma_g)

    def tau_at(zabs: np.ndarray, gval: np.ndarray) -> np.ndarray:
        target = np.exp(-tau_eff(zabs))
        a = np.interp(-target, -mean_grid, a_grid)  # mean decreases with a
        return a * np.exp(sigma_g * gval - 0.5 * sigma_g**2)

    idx = np.flatnonzero(in_forest)
    zabs = wave_obs[idx] / LYA - 1.0
    tau = tau_at(np.clip(zabs, 0.0, None), g[idx])
    # Lyβ: the absorber at z_β absorbs Lyα at λ (1215.67/1025.72); reuse the field there.
    lyb = lam_rest[idx] < LYB
    if np.any(lyb):
        lam_alpha = wave_obs[idx][lyb] * (LYA / LYB)
        g_alpha = np.interp(lam_alpha, wave_obs, g)
        tau[lyb] += 0.19 * tau_at(wave_obs[idx][lyb] / LYB - 1.0, g_alpha)
    trans[idx] = np.exp(-tau)
    trans[lam_rest < LYLIMIT] *= np.exp(-2.0)
    return trans


@lru_cache(maxsize=8)
def _f99_on_grid(w0: float, dw: float, n: int) -> np.ndarray:
    return bt.fitzpatrick99(w0 + dw * np.arange(n))


def mw_transmission(wave_obs: np.ndarray, ebv: float) -> np.ndarray:
    """Galactic transmission 10^(−0.4 A_λ), A_λ = E(B−V) × F99(R_V = 3.1)."""
    if ebv == 0.0:
        return np.ones_like(wave_obs)
    dw = float(wave_obs[1] - wave_obs[0]) if wave_obs.size > 1 else 1.0
    if wave_obs.size > 2 and abs(float(wave_obs[-1] - wave_obs[0]) - dw * (wave_obs.size - 1)) < 1e-6:
        k = _f99_on_grid(float(wave_obs[0]), dw, wave_obs.size)
    else:
        k = bt.fitzpatrick99(wave_obs)
    return 10.0 ** (-0.4 * ebv * k)


def render_intrinsic(
    params: QuasarParams,
    wave_obs: np.ndarray,
    templates: FeTemplates,
    *,
    shared_dir: str | None = None,
) -> ModelParts:
    """Noiseless model of one quasar on the observed grid *wave_obs* (model units).

    Model units: the power-law continuum is 1 at rest 3000 Å in the rest frame; the
    observed-frame flux density is the rest-frame one divided by (1 + z). Multiply by
    :func:`scale_to_magnitude`'s factor to get 1e-17 erg/s/cm²/Å.

    Parameters
    ----------
    params
        The quasar.
    wave_obs
        Observed vacuum wavelengths [Å] (pixel centres, monotonic).
    templates
        Fe II templates (:func:`~desilab.sample.builtin_templates.feii_templates`).
    shared_dir
        Passed through for real templates (cache key).

    Returns
    -------
    ModelParts
    """
    zp1 = 1.0 + params.z
    lam = wave_obs / zp1
    edges = _pixel_edges(wave_obs) / zp1
    pl = (lam / 3000.0) ** params.alpha_lambda
    logw, fe_uv, fe_opt = broadened_feii(templates, params.fwhm_feii, shared_dir)
    loglam = np.log10(lam)
    fe = (
        params.feii_uv_ew
        * np.interp(loglam, logw, fe_uv, left=0.0, right=0.0)
        * (2650.0 / 3000.0) ** (params.alpha_lambda)
    )
    fe += (
        params.feii_opt_ew
        * np.interp(loglam, logw, fe_opt, left=0.0, right=0.0)
        * (4560.0 / 3000.0) ** (params.alpha_lambda)
    )
    bgrid, btab = _balmer_table()
    bac = params.balmer_frac * np.interp(lam, bgrid, btab, left=btab[0], right=0.0)
    continuum = pl + fe + bac
    lines = add_lines(lam, edges, params.components)
    if params.host_frac > 0:
        agn5100 = (5100.0 / 3000.0) ** params.alpha_lambda
        host = (
            bt.host_galaxy(lam, params.host_d4000, params.host_sigma)
            * agn5100
            * params.host_frac
            / (1.0 - params.host_frac)
        )
    else:
        host = np.zeros_like(lam)
    bal = trough_transmission(lam, params.troughs) if params.troughs else np.ones_like(lam)
    forest = forest_transmission(wave_obs, params.z, params.forest_seed) if params.forest else np.ones_like(lam)
    mw = mw_transmission(wave_obs, params.ebv_mw)
    agn = continuum + lines
    total = ((agn * bal + host) * forest * mw) / zp1
    unabsorbed = ((agn + host) * mw) / zp1
    star = np.zeros_like(lam)
    if params.star_kind and params.star_frac > 0:
        rflux = _band_mean_fnu(wave_obs, total, "r")
        star_shape = bt.star_spectrum(wave_obs, params.star_kind) * mw
        sflux = _band_mean_fnu(wave_obs, star_shape, "r")
        star = star_shape * (params.star_frac / (1.0 - params.star_frac)) * rflux / sflux
        total = total + star
        unabsorbed = unabsorbed + star
    return ModelParts(wave_obs, continuum / zp1, lines / zp1, host / zp1, bal, forest, mw, star, total, unabsorbed)


# --------------------------------------------------------------------------------------
# Photometry
# --------------------------------------------------------------------------------------

# Smooth DECam-like passbands: (blue half-power edge, red edge, edge softness) [Å].
_BANDS = {"g": (4050.0, 5450.0, 60.0), "r": (5600.0, 7150.0, 60.0), "z": (8450.0, 9900.0, 80.0)}


@lru_cache(maxsize=16)
def _band_response_cached(band: str, w0: float, dw: float, n: int) -> np.ndarray:
    lo, hi, soft = _BANDS[band]
    wave = w0 + dw * np.arange(n)
    return 1.0 / (1.0 + np.exp(-(wave - lo) / soft)) / (1.0 + np.exp((wave - hi) / soft))


def _band_response(wave: np.ndarray, band: str) -> np.ndarray:
    dw = float(wave[1] - wave[0])
    if wave.size > 2 and abs(float(wave[-1] - wave[0]) - dw * (wave.size - 1)) < 1e-6:  # uniform grid
        return _band_response_cached(band, float(wave[0]), dw, wave.size)
    lo, hi, soft = _BANDS[band]
    return 1.0 / (1.0 + np.exp(-(wave - lo) / soft)) / (1.0 + np.exp((wave - hi) / soft))


def _band_mean_fnu(wave: np.ndarray, flam: np.ndarray, band: str) -> float:
    resp = _band_response(wave, band)
    fnu = flam * wave**2
    return float(np.sum(fnu * resp / wave) / np.sum(resp / wave))


def synthetic_mag(wave: np.ndarray, flam: np.ndarray, band: str) -> float:
    """AB magnitude of *flam* [1e-17 erg/s/cm²/Å] through a smooth g/r/z passband.

    The z band extends past 9824 Å: the flux beyond the grid is taken as the mean of the
    last 200 Å (flat F_λ).
    """
    if band == "z":
        ext = np.arange(wave[-1] + 0.8, 10200.0, 0.8)
        tail = np.full(ext.size, float(np.mean(flam[wave > wave[-1] - 200.0])))
        wave, flam = np.concatenate([wave, ext]), np.concatenate([flam, tail])
    fnu = _band_mean_fnu(wave, flam, band) * 1e-17 / (C_KMS * 1e13)  # erg/s/cm²/Hz
    if fnu <= 0:
        return 99.0
    return float(-2.5 * np.log10(fnu) - 48.60)


def scale_to_magnitude(wave: np.ndarray, flam_model: np.ndarray, mag: float, band: str = "r") -> float:
    """Factor that brings *flam_model* to AB magnitude *mag* in *band*."""
    return float(10.0 ** (-0.4 * (mag - synthetic_mag(wave, flam_model, band))))


# --------------------------------------------------------------------------------------
# Instrument: resolution, noise, sky residuals
# --------------------------------------------------------------------------------------


def resolution_data(arm: str, wave: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """DESI-like resolution diagonals, float32 ``(nspec, 11, nwave)``.

    Each column *j* of the resolution matrix is a Gaussian line-spread function of sigma
    ``arm_sigma_pix(arm, λ_j) × scale[i]`` pixels sampled at offsets −5…+5 and normalised
    to unit sum (flux conserving). Storage follows desispec: ``data[d, j]`` is the matrix
    element ``R[j − k_d, j]`` with ``k_d = 5 − d``, i.e. it is read by
    ``scipy.sparse.dia_matrix((data, 5 − arange(11)), shape=(nwave, nwave))``.
    """
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    sig = bt.arm_sigma_pix(arm, wave)[None, :] * scale[:, None]  # (nspec, nwave)
    half = NDIAG // 2  # observed i − true j = d − half
    q = np.exp(-0.5 / sig**2)  # kernel at displacement k is q**(k*k)
    kern = np.empty((sig.shape[0], NDIAG, sig.shape[1]), dtype=np.float64)
    kern[:, half] = 1.0
    q2 = q * q
    step = q  # q**(2k-1)
    val = np.ones_like(q)
    for k in range(1, half + 1):
        val = val * step  # q**(k*k)
        step = step * q2
        kern[:, half + k] = val
        kern[:, half - k] = val
    kern /= kern.sum(axis=1, keepdims=True)
    return kern.astype(np.float32)


def apply_resolution(flux: np.ndarray, rdata: np.ndarray) -> np.ndarray:
    """``R @ flux`` for each spectrum, from diagonals in desispec storage (see :func:`resolution_data`)."""
    flux = np.atleast_2d(flux)
    out = np.zeros(flux.shape, dtype=np.float64)
    n = flux.shape[1]
    half = NDIAG // 2
    for d in range(NDIAG):
        k = half - d  # offset: element [i, i + k]
        if k >= 0:
            out[:, : n - k] += rdata[:, d, k:] * flux[:, k:]
        else:
            out[:, -k:] += rdata[:, d, : n + k] * flux[:, : n + k]
    return out


@dataclass
class Observed:
    """One arm of a batch of spectra as the coadd holds it, plus what made it.

    Attributes
    ----------
    flux, ivar, mask, resolution
        Coadd arrays (float32, float32, int32, float32).
    model
        Noiseless model after resolution convolution (float32).
    sky
        Sky flux density that set the noise (float32, per spectrum).
    """

    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    resolution: np.ndarray
    model: np.ndarray
    sky: np.ndarray


def observe(
    arm: str,
    wave: np.ndarray,
    model: np.ndarray,
    exptime: np.ndarray,
    rng: np.random.Generator,
    *,
    pad: int = 0,
    sky_residual: float = 0.01,
    sky_shift: float = 0.015,
    cosmic_rate: float = 0.7,
) -> Observed:
    """Observe noiseless models (1e-17 units) through one DESI arm.

    *model* has shape ``(nspec, nwave + 2 pad)``: the arm's pixels plus *pad* pixels of
    model on each side, so that the convolution near the arm edges sees the light that
    the line-spread function brings in from outside the arm (as on the CCD). With
    ``pad=0`` the edge pixels lose the light of the missing neighbours.

    * resolution: per-spectrum LSF width scaled by U(0.96, 1.04) (fibre-to-fibre);
    * noise: Gaussian with variance (counts from object + sky + 4 × read noise²) / (A t)²,
      A the arm throughput and t the exposure time; ivar is its inverse (model based, as
      the DESI extraction's);
    * sky-subtraction residuals, not in ivar: each sky line leaves ±*sky_residual* × its
      flux (random per spectrum) plus the derivative term of a *sky_shift*-Å wavelength
      error, and the continuum ±0.3%;
    * cosmic rays: Poisson(*cosmic_rate*) per spectrum and arm, 1–3 pixels with ivar = 0
      and mask ``ALLBADPIX | COSMIC``; sky-line pixels 20× brighter than the continuum get
      ``BRIGHTSKY``.

    Returns
    -------
    Observed
    """
    nspec = model.shape[0]
    nwave = wave.size
    if model.shape[1] != nwave + 2 * pad:
        raise ValueError(f"model has {model.shape[1]} pixels, expected {nwave} + 2 x {pad}")
    scale = rng.uniform(0.96, 1.04, nspec)
    if pad:
        dw = wave[1] - wave[0]
        wave_ext = np.concatenate([wave[0] - dw * np.arange(pad, 0, -1), wave, wave[-1] + dw * np.arange(1, pad + 1)])
        rdata_ext = resolution_data(arm, wave_ext, scale)
        conv = apply_resolution(model, rdata_ext)[:, pad : pad + nwave]
        rdata = np.ascontiguousarray(rdata_ext[:, :, pad : pad + nwave])
    else:
        rdata = resolution_data(arm, wave, scale)
        conv = apply_resolution(model, rdata)
    sigma_pix = bt.arm_sigma_pix(arm, wave)
    sky_cont, sky_line = bt.sky_spectrum(wave, sigma_pix)
    sky = sky_cont + sky_line
    a_t = bt.arm_throughput(arm, wave)[None, :] * exptime[:, None]
    counts = np.clip(conv, 0.0, None) * a_t + sky[None, :] * a_t
    var = (counts + bt.EXTRACTION_NPIX * bt.READ_NOISE_E[arm] ** 2) / a_t**2
    sigma = np.sqrt(var)
    noise = rng.standard_normal((nspec, nwave)) * sigma
    # sky-subtraction residuals (systematic, not in ivar)
    amp = rng.normal(0.0, sky_residual, nspec)
    shift = rng.normal(0.0, sky_shift, nspec)
    dsky = np.gradient(sky_line, wave)
    cont_res = rng.normal(0.0, 0.003, nspec)
    resid = amp[:, None] * sky_line[None, :] + shift[:, None] * dsky[None, :] + cont_res[:, None] * sky_cont[None, :]
    flux = conv + noise + resid
    ivar = 1.0 / var
    mask = np.zeros((nspec, nwave), dtype=np.int32)
    bright = sky_line > 20.0 * sky_cont
    mask[:, bright] |= 1 << 5  # BRIGHTSKY
    ncr = rng.poisson(cosmic_rate, nspec)
    for i in np.flatnonzero(ncr):
        for _ in range(ncr[i]):
            j = int(rng.integers(0, nwave - 3))
            w = int(rng.integers(1, 4))
            ivar[i, j : j + w] = 0.0
            mask[i, j : j + w] |= (1 << 1) | (1 << 2)  # ALLBADPIX | COSMIC
            flux[i, j : j + w] = conv[i, j : j + w]
    return Observed(
        flux.astype(np.float32),
        ivar.astype(np.float32),
        mask,
        rdata,
        conv.astype(np.float32),
        np.broadcast_to(sky.astype(np.float32), (nspec, nwave)),
    )


# --------------------------------------------------------------------------------------
# Profile statistics and BAL indices
# --------------------------------------------------------------------------------------


def profile_stats(components: list[Component], wave0: float | None = None, npts: int = 1201) -> dict[str, float]:
    """Non-parametric statistics of a sum of Gaussian components (one line).

    Velocities are relative to systemic at rest wavelength *wave0* (default: the first
    component's). Returns FWHM (of the summed profile), SIGMA (second moment), V50
    (median), V10 and V90 (10th / 90th flux percentiles from the blue side), W80 = V90 −
    V10, VPEAK, all in km/s, and FLUX (sum). Moments are analytic; percentiles and FWHM
    come from the profile on an *npts* grid (linear interpolation; < 0.1% error).
    """
    keys = ("FWHM", "SIGMA", "V50", "V10", "V90", "W80", "VPEAK", "FLUX")
    if not components:
        return dict.fromkeys(keys, float("nan"))
    wave0 = components[0].wave if wave0 is None else wave0
    f = np.array([c.flux for c in components], dtype=np.float64)
    mu = np.array([c.vshift_kms + (c.wave / wave0 - 1) * C_KMS for c in components])
    sg = np.array([c.sigma_kms for c in components], dtype=np.float64)
    total = float(f.sum())
    if total <= 0:
        return dict.fromkeys(keys, float("nan"))
    mean = float((f * mu).sum() / total)
    sigma = float(np.sqrt((f * (sg**2 + mu**2)).sum() / total - mean**2))
    v = np.linspace((mu - 6 * sg).min(), (mu + 6 * sg).max(), npts)
    z = (v[None, :] - mu[:, None]) / sg[:, None]
    prof = (f[:, None] / (np.sqrt(2 * np.pi) * sg[:, None]) * np.exp(-0.5 * z**2)).sum(axis=0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (prof[1:] + prof[:-1]))]) * (v[1] - v[0]) / total
    v10, v50, v90 = np.interp([0.1, 0.5, 0.9], cdf, v)
    ipk = int(np.argmax(prof))
    half = prof[ipk] / 2.0
    above = np.flatnonzero(prof >= half)
    lo, hi = above[0], above[-1]
    vl = np.interp(half, [prof[lo - 1], prof[lo]], [v[lo - 1], v[lo]]) if lo > 0 else v[0]
    vh = np.interp(half, [prof[hi + 1], prof[hi]], [v[hi + 1], v[hi]]) if hi < v.size - 1 else v[-1]
    return {
        "FWHM": float(vh - vl),
        "SIGMA": sigma,
        "V50": float(v50),
        "V10": float(v10),
        "V90": float(v90),
        "W80": float(v90 - v10),
        "VPEAK": float(v[ipk]),
        "FLUX": total,
    }


def _runs_baltools(
    expr: np.ndarray, speed: np.ndarray, min_width: float, ai: bool, flux: np.ndarray, sig: np.ndarray
) -> list[tuple[int, int]]:
    """Trough detection with baltools' stepping rules, vectorised.

    A pixel is "in" when ``expr > 0``. BI: one out pixel followed by an in pixel does not
    end a trough (unless it is one of the last two pixels). AI: the same only if the two
    previous pixels were in too, and an AI trough must pass a 3σ test on its mean flux
    (except, as in baltools, one that runs to the end of the window). A trough is kept if
    ``speed[end] − speed[start]`` exceeds *min_width*. Returned ``(start, end)`` are the
    first and last in-pixels; the integration slice ``[start:end]`` excludes the last one,
    as baltools does.
    """
    n = expr.size
    if n < 3:
        return []
    inn = expr > 0
    if not np.any(inn):
        return []
    idx = np.arange(n)
    nxt = np.concatenate([inn[1:], [False]])
    prev = np.roll(inn, 1)  # baltools indexes expr[i-1] with Python wrap-around
    bridge = (~inn) & nxt & (idx < n - 2) & prev
    if ai:
        bridge &= np.roll(inn, 2)
    cont = inn | bridge
    edges = np.flatnonzero(np.diff(np.concatenate([[0], cont.astype(np.int8), [0]])))
    out: list[tuple[int, int]] = []
    for s0, e1 in zip(edges[::2], edges[1::2], strict=True):
        e = int(e1) - 1
        s0 = int(s0)
        if speed[e] - speed[s0] + 1e-4 <= min_width:
            continue
        if ai and e < n - 1:
            npx = max(e - s0, 1)
            seg = slice(s0, e) if e > s0 else slice(s0, s0 + 1)
            mflux = float(np.mean(flux[seg]))
            msig = float(np.mean(sig[seg])) / np.sqrt(npx)
            if not 1.0 - (mflux + 3.0 * msig) / 0.9 > 0:
                continue
        out.append((s0, e))
    return out


def _runs_classical(inside: np.ndarray, speed: np.ndarray, min_width: float) -> list[tuple[int, int]]:
    """Contiguous runs of *inside* pixels wider than *min_width* (no spike allowance)."""
    out = []
    idx = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    for s, e in zip(idx[::2], idx[1::2], strict=True):
        if e - s >= 2 and speed[e - 1] - speed[s] > min_width:
            out.append((int(s), int(e) - 1))  # first and last pixel of the run
    return out


def bal_indices(
    wave_obs: np.ndarray,
    flux_norm: np.ndarray,
    z: float,
    *,
    ion: str = "CIV",
    sigma_norm: np.ndarray | None = None,
    mode: str = "baltools",
    nbi: int = 5,
    nai: int = 17,
) -> dict[str, object]:
    """Balnicity (BI) and absorption (AI) indices of one ion in a continuum-normalised spectrum.

    Velocity ``v = c (λ_obs / ((1+z) λ_ion) − 1)`` (non-relativistic; λ_CIV = 1549 Å,
    λ_SiIV = 1398 Å as in baltools).

    ``mode="baltools"`` (the DR1 BAL catalog): a pixel is in a trough when
    ``1 − f/0.9 − 0.5 σ > 0``; BI troughs are wider than 2000 km/s within
    −25000 < v < −3000 km/s, AI troughs wider than 450 km/s within −25000 < v < 0 and pass
    a 3σ test on their mean flux; one noise spike is allowed inside a trough; each index
    integrates ``(1 − f/0.9) dv`` over the trough after its first 2000 (BI) or 450 (AI)
    km/s. ``mode="classical"``: Weymann et al. (1991) BI (same window and 2000 km/s
    rule, no σ term, no spike) and Trump et al. (2006) AI (troughs > 450 km/s within
    −29000 < v < 0, integrated over their whole width).

    Worked example (noise-free box, f = 0.5 from −15000 to −5000 km/s): BI = 3556,
    AI(baltools) = 4244, AI(classical) = 4444 km/s, to one pixel × depth.

    Parameters
    ----------
    wave_obs
        Observed wavelengths [Å].
    flux_norm
        Flux divided by the unabsorbed continuum (+ emission) model.
    z
        Redshift used for velocities.
    ion
        ``"CIV"`` or ``"SIIV"`` (any key of :data:`BAL_LINES`).
    sigma_norm
        1σ uncertainty of *flux_norm* (``None``: noise-free).
    mode
        ``"baltools"`` or ``"classical"``.
    nbi, nai
        Maximum troughs stored (baltools truncates at 5 and 17).

    Returns
    -------
    dict
        ``BI``, ``ERR_BI``, ``AI``, ``ERR_AI`` (km/s), ``BI_TROUGHS`` and ``AI_TROUGHS``
        (lists of ``(vmin, vmax, posmin, fmin)`` with positive speeds, all troughs,
        untruncated), ``N_BI``/``N_AI`` (stored counts, truncated), and ``SNR`` (median
        flux/σ in −25000…0 km/s; −1 when noise-free or not covered), ``COVERED`` (bool).
    """
    lam0 = BAL_LINES[ion]
    speed_all = C_KMS * (wave_obs / ((1.0 + z) * lam0) - 1.0)
    res: dict[str, object] = {
        "BI": 0.0,
        "ERR_BI": 0.0,
        "AI": 0.0,
        "ERR_AI": 0.0,
        "BI_TROUGHS": [],
        "AI_TROUGHS": [],
        "N_BI": 0,
        "N_AI": 0,
        "SNR": -1.0,
        "COVERED": False,
    }
    vmin_ai = -25000.0 if mode == "baltools" else -29000.0
    if speed_all[0] > vmin_ai or speed_all[-1] < 0.0:
        return res
    res["COVERED"] = True
    sig_all = np.zeros_like(flux_norm) if sigma_norm is None else np.asarray(sigma_norm, dtype=np.float64)
    flux_all = np.asarray(flux_norm, dtype=np.float64)
    for which, vlo, vhi, minw, skip in (
        ("BI", -25000.0, -3000.0, 2000.0, 2000.0),
        ("AI", vmin_ai, 0.0, 450.0, 450.0 if mode == "baltools" else 0.0),
    ):
        i0 = int(np.flatnonzero(speed_all >= vlo)[0])
        i1 = int(np.flatnonzero(speed_all >= vhi)[0])
        v = speed_all[i0:i1]
        f = flux_all[i0:i1]
        s = sig_all[i0:i1]
        if which == "AI" and sigma_norm is not None:
            good = s > 0
            if np.any(good):
                res["SNR"] = float(np.median(f[good] / s[good]))
        if sigma_norm is not None and np.median(f) < np.median(s):
            continue  # baltools: too noisy to search
        if mode == "baltools":
            expr = (1.0 - f / 0.9) - 0.5 * s
            runs = _runs_baltools(expr, v, minw, which == "AI", f, s)
        else:
            runs = [(a, b + 1) for a, b in _runs_classical(f < 0.9, v, minw)]
        total, var, troughs = 0.0, 0.0, []
        for a, b in runs:
            vv, ff, ss = v[a:b], f[a:b], s[a:b]
            if vv.size < 2:
                continue
            if mode == "baltools":
                # baltools: sum dv_i (1 − f_{i+1}/0.9) once the running width reaches `skip`
                dv = np.diff(vv)
                para = 1.0 - ff[1:] / 0.9
                use = np.cumsum(dv) >= skip
                total += float(np.sum(dv[use] * para[use]))
                var += float(np.sum((dv[use] * ss[1:][use] / 0.9) ** 2))
            else:
                # classical: exact integral over pixel extents, from trough start + skip
                mid = 0.5 * (vv[1:] + vv[:-1])
                lo = np.concatenate([[vv[0] - (mid[0] - vv[0])], mid])
                hi = np.concatenate([mid, [vv[-1] + (vv[-1] - mid[-1])]])
                width = np.clip(hi - np.maximum(lo, lo[0] + skip), 0.0, None)
                para = 1.0 - ff / 0.9
                total += float(np.sum(width * para))
                var += float(np.sum((width * ss / 0.9) ** 2))
            k = int(np.argmin(ff))
            v_end = v[b] if mode == "baltools" else vv[-1]  # baltools: VMIN at its end index
            troughs.append((-float(v_end), -float(vv[0]), -float(vv[k]), float(ff[k])))
        total = max(total, 0.0)
        res[which] = total
        res[f"ERR_{which}"] = float(np.sqrt(var)) if total > 0 else 0.0
        res[f"{which}_TROUGHS"] = troughs if total > 0 else []
        res[f"N_{which}"] = min(len(troughs), nbi if which == "BI" else nai) if total > 0 else 0
    return res
