"""Built-in spectral ingredients of the sample-sky quasars: line lists, pseudo-continua, sky, instrument.

Everything the quasar generator needs is defined here, from published numbers, so that
the sample sky does not depend on ``../shared``. ``templates="real"`` swaps the two Fe II
templates for the real ones (:func:`load_real_templates`); nothing else changes.

What is here, and where the numbers come from (all wavelengths vacuum, Å):

* :data:`LINES` — quasar emission lines: rest wavelengths (SDSS/FastSpecFit vacuum
  values), typical rest-frame equivalent widths and broad-line FWHMs after Vanden Berk
  et al. (2001, AJ 122, 549, Table 2) and Shen et al. (2011, ApJS 194, 45); narrow-line
  ratios are set in :mod:`desilab.sample.qso_spectra`.
* :data:`FEII_UV_BLENDS`, :data:`FEII_OPT_BLENDS` — an analytic stand-in for the Fe II
  pseudo-continuum: blends at the positions of the strong UV multiplets (Vestergaard &
  Wilkes 2001; Tsuzuki et al. 2006) and of the optical I Zw 1 multiplets 37/38, 42, 48/49
  (Boroson & Green 1992). Shapes are approximate; strengths are normalised per object.
* :func:`balmer_continuum` — Grandi (1982) / Dietrich et al. (2002) optically thick
  Balmer continuum (T_e = 15,000 K, τ_BE = 1), smoothed across the edge.
* :func:`host_galaxy` — an analytic old-to-intermediate stellar population (D4000 break,
  Ca II H&K, G band, Balmer, Mg b, Fe, Na D, Ca triplet absorption).
* :func:`star_spectrum` — F, K and M dwarf-like spectra for the stellar-contamination
  anomaly (black body, Balmer/metal lines, TiO bands).
* :func:`sky_spectrum` — dark-sky continuum plus night-sky lines ([O I] 5577/6300/6364,
  Na D, Hg, and an OH-like forest above 6800 Å: the strongest OH lines at their published
  positions, weaker ones placed in the OH band regions by a fixed internal seed).
* :data:`ARMS` and the instrument model (:func:`arm_throughput`, :func:`arm_sigma_pix`,
  :data:`READ_NOISE_E`): DESI-like per-arm throughput, line-spread width and read noise,
  calibrated on the inverse variances and resolution diagonals of the real DESI coadds in
  ``shared/data/real/desi_coadd`` (ivar scaled to a 1000 s dark exposure).
* :func:`fitzpatrick99` — the Fitzpatrick (1999) R_V = 3.1 extinction curve in the optical
  (spline through the published anchor points, as in ``fm_unred``), for Galactic dust.
* :func:`nebular_tables` — PyNeb [S II], [O II] and [O III] ratios from
  ``data/nebular_ratios.txt`` (made by ``scripts/make_nebular_tables.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from desilab.errors import InputError

__all__ = [
    "ARMS",
    "C_KMS",
    "FEII_OPT_BLENDS",
    "FEII_UV_BLENDS",
    "LINES",
    "LINE_INDEX",
    "READ_NOISE_E",
    "TEMPLATE_SETS",
    "FeTemplates",
    "LineSpec",
    "arm_sigma_pix",
    "arm_slice",
    "arm_throughput",
    "arm_wave",
    "balmer_continuum",
    "combined_wave",
    "feii_templates",
    "fitzpatrick99",
    "host_galaxy",
    "load_real_templates",
    "nebular_tables",
    "planck_lambda",
    "sky_lines",
    "sky_spectrum",
    "star_spectrum",
]

C_KMS = 299_792.458
"""Speed of light [km/s]."""

TEMPLATE_SETS = ("builtin", "real")
"""Accepted values of ``templates``."""

# --------------------------------------------------------------------------------------
# Wavelength grids (DESI DR1 / iron)
# --------------------------------------------------------------------------------------

ARMS: dict[str, tuple[float, float, int]] = {
    "b": (3600.0, 5800.0, 2751),
    "r": (5760.0, 7620.0, 2326),
    "z": (7520.0, 9824.0, 2881),
}
"""Per arm: first and last wavelength [Å] and pixel count (0.8 Å pixels)."""

_DWAVE = 0.8
_WMIN = 3600.0
_NCOMB = 7781


def combined_wave() -> np.ndarray:
    """The 7781-pixel brz grid, 3600–9824 Å in 0.8 Å steps (float64)."""
    return _WMIN + _DWAVE * np.arange(_NCOMB, dtype=np.float64)


def arm_wave(arm: str) -> np.ndarray:
    """Wavelength grid of one arm (float64), identical to the DR1 coadd grids."""
    lo, _hi, n = ARMS[arm]
    return lo + _DWAVE * np.arange(n, dtype=np.float64)


def arm_slice(arm: str) -> slice:
    """Slice of :func:`combined_wave` covered by *arm* (the grids are aligned)."""
    lo, _hi, n = ARMS[arm]
    start = round((lo - _WMIN) / _DWAVE)
    return slice(start, start + n)


# --------------------------------------------------------------------------------------
# Emission lines
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineSpec:
    """One emission line (or unresolved blend) of the quasar model.

    Attributes
    ----------
    name
        Identifier used in the truth tables (FastSpecFit-like, e.g. ``OIII_5007``).
    wave
        Vacuum rest wavelength [Å].
    kind
        ``"broad"`` (broad-line region; two Gaussians), ``"narrow"`` (narrow-line region)
        or ``"both"`` (a broad line with a narrow component, e.g. Hβ).
    ew
        Typical rest-frame equivalent width of the broad (or only) component [Å],
        relative to the power-law continuum.
    fwhm_ratio
        Broad FWHM relative to the object's broad-line FWHM (1 = Hβ-like).
    shift_ion
        ``"high"`` for high-ionisation lines that share the C IV blueshift (scaled),
        ``"low"`` for low-ionisation lines, ``"none"`` for narrow lines.
    """

    name: str
    wave: float
    kind: str
    ew: float = 0.0
    fwhm_ratio: float = 1.0
    shift_ion: str = "low"


# Broad lines: EW against the power law alone, after Vanden Berk et al. (2001) Table 2 for
# the UV lines (rounded; the Lyα/N V and C III] blends split between their parts) and
# Shen et al. (2011) for Mg II and the Balmer lines (VB01's optical EWs are diluted by host
# light; host and Balmer continuum dilute ours in the same way). FWHM ratios after Shen et
# al. (2011). Narrow lines get their strengths from [O III] in qso_population.
LINES: tuple[LineSpec, ...] = (
    LineSpec("LYBETA_OVI", 1033.82, "broad", 9.0, 1.0, "high"),
    LineSpec("LYALPHA", 1215.67, "broad", 75.0, 1.0, "high"),
    LineSpec("NV_1240", 1240.14, "broad", 16.0, 0.9, "high"),
    LineSpec("OI_1304", 1304.35, "broad", 2.0, 0.8, "low"),
    LineSpec("CII_1335", 1335.30, "broad", 0.8, 0.8, "low"),
    LineSpec("SIIV_1398", 1396.76, "broad", 8.0, 1.0, "high"),
    LineSpec("CIV_1549", 1549.06, "broad", 30.0, 1.05, "high"),
    LineSpec("HEII_1640", 1640.42, "broad", 2.0, 1.0, "high"),
    LineSpec("OIII_1663", 1663.48, "broad", 0.6, 1.0, "high"),
    LineSpec("ALIII_1857", 1857.40, "broad", 0.5, 0.8, "low"),
    LineSpec("SIIII_1892", 1892.03, "broad", 0.5, 0.8, "low"),
    LineSpec("CIII_1908", 1908.73, "broad", 20.0, 1.05, "low"),
    LineSpec("CII_2326", 2326.44, "broad", 2.0, 0.9, "low"),
    LineSpec("MGII_2796", 2796.35, "broad", 20.0, 0.95, "low"),
    LineSpec("MGII_2803", 2803.53, "broad", 20.0, 0.95, "low"),
    LineSpec("NEV_3426", 3426.84, "narrow", 0.0, 1.0, "none"),
    LineSpec("OII_3726", 3727.09, "narrow", 0.0, 1.0, "none"),
    LineSpec("OII_3729", 3729.88, "narrow", 0.0, 1.0, "none"),
    LineSpec("NEIII_3869", 3869.86, "narrow", 0.0, 1.0, "none"),
    LineSpec("HDELTA", 4102.89, "broad", 10.0, 1.0, "low"),
    LineSpec("HGAMMA", 4341.69, "broad", 25.0, 1.0, "low"),
    LineSpec("OIII_4363", 4364.44, "narrow", 0.0, 1.0, "none"),
    LineSpec("HEII_4686", 4687.02, "broad", 1.5, 1.2, "high"),
    LineSpec("HBETA", 4862.71, "both", 75.0, 1.0, "low"),
    LineSpec("OIII_4959", 4960.30, "narrow", 0.0, 1.0, "none"),
    LineSpec("OIII_5007", 5008.24, "narrow", 0.0, 1.0, "none"),
    LineSpec("HEI_5876", 5877.25, "broad", 6.0, 1.1, "low"),
    LineSpec("OI_6300", 6302.05, "narrow", 0.0, 1.0, "none"),
    LineSpec("NII_6548", 6549.86, "narrow", 0.0, 1.0, "none"),
    LineSpec("HALPHA", 6564.60, "both", 300.0, 0.9, "low"),
    LineSpec("NII_6584", 6585.27, "narrow", 0.0, 1.0, "none"),
    LineSpec("SII_6716", 6718.29, "narrow", 0.0, 1.0, "none"),
    LineSpec("SII_6731", 6732.67, "narrow", 0.0, 1.0, "none"),
)
"""The emission lines of the model (broad EWs are medians; objects scatter around them)."""

LINE_INDEX: dict[str, LineSpec] = {ln.name: ln for ln in LINES}
"""Lines by name."""

# --------------------------------------------------------------------------------------
# Fe II pseudo-continuum (analytic stand-in)
# --------------------------------------------------------------------------------------

# (vacuum centre [Å], relative strength, intrinsic Gaussian sigma [Å]) of Fe II blends.
FEII_UV_BLENDS: tuple[tuple[float, float, float], ...] = (
    (1420.0, 0.45, 12.0),
    (1465.0, 0.50, 12.0),
    (1505.0, 0.55, 12.0),
    (1530.0, 0.40, 10.0),
    (1610.0, 0.25, 10.0),
    (1720.0, 0.30, 10.0),
    (1785.0, 0.25, 10.0),
    (1870.0, 0.15, 12.0),
    (1955.0, 0.35, 12.0),
    (1995.0, 0.30, 12.0),
    (2060.0, 0.35, 12.0),  # Fe III UV48/47 region
    (2220.0, 0.25, 18.0),
    (2270.0, 0.30, 16.0),
    (2332.0, 0.45, 12.0),
    (2381.0, 0.70, 12.0),
    (2408.0, 0.60, 10.0),
    (2437.0, 0.55, 12.0),
    (2475.0, 0.60, 14.0),
    (2510.0, 0.55, 14.0),
    (2545.0, 0.40, 12.0),
    (2585.0, 0.55, 9.0),
    (2614.0, 0.75, 10.0),
    (2632.0, 0.60, 9.0),
    (2665.0, 0.45, 14.0),
    (2720.0, 0.55, 14.0),
    (2750.0, 0.55, 10.0),
    (2835.0, 0.30, 10.0),
    (2870.0, 0.40, 14.0),
    (2915.0, 0.40, 14.0),
    (2955.0, 0.55, 12.0),
    (2985.0, 0.45, 12.0),
    (3040.0, 0.25, 16.0),
    (3100.0, 0.20, 20.0),
    (3170.0, 0.35, 18.0),
    (3250.0, 0.45, 25.0),
    (3310.0, 0.40, 25.0),
    (3400.0, 0.35, 25.0),
    (3480.0, 0.30, 25.0),
)
"""UV Fe II (and Fe III) blends, 1400–3500 Å."""

FEII_OPT_BLENDS: tuple[tuple[float, float, float], ...] = (
    (4100.0, 0.35, 8.0),
    (4179.0, 0.35, 5.0),
    (4234.0, 0.40, 5.0),
    (4297.0, 0.50, 6.0),
    (4352.0, 0.35, 5.0),
    (4386.0, 0.25, 5.0),
    (4418.0, 0.30, 5.0),
    (4491.0, 0.45, 5.0),
    (4516.0, 0.80, 6.0),
    (4551.0, 0.85, 5.0),
    (4585.0, 0.90, 5.0),
    (4630.0, 0.65, 5.0),
    (4667.0, 0.35, 5.0),
    (4733.0, 0.20, 5.0),
    (4925.3, 0.75, 3.5),
    (5019.8, 0.80, 3.5),
    (5170.5, 0.50, 4.0),
    (5199.0, 0.55, 5.0),
    (5236.0, 0.70, 5.0),
    (5277.0, 0.75, 5.0),
    (5318.0, 0.70, 5.0),
    (5364.0, 0.45, 5.0),
    (5426.0, 0.25, 6.0),
    (5536.0, 0.15, 6.0),
    (6149.0, 0.15, 6.0),
    (6249.0, 0.20, 6.0),
    (6319.0, 0.15, 6.0),
    (6371.0, 0.12, 6.0),
    (6434.0, 0.15, 6.0),
    (6518.0, 0.15, 6.0),
)
"""Optical Fe II blends, 4150–6550 Å (multiplets 27, 28, 37, 38, 42, 48, 49, 74)."""

# Rest-frame log-λ grid on which the Fe II templates are tabulated and broadened.
_FE_DLOG = 1.0e-4  # ≈ 69 km/s
_FE_LOGW = np.arange(np.log10(1000.0), np.log10(8000.0), _FE_DLOG)


@dataclass(frozen=True)
class FeTemplates:
    """Fe II templates on a common rest-frame log-λ grid, before velocity broadening.

    Attributes
    ----------
    logw
        log10 rest wavelength [Å] of the grid (Δ = 1e-4 dex).
    uv, opt
        UV (1000–3500 Å) and optical (3500–8000 Å) templates, each normalised so that
        the integral over its window (2200–3090 Å; 4434–4684 Å) is 1 Å (i.e. unit EW on
        a unit continuum).
    name
        ``"builtin"`` or ``"real"``; ``source`` says where the real ones came from.
    """

    logw: np.ndarray
    uv: np.ndarray
    opt: np.ndarray
    name: str
    source: str


def _blend_template(blends: tuple[tuple[float, float, float], ...], lam: np.ndarray) -> np.ndarray:
    out = np.zeros_like(lam)
    for centre, amp, sig in blends:
        out += amp * np.exp(-0.5 * ((lam - centre) / sig) ** 2)
    return out


def _normalise_window(lam: np.ndarray, flux: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (lam >= lo) & (lam <= hi)
    area = np.trapezoid(flux[sel], lam[sel])
    if not area > 0:
        raise InputError(f"Fe II template has no flux in {lo:.0f}-{hi:.0f} Å", parameter="templates")
    return flux / area


@lru_cache(maxsize=4)
def feii_templates(kind: str = "builtin", shared_dir: str | None = None) -> FeTemplates:
    """The Fe II UV and optical templates on :data:`_FE_LOGW` (cached per process).

    Parameters
    ----------
    kind
        ``"builtin"`` (analytic blends, this module) or ``"real"`` (Vestergaard & Wilkes
        2001 / Tsuzuki et al. 2006 UV and Boroson & Green 1992 optical templates read
        from ``shared_dir/data/real/qso_templates``).
    shared_dir
        The ``shared`` folder (for ``"real"``).

    Returns
    -------
    FeTemplates
    """
    lam = 10.0**_FE_LOGW
    if kind == "builtin":
        uv = _blend_template(FEII_UV_BLENDS, lam) * (lam < 3500.0)
        opt = _blend_template(FEII_OPT_BLENDS, lam) * (lam >= 3500.0)
        source = "builtin analytic blends (desilab.sample.builtin_templates)"
    elif kind == "real":
        real = load_real_templates(shared_dir)
        uv = np.interp(_FE_LOGW, real["fe_uv"][0], real["fe_uv"][1], left=0.0, right=0.0)
        opt = np.interp(_FE_LOGW, real["fe_optical"][0], real["fe_optical"][1], left=0.0, right=0.0)
        source = str(real["source"])
    else:
        raise InputError(f"unknown template set {kind!r} (expected one of {TEMPLATE_SETS})", parameter="templates")
    uv = _normalise_window(lam, np.clip(uv, 0.0, None), 2200.0, 3090.0)
    opt = _normalise_window(lam, np.clip(opt, 0.0, None), 4434.0, 4684.0)
    return FeTemplates(_FE_LOGW, uv, opt, kind, source)


def load_real_templates(shared_dir: str | Path | None) -> dict[str, object]:
    """Read the real Fe II templates (and the composites, for checks) from ``shared/``.

    They are read in place, never copied. Files: ``fe_uv.txt`` and ``fe_optical.txt``
    (PyQSOFit copies: log10 λ, flux), ``VandenBerk2001.dat`` and ``Selsing2015.dat``.

    Parameters
    ----------
    shared_dir
        The ``shared`` folder, or its ``data/real/qso_templates`` subfolder.

    Returns
    -------
    dict
        ``fe_uv`` and ``fe_optical``: (log10 λ, flux) arrays; ``vandenberk`` and
        ``selsing``: (λ, flux) arrays (absent if the file is missing); ``source``: a
        description with the folder.

    Raises
    ------
    InputError
        The folder or the Fe II files are missing.
    """
    if shared_dir is None:
        raise InputError(
            "templates='real' needs the shared folder with data/real/qso_templates",
            parameter="templates",
            hint="pass shared_dir (Settings.shared_dir) or use templates='builtin'",
        )
    base = Path(shared_dir)
    folder = base if (base / "fe_uv.txt").exists() else base / "data" / "real" / "qso_templates"
    out: dict[str, object] = {}
    for key, name in (("fe_uv", "fe_uv.txt"), ("fe_optical", "fe_optical.txt")):
        path = folder / name
        if not path.exists():
            raise InputError("real Fe II template not found", file=path, parameter="templates")
        data = np.loadtxt(path)
        out[key] = (data[:, 0], data[:, 1])
    vb = folder / "VandenBerk2001.dat"
    if vb.exists():
        rows = [ln.split() for ln in vb.read_text().splitlines() if ln.strip() and ln.strip()[0].isdigit()]
        arr = np.array([[float(r[0]), float(r[1])] for r in rows if len(r) >= 2])
        out["vandenberk"] = (arr[:, 0], arr[:, 1])
    sel = folder / "Selsing2015.dat"
    if sel.exists():
        rows = [ln.split() for ln in sel.read_text().splitlines() if ln.strip() and ln.strip()[0].isdigit()]
        arr = np.array([[float(r[0]), float(r[1])] for r in rows if len(r) >= 2])
        out["selsing"] = (arr[:, 0], arr[:, 1])
    out["source"] = (
        f"real: {folder}/fe_uv.txt (Vestergaard & Wilkes 2001; Salviander et al. 2007; Tsuzuki et al. 2006) "
        f"and fe_optical.txt (Boroson & Green 1992)"
    )
    return out


# --------------------------------------------------------------------------------------
# Balmer continuum, host galaxy, stars
# --------------------------------------------------------------------------------------

_H_CGS, _K_CGS, _C_CGS = 6.62607015e-27, 1.380649e-16, 2.99792458e10


def planck_lambda(lam_ang: np.ndarray, temp: float) -> np.ndarray:
    """Black body B_λ(T) (arbitrary normalisation) at wavelengths in Å."""
    lam_cm = np.asarray(lam_ang, dtype=np.float64) * 1e-8
    x = np.minimum(_H_CGS * _C_CGS / (lam_cm * _K_CGS * temp), 700.0)
    return 1.0 / (lam_cm**5 * np.expm1(x))


def balmer_continuum(lam_rest: np.ndarray, t_e: float = 15000.0, tau_be: float = 1.0) -> np.ndarray:
    """Balmer continuum (Grandi 1982), normalised to 1 at 3000 Å.

    ``F ∝ B_λ(T_e) (1 − exp(−τ_BE (λ/3646)^3))`` below the Balmer edge; above it the
    merging high-order Balmer lines are represented by a smooth roll-over (a 35 Å
    logistic), which is what a broad-line-blurred edge looks like at DESI resolution.
    """
    lam = np.asarray(lam_rest, dtype=np.float64)
    shape = planck_lambda(lam, t_e) * -np.expm1(-tau_be * (lam / 3646.0) ** 3)
    norm = planck_lambda(np.array([3000.0]), t_e)[0] * -np.expm1(-tau_be * (3000.0 / 3646.0) ** 3)
    edge = 1.0 / (1.0 + np.exp(np.clip((lam - 3660.0) / 35.0, -50, 50)))
    return shape / norm * edge


# Host absorption features: (vacuum centre [Å], depth (fraction), Gaussian sigma [Å]).
_HOST_ABS = (
    (3934.78, 0.45, 5.0),
    (3969.59, 0.40, 5.0),
    (4102.89, 0.12, 6.0),
    (4305.0, 0.12, 12.0),
    (4341.69, 0.10, 6.0),
    (4384.0, 0.06, 6.0),
    (4862.71, 0.08, 5.0),
    (5177.0, 0.12, 8.0),
    (5270.0, 0.06, 5.0),
    (5335.0, 0.05, 5.0),
    (5894.6, 0.12, 5.0),
    (6564.6, 0.06, 5.0),
    (8500.4, 0.08, 4.0),
    (8544.4, 0.12, 4.0),
    (8664.5, 0.10, 4.0),
)


def host_galaxy(lam_rest: np.ndarray, d4000: float = 1.6, sigma_kms: float = 180.0) -> np.ndarray:
    """An old-to-intermediate stellar population, normalised to 1 at 5100 Å (rest).

    A 5,200 K black body with a 4000 Å break of strength *d4000* (ratio of the mean flux
    in 4050–4250 Å to 3750–3950 Å, Bruzual 1983 definition) and the strong absorption
    features of G/K giants, broadened by the stellar velocity dispersion *sigma_kms*.
    """
    lam = np.asarray(lam_rest, dtype=np.float64)
    base = planck_lambda(lam, 5200.0)
    step = 1.0 / (1.0 + np.exp(-(lam - 4000.0) / 25.0))
    blue = 1.0 / d4000
    flux = base * (blue + (1.0 - blue) * step)
    for centre, depth, sig in _HOST_ABS:
        s = np.hypot(sig, centre * sigma_kms / C_KMS)
        lo, hi = np.searchsorted(lam, [centre - 6 * s, centre + 6 * s])
        if hi > lo:
            flux[lo:hi] *= 1.0 - depth * np.exp(-0.5 * ((lam[lo:hi] - centre) / s) ** 2)
    ref = planck_lambda(np.array([5100.0]), 5200.0)[0]
    return flux / ref


_STAR_TYPES = {
    # T_eff [K], absorption lines (centre, depth, sigma Å), TiO band heads (centre, depth, scale Å)
    "F": (
        6500.0,
        (
            (3934.78, 0.5, 4.0),
            (3969.59, 0.45, 4.0),
            (4102.89, 0.35, 12.0),
            (4341.69, 0.35, 12.0),
            (4862.71, 0.30, 12.0),
            (6564.60, 0.30, 10.0),
            (5177.0, 0.06, 5.0),
            (5894.6, 0.05, 3.0),
        ),
        (),
    ),
    "K": (
        4500.0,
        (
            (3934.78, 0.7, 5.0),
            (3969.59, 0.65, 5.0),
            (4305.0, 0.25, 10.0),
            (4227.0, 0.3, 3.0),
            (5177.0, 0.30, 6.0),
            (5270.0, 0.12, 4.0),
            (5894.6, 0.30, 4.0),
            (8544.4, 0.25, 4.0),
            (8664.5, 0.2, 4.0),
            (8500.4, 0.15, 4.0),
            (4862.71, 0.08, 5.0),
            (6564.60, 0.1, 5.0),
        ),
        (),
    ),
    "M": (
        3300.0,
        ((5894.6, 0.35, 4.0), (8185.0, 0.15, 4.0), (8197.0, 0.15, 4.0), (6564.60, 0.05, 4.0)),
        (
            (4955.0, 0.25, 60.0),
            (5167.0, 0.35, 80.0),
            (5448.0, 0.30, 80.0),
            (6159.0, 0.40, 90.0),
            (6651.0, 0.35, 70.0),
            (7054.0, 0.55, 120.0),
            (7589.0, 0.35, 100.0),
            (8432.0, 0.30, 120.0),
        ),
    ),
}


def star_spectrum(lam: np.ndarray, kind: str) -> np.ndarray:
    """A dwarf-star-like spectrum (observed frame, v = 0), normalised to 1 at 6200 Å.

    Parameters
    ----------
    lam
        Wavelength [Å].
    kind
        ``"F"``, ``"K"`` or ``"M"`` (the last with TiO bands that degrade to the red).
    """
    try:
        temp, lines, bands = _STAR_TYPES[kind]
    except KeyError as exc:
        raise InputError(f"unknown star type {kind!r} (F, K, M)", parameter="star") from exc
    lam = np.asarray(lam, dtype=np.float64)
    flux = planck_lambda(lam, temp)
    for centre, depth, sig in lines:
        flux *= 1.0 - depth * np.exp(-0.5 * ((lam - centre) / sig) ** 2)
    for head, depth, scale in bands:
        redward = lam >= head
        flux[redward] *= 1.0 - depth * np.exp(-(lam[redward] - head) / scale)
    return flux / planck_lambda(np.array([6200.0]), temp)[0]


# --------------------------------------------------------------------------------------
# Night sky
# --------------------------------------------------------------------------------------

# Strong night-sky lines with published positions (air Å; Osterbrock et al. 1996 atlas),
# and integrated fluxes in 1e-17 erg/s/cm² per 1.5" fibre for a dark night.
_SKY_LINES_AIR = (
    (4358.34, 12.0),
    (5460.74, 10.0),
    (5577.34, 260.0),
    (5889.95, 25.0),
    (5895.92, 20.0),
    (6300.30, 80.0),
    (6363.78, 28.0),
    (6863.96, 30.0),
    (6923.22, 25.0),
    (6948.94, 18.0),
    (7276.41, 30.0),
    (7316.28, 60.0),
    (7340.89, 55.0),
    (7369.25, 30.0),
    (7401.69, 25.0),
    (7750.64, 70.0),
    (7794.11, 65.0),
    (7821.50, 60.0),
    (7913.71, 55.0),
    (7993.33, 80.0),
    (8344.60, 110.0),
    (8399.17, 110.0),
    (8430.17, 90.0),
    (8465.36, 80.0),
    (8493.39, 60.0),
    (8504.62, 55.0),
    (8827.10, 110.0),
    (8885.85, 120.0),
    (8919.64, 90.0),
    (8943.40, 100.0),
    (8958.08, 90.0),
    (8988.38, 110.0),
    (9001.38, 70.0),
    (9375.96, 120.0),
    (9439.67, 130.0),
    (9476.91, 80.0),
    (9520.10, 100.0),
    (9567.21, 90.0),
    (9607.50, 80.0),
    (9653.40, 70.0),
    (9720.80, 90.0),
    (9792.00, 100.0),
)
# OH band regions (air Å) that hold many weaker lines, and the number placed in each.
_OH_BANDS = (
    (6830.0, 7000.0, 14),
    (7230.0, 7420.0, 18),
    (7520.0, 7720.0, 10),
    (7740.0, 8060.0, 26),
    (8280.0, 8560.0, 24),
    (8760.0, 9060.0, 26),
    (9300.0, 9824.0, 40),
)
_SKY_SEED = 20250907  # fixed: the sky is the same in every realisation


def _air_to_vac(lam_air: np.ndarray) -> np.ndarray:
    """Air → vacuum wavelengths (Morton 1991 / Ciddor index of refraction)."""
    lam_air = np.asarray(lam_air, dtype=np.float64)
    s2 = (1e4 / lam_air) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return lam_air * n


@lru_cache(maxsize=1)
def sky_lines() -> tuple[np.ndarray, np.ndarray]:
    """Night-sky emission lines: vacuum wavelengths [Å] and integrated fluxes (1e-17 erg/s/cm²/fibre)."""
    rng = np.random.default_rng(_SKY_SEED)
    waves = [w for w, _ in _SKY_LINES_AIR]
    fluxes = [f for _, f in _SKY_LINES_AIR]
    for lo, hi, n in _OH_BANDS:
        waves.extend(np.sort(rng.uniform(lo, hi, n)).tolist())
        fluxes.extend((10.0 ** rng.uniform(0.6, 1.6, n)).tolist())
    # O2 (0-1) atmospheric band emission near 8650-8690 Å
    waves.extend(np.linspace(8645.0, 8690.0, 8).tolist())
    fluxes.extend([6.0] * 8)
    order = np.argsort(waves)
    return _air_to_vac(np.asarray(waves)[order]), np.asarray(fluxes)[order]


def sky_continuum(lam: np.ndarray) -> np.ndarray:
    """Dark-sky continuum [1e-17 erg/s/cm²/Å per 1.5" fibre] (≈ 21.5 mag/arcsec² in r)."""
    lam = np.asarray(lam, dtype=np.float64)
    return 0.9 + 0.5 * ((lam - 3600.0) / 6200.0) ** 2 + 0.6 * np.exp(-0.5 * ((lam - 5900.0) / 300.0) ** 2)


def sky_spectrum(lam: np.ndarray, sigma_pix: np.ndarray | float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """The night sky seen through the spectrograph: (continuum, lines) per pixel.

    Parameters
    ----------
    lam
        Pixel centres [Å] on a 0.8 Å grid.
    sigma_pix
        Line-spread Gaussian sigma in pixels (scalar or per pixel).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sky continuum and sky-line flux density [1e-17 erg/s/cm²/Å per fibre].
    """
    lam = np.asarray(lam, dtype=np.float64)
    sig_a = np.broadcast_to(np.asarray(sigma_pix, dtype=np.float64) * _DWAVE, lam.shape)
    lines = np.zeros_like(lam)
    waves, fluxes = sky_lines()
    for w, f in zip(waves, fluxes, strict=True):
        j = int(np.searchsorted(lam, w))
        lo, hi = max(0, j - 8), min(lam.size, j + 8)
        if lo >= hi:
            continue
        s = sig_a[lo:hi]
        lines[lo:hi] += f * np.exp(-0.5 * ((lam[lo:hi] - w) / s) ** 2) / (np.sqrt(2 * np.pi) * s)
    return sky_continuum(lam), lines


# --------------------------------------------------------------------------------------
# Instrument: throughput, resolution, read noise
# --------------------------------------------------------------------------------------

# Electrons per pixel per second per unit flux density (1e-17 erg/s/cm²/Å), anchors per arm.
# Shape calibrated on the sky-dominated fibres of the real DESI coadds in shared/data/real
# (b : r : z peak ivar ≈ 0.2 : 1 : 1.8); level from photon counting (8.7 m² aperture,
# ≈ 30% total throughput): a faint source in 1000 s of dark time gets ivar ≈ 4 (b near
# 5000 Å), ≈ 19 (r near 7000 Å) and ≈ 35 (z between OH lines).
_THROUGHPUT = {
    "b": (
        (3600.0, 0.0040),
        (3840.0, 0.0075),
        (4080.0, 0.0100),
        (4320.0, 0.0108),
        (4560.0, 0.0130),
        (4800.0, 0.0150),
        (5040.0, 0.0158),
        (5280.0, 0.0157),
        (5520.0, 0.0150),
        (5760.0, 0.0125),
        (5800.0, 0.0110),
    ),
    "r": (
        (5760.0, 0.016),
        (6000.0, 0.025),
        (6240.0, 0.029),
        (6480.0, 0.036),
        (6720.0, 0.039),
        (6960.0, 0.041),
        (7200.0, 0.039),
        (7440.0, 0.022),
        (7620.0, 0.012),
    ),
    "z": (
        (7520.0, 0.022),
        (7760.0, 0.042),
        (8000.0, 0.055),
        (8240.0, 0.056),
        (8480.0, 0.060),
        (8720.0, 0.058),
        (8960.0, 0.066),
        (9200.0, 0.042),
        (9440.0, 0.030),
        (9680.0, 0.026),
        (9824.0, 0.022),
    ),
}
# Line-spread Gaussian sigma in pixels (real DESI diagonals: 0.47/0.235/0.03 near the
# centre of b ⇒ σ ≈ 0.85 px; z slightly broader).
_SIGMA_PIX = {
    "b": ((3600.0, 0.95), (4700.0, 0.86), (5800.0, 0.82)),
    "r": ((5760.0, 0.84), (6700.0, 0.82), (7620.0, 0.80)),
    "z": ((7520.0, 0.92), (8700.0, 0.95), (9824.0, 0.92)),
}
READ_NOISE_E = {"b": 3.4, "r": 3.3, "z": 3.3}
"""Read noise per CCD pixel [e-]; an extracted pixel sums ≈ 4 CCD pixels across the trace."""
EXTRACTION_NPIX = 4.0


def arm_throughput(arm: str, lam: np.ndarray) -> np.ndarray:
    """Electrons per 0.8 Å pixel per second per 1e-17 erg/s/cm²/Å, for *arm*."""
    knots = np.array(_THROUGHPUT[arm])
    return np.interp(lam, knots[:, 0], knots[:, 1])


def arm_sigma_pix(arm: str, lam: np.ndarray) -> np.ndarray:
    """Line-spread Gaussian sigma [pixels] of *arm* at *lam*."""
    knots = np.array(_SIGMA_PIX[arm])
    return np.interp(lam, knots[:, 0], knots[:, 1])


# --------------------------------------------------------------------------------------
# Galactic extinction
# --------------------------------------------------------------------------------------


def _natural_spline(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A natural cubic spline through (x, y) (numpy only; x increasing)."""
    n = x.size
    h = np.diff(x)
    a = np.zeros((n, n))
    rhs = np.zeros(n)
    a[0, 0] = a[-1, -1] = 1.0
    for i in range(1, n - 1):
        a[i, i - 1], a[i, i], a[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        rhs[i] = 6 * ((y[i + 1] - y[i]) / h[i] - (y[i] - y[i - 1]) / h[i - 1])
    m = np.linalg.solve(a, rhs)  # second derivatives

    def evaluate(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        k = np.clip(np.searchsorted(x, t) - 1, 0, n - 2)
        hk = h[k]
        u, w = x[k + 1] - t, t - x[k]
        return (
            (m[k] * u**3 + m[k + 1] * w**3) / (6 * hk)
            + (y[k] / hk - m[k] * hk / 6) * u
            + (y[k + 1] / hk - m[k + 1] * hk / 6) * w
        )

    return evaluate


@lru_cache(maxsize=1)
def _f99_spline() -> Callable[[np.ndarray], np.ndarray]:
    r_v = 3.1
    # UV anchors (2700, 2600 Å) from the Fitzpatrick & Massa parametrisation, optical/IR
    # anchors from the F99 polynomials in R_V (values below are for R_V = 3.1).
    c2 = -0.824 + 4.717 / r_v
    c1 = 2.030 - 3.007 * c2
    x0, gamma, c3 = 4.596, 0.99, 3.23
    xuv = 1e4 / np.array([2700.0, 2600.0])
    yuv = c1 + c2 * xuv + c3 * xuv**2 / ((xuv**2 - x0**2) ** 2 + (gamma * xuv) ** 2) + r_v
    xop = 1e4 / np.array([26500.0, 12200.0, 6000.0, 5470.0, 4670.0, 4110.0])
    yir = np.array([0.26469, 0.82925]) * r_v / 3.1
    yop = np.array(
        [
            -0.422809 + 1.00270 * r_v + 2.13572e-04 * r_v**2,
            -5.13540e-02 + 1.00216 * r_v - 7.35778e-05 * r_v**2,
            0.700127 + 1.00184 * r_v - 3.32598e-05 * r_v**2,
            1.19456 + 1.01707 * r_v - 5.46959e-03 * r_v**2 + 7.97809e-04 * r_v**3 - 4.45636e-05 * r_v**4,
        ]
    )
    x = np.concatenate([[0.0], xop, xuv])
    y = np.concatenate([[0.0], yir, yop, yuv])
    return _natural_spline(x, y)


def fitzpatrick99(lam: np.ndarray) -> np.ndarray:
    """A(λ)/E(B−V) of the Fitzpatrick (1999) curve for R_V = 3.1, valid 2700–26500 Å."""
    return _f99_spline()(1e4 / np.asarray(lam, dtype=np.float64))


# --------------------------------------------------------------------------------------
# Nebular ratios (PyNeb tables)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NebularTables:
    """PyNeb line ratios (see ``scripts/make_nebular_tables.py``).

    Attributes
    ----------
    log_ne
        log10 n_e [cm^-3] grid of the doublet ratios (0–6, step 0.05).
    sii, oii
        [S II] 6716/6731 and [O II] 3729/3726 at T_e = 10^4 K.
    tem, log_ne_oiii, oiii
        T_e grid [K], log n_e grid, and [O III] (4959+5007)/4363 on (tem, log_ne_oiii).
    header
        The table's provenance lines.
    """

    log_ne: np.ndarray
    sii: np.ndarray
    oii: np.ndarray
    tem: np.ndarray
    log_ne_oiii: np.ndarray
    oiii: np.ndarray
    header: str

    def sii_ratio(self, log_ne: np.ndarray | float) -> np.ndarray:
        """[S II] 6716/6731 at log10 n_e (T_e = 10^4 K)."""
        return np.interp(log_ne, self.log_ne, self.sii)

    def oii_ratio(self, log_ne: np.ndarray | float) -> np.ndarray:
        """[O II] 3729/3726 at log10 n_e (T_e = 10^4 K)."""
        return np.interp(log_ne, self.log_ne, self.oii)

    def oiii_4363_ratio(self, tem: float, log_ne: float) -> float:
        """[O III] 4363/(4959+5007) at T_e and log10 n_e (bilinear in T, log n_e; log-ratio)."""
        ti = np.clip(np.searchsorted(self.tem, tem) - 1, 0, self.tem.size - 2)
        ni = np.clip(np.searchsorted(self.log_ne_oiii, log_ne) - 1, 0, self.log_ne_oiii.size - 2)
        ft = (tem - self.tem[ti]) / (self.tem[ti + 1] - self.tem[ti])
        fn = (log_ne - self.log_ne_oiii[ni]) / (self.log_ne_oiii[ni + 1] - self.log_ne_oiii[ni])
        ft, fn = float(np.clip(ft, 0, 1)), float(np.clip(fn, 0, 1))
        lg = np.log(self.oiii)
        val = (
            lg[ti, ni] * (1 - ft) * (1 - fn)
            + lg[ti + 1, ni] * ft * (1 - fn)
            + lg[ti, ni + 1] * (1 - ft) * fn
            + lg[ti + 1, ni + 1] * ft * fn
        )
        return float(1.0 / np.exp(val))


@lru_cache(maxsize=1)
def nebular_tables() -> NebularTables:
    """Load ``desilab/sample/data/nebular_ratios.txt`` (cached)."""
    text = resources.files("desilab.sample").joinpath("data/nebular_ratios.txt").read_text()
    header, doublets, oiii_rows, lognes_oiii = [], [], [], None
    block = None
    for line in text.splitlines():
        if line.startswith("#"):
            header.append(line[1:].strip())
        elif line.startswith("BLOCK DOUBLETS"):
            block = "d"
        elif line.startswith("BLOCK OIII"):
            block = "o"
            lognes_oiii = np.array([float(v) for v in line.split()[2:]])
        elif line.strip():
            vals = [float(v) for v in line.split()]
            (doublets if block == "d" else oiii_rows).append(vals)
    d = np.array(doublets)
    o = np.array(oiii_rows)
    return NebularTables(d[:, 0], d[:, 1], d[:, 2], o[:, 0], lognes_oiii, o[:, 1:], "\n".join(header))
