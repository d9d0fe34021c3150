"""The outflow pipeline over a :class:`~desilab.io.spectra.Spectra` batch, and its products.

:func:`process` chains the pure steps — preparation, continuum, BAL metrics (troughs
masked before the C IV fit), batched line fits, systemic redshift, physical conditions,
luminosities and energetics — and returns flat catalog columns plus the trough table.
:func:`write_products` writes both as FITS + Parquet through
:func:`desilab.io.fits.atomic_output`. Column definitions: docs/outflows.md.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from desilab.errors import FormatError, InputError
from desilab.io._tables import write_table
from desilab.io.fits import atomic_output, open_fits, read_table, read_table_hdu
from desilab.io.qso import BAL_LAMBDA_MAX, BAL_LAMBDA_MIN, BAL_ZMIN, NAI, NBI
from desilab.io.spectra import COMBINED_DWAVE, COMBINED_WAVE_MIN, Spectra
from desilab.outflows import bal as balmod
from desilab.outflows.continuum import fit_continuum
from desilab.outflows.energetics import bal_energetics, balmer_dust_correction, oiii_energetics
from desilab.outflows.host import HostBasis, fit_host
from desilab.outflows.measure import LineFitResult, fit_lines
from desilab.outflows.physical import density, temperature
from desilab.outflows.prepare import SDSS_BAD_BITS, Prepared, prepare, sigma_inst_resolution, sigma_inst_sdss
from desilab.outflows.systemic import rereference, systemic_redshift
from desilab.sky.cosmology import FIDUCIAL

__all__ = ["OutflowResult", "Resources", "load_resources", "process", "read_products", "write_products"]

log = logging.getLogger(__name__)
C_KMS = 299792.458
#: DESI LSF σ [Å] used when no resolution matrix was read (typical of the b/r/z arms).
DESI_SIGMA_ANGSTROM = 0.75
TEMPLATE_FILES = {"fe_uv": "fe_uv.txt", "fe_opt": "fe_optical.txt", "pca": "PCA_Eigenvectors.fits"}


@dataclass
class Resources:
    """Templates the pipeline uses (all optional: missing ones drop that term)."""

    fe_uv: tuple[np.ndarray, np.ndarray] | None = None
    fe_opt: tuple[np.ndarray, np.ndarray] | None = None
    pca_wave: np.ndarray | None = None
    pca: np.ndarray | None = None  # (npca, nwave)
    #: SSP basis for the host decomposition at z < 0.8 (:mod:`desilab.outflows.host`);
    #: None = no decomposition (a stellar Balmer-absorption Gaussian stands in)
    host: HostBasis | None = None


def load_resources(template_dir: str | Path | None) -> Resources:
    """Read the Fe II templates (log10 λ, flux text files) and the baltools PCA basis."""
    if template_dir is None:
        return Resources()
    d = Path(template_dir)
    res = Resources()
    for key in ("fe_uv", "fe_opt"):
        p = d / TEMPLATE_FILES[key]
        if p.exists():
            arr = np.loadtxt(p)
            if arr.ndim != 2 or arr.shape[1] < 2:
                raise FormatError("expected two columns (log10 wavelength, flux)", file=p)
            w = 10 ** arr[:, 0]
            f = arr[:, 1] / np.max(np.abs(arr[:, 1]))
            setattr(res, key, (w, f))
    p = d / TEMPLATE_FILES["pca"]
    if p.exists():
        with open_fits(p) as f:
            if len(f) < 2:
                raise FormatError("no table HDU with WAVE, PCA0..PCA4", file=p)
            t = read_table_hdu(f[1], None, None, file=p)
        if t is not None:
            names = [c for c in t.column_names if c.upper().startswith("PCA")]
            res.pca_wave = np.asarray(t.column("WAVE"), dtype=np.float64)
            res.pca = np.stack([np.asarray(t.column(c), dtype=np.float64) for c in sorted(names)])
    return res


@dataclass
class OutflowResult:
    """Catalog columns (one row per spectrum), trough rows, and the fits for figures."""

    columns: dict[str, np.ndarray]
    units: dict[str, str]
    troughs: dict[str, np.ndarray]
    lines: LineFitResult | None = None
    prepared: Prepared | None = None
    continuum: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Preparation from a Spectra object
# ----------------------------------------------------------------------------------------


def _from_spectra(spec: Spectra, z: np.ndarray | None) -> Prepared:
    n = spec.nspec
    tid = spec.targetid if spec.targetid is not None else np.arange(n)
    if z is None:
        if spec.redshifts is None or "Z" not in spec.redshifts.column_names:
            raise InputError("no redshifts: pass z= or read the coadd with its redrock file", parameter="z")
        z = np.asarray(spec.redshifts.column("Z"), dtype=np.float64)
    ebv = None
    if spec.fibermap is not None and "EBV" in spec.fibermap.column_names:
        ebv = np.nan_to_num(np.asarray(spec.fibermap.column("EBV"), dtype=np.float64))
    if spec.bands == ["sdss"]:
        b = "sdss"
        return prepare(
            spec.wave[b],
            spec.flux[b],
            spec.ivar[b],
            spec.mask[b],
            sigma_inst_sdss(spec.extra["wdisp"]),
            z,
            tid,
            ebv=ebv,
            bad_bits=SDSS_BAD_BITS,
        )
    if len(spec.bands) == 1:
        b = spec.bands[0]
        wave = spec.wave[b]
        sig = np.broadcast_to(DESI_SIGMA_ANGSTROM / wave * C_KMS, spec.flux[b].shape)
        return prepare(wave, spec.flux[b], spec.ivar[b], spec.mask[b], sig, z, tid, ebv=ebv)
    comb = spec.combined()
    b = comb.bands[0]
    wave = comb.wave[b]
    sig = np.zeros(comb.flux[b].shape)
    cnt = np.zeros(wave.size)
    for arm in spec.bands:
        w = spec.wave[arm]
        i0 = int(np.rint((w[0] - COMBINED_WAVE_MIN) / COMBINED_DWAVE))
        if spec.resolution is not None:
            s_arm = sigma_inst_resolution(spec.resolution[arm], w)
        else:
            s_arm = np.broadcast_to(DESI_SIGMA_ANGSTROM / w * C_KMS, (n, w.size))
        sig[:, i0 : i0 + w.size] += s_arm
        cnt[i0 : i0 + w.size] += 1
    sig = np.where(cnt > 0, sig / np.maximum(cnt, 1), DESI_SIGMA_ANGSTROM / wave * C_KMS)
    return prepare(wave, comb.flux[b], comb.ivar[b], comb.mask[b], sig, z, tid, ebv=ebv)


# ----------------------------------------------------------------------------------------
# BAL: PCA continuum and metrics
# ----------------------------------------------------------------------------------------


def _pca_continuum(wave_rest: np.ndarray, flux: np.ndarray, ivar: np.ndarray, res: Resources) -> np.ndarray | None:
    """baltools-style PCA continuum in 1261–2399 Å, iteratively ignoring absorption."""
    if res.pca is None or res.pca_wave is None:
        return None
    win = (wave_rest >= BAL_LAMBDA_MIN) & (wave_rest <= BAL_LAMBDA_MAX)
    if win.sum() < 50:
        return None
    basis = np.stack([np.interp(wave_rest, res.pca_wave, e, left=np.nan, right=np.nan) for e in res.pca], axis=1)
    use = win & (ivar > 0) & np.all(np.isfinite(basis), axis=1)
    model = np.full(wave_rest.shape, np.nan)
    for _ in range(4):
        if use.sum() < 20:
            return None
        a = basis[use] * np.sqrt(ivar[use])[:, None]
        coef = np.linalg.lstsq(a, flux[use] * np.sqrt(ivar[use]), rcond=None)[0]
        model = basis @ coef
        sig = 1 / np.sqrt(np.where(ivar > 0, ivar, np.inf))
        # absorption (and the BAL troughs) below the model by > 2σ are not continuum
        use = win & (ivar > 0) & np.isfinite(model) & (flux > model - 2 * sig)
    return np.where(win, model, np.nan)


def _bal(prep: Prepared, res: Resources) -> tuple[dict[str, np.ndarray], dict[str, list], np.ndarray]:
    """Baltools columns, classical BI/AI, trough rows, and a per-pixel trough mask."""
    n = prep.flux.shape[0]
    cols: dict[str, np.ndarray] = {}
    for ion in ("CIV", "SIIV"):
        for k in ("BI", "ERR_BI", "AI", "ERR_AI"):
            cols[f"{k}_{ion}"] = np.zeros(n, dtype=np.float32)
        cols[f"N{ion}_2000"] = np.zeros(n, dtype=np.int32)
        cols[f"N{ion}_450"] = np.zeros(n, dtype=np.int32)
        for attr in ("VMIN", "VMAX", "POSMIN", "FMIN"):
            cols[f"{attr}_{ion}_2000"] = -np.ones((n, NBI), dtype=np.float32)
            cols[f"{attr}_{ion}_450"] = -np.ones((n, NAI), dtype=np.float32)
        cols[f"BI_{ion}_CLASSICAL"] = np.zeros(n, dtype=np.float32)
        cols[f"AI_{ion}_CLASSICAL"] = np.zeros(n, dtype=np.float32)
    cols["BAL_MEASURED"] = np.zeros(n, dtype=bool)
    troughs: dict[str, list] = {
        k: [] for k in ("TARGETID", "MODE", "ION", "KIND", "VMIN", "VMAX", "POSMIN", "FMIN", "INDEX", "INDEX_ERR")
    }
    tmask = np.zeros(prep.flux.shape, dtype=bool)
    for i in np.flatnonzero(prep.z >= BAL_ZMIN):
        rest = prep.wave / (1 + prep.z[i])
        cont = _pca_continuum(rest, prep.flux[i], prep.ivar[i], res)
        if cont is None:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            fn = prep.flux[i] / cont
            sn = np.where(prep.ivar[i] > 0, 1 / np.sqrt(prep.ivar[i]), np.nan) / cont
        for mode in balmod.MODES:
            out = balmod.bal_metrics(rest, fn, sn, mode=mode)  # type: ignore[arg-type]
            for ion, r in out.items():
                if mode == "baltools":
                    cols["BAL_MEASURED"][i] |= r.measured
                    for key, val in balmod.bal_columns(r).items():
                        cols[key][i] = val
                    for t in r.troughs:
                        lam0 = balmod.BALTOOLS_LAMBDA[ion]
                        lo, hi = lam0 * (1 - t.vmax / C_KMS), lam0 * (1 - t.vmin / C_KMS)
                        tmask[i] |= (rest >= lo) & (rest <= hi)
                else:
                    cols[f"BI_{ion}_CLASSICAL"][i] = r.bi
                    cols[f"AI_{ion}_CLASSICAL"][i] = r.ai
                for t in r.troughs:
                    for k, v in zip(
                        ("TARGETID", "MODE", "ION", "KIND", "VMIN", "VMAX", "POSMIN", "FMIN", "INDEX", "INDEX_ERR"),
                        (prep.targetid[i], mode, ion, t.kind, t.vmin, t.vmax, t.posmin, t.fmin, t.index, t.index_err),
                        strict=True,
                    ):
                        troughs[k].append(v)
    return cols, troughs, tmask


# ----------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------


def _lum(z: np.ndarray, flux_obs: np.ndarray) -> np.ndarray:
    """log10 λL_λ [erg/s] from observed f_λ [1e-17 erg/s/cm²/Å] at rest λ (array of λ·f)."""
    dl = FIDUCIAL.luminosity_distance_cm(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(4 * np.pi * dl**2 * flux_obs * 1e-17)


def process(
    spectra: Spectra,
    resources: Resources | None = None,
    *,
    z: np.ndarray | None = None,
    full: bool = True,
    nmc: int = 0,
    max_broad: int = 2,
    seed: int = 0,
    n_e_outflow: float = 1000.0,
    radius_kpc: float = 1.0,
    bal_radius_pc: float = 100.0,
    bal_omega: float = 0.2,
    bal_nh: float = 1.0e4,
) -> OutflowResult:
    """Run the outflow pipeline on a batch of spectra.

    Parameters
    ----------
    spectra
        DESI (any arms; combined here) or SDSS spectra with redshifts.
    resources
        Templates (:func:`load_resources`); None = power law + Balmer continuum only and
        no BAL PCA continuum (BAL columns then stay 0 with ``BAL_MEASURED`` False).
    z
        Reference redshifts overriding ``spectra.redshifts``.
    full, nmc, max_broad, seed
        Line-fit options (:func:`desilab.outflows.measure.fit_lines`).
    n_e_outflow, radius_kpc
        [O III] energetics assumptions: outflow density [cm⁻³] and radius [kpc].
    bal_radius_pc, bal_omega, bal_nh
        BAL energetics assumptions: assumed R [pc], global covering fraction, n_H [cm⁻³].

    Returns
    -------
    OutflowResult
    """
    res = resources or Resources()
    prep = _from_spectra(spectra, z)
    n = prep.flux.shape[0]
    bal_cols, troughs, tmask = _bal(prep, res)
    ivar_lines = np.where(tmask, 0.0, prep.ivar)  # BAL troughs masked before the C IV fit
    cont = np.zeros_like(prep.flux)
    alpha = np.full(n, np.nan)
    fe_fwhm = np.full(n, np.nan)
    pl = np.zeros_like(prep.flux)
    host = np.zeros_like(prep.flux)
    host_cols = {k: np.full(n, np.nan) for k in ("HOST_FRAC5100", "HOST_SIGMA", "HOST_RCHI2")}
    if res.host is not None:  # host-galaxy decomposition at z < 0.8, subtracted first
        hf = fit_host(prep.wave, prep.flux, ivar_lines, prep.z, res.host, fe_opt=res.fe_opt)
        host = hf.host
        host_cols.update(HOST_FRAC5100=hf.frac5100, HOST_SIGMA=hf.sigma_star, HOST_RCHI2=hf.rchi2)
    for i in range(n):
        c = fit_continuum(prep.wave, prep.flux[i] - host[i], ivar_lines[i], prep.z[i], res.fe_uv, res.fe_opt)
        cont[i], pl[i], alpha[i], fe_fwhm[i] = c.model + host[i], c.powerlaw, c.alpha, c.fe_fwhm
    lines = fit_lines(
        prep.wave,
        prep.flux,
        ivar_lines,
        cont,
        prep.z,
        prep.sig_inst,
        full=full,
        nmc=nmc,
        max_broad=max_broad,
        seed=seed,
        stellar_absorption=res.host is None,
    )
    z_sys, source, v_sys = systemic_redshift(prep.z, lines.columns)
    lc = rereference(lines.columns, v_sys)
    cols: dict[str, np.ndarray] = {
        "TARGETID": prep.targetid.astype(np.int64),
        "Z": prep.z,
        "Z_SYS": z_sys,
        "Z_SYS_SOURCE": source,
        "EBV": prep.ebv,
        "CONT_ALPHA": alpha,
        "CONT_FE_FWHM": fe_fwhm,
        **host_cols,
    }
    # continuum luminosities from the power law (rest λ in the observed grid)
    for lam in (5100, 3000, 1350):
        fl = np.array([np.interp(lam * (1 + prep.z[i]), prep.wave, pl[i], left=np.nan, right=np.nan) for i in range(n)])
        cols[f"LOGL{lam}"] = _lum(prep.z, lam * (1 + prep.z) * np.where(fl > 0, fl, np.nan))
    lbol = np.full(n, np.nan)
    lbol_src = np.zeros(n, dtype=np.int16)
    from desilab.outflows.energetics import BC

    for lam in (1350, 3000, 5100):  # 5100 preferred (last write wins)
        ok = np.isfinite(cols[f"LOGL{lam}"])
        lbol[ok] = cols[f"LOGL{lam}"][ok] + np.log10(BC[lam])
        lbol_src[ok] = lam
    cols["LOGLBOL"] = lbol
    cols["LBOL_SOURCE"] = lbol_src
    cols.update(lc)
    # outflow velocity: v_out = |Δv| + 2σ of the wing, Δv from systemic
    det_o = lc["OUTFLOW_DETECTED"].astype(bool)
    cols["V_OUT"] = np.where(det_o, np.abs(lc["OIII_OUT_V"]) + 2 * lc["OIII_OUT_SIGMA"], np.nan)
    cols["V_OUT_ERR"] = np.where(det_o, np.sqrt(lc["OIII_OUT_V_ERR"] ** 2 + 4 * lc["OIII_OUT_SIGMA_ERR"] ** 2), np.nan)
    # Balmer decrement (narrow lines) and dust correction at 5007
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["BALMER_DEC"] = lc["HA_NARROW_FLUX"] / lc["HB_NARROW_FLUX"]
    dust = balmer_dust_correction(lc["HA_NARROW_FLUX"], lc["HB_NARROW_FLUX"])
    # physical conditions
    te = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        r43 = (lc["OIII_5007_CORE_FLUX"] * (1 + 1 / 2.98)) / lc["OIII_4363_FLUX"]
        ok43 = lc["OIII_4363_FLUX"] / lc["OIII_4363_FLUX_ERR"] > 3
    if ok43.any():
        te[ok43] = temperature(r43[ok43], ne=100.0)
    cols["TE_OIII"] = te
    t_use = np.where(np.isfinite(te), te, 1.0e4)
    for diag, rc in (("SII", "SII_RATIO"), ("OII", "OII_RATIO")):
        r = lc.get(rc, np.full(n, np.nan))
        e = lc.get(f"{rc}_ERR", np.full(n, np.nan))
        # no error (NaN) counts as exact; an infinite one (a ratio at its bound with no
        # curvature) stays infinite, so the ratio is unconstrained (flag 9)
        d = density(r, np.where(np.isnan(e), 0.0, e), diagnostic=diag, tem=t_use)
        cols[f"NE_{diag}"] = d.ne
        cols[f"NE_{diag}_LO"] = d.ne_lo
        cols[f"NE_{diag}_HI"] = d.ne_hi
        cols[f"NE_{diag}_LIMIT"] = d.limit
    # energetics, [O III] emission (parametric and non-parametric)
    dl = FIDUCIAL.luminosity_distance_cm(prep.z)
    to_l = 4 * np.pi * dl**2 * 1e-17
    l_bol = 10 ** np.where(np.isfinite(lbol), lbol, np.nan) * u.erg / u.s
    l_out = np.nan_to_num(lc["OIII_OUT_FLUX"]) * dust * to_l * u.erg / u.s
    l_tot = np.nan_to_num(lc["OIII_5007_FLUX"]) * dust * to_l * u.erg / u.s
    with np.errstate(invalid="ignore", divide="ignore"):  # rows without L_bol or v stay NaN
        e_par = oiii_energetics(
            l_out,
            np.nan_to_num(cols["V_OUT"]) * u.km / u.s,
            l_bol,
            n_e=n_e_outflow * u.cm**-3,
            radius=radius_kpc * u.kpc,
        )
        e_np = oiii_energetics(
            l_tot,
            np.nan_to_num(lc["OIII_5007_W80"]) / 1.3 * u.km / u.s,
            l_bol,
            n_e=n_e_outflow * u.cm**-3,
            radius=radius_kpc * u.kpc,
        )
    det = cols["OUTFLOW_DETECTED"].astype(bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for tag, e in (("OIII", e_par), ("OIII_NP", e_np)):
            cols[f"{tag}_LOG_MASS"] = np.where(det, np.log10(e.mass.to_value(u.Msun)), np.nan)
            cols[f"{tag}_LOG_MDOT"] = np.where(det, np.log10(e.mdot.to_value(u.Msun / u.yr)), np.nan)
            cols[f"{tag}_LOG_EDOT"] = np.where(det, np.log10(e.edot.to_value(u.erg / u.s)), np.nan)
            cols[f"{tag}_LOG_PDOT"] = np.where(det, np.log10(e.pdot.to_value(u.dyn)), np.nan)
            cols[f"{tag}_EPS"] = np.where(det, e.eps, np.nan)
            cols[f"{tag}_EPS_FLAG"] = np.where(det, e.flags, 0).astype(np.int16)
        cols["OIII_MDOT_SPREAD_DEX"] = np.abs(cols["OIII_LOG_MDOT"] - cols["OIII_NP_LOG_MDOT"])
    # energetics, BAL absorption (BI troughs; v = BI-weighted mean trough speed)
    cols.update(bal_cols)
    vbal = np.full(n, np.nan)
    tid = np.asarray(troughs["TARGETID"])
    for i in np.flatnonzero(bal_cols["BI_CIV"] > 0):
        sel = (
            (tid == prep.targetid[i])
            & (np.asarray(troughs["MODE"]) == "baltools")
            & (np.asarray(troughs["ION"]) == "CIV")
            & (np.asarray(troughs["KIND"]) == "BI")
        )
        w = np.asarray(troughs["INDEX"])[sel]
        vc = 0.5 * (np.asarray(troughs["VMIN"])[sel] + np.asarray(troughs["VMAX"])[sel])
        vbal[i] = np.sum(w * vc) / np.sum(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        e_bal = bal_energetics(
            np.nan_to_num(vbal) * u.km / u.s,
            l_bol,
            n_h=bal_nh * u.cm**-3,
            radius=bal_radius_pc * u.pc,
            omega=bal_omega,
        )
    isbal = np.isfinite(vbal)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["BAL_V"] = vbal
        cols["BAL_LOG_MDOT"] = np.where(isbal, np.log10(e_bal.mdot.to_value(u.Msun / u.yr)), np.nan)
        cols["BAL_LOG_EDOT"] = np.where(isbal, np.log10(e_bal.edot.to_value(u.erg / u.s)), np.nan)
        cols["BAL_EPS"] = np.where(isbal, e_bal.eps, np.nan)
        cols["BAL_FLAG"] = np.where(isbal, e_bal.flags, 0).astype(np.int16)
    units = _units(cols)
    notes = {
        "oiii_assumptions": {k: str(v) for k, v in e_par.assumptions.items()},
        "bal_assumptions": {k: str(v) for k, v in e_bal.assumptions.items()},
        "velocity_reference": "Z_SYS",
    }
    tr = {k: np.asarray(v) for k, v in troughs.items()}
    if not len(tr["TARGETID"]):
        tr = {
            k: np.zeros(0, dtype=(np.int64 if k == "TARGETID" else "U10" if k in ("MODE", "ION", "KIND") else float))
            for k in troughs
        }
    return OutflowResult(columns=cols, units=units, troughs=tr, lines=lines, prepared=prep, continuum=cont, notes=notes)


def _units(cols: dict[str, np.ndarray]) -> dict[str, str]:
    out = {}
    for k in cols:
        if k.endswith(("_FLUX", "_FLUX_ERR")):
            out[k] = "1e-17 erg/(s cm2)"
        elif k.endswith(("_EW", "_EW_ERR")):
            out[k] = "Angstrom"
        elif (
            any(
                k.endswith(s) or k.endswith(s + "_ERR")
                for s in ("_FWHM", "_SIGMA", "_VSHIFT", "_V50", "_V10", "_V90", "_W80", "_V", "V_OUT")
            )
            or k.startswith(("VMIN_", "VMAX_", "POSMIN_", "BI_", "ERR_BI_", "AI_", "ERR_AI_"))
            or k == "BAL_V"
        ):
            out[k] = "km/s"
        elif k.startswith("NE_") and not k.endswith("LIMIT"):
            out[k] = "cm-3"
        elif k == "TE_OIII":
            out[k] = "K"
        elif k == "EBV":
            out[k] = "mag"
        elif k.startswith("LOGL") or k.endswith("LOG_EDOT"):
            out[k] = "dex(erg/s)"
        elif k.endswith("LOG_MDOT"):
            out[k] = "dex(Msun/yr)"
        elif k.endswith("LOG_MASS"):
            out[k] = "dex(Msun)"
        elif k.endswith("LOG_PDOT"):
            out[k] = "dex(dyn)"
    return out


# ----------------------------------------------------------------------------------------
# Products
# ----------------------------------------------------------------------------------------

CATALOG_EXTNAME = "OUTFLOWS"
TROUGH_EXTNAME = "BAL_TROUGHS"


def _to_arrow(cols: dict[str, np.ndarray], units: dict[str, str]) -> pa.Table:
    arrays, fields = [], []
    for k, v in cols.items():
        v = np.asarray(v)
        if v.dtype.kind == "b":
            v = v.astype(np.int16)  # FITS/fitsio round-trip: booleans stored as 0/1
        if v.dtype.kind == "U":
            arr = pa.array(v.astype(str))
        elif v.ndim == 2:
            arr = pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), v.shape[1])
        else:
            arr = pa.array(v)
        meta = {b"unit": units[k].encode()} if k in units else None
        arrays.append(arr)
        fields.append(pa.field(k, arr.type, metadata=meta))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_products(result: OutflowResult, out_dir: str | Path, stem: str = "outflows") -> dict[str, Path]:
    """Write ``<stem>.fits`` (HDUs OUTFLOWS, BAL_TROUGHS) and ``<stem>.parquet``,
    ``<stem>-troughs.parquet``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cat = _to_arrow(result.columns, result.units)
    tr_units = {k: "km/s" for k in ("VMIN", "VMAX", "POSMIN", "INDEX", "INDEX_ERR")}
    tr = _to_arrow(result.troughs, tr_units)
    fits_path = out / f"{stem}.fits"
    keys = {"VELREF": "Z_SYS", "PIPELINE": "desilab outflows"}
    with atomic_output(fits_path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as f:
        f.write(None, header=[{"name": k, "value": v} for k, v in keys.items()])
        write_table(f, cat, CATALOG_EXTNAME, None, units=True)
        write_table(f, tr, TROUGH_EXTNAME, None, units=True, required=())
    paths = {"fits": fits_path}
    meta = {b"desilab": json.dumps(result.notes, sort_keys=True, default=str).encode()}
    for name, tab in (("parquet", cat), ("troughs_parquet", tr)):
        p = out / (f"{stem}.parquet" if name == "parquet" else f"{stem}-troughs.parquet")
        with atomic_output(p) as tmp:
            pq.write_table(tab.replace_schema_metadata(meta), tmp)
        paths[name] = p
    return paths


def read_products(path: str | Path) -> tuple[pa.Table, pa.Table]:
    """Read the catalog and trough table back (from the FITS file)."""
    return read_table(path, ext=CATALOG_EXTNAME), read_table(path, ext=TROUGH_EXTNAME)
