"""Draw the physical parameters of sample-sky quasars (pure numpy, no file access).

:func:`draw_quasar` turns a redshift, an r magnitude and a random stream into a
:class:`~desilab.sample.qso_spectra.QuasarParams` plus the scalar truth of that object.
The recipes, with their sources:

* continuum: α_ν ~ N(−0.44, 0.3) (Vanden Berk et al. 2001); Fe II UV EW (2200–3090 Å)
  lognormal around 55 Å; R_FeII = EW(Fe II 4434–4684)/EW(Hβ) lognormal around 0.45
  (Boroson & Green 1992; Shen et al. 2011); Balmer continuum 10–35% of the power law at
  3000 Å; host galaxy at z < 0.9 whose 5100 Å fraction rises toward low luminosity
  (Shen et al. 2011, their Fig. 5 trend).
* broad lines: a common broad-line FWHM, lognormal around 4200 km/s (0.17 dex; Shen et
  al. 2011), scaled per line; each line is a core Gaussian plus a very broad base (30% of
  the flux, 2.2× wider); C IV blueshifted by ~N(600 + 400 ΔlogL, 500) km/s with the EW
  falling as the blueshift grows (Richards et al. 2011) and a Baldwin effect
  EW ∝ L^−0.2; other high-ionisation lines share part of the blueshift.
* narrow lines: [O III] 5007 core EW lognormal around 12 Å, σ around 170 km/s, at the
  systemic redshift (which it defines); 5007/4959 = 2.98; [O III] 4363 from the
  PyNeb ratio at the drawn T_e and n_e; Hβ_n = [O III]/10^N(1.0, 0.15); Hα_n/Hβ_n = 2.86
  reddened by E(B−V)_NLR (CCM, k_Hβ − k_Hα = 1.08); [N II] 6584/Hα_n ≈ 0.8 and 6584/6548 =
  3.05; [S II] and [O II] totals scaled to Hα_n and [O III], split by the PyNeb doublet
  ratio at the drawn n_e (T_e = 10^4 K).
* [O III] outflows: in a fraction of objects, a blueshifted Gaussian in 4959/5007 (and
  4363) with Δv ~ −U(0, 900) km/s, σ ~ U(1.3 σ_core, 650) km/s and flux 10^U(−1, 0) of
  the core; v_out = |Δv| + 2σ_out spans ~200–2200 km/s.
* BAL troughs (z ≥ 1.57): C IV troughs with BI > 0 in ``bal_bi_fraction`` of objects
  (1–3 troughs; first 2,200–20,000 km/s wide starting 1,000–15,000 km/s, depth 0.35–0.95)
  with Si IV (70%, shallower), N V and Lyα at the same speeds; AI-only troughs (450–1,900
  km/s wide) in ``bal_ai_only_fraction`` more. Draws are repeated until the noise-free
  BI (or AI only) of C IV on a 10 km/s grid is as intended.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from desilab.sample import builtin_templates as bt
from desilab.sample.qso_spectra import (
    BAL_LINES,
    Component,
    QuasarParams,
    Trough,
    bal_indices,
    trough_transmission,
)

__all__ = ["Drawn", "draw_magnitudes", "draw_quasar", "draw_redshifts", "fine_bal_truth", "trough_structure"]

_FWHM_TO_SIGMA = 1.0 / 2.3548200450309493

# per-line share of the C IV blueshift (high-ionisation lines)
_HIGH_SHIFT = {
    "CIV_1549": 1.0,
    "SIIV_1398": 0.8,
    "NV_1240": 0.7,
    "HEII_1640": 1.0,
    "OIII_1663": 0.7,
    "LYALPHA": 0.5,
    "LYBETA_OVI": 0.5,
    "HEII_4686": 0.3,
}
# (mean, sd) velocity shifts [km/s] of low-ionisation broad lines
_LOW_SHIFT = {"MGII": (-60.0, 200.0), "BALMER": (100.0, 300.0), "CIII_1908": (-200.0, 250.0)}


@lru_cache(maxsize=1)
def _dm_table() -> tuple[np.ndarray, np.ndarray]:
    """Distance modulus of the fiducial cosmology (Ω_m = 0.3, H0 = 70) on a z grid.

    Only a luminosity proxy for the Baldwin effect and host fractions; the truth
    luminosities use :data:`desilab.sky.cosmology.FIDUCIAL` (imported here it would
    pull healpy into every worker process).
    """
    z = np.linspace(0.0, 6.0, 6001)
    ez = np.sqrt(0.3 * (1 + z) ** 3 + 0.7)
    dc = np.concatenate([[0.0], np.cumsum(0.5 * (1 / ez[1:] + 1 / ez[:-1]) * np.diff(z))]) * bt.C_KMS / 70.0
    with np.errstate(divide="ignore"):
        dm = 5.0 * np.log10((1 + z) * dc) + 25.0
    dm[0] = -np.inf
    return z, dm


def distance_modulus(z: float) -> float:
    """Fiducial distance modulus (see :func:`_dm_table`)."""
    grid, dm = _dm_table()
    return float(np.interp(z, grid[1:], dm[1:]))


@dataclass
class Drawn:
    """One drawn quasar: its model parameters and scalar truth."""

    params: QuasarParams
    truth: dict[str, float | str | bool]
    bal_kind: str  # "", "BI", "AI"


def draw_redshifts(
    rng: np.random.Generator, n: int, knots: tuple[float, ...], weights: tuple[float, ...], zmin: float, zmax: float
) -> np.ndarray:
    """Redshifts from the piecewise-linear dN/dz through (*knots*, *weights*), within [zmin, zmax]."""
    grid = np.linspace(zmin, zmax, 2001)
    pdf = np.interp(grid, knots, weights)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid)


def draw_magnitudes(rng: np.random.Generator, n: int, mmin: float, mmax: float, slope: float) -> np.ndarray:
    """r magnitudes with dN/dm ∝ 10^(slope·m), tapered over the last 0.4 mag before *mmax*."""
    grid = np.linspace(mmin, mmax, 2001)
    pdf = 10.0 ** (slope * (grid - mmax)) / (1.0 + np.exp((grid - (mmax - 0.25)) / 0.08))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, grid)


def _lognormal(rng: np.random.Generator, median: float, dex: float) -> float:
    return float(median * 10.0 ** rng.normal(0.0, dex))


def _broad(line: str, wave: float, flux: float, fwhm: float, shift: float, vbc_shift: float = 0.0) -> list[Component]:
    sig = fwhm * _FWHM_TO_SIGMA
    return [
        Component(line, "broad", wave, 0.7 * flux, 0.85 * sig, shift),
        Component(line, "vbc", wave, 0.3 * flux, 2.2 * 0.85 * sig, shift + vbc_shift),
    ]


def fine_bal_truth(troughs: list[Trough], ion: str, mode: str = "baltools") -> dict[str, object]:
    """BI/AI of *ion*'s troughs on a noise-free 10 km/s grid (the definition-exact truth)."""
    lam0 = BAL_LINES[ion]
    mine = [t for t in troughs if t.ion == ion]
    if not mine:
        return bal_indices(np.array([lam0]), np.ones(1), 0.0, ion=ion, mode=mode)
    v = np.arange(-30000.0, 1500.0, 10.0)
    lam = lam0 * (1.0 + v / bt.C_KMS)
    trans = trough_transmission(lam, mine)
    return bal_indices(lam, trans, 0.0, ion=ion, mode=mode)


def trough_structure(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """0–3 Gaussian ripples across a trough (shared by the ions of one outflow)."""
    nb = int(rng.integers(0, 4))
    return tuple(
        (float(rng.uniform(0.0, 1.0)), float(rng.uniform(0.05, 0.25)), float(rng.uniform(-0.5, 0.35)))
        for _ in range(nb)
    )


def _draw_bal(rng: np.random.Generator, kind: str) -> list[Trough]:
    """Troughs of a BI BAL (``kind="BI"``) or an AI-only absorber (``"AI"``)."""
    for _ in range(50):
        troughs: list[Trough] = []
        if kind == "BI":
            n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
            vmin = rng.uniform(1000.0, 15000.0)
            width = float(np.clip(_lognormal(rng, 5000.0, 0.25), 2200.0, 20000.0))
            depth = rng.uniform(0.35, 0.95)
            specs = [(vmin, min(vmin + width, 29000.0), depth)]
            for _k in range(n - 1):
                start = specs[-1][1] + rng.uniform(500.0, 4000.0)
                w2 = float(np.clip(_lognormal(rng, 2500.0, 0.25), 600.0, 8000.0))
                if start + w2 > 29000.0:
                    break
                specs.append((start, start + w2, rng.uniform(0.2, 0.8)))
        else:
            n = 1 + int(rng.random() < 0.35)
            specs = []
            for _k in range(n):
                vmin = rng.uniform(0.0, 22000.0)
                w = float(10 ** rng.uniform(np.log10(600.0), np.log10(1900.0)))
                specs.append((vmin, vmin + w, rng.uniform(0.25, 0.7)))
        edge = rng.uniform(150.0, 500.0)
        slope = rng.uniform(-0.3, 0.5)
        has_siiv = rng.random() < 0.7
        siiv_scale = rng.uniform(0.4, 0.9)
        nv_scale = rng.uniform(0.6, 1.0)
        for vmin, vmax, depth in specs:
            bumps = trough_structure(rng)
            troughs.append(Trough("CIV", vmin, vmax, depth, edge, slope, bumps))
            if has_siiv:
                troughs.append(Trough("SIIV", vmin, vmax, depth * siiv_scale, edge, slope, bumps))
            troughs.append(Trough("NV", vmin, vmax, min(depth * nv_scale, 0.97), edge, slope, bumps))
            troughs.append(Trough("LYA", vmin, vmax, depth * 0.5, edge, slope, bumps))
        civ = fine_bal_truth(troughs, "CIV")
        if kind == "BI" and civ["BI"] > 0:
            return troughs
        if kind == "AI" and civ["BI"] == 0 and civ["AI"] > 0:
            return troughs
    return []


def draw_quasar(
    rng: np.random.Generator,
    z: float,
    mag_r: float,
    *,
    bal_bi_fraction: float,
    bal_ai_only_fraction: float,
    oiii_outflow_fraction: float,
    log_ne_range: tuple[float, float],
    te_range: tuple[float, float],
    ebv_mw: float = 0.0,
    forest_seed: int = 0,
    bal_kind: str | None = None,
) -> Drawn:
    """Draw one quasar at systemic redshift *z* with observed r magnitude *mag_r*.

    The number and order of random draws do not depend on the outcomes (the BAL retry
    loop uses its own child stream), so one object's draws never shift another's.
    *bal_kind* (``"BI"``, ``"AI"`` or ``""``) imposes the BAL class (the sample
    generator assigns it per pixel so that the fractions are met closely); ``None``
    draws it with the given fractions (for z ≥ 1.57).

    Returns
    -------
    Drawn
    """
    tables = bt.nebular_tables()
    u = rng.random(8)  # decisions: BAL, outflow, spares
    bal_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
    alpha_nu = float(np.clip(rng.normal(-0.44, 0.3), -1.6, 0.7))
    alpha_l = -2.0 - alpha_nu
    # luminosity proxy: M_r, with a power-law K-correction
    dm = distance_modulus(z)
    kcorr = -2.5 * (1.0 + alpha_nu) * np.log10(1.0 + z)
    abs_mag = mag_r - dm - kcorr
    dlogl = (-abs_mag - 25.0) / 2.5  # log10 L relative to M = -25
    fwhm_blr = float(np.clip(_lognormal(rng, 4200.0, 0.17), 1500.0, 12000.0))
    blueshift = float(np.clip(rng.normal(750.0 + 400.0 * dlogl, 500.0), -400.0, 4500.0))
    baldwin = 10.0 ** (-0.2 * dlogl)

    def pl(lam: float) -> float:
        return (lam / 3000.0) ** alpha_l

    comps: list[Component] = []
    ew_hbeta = 0.0
    scatter = rng.normal(0.0, 0.15, len(bt.LINES))
    fwhm_scatter = rng.normal(0.0, 0.04, len(bt.LINES))
    low_shift = {k: rng.normal(m, s) for k, (m, s) in _LOW_SHIFT.items()}
    for i, spec in enumerate(bt.LINES):
        if spec.kind == "narrow":
            continue
        ew = spec.ew * 10.0 ** scatter[i]
        fwhm = fwhm_blr * spec.fwhm_ratio * 10.0 ** fwhm_scatter[i]
        if spec.shift_ion == "high":
            shift = -blueshift * _HIGH_SHIFT.get(spec.name, 0.5)
            ew *= baldwin if spec.name in ("CIV_1549", "HEII_1640", "SIIV_1398", "NV_1240") else baldwin**0.5
            if spec.name == "CIV_1549":
                ew *= np.exp(-(blueshift - 600.0) / 2500.0)
                fwhm *= 1.0 + max(blueshift, 0.0) / 5000.0
        else:
            key = "MGII" if spec.name.startswith("MGII") else ("CIII_1908" if spec.name == "CIII_1908" else "BALMER")
            shift = float(low_shift[key])
        vbc_shift = 800.0 if spec.name in ("HBETA", "HALPHA", "HGAMMA", "HDELTA") else 0.0
        if spec.name == "HBETA":
            ew_hbeta = ew
        comps += _broad(spec.name, spec.wave, ew * pl(spec.wave), fwhm, shift, vbc_shift)
    truth: dict[str, float | str | bool] = {
        "ALPHA_LAMBDA": alpha_l,
        "ABSMAG_R": abs_mag,
        "FWHM_BLR": fwhm_blr,
        "CIV_BLUESHIFT": blueshift,
    }
    # Fe II, Balmer continuum, host
    feii_uv = float(np.clip(_lognormal(rng, 55.0, 0.2), 5.0, 250.0))
    r_feii = float(np.clip(_lognormal(rng, 0.45, 0.25), 0.05, 3.0))
    balmer = rng.uniform(0.10, 0.35)
    host_scatter = rng.normal(0.0, 0.1)
    host_d4000 = rng.uniform(1.3, 2.0)
    host_sigma = rng.uniform(120.0, 250.0)
    host = float(np.clip(0.35 + 0.18 * (abs_mag + 23.0) + host_scatter, 0.0, 0.85)) if z < 0.9 else 0.0
    truth.update(FEII_UV_EW=feii_uv, R_FEII=r_feii, BALMER_FRAC=balmer, HOST_FRAC_5100=host)
    # narrow lines
    ew_oiii = float(np.clip(_lognormal(rng, 15.0, 0.35) * 10.0 ** (-0.15 * dlogl), 0.5, 300.0))
    sig_core = float(np.clip(_lognormal(rng, 170.0, 0.12), 60.0, 450.0))
    log_ne = rng.uniform(*log_ne_range)
    t_e = rng.uniform(*te_range)
    r_oiii_hb = 10.0 ** rng.normal(1.0, 0.15)
    ebv_nlr = abs(rng.normal(0.0, 0.15))
    r_nii = _lognormal(rng, 0.8, 0.15)
    r_sii = _lognormal(rng, 0.5, 0.15)
    r_oii = _lognormal(rng, 0.25, 0.2)
    r_nev = _lognormal(rng, 0.08, 0.2)
    r_neiii = _lognormal(rng, 0.10, 0.15)
    r_oi = _lognormal(rng, 0.10, 0.15)
    out_dv = -rng.uniform(0.0, 900.0)
    out_sig = 1.3 * sig_core + rng.random() * max(650.0 - 1.3 * sig_core, 0.0)
    out_ratio = 10.0 ** rng.uniform(-1.0, 0.0)
    has_out = bool(u[1] < oiii_outflow_fraction)
    f5007 = ew_oiii * pl(5008.24)
    r43 = tables.oiii_4363_ratio(t_e, log_ne)
    sii_ratio = float(tables.sii_ratio(log_ne))
    oii_ratio = float(tables.oii_ratio(log_ne))
    hb_n = f5007 / r_oiii_hb
    ha_n = hb_n * 2.86 * 10.0 ** (0.4 * 1.08 * ebv_nlr)
    narrow = [
        ("OIII_5007", f5007),
        ("OIII_4959", f5007 / 2.98),
        ("OIII_4363", f5007 * (1 + 1 / 2.98) * r43),
        ("HBETA", hb_n),
        ("HALPHA", ha_n),
        ("NII_6584", ha_n * r_nii),
        ("NII_6548", ha_n * r_nii / 3.05),
        ("SII_6716", ha_n * r_sii * sii_ratio / (1 + sii_ratio)),
        ("SII_6731", ha_n * r_sii / (1 + sii_ratio)),
        ("OII_3729", f5007 * r_oii * oii_ratio / (1 + oii_ratio)),
        ("OII_3726", f5007 * r_oii / (1 + oii_ratio)),
        ("NEV_3426", f5007 * r_nev),
        ("NEIII_3869", f5007 * r_neiii),
        ("OI_6300", ha_n * r_oi),
    ]
    for name, flux in narrow:
        comps.append(Component(name, "narrow", bt.LINE_INDEX[name].wave, flux, sig_core, 0.0))
        if has_out and name in ("OIII_5007", "OIII_4959", "OIII_4363"):
            comps.append(Component(name, "outflow", bt.LINE_INDEX[name].wave, flux * out_ratio, out_sig, out_dv))
    truth.update(
        LOG_NE=log_ne,
        TE_OIII=t_e,
        SII_RATIO=sii_ratio,
        OII_RATIO=oii_ratio,
        EBV_NLR=ebv_nlr,
        OIII_SIGMA_CORE=sig_core,
        OIII_EW_CORE=ew_oiii,
        HAS_OIII_OUTFLOW=has_out,
        OIII_V_OFF=out_dv if has_out else 0.0,
        OIII_SIGMA_OUT=out_sig if has_out else 0.0,
        OIII_OUT_TO_CORE=out_ratio if has_out else 0.0,
        OIII_V_OUT=(abs(out_dv) + 2.0 * out_sig) if has_out else 0.0,
    )
    params = QuasarParams(
        z=float(z),
        alpha_lambda=alpha_l,
        feii_uv_ew=feii_uv,
        feii_opt_ew=r_feii * ew_hbeta,
        fwhm_feii=fwhm_blr * 0.9,
        balmer_frac=balmer,
        host_frac=host,
        host_d4000=host_d4000,
        host_sigma=host_sigma,
        components=comps,
        forest=True,
        ebv_mw=float(ebv_mw),
        forest_seed=int(forest_seed),
    )
    if bal_kind is None:
        bal_kind = ""
        if z >= 1.57:
            if u[0] < bal_bi_fraction:
                bal_kind = "BI"
            elif u[0] < bal_bi_fraction + bal_ai_only_fraction:
                bal_kind = "AI"
    if bal_kind:
        params.troughs = _draw_bal(bal_rng, bal_kind)
        if not params.troughs:
            bal_kind = ""
    truth["BAL_KIND"] = bal_kind
    return Drawn(params, truth, bal_kind)
