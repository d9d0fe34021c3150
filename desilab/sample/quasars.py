"""Sample-sky quasars: DR1-format spectra, catalogs and truth tables.

Interface (what ``desilab sample`` calls)::

    from desilab.sample.quasars import QuasarConfig, generate_quasars
    result = generate_quasars(QuasarConfig.for_scale("tiny"), seed, out_dir,
                              executor=executor, templates="builtin", footprint=pixels)
    result.zcatalog      # pyarrow.Table: ZCATALOG (zpix) rows of every quasar
    result.qso_catalog   # pyarrow.Table: QSO_CAT rows with the baltools BAL block
    result.truth         # dict name -> pyarrow.Table (qso_truth, qso_lines, qso_troughs, qso_anomalies)
    result.files         # every file written (coadd-*, redrock-*, the QSO catalog if asked)

    # injection tests: render + observe chosen quasars exactly as the sample sky does
    sim = simulate_spectra([params, ...], mags, seed=1, exptime=1000.0)

Files (``QuasarConfig.write_spectra``): ``out_dir/{specprod}/healpix/{survey}/{program}/
{HEALPIX//100}/{HEALPIX}/coadd-{survey}-{program}-{HEALPIX}.fits`` and ``redrock-…``,
HEALPix nside 64 NESTED from TARGET_RA/DEC, written through :mod:`desilab.io.coadd` and
:mod:`desilab.io.redrock`. Generation runs one shard per HEALPix pixel with the pixel's
own random stream (:func:`desilab.compute.shard_rng`), so files and tables do not depend
on the number of workers; the same seed gives byte-identical files.

TARGETIDs follow the DESI encoding ``OBJID | BRICKID << 22 | RELEASE << 42`` with
BRICKID = the nside-64 pixel and OBJID ≥ 2**21 (the quasar range: other sample-sky
generators must keep OBJID < 2**21 in the same pixel). Models, truth tables and measured
figures: ``docs/sample-sky-quasars.md``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.compute import SerialExecutor, shard_seed
from desilab.errors import ConfigError, InputError
from desilab.sample import anomalies as an
from desilab.sample import builtin_templates as bt
from desilab.sample import qso_spectra as qs
from desilab.sample.qso_population import (
    draw_magnitudes,
    draw_quasar,
    draw_redshifts,
    fine_bal_truth,
)
from desilab.sample.quasar_config import QuasarConfig

__all__ = [
    "QSO_CATALOG_NAME",
    "QuasarConfig",
    "QuasarSample",
    "SimulatedSpectra",
    "coadd_path",
    "default_footprint_pixels",
    "generate_quasars",
    "simulate_spectra",
]

log = logging.getLogger("desilab.sample.quasars")

QSO_CATALOG_NAME = "QSO_cat_iron_main_dark_healpix_v1.fits"
"""Suggested file name of the sample-sky QSO catalog (layout ``qso_cat`` with the BAL block)."""

_OBJID_BASE = 1 << 21
_PAD = 5  # model pixels beyond each arm edge for the resolution convolution
_C = bt.C_KMS
_REDROCK_HEADER = {
    "RRVER": "0.17.9",
    "TEMNAM00": "GALAXY",
    "TEMVER00": "2.6",
    "TEMNAM01": "QSO",
    "TEMVER01": "1.1",
    "TEMNAM02": "STAR",
    "TEMVER02": "0.4",
}


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


@dataclass
class QuasarSample:
    """What :func:`generate_quasars` made.

    Attributes
    ----------
    zcatalog
        ZCATALOG rows (zpix columns, Redrock-like Z) of every quasar, for the zcatalog files.
    qso_catalog
        QSO_CAT rows with the baltools BAL block (measured on the noisy spectra with the
        catalog redshift, as DR1 does); write with ``desilab.io.qso.write_qso_catalog(path,
        table, with_bal=True, layout="qso_cat")``.
    truth
        ``qso_truth`` (one row per quasar), ``qso_lines`` (line components and their
        totals), ``qso_troughs`` (one row per injected trough), ``qso_anomalies`` (one row
        per anomalous quasar). Documented in ``docs/sample-sky-quasars.md``.
    files
        Files written, in shard order.
    config
        The settings used.
    templates
        Template set (``builtin`` or ``real``), also in the truth metadata and headers.
    seconds
        Wall time of the generation.
    """

    zcatalog: pa.Table
    qso_catalog: pa.Table
    truth: dict[str, pa.Table]
    files: list[Path]
    config: QuasarConfig
    templates: str
    seconds: float = 0.0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


# --------------------------------------------------------------------------------------
# Footprint and paths
# --------------------------------------------------------------------------------------


_NSIDE = 64


def default_footprint_pixels(nside: int = _NSIDE) -> np.ndarray:
    """NESTED pixels of a DESI-like footprint: NGC (RA 110–260°, Dec −5…+70°) and SGC
    (RA 310–45°, Dec −20…+30°), |b| > 20°."""
    from desilab.sky.healpix import healpix_to_radec

    pix = np.arange(12 * nside * nside)
    ra, dec = healpix_to_radec(pix, nside)
    _l, b = _galactic(ra, dec)
    ngc = (ra > 110) & (ra < 260) & (dec > -5) & (dec < 70)
    sgc = ((ra > 310) | (ra < 45)) & (dec > -20) & (dec < 30)
    return pix[(ngc | sgc) & (np.abs(b) > 20)]


def _galactic(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS → Galactic (l, b) in degrees (IAU rotation matrix)."""
    rot = np.array(
        [
            [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
            [0.4941094278755837, -0.4448296299600112, 0.7469822444972189],
            [-0.8676661490190047, -0.1980763734312015, 0.4559837761750669],
        ]
    )
    r, d = np.radians(ra), np.radians(dec)
    xyz = np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])
    g = rot @ xyz
    return np.degrees(np.arctan2(g[1], g[0])) % 360.0, np.degrees(np.arcsin(np.clip(g[2], -1, 1)))


def _footprint_pixels(footprint: Any) -> np.ndarray:
    """Candidate nside-64 pixels from a footprint argument (see :func:`generate_quasars`)."""
    from desilab.sky.healpix import healpix_to_radec

    if footprint is None:
        return default_footprint_pixels()
    test: Callable[..., Any] | None = None
    for name in ("observed", "contains"):
        if callable(getattr(footprint, name, None)):
            test = getattr(footprint, name)
            break
    if test is None:
        attr = getattr(footprint, "pixels", None)
        if attr is not None and not callable(attr):
            footprint = attr
        elif callable(footprint):
            test = footprint
    if test is not None:
        pix = np.arange(12 * _NSIDE * _NSIDE)
        ra, dec = healpix_to_radec(pix, _NSIDE)
        inside = pix[np.asarray(test(ra, dec), dtype=bool)]
        if inside.size == 0:
            raise InputError("the footprint contains no nside-64 pixel centre", parameter="footprint")
        return inside
    arr = np.unique(np.asarray(footprint, dtype=np.int64))
    if arr.size == 0 or arr.min() < 0 or arr.max() >= 12 * _NSIDE * _NSIDE:
        raise InputError("footprint must hold nside-64 NESTED pixel numbers", parameter="footprint")
    return arr


def coadd_path(out_dir: Path, cfg: QuasarConfig, healpix: int) -> Path:
    """``out_dir/{specprod}/healpix/{survey}/{program}/{pix//100}/{pix}/coadd-{survey}-{program}-{pix}.fits``."""
    return (
        Path(out_dir)
        / cfg.specprod
        / "healpix"
        / cfg.survey
        / cfg.program
        / str(healpix // 100)
        / str(healpix)
        / f"coadd-{cfg.survey}-{cfg.program}-{healpix}.fits"
    )


# --------------------------------------------------------------------------------------
# One shard (one HEALPix pixel)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shard:
    healpix: int
    n: int
    ra: tuple[float, ...]
    dec: tuple[float, ...]
    cfg: QuasarConfig
    out_dir: str
    templates: str
    shared_dir: str | None
    write_spectra: bool

    @property
    def shard_id(self) -> int:
        return self.healpix


def _ext_wave() -> np.ndarray:
    return bt.combined_wave()[0] - 0.8 * _PAD + 0.8 * np.arange(bt.combined_wave().size + 2 * _PAD)


def _arm_ext_slice(arm: str) -> slice:
    sl = bt.arm_slice(arm)
    return slice(sl.start, sl.stop + 2 * _PAD)


def _positions(rng: np.random.Generator, healpix: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform positions inside one nside-64 pixel (via random order-20 sub-pixels)."""
    import healpy as hp

    from desilab.sky.healpix import healpix_to_radec, radec_to_healpix

    shift = 2 * (20 - 6)
    sub = (np.int64(healpix) << shift) + rng.integers(0, 1 << shift, n)
    ra, dec = hp.pix2ang(1 << 20, sub, nest=True, lonlat=True)
    ra, dec = np.round(ra, 7), np.round(dec, 7)
    keep = radec_to_healpix(ra, dec) == healpix  # rounding can cross an edge (rare)
    cra, cdec = healpix_to_radec(healpix)
    return np.where(keep, ra, float(cra)), np.where(keep, dec, float(cdec))


def _ebv(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    _l, b = _galactic(ra, dec)
    base = 0.012 + 0.018 / np.maximum(np.sin(np.radians(np.abs(b))), 0.25)
    return np.clip(base * 10.0 ** rng.normal(0.0, 0.15, ra.size), 0.003, 0.3)


def _combine(obs: dict[str, qs.Observed], row: int, which: str = "flux") -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance combination of the three arms of one spectrum on the brz grid."""
    n = bt.combined_wave().size
    num = np.zeros(n)
    wsum = np.zeros(n)
    for arm, o in obs.items():
        sl = bt.arm_slice(arm)
        iv = o.ivar[row].astype(np.float64)
        val = getattr(o, which)[row].astype(np.float64)
        num[sl] += val * iv
        wsum[sl] += iv
    out = np.divide(num, wsum, out=np.zeros(n), where=wsum > 0)
    return out, wsum


def _median_snr(flux: np.ndarray, ivar: np.ndarray) -> float:
    good = ivar > 0
    if not np.any(good):
        return 0.0
    return float(np.median(flux[good] * np.sqrt(ivar[good])))


def _run_shard(shard: _Shard, rng: np.random.Generator) -> dict[str, Any]:
    """Generate (and write) the quasars of one HEALPix pixel."""
    cfg, n, pix = shard.cfg, shard.n, shard.healpix
    tpl = bt.feii_templates(shard.templates, shard.shared_dir)
    # --- objects: positions, redshifts, magnitudes, exposures (vectorised, fixed order) ---
    ra, dec = np.array(shard.ra), np.array(shard.dec)
    zsys = draw_redshifts(rng, n, cfg.z_knots, cfg.z_weights, cfg.z_min, cfg.z_max)
    mag = draw_magnitudes(rng, n, cfg.mag_min, cfg.mag_max, cfg.mag_slope)
    ebv = _ebv(rng, ra, dec)
    u_exp = rng.random(n)
    nexp = np.where(
        zsys >= 2.1,
        1 + (u_exp > 0.35).astype(int) + (u_exp > 0.65).astype(int) + (u_exp > 0.85).astype(int),
        1 + (u_exp > 0.85).astype(int),
    )
    exptime = np.array([cfg.exptime * float(np.sum(rng.uniform(0.8, 1.3, k))) for k in nexp])
    children = rng.spawn(n)
    bal_kind = _assign_bal(rng, zsys, cfg.bal_bi_fraction, cfg.bal_ai_only_fraction)
    objid = _OBJID_BASE + np.arange(n)
    _l, gal_b = _galactic(ra, dec)
    north = (dec >= 32.375) & (gal_b > 0)
    release = np.where(north, 9011, 9010)
    targetid = objid.astype(np.int64) | (np.int64(pix) << 22) | (release.astype(np.int64) << 42)
    # --- draw, inject physical anomalies ---
    drawn, anom_cls, anom_info = [], [], []
    for i in range(n):
        orng = children[i]
        d = draw_quasar(
            orng,
            float(zsys[i]),
            float(mag[i]),
            bal_bi_fraction=cfg.bal_bi_fraction,
            bal_ai_only_fraction=cfg.bal_ai_only_fraction,
            oiii_outflow_fraction=cfg.oiii_outflow_fraction,
            log_ne_range=cfg.log_ne_range,
            te_range=cfg.te_range,
            ebv_mw=float(ebv[i]),
            forest_seed=int(orng.integers(0, 2**62)),
            bal_kind=str(bal_kind[i]),
        )
        arng = np.random.default_rng(orng.integers(0, 2**62))
        cls = an.choose_anomaly(arng, float(zsys[i]), cfg.anomaly_rate, cfg.anomaly_weights)
        info: dict[str, Any] = {}
        if cls and an.ANOMALY_CLASSES[cls].stage == "physical":
            info = an.inject_physical(cls, d.params, arng)
        elif cls == "wrong_redshift":
            info = an.wrong_redshift(arng, float(zsys[i]))
        drawn.append(d)
        anom_cls.append(cls)
        anom_info.append(info)
    # --- render, observe through the three arms, instrumental anomalies ---
    models, unabs, bal_pix, scales = _render_batch([d.params for d in drawn], mag, tpl, shard.shared_dir)
    obs, unabs_conv = _observe_batch(models, unabs, exptime, rng, cfg.sky_residual)
    for i, cls in enumerate(anom_cls):
        if cls and an.ANOMALY_CLASSES[cls].stage == "instrumental":
            anom_info[i] = _inject_one(obs, i, cls, np.random.default_rng(children[i].integers(0, 2**62)))
    # --- catalog quantities ---
    batch = _ShardBatch(
        drawn=drawn,
        anom_cls=anom_cls,
        anom_info=anom_info,
        obs=obs,
        unabs_conv=unabs_conv,
        bal_pix=bal_pix,
        scales=scales,
        targetid=targetid,
        objid=objid,
        release=release,
        north=north,
        ra=ra,
        dec=dec,
        zsys=zsys,
        mag=mag,
        ebv=ebv,
        nexp=nexp,
        exptime=exptime,
    )
    rows = _catalog_rows(shard, rng, batch)
    _finish_rows(rows, obs, cfg, rng)
    files: list[str] = []
    if shard.write_spectra and n > 0:
        files = _write_pixel(shard, obs, rows)
    rows["files"] = files
    return rows


def _render_batch(
    params: Sequence[qs.QuasarParams], mags: np.ndarray, tpl: bt.FeTemplates, shared_dir: str | None
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """Noiseless models (1e-17 units) on the padded brz grid, scaled to the r magnitudes."""
    wave_ext = _ext_wave()
    wave_c = bt.combined_wave()
    core = slice(_PAD, _PAD + wave_c.size)
    n = len(params)
    models = np.zeros((n, wave_ext.size))
    unabs = np.zeros((n, wave_ext.size))
    scales = np.zeros(n)
    bal_pix = []
    for i, p in enumerate(params):
        parts = qs.render_intrinsic(p, wave_ext, tpl, shared_dir=shared_dir)
        scales[i] = qs.scale_to_magnitude(wave_c, parts.total[core], float(mags[i]))
        models[i] = parts.total * scales[i]
        unabs[i] = parts.unabsorbed * scales[i]
        bal_pix.append(parts.bal[core])
    return models, unabs, bal_pix, scales


def _observe_batch(
    models: np.ndarray, unabs: np.ndarray, exptime: np.ndarray, rng: np.random.Generator, sky_residual: float
) -> tuple[dict[str, qs.Observed], dict[str, np.ndarray]]:
    """Observe padded models through b, r, z; also convolve the unabsorbed models alike."""
    obs: dict[str, qs.Observed] = {}
    unabs_conv: dict[str, np.ndarray] = {}
    for arm in ("b", "r", "z"):
        sl = _arm_ext_slice(arm)
        o = qs.observe(arm, bt.arm_wave(arm), models[:, sl], exptime, rng, pad=_PAD, sky_residual=sky_residual)
        obs[arm] = o
        unabs_conv[arm] = _convolve_like(arm, unabs[:, sl], o.resolution)
    return obs, unabs_conv


def _inject_one(obs: dict[str, qs.Observed], i: int, cls: str, rng: np.random.Generator) -> dict[str, Any]:
    """Apply instrumental anomaly *cls* to spectrum *i* of *obs* (in place)."""
    fl = {a: obs[a].flux[i] for a in obs}
    sg = {a: 1.0 / np.sqrt(np.maximum(obs[a].ivar[i], 1e-12)) for a in obs}
    sk = {a: np.asarray(obs[a].sky[i], dtype=np.float64) for a in obs}
    wv = {a: bt.arm_wave(a) for a in obs}
    return an.inject_instrumental(cls, fl, sg, sk, wv, rng)


@dataclass
class SimulatedSpectra:
    """Spectra made by :func:`simulate_spectra`, with the models behind them.

    Attributes
    ----------
    spectra
        A :class:`desilab.io.spectra.Spectra` with b, r, z flux, ivar, mask and resolution
        (FIBERMAP: TARGETID = 0…n−1, TARGET_RA/DEC = 0).
    model
        Per arm, the noiseless model after resolution convolution (1e-17 erg/s/cm²/Å).
    unabsorbed
        Per arm, the same without BAL troughs and Lyα forest (what BI/AI are normalised by).
    scale
        Model units → 1e-17 erg/s/cm²/Å (line fluxes in model units × scale = observed flux).
    params
        The parameters used (after physical anomalies).
    info
        Per spectrum, the instrumental-anomaly parameters (empty dict when none).
    """

    spectra: Any
    model: dict[str, np.ndarray]
    unabsorbed: dict[str, np.ndarray]
    scale: np.ndarray
    params: list[qs.QuasarParams]
    info: list[dict[str, Any]]


def simulate_spectra(
    params: Sequence[qs.QuasarParams],
    mags: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    exptime: float | Sequence[float] | np.ndarray = 1000.0,
    templates: str = "builtin",
    shared_dir: str | Path | None = None,
    instrumental: Sequence[str] | None = None,
    sky_residual: float = 0.01,
) -> SimulatedSpectra:
    """Render and observe given quasars exactly as the sample sky does (for injection tests).

    Parameters
    ----------
    params
        Quasars, e.g. from :func:`desilab.sample.qso_population.draw_quasar` (then edited:
        an [O III] outflow of chosen velocity, troughs of chosen depth...).
    mags
        Observed r-band AB magnitude of each (sets the S/N together with *exptime*).
    seed
        Seed of the noise, resolution and instrumental-anomaly draws.
    exptime
        Effective exposure time(s) [s] (1000 s = one DESI dark exposure).
    templates, shared_dir
        Fe II template set, as in :func:`generate_quasars`.
    instrumental
        Per spectrum, an instrumental anomaly class to inject (``""`` for none).
    sky_residual
        RMS fractional sky-line subtraction residual.

    Returns
    -------
    SimulatedSpectra
    """
    from desilab.io.spectra import Spectra

    params = list(params)
    n = len(params)
    mags_arr = np.broadcast_to(np.asarray(mags, dtype=np.float64), (n,))
    texp = np.broadcast_to(np.asarray(exptime, dtype=np.float64), (n,)).copy()
    rng = np.random.default_rng(seed)
    tpl = bt.feii_templates(templates, str(shared_dir) if shared_dir is not None else None)
    models, unabs, _bal, scales = _render_batch(params, mags_arr, tpl, str(shared_dir) if shared_dir else None)
    obs, unabs_conv = _observe_batch(models, unabs, texp, rng, sky_residual)
    info: list[dict[str, Any]] = [{} for _ in range(n)]
    for i, cls in enumerate(instrumental or ()):
        if cls:
            if an.ANOMALY_CLASSES[cls].stage != "instrumental":
                raise InputError(f"{cls!r} is not an instrumental anomaly", parameter="instrumental")
            info[i] = _inject_one(obs, i, cls, np.random.default_rng([seed, i]))
    fibermap = pa.table(
        {
            "TARGETID": pa.array(np.arange(n, dtype=np.int64)),
            "TARGET_RA": pa.array(np.zeros(n)),
            "TARGET_DEC": pa.array(np.zeros(n)),
        }
    )
    spectra = Spectra(
        bands=["b", "r", "z"],
        wave={a: bt.arm_wave(a) for a in "brz"},
        flux={a: obs[a].flux for a in "brz"},
        ivar={a: obs[a].ivar for a in "brz"},
        mask={a: obs[a].mask for a in "brz"},
        resolution={a: obs[a].resolution for a in "brz"},
        fibermap=fibermap,
        meta={"QSOTMPL": templates},
    )
    return SimulatedSpectra(
        spectra,
        {a: obs[a].model for a in "brz"},
        {a: unabs_conv[a].astype(np.float32) for a in "brz"},
        scales,
        params,
        info,
    )


def _assign_bal(rng: np.random.Generator, z: np.ndarray, f_bi: float, f_ai: float) -> np.ndarray:
    """BAL class per object: exactly round(f × N_eligible) (stochastic rounding) of the
    z ≥ 1.57 quasars of this pixel get BI troughs, and as many AI-only ones as asked."""
    kinds = np.full(z.size, "", dtype=object)
    elig = np.flatnonzero(z >= 1.57)
    order = rng.permutation(elig)
    u = rng.random(2)
    n_bi = int(np.floor(f_bi * elig.size + u[0]))
    n_ai = int(np.floor((f_bi + f_ai) * elig.size + u[1])) - n_bi
    kinds[order[:n_bi]] = "BI"
    kinds[order[n_bi : n_bi + max(n_ai, 0)]] = "AI"
    return kinds


def _convolve_like(arm: str, model_ext: np.ndarray, rdata: np.ndarray) -> np.ndarray:
    """Convolve padded models with an arm's resolution (edges extended by one column's kernel)."""
    n = rdata.shape[2]
    ext = np.concatenate(
        [np.repeat(rdata[:, :, :1], _PAD, axis=2), rdata, np.repeat(rdata[:, :, -1:], _PAD, axis=2)], axis=2
    )
    return qs.apply_resolution(model_ext, ext)[:, _PAD : _PAD + n]


# --------------------------------------------------------------------------------------
# Catalog rows and truth
# --------------------------------------------------------------------------------------


def _zwarn_and_z(rng: np.random.Generator, z: float, snr: float, bal: bool, wrong: dict[str, Any]) -> tuple:
    """Redrock-like Z, ZERR, ZWARN, DELTACHI2 for one quasar."""
    sig_v = math.hypot(150.0, 300.0 / max(snr, 0.3))
    mu = 240.0 if bal else 30.0
    dv = rng.normal(mu, sig_v * (1.4 if bal else 1.0))
    zrr = z + (1.0 + z) * dv / _C
    zerr = (1.0 + z) * abs(rng.normal(0.6, 0.15)) * sig_v / _C
    dchi2 = float(max(snr, 0.05) ** 2 * 10.0 ** rng.uniform(0.8, 2.3))
    zwarn = 0
    if dchi2 < 9.0:
        zwarn |= 1 << 2  # SMALL_DELTA_CHI2
        if rng.random() < 0.5:
            zrr = float(rng.uniform(0.05, 4.5))
    if wrong:
        zrr, zwarn = float(wrong["Z_WRONG"]), 0
        dchi2 = max(dchi2, 25.0)
    return float(zrr), float(zerr), int(zwarn), dchi2, dv


def _brickname(ra: float, dec: float) -> str:
    rb = int(np.floor(ra * 4.0)) / 4.0 + 0.125
    db = int(np.floor(dec * 4.0)) / 4.0 + 0.125
    return f"{round(rb * 10) % 3600:04d}{'p' if db >= 0 else 'm'}{round(abs(db) * 10):03d}"


def _desiname(ra: float, dec: float) -> str:
    return f"J{ra:08.4f}{'+' if dec >= 0 else '-'}{abs(dec):07.4f}"


_COMPONENT_LABEL = {
    "broad": "BROAD_CORE",
    "vbc": "BROAD_VBC",
    "peak2": "BROAD_PEAK2",
    "narrow": "NARROW",
    "outflow": "OUTFLOW",
}

# Lines whose multi-component (BROAD / TOTAL) rows get non-parametric statistics; other
# lines' aggregate rows carry the flux and EW only (FWHM etc. NaN).
_STATS_LINES = frozenset(
    {
        "LYALPHA",
        "NV_1240",
        "SIIV_1398",
        "CIV_1549",
        "CIII_1908",
        "MGII_2796",
        "MGII_2803",
        "HGAMMA",
        "HBETA",
        "OIII_4959",
        "OIII_5007",
        "HALPHA",
    }
)


def _line_rows(tid: int, d: Any, scale: float, z: float) -> list[dict[str, Any]]:
    """Truth rows of one quasar's emission lines: each component, BROAD and TOTAL aggregates."""
    p = d.params
    rows: list[dict[str, Any]] = []
    by_line: dict[str, list[qs.Component]] = {}
    for c in p.components:
        by_line.setdefault(c.line, []).append(c)
    lam_lines = np.array([comps[0].wave for comps in by_line.values()])
    cont = (lam_lines / 3000.0) ** p.alpha_lambda + p.balmer_frac * bt.balmer_continuum(lam_lines)
    if p.host_frac > 0:
        cont = cont + bt.host_galaxy(lam_lines, p.host_d4000, p.host_sigma) * (5100.0 / 3000.0) ** p.alpha_lambda * (
            p.host_frac / (1.0 - p.host_frac)
        )
    for k, (line, comps) in enumerate(by_line.items()):
        wave0 = comps[0].wave
        lam_obs = wave0 * (1.0 + z)
        in_range = bool(3600.0 < lam_obs < 9824.0)
        if not in_range:
            continue
        groups: list[tuple[str, list[qs.Component]]] = [(_COMPONENT_LABEL[c.kind], [c]) for c in comps]
        broad = [c for c in comps if c.kind in ("broad", "vbc", "peak2")]
        if len(broad) > 1:
            groups.append(("BROAD", broad))
        if len(comps) > 1 and len(broad) != len(comps):
            groups.append(("TOTAL", comps))
        for label, cs in groups:
            flux = sum(c.flux for c in cs)
            if len(cs) == 1:
                c = cs[0]
                st = {
                    "FWHM": 2.3548200450309493 * c.sigma_kms,
                    "SIGMA": c.sigma_kms,
                    "V50": c.vshift_kms,
                    "V10": c.vshift_kms - 1.2815515655446004 * c.sigma_kms,
                    "W80": 2 * 1.2815515655446004 * c.sigma_kms,
                    "VPEAK": c.vshift_kms,
                }
            elif line in _STATS_LINES:
                st = qs.profile_stats(cs, wave0)
            else:
                st = dict.fromkeys(("FWHM", "SIGMA", "V50", "V10", "W80", "VPEAK"), float("nan"))
            rows.append(
                {
                    "TARGETID": tid,
                    "LINE": line,
                    "COMPONENT": label,
                    "WAVE_REST": wave0,
                    "FLUX": flux * scale,
                    "EW_REST": flux / cont[k],
                    "FWHM": st["FWHM"],
                    "SIGMA": st["SIGMA"],
                    "VSHIFT": float(np.mean([c.vshift_kms for c in cs])) if len(cs) == 1 else st["V50"],
                    "V50": st["V50"],
                    "V10": st["V10"],
                    "W80": st["W80"],
                    "VPEAK": st["VPEAK"],
                    "IN_RANGE": in_range,
                }
            )
    return rows


@dataclass(frozen=True)
class _ShardBatch:
    """Everything drawn, rendered and observed for one pixel's quasars (row-aligned)."""

    drawn: list[Any]
    anom_cls: list[str | None]
    anom_info: list[dict[str, Any]]
    obs: dict[str, qs.Observed]
    unabs_conv: dict[str, np.ndarray]
    bal_pix: list[np.ndarray]
    scales: np.ndarray
    targetid: np.ndarray
    objid: np.ndarray
    release: np.ndarray
    north: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    zsys: np.ndarray
    mag: np.ndarray
    ebv: np.ndarray
    nexp: np.ndarray
    exptime: np.ndarray


def _catalog_rows(shard: _Shard, rng: np.random.Generator, b: _ShardBatch) -> dict[str, Any]:
    """Redrock, truth, line, trough, anomaly and BAL rows of one pixel's batch."""
    drawn, anom_cls, anom_info, obs = b.drawn, b.anom_cls, b.anom_info, b.obs
    unabs_conv, bal_pix, scales = b.unabs_conv, b.bal_pix, b.scales
    targetid, objid, release, north = b.targetid, b.objid, b.release, b.north
    ra, dec, zsys, mag, ebv, nexp, exptime = b.ra, b.dec, b.zsys, b.mag, b.ebv, b.nexp, b.exptime
    pix, n = shard.healpix, shard.n
    wave_c = bt.combined_wave()
    truth: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    troughs: list[dict[str, Any]] = []
    anomalies: list[dict[str, Any]] = []
    red: list[dict[str, Any]] = []
    bal_cols: list[dict[str, Any]] = []
    snr = {a: np.array([_median_snr(obs[a].flux[i], obs[a].ivar[i]) for i in range(n)]) for a in obs}
    u_extra = rng.random((n, 4))
    for i, d in enumerate(drawn):
        tid = int(targetid[i])
        z = float(zsys[i])
        cls = anom_cls[i]
        wrong = anom_info[i] if cls == "wrong_redshift" else {}
        is_bal = d.bal_kind == "BI" or cls in ("lobal", "felobal", "overlapping_troughs")
        snr_best = max(snr["b"][i], snr["r"][i], snr["z"][i])
        zrr, zerr, zwarn, dchi2, _dv = _zwarn_and_z(rng, z, snr_best, is_bal, wrong)
        spectype = "QSO"
        if cls == "vanishing_broad_lines" or (d.params.host_frac > 0.6 and u_extra[i, 0] < 0.5):
            spectype = "GALAXY"
        npix_good = int(sum(np.count_nonzero(obs[a].ivar[i] > 0) for a in obs))
        red.append(
            {
                "Z": zrr,
                "ZERR": zerr,
                "ZWARN": zwarn,
                "DELTACHI2": dchi2,
                "SPECTYPE": spectype,
                "CHI2": float(npix_good * rng.uniform(0.95, 1.15)),
                "NPIXELS": npix_good,
            }
        )
        # BAL truth (noise-free) and catalog measurement (noisy, catalog Z, as DR1 does)
        t: dict[str, Any] = {}
        for ion in ("CIV", "SIIV"):
            fine = fine_bal_truth(d.params.troughs, ion)
            fine_c = fine_bal_truth(d.params.troughs, ion, mode="classical")
            if np.all(bal_pix[i] == 1.0):
                pixm = {"BI": 0.0, "AI": 0.0}
            else:
                pixm = qs.bal_indices(wave_c, bal_pix[i], z, ion=ion)
            t[f"BI_{ion}"], t[f"AI_{ion}"] = fine["BI"], fine["AI"]
            t[f"BI_{ion}_CLASSICAL"], t[f"AI_{ion}_CLASSICAL"] = fine_c["BI"], fine_c["AI"]
            t[f"BI_{ion}_PIX"], t[f"AI_{ion}_PIX"] = pixm["BI"], pixm["AI"]
            t[f"N{ion}_2000"], t[f"N{ion}_450"] = len(fine["BI_TROUGHS"]), len(fine["AI_TROUGHS"])
        bal_cols.append(_bal_catalog(obs, unabs_conv, i, zrr))
        for tr in d.params.troughs:
            troughs.append(
                {
                    "TARGETID": tid,
                    "ION": tr.ion,
                    "VMIN": tr.vmin,
                    "VMAX": tr.vmax,
                    "DEPTH": tr.depth,
                    "EDGE_KMS": tr.edge_kms,
                    "SLOPE": tr.slope,
                    "BUMPS": json.dumps([list(b) for b in tr.bumps]),
                    "LAMBDA_ION": qs.BAL_LINES[tr.ion],
                    "SOURCE": cls or "bal",
                }
            )
        if cls:
            ac = an.ANOMALY_CLASSES[cls]
            anomalies.append(
                {
                    "TARGETID": tid,
                    "ANOMALY_CLASS": cls,
                    "ANOMALY_CODE": ac.code,
                    "STAGE": ac.stage,
                    "WAVE": float(anom_info[i].get("WAVE", np.nan)),
                    "AMPLITUDE": float(anom_info[i].get("AMPLITUDE_SIGMA", anom_info[i].get("DEPTH", np.nan))),
                    "PARAMS": json.dumps(anom_info[i], sort_keys=True),
                }
            )
        lines.extend(_line_rows(tid, d, float(scales[i]), z))
        truth.append(
            {
                "TARGETID": tid,
                "HEALPIX": pix,
                "TARGET_RA": float(ra[i]),
                "TARGET_DEC": float(dec[i]),
                "Z_SYS": z,
                "Z_RR": zrr,
                "DV_RR": _C * (zrr - z) / (1.0 + z),
                "ZWARN": zwarn,
                "SPECTYPE": spectype,
                "MAG_R": float(mag[i]),
                "EBV": float(ebv[i]),
                "COADD_EXPTIME": float(exptime[i]),
                "COADD_NUMEXP": int(nexp[i]),
                "SNR_B": float(snr["b"][i]),
                "SNR_R": float(snr["r"][i]),
                "SNR_Z": float(snr["z"][i]),
                **{k: v for k, v in d.truth.items()},
                **t,
                "FLUX_SCALE": float(scales[i]),
                "ANOMALY": bool(cls),
                "ANOMALY_CLASS": cls,
                "ANOMALY_CODE": an.ANOMALY_CLASSES[cls].code if cls else 0,
                "TEMPLATES": shard.templates,
            }
        )
    return {
        "n": n,
        "truth": truth,
        "lines": lines,
        "troughs": troughs,
        "anomalies": anomalies,
        "red": red,
        "bal": bal_cols,
        "snr": snr,
        "targetid": targetid,
        "objid": objid,
        "release": release,
        "north": north,
        "ra": ra,
        "dec": dec,
        "mag": mag,
        "ebv": ebv,
        "nexp": nexp,
        "exptime": exptime,
        "healpix": pix,
        "flux": _photometry(obs, drawn, mag, rng),
        "u_extra": u_extra,
        "zsys": zsys,
    }


def _bal_catalog(obs: dict[str, qs.Observed], unabs_conv: dict[str, np.ndarray], i: int, zcat: float) -> dict:
    """baltools-like BAL columns measured on the noisy spectrum, normalised by the true
    unabsorbed model (a perfect continuum fit), with the catalog redshift."""
    out: dict[str, Any] = {}
    wave_c = bt.combined_wave()
    if not 1.57 <= zcat <= 5.0:
        return out
    flux, wsum = _combine(obs, i)
    n = wave_c.size
    cont = np.zeros(n)
    cnt = np.zeros(n)
    for arm, m in unabs_conv.items():
        sl = bt.arm_slice(arm)
        cont[sl] += m[i]
        cnt[sl] += 1
    cont = cont / np.maximum(cnt, 1)
    good = (wsum > 0) & (cont > 0)
    sig = np.where(good, 1.0 / np.sqrt(np.maximum(wsum, 1e-30)), np.inf)
    norm = np.where(good, flux / np.where(cont > 0, cont, 1.0), 1.0)
    snorm = np.where(good, sig / np.where(cont > 0, cont, 1.0), 10.0)
    out["PCA_COEFFS"] = np.zeros(5, dtype=np.float32)
    out["BAL_PROB"] = -1.0
    chi = (norm - 1.0) / snorm
    win = good & (wave_c / (1 + zcat) > 1261.0) & (wave_c / (1 + zcat) < 2399.0)
    out["PCA_CHI2"] = float(np.mean(chi[win] ** 2)) if np.any(win) else 0.0
    for ion in ("CIV", "SIIV"):
        res = qs.bal_indices(wave_c, norm, zcat, ion=ion, sigma_norm=snorm)
        for which, nslot, width in (("BI", 5, "2000"), ("AI", 17, "450")):
            tr = res[f"{which}_TROUGHS"][:nslot]
            out[f"{which}_{ion}"] = res[which]
            out[f"ERR_{which}_{ion}"] = res[f"ERR_{which}"]
            out[f"N{ion}_{width}"] = len(tr)
            for k, key in enumerate(("VMIN", "VMAX", "POSMIN", "FMIN")):
                arr = -np.ones(nslot, dtype=np.float32)
                arr[: len(tr)] = [t[k] for t in tr]
                out[f"{key}_{ion}_{width}"] = arr
        if ion == "CIV":
            out["SNR_CIV"] = res["SNR"]
    lam_rest = wave_c / (1 + zcat)
    red_side = good & (lam_rest > 1420.0) & (lam_rest < 1480.0)
    forest = good & (lam_rest > 1040.0) & (lam_rest < 1205.0)
    out["SNR_REDSIDE"] = float(np.median(flux[red_side] * np.sqrt(wsum[red_side]))) if np.any(red_side) else -1.0
    out["SNR_FOREST"] = float(np.median(flux[forest] * np.sqrt(wsum[forest]))) if np.any(forest) else -1.0
    return out


def _photometry(obs, drawn, mag, rng) -> dict[str, np.ndarray]:
    """Legacy-Surveys-like g, r, z, W1, W2 fluxes [nanomaggy] from the noiseless models."""
    n = len(drawn)
    out = {b: np.zeros(n) for b in ("G", "R", "Z", "W1", "W2")}
    wave_c = bt.combined_wave()
    for i in range(n):
        model, _ = _combine(obs, i, "model")
        for band in ("g", "r", "z"):
            m = qs.synthetic_mag(wave_c, model, band)
            out[band.upper()][i] = 10.0 ** (-0.4 * (m - 22.5))
        # hot-dust W1/W2: F_ν ∝ ν^-β from the z band, β ~ N(1.2, 0.3) (Vega W1−W2 ≈ 0.8–1.2)
        beta = rng.normal(1.2, 0.3)
        out["W1"][i] = out["Z"][i] * (34000.0 / 9200.0) ** beta
        out["W2"][i] = out["W1"][i] * (46000.0 / 34000.0) ** (beta + 0.4)
    return out


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------

_TSNR2_TEMPLATES = ("BGS", "ELG", "GPBBACKUP", "GPBBRIGHT", "GPBDARK", "LRG", "LYA", "QSO")
# TSNR2 per 1000 s of dark time (orders of magnitude as in DR1 dark-program coadds)
_TSNR2_PER_KS = {
    "BGS": 400.0,
    "ELG": 80.0,
    "GPBBACKUP": 20.0,
    "GPBBRIGHT": 60.0,
    "GPBDARK": 25.0,
    "LRG": 80.0,
    "LYA": 40.0,
    "QSO": 25.0,
}


def _fibermap_columns(r: dict[str, Any], cfg: QuasarConfig, rng_cols: np.random.Generator) -> dict[str, Any]:
    n = r["n"]
    ra, dec = r["ra"], r["dec"]
    flux = r["flux"]
    pix = r["healpix"]
    ebv = r["ebv"]
    mjd0 = 59350.0 + rng_cols.uniform(0, 380, n)
    cols: dict[str, Any] = {
        "TARGETID": r["targetid"].astype(np.int64),
        "COADD_FIBERSTATUS": np.zeros(n, np.int32),
        "TARGET_RA": ra,
        "TARGET_DEC": dec,
        "PMRA": np.zeros(n, np.float32),
        "PMDEC": np.zeros(n, np.float32),
        "REF_EPOCH": np.zeros(n, np.float32),
        "FA_TARGET": np.full(n, 4, np.int64),
        "FA_TYPE": np.ones(n, np.uint8),
        "OBJTYPE": ["TGT"] * n,
        "SUBPRIORITY": rng_cols.random(n),
        "OBSCONDITIONS": np.ones(n, np.int32),
        "RELEASE": r["release"].astype(np.int16),
        "BRICKNAME": [_brickname(a, b) for a, b in zip(ra, dec, strict=True)],
        "BRICKID": np.full(n, pix, np.int32),
        "BRICK_OBJID": r["objid"].astype(np.int32),
        "MORPHTYPE": ["PSF"] * n,
        "EBV": ebv.astype(np.float32),
    }
    for b in ("G", "R", "Z", "W1", "W2"):
        cols[f"FLUX_{b}"] = flux[b].astype(np.float32)
    depth = {"G": 24.7, "R": 23.9, "Z": 23.0, "W1": 21.0, "W2": 20.3}  # 5σ depths
    for b in ("G", "R", "Z", "W1", "W2"):
        sig = 10.0 ** (-0.4 * (depth[b] - 22.5)) / 5.0
        cols[f"FLUX_IVAR_{b}"] = np.full(n, 1.0 / sig**2, np.float32)
    for b in ("G", "R", "Z"):
        cols[f"FIBERFLUX_{b}"] = (0.78 * flux[b]).astype(np.float32)
    for b in ("G", "R", "Z"):
        cols[f"FIBERTOTFLUX_{b}"] = (0.78 * flux[b]).astype(np.float32)
    cols.update(
        {
            "MASKBITS": np.zeros(n, np.int16),
            "SERSIC": np.zeros(n, np.float32),
            "SHAPE_R": np.zeros(n, np.float32),
            "SHAPE_E1": np.zeros(n, np.float32),
            "SHAPE_E2": np.zeros(n, np.float32),
            "REF_ID": np.full(n, -1, np.int64),
            "REF_CAT": [""] * n,
            "GAIA_PHOT_G_MEAN_MAG": np.zeros(n, np.float32),
            "GAIA_PHOT_BP_MEAN_MAG": np.zeros(n, np.float32),
            "GAIA_PHOT_RP_MEAN_MAG": np.zeros(n, np.float32),
            "PARALLAX": np.zeros(n, np.float32),
            "PHOTSYS": ["N" if x else "S" for x in r["north"]],
            "PRIORITY_INIT": np.full(n, 3400, np.int64),
            "NUMOBS_INIT": np.full(n, 4, np.int64),
            "DESI_TARGET": np.full(n, 4, np.int64),
            "BGS_TARGET": np.zeros(n, np.int64),
            "MWS_TARGET": np.zeros(n, np.int64),
            "SCND_TARGET": np.zeros(n, np.int64),
            "PLATE_RA": ra,
            "PLATE_DEC": dec,
            "COADD_NUMEXP": r["nexp"].astype(np.int16),
            "COADD_EXPTIME": r["exptime"].astype(np.float32),
            "COADD_NUMNIGHT": r["nexp"].astype(np.int16),
            "COADD_NUMTILE": r["nexp"].astype(np.int16),
            "MEAN_DELTA_X": rng_cols.normal(0, 0.002, n).astype(np.float32),
            "RMS_DELTA_X": np.abs(rng_cols.normal(0.004, 0.001, n)).astype(np.float32),
            "MEAN_DELTA_Y": rng_cols.normal(0, 0.002, n).astype(np.float32),
            "RMS_DELTA_Y": np.abs(rng_cols.normal(0.004, 0.001, n)).astype(np.float32),
            "MEAN_PSF_TO_FIBER_SPECFLUX": rng_cols.uniform(0.72, 0.82, n).astype(np.float32),
            "MEAN_FIBER_RA": ra + rng_cols.normal(0, 0.05 / 3600, n),
            "STD_FIBER_RA": rng_cols.uniform(0, 0.1, n).astype(np.float32),
            "MEAN_FIBER_DEC": dec + rng_cols.normal(0, 0.05 / 3600, n),
            "STD_FIBER_DEC": rng_cols.uniform(0, 0.1, n).astype(np.float32),
        }
    )
    cols["_MJD0"] = mjd0
    return cols


def _exp_fibermap(r: dict[str, Any], cols: dict[str, Any], rng_cols: np.random.Generator) -> dict[str, Any]:
    rows: dict[str, list] = {
        k: []
        for k in (
            "TARGETID",
            "PRIORITY",
            "SUBPRIORITY",
            "NIGHT",
            "EXPID",
            "MJD",
            "TILEID",
            "EXPTIME",
            "PETAL_LOC",
            "DEVICE_LOC",
            "LOCATION",
            "FIBER",
            "FIBERSTATUS",
            "FIBERASSIGN_X",
            "FIBERASSIGN_Y",
            "LAMBDA_REF",
            "PLATE_RA",
            "PLATE_DEC",
            "NUM_ITER",
            "FIBER_X",
            "FIBER_Y",
            "DELTA_X",
            "DELTA_Y",
            "FIBER_RA",
            "FIBER_DEC",
            "PSF_TO_FIBER_SPECFLUX",
        )
    }
    mjd_min, mjd_max, mjd_mean = [], [], []
    for i in range(r["n"]):
        k = int(r["nexp"][i])
        mjds = np.sort(cols["_MJD0"][i] + rng_cols.uniform(0, 60, k))
        mjd_min.append(mjds[0])
        mjd_max.append(mjds[-1])
        mjd_mean.append(float(np.mean(mjds)))
        petal = int(rng_cols.integers(0, 10))
        dev = int(rng_cols.integers(0, 524))
        for j in range(k):
            night = _mjd_to_night(mjds[j])
            rows["TARGETID"].append(int(cols["TARGETID"][i]))
            rows["PRIORITY"].append(3400)
            rows["SUBPRIORITY"].append(float(cols["SUBPRIORITY"][i]))
            rows["NIGHT"].append(night)
            rows["EXPID"].append(int(90000 + (mjds[j] - 59350.0) * 40))
            rows["MJD"].append(float(mjds[j]))
            rows["TILEID"].append(int(1000 + rng_cols.integers(0, 9000)))
            rows["EXPTIME"].append(float(r["exptime"][i] / k))
            rows["PETAL_LOC"].append(petal)
            rows["DEVICE_LOC"].append(dev)
            rows["LOCATION"].append(petal * 1000 + dev)
            rows["FIBER"].append(petal * 500 + dev % 500)
            rows["FIBERSTATUS"].append(0)
            x, y = rng_cols.uniform(-400, 400, 2)
            rows["FIBERASSIGN_X"].append(float(x))
            rows["FIBERASSIGN_Y"].append(float(y))
            rows["LAMBDA_REF"].append(5400.0)
            rows["PLATE_RA"].append(float(r["ra"][i]))
            rows["PLATE_DEC"].append(float(r["dec"][i]))
            rows["NUM_ITER"].append(2)
            rows["FIBER_X"].append(float(x))
            rows["FIBER_Y"].append(float(y))
            rows["DELTA_X"].append(float(rng_cols.normal(0, 0.005)))
            rows["DELTA_Y"].append(float(rng_cols.normal(0, 0.005)))
            rows["FIBER_RA"].append(float(r["ra"][i]))
            rows["FIBER_DEC"].append(float(r["dec"][i]))
            rows["PSF_TO_FIBER_SPECFLUX"].append(float(cols["MEAN_PSF_TO_FIBER_SPECFLUX"][i]))
    cols["MIN_MJD"] = np.array(mjd_min)
    cols["MAX_MJD"] = np.array(mjd_max)
    cols["MEAN_MJD"] = np.array(mjd_mean)
    return rows


def _mjd_to_night(mjd: float) -> int:
    """YYYYMMDD of the local (Arizona, UTC−7) evening of an MJD."""
    jd = int(np.floor(mjd - 0.5 - 7.0 / 24.0)) + 2400001
    a = jd + 32044
    b = (4 * a + 3) // 146097
    c = a - 146097 * b // 4
    d = (4 * c + 3) // 1461
    e = c - 1461 * d // 4
    m = (5 * e + 2) // 153
    day = e - (153 * m + 2) // 5 + 1
    month = m + 3 - 12 * (m // 10)
    year = 100 * b + d - 4800 + m // 10
    return year * 10000 + month * 100 + day


def _tsnr2(r: dict[str, Any]) -> dict[str, np.ndarray]:
    ks = r["exptime"] / 1000.0
    out = {}
    for suffix, frac in (("_B", 0.25), ("_R", 0.35), ("_Z", 0.40), ("", 1.0)):
        for t in _TSNR2_TEMPLATES:
            out[f"TSNR2_{t}{suffix}"] = (_TSNR2_PER_KS[t] * ks * frac).astype(np.float32)
    return out


def _scores(r: dict[str, Any], obs: dict[str, qs.Observed]) -> dict[str, Any]:
    cols: dict[str, Any] = {"TARGETID": r["targetid"].astype(np.int64)}
    for arm in ("b", "r", "z"):
        o = obs[arm]
        A = arm.upper()
        cols[f"INTEG_COADD_FLUX_{A}"] = (np.sum(o.flux * (o.ivar > 0), axis=1) * 0.8).astype(np.float32)
        cols[f"MEDIAN_COADD_FLUX_{A}"] = np.median(o.flux, axis=1).astype(np.float32)
        cols[f"MEDIAN_COADD_SNR_{A}"] = r["snr"][arm].astype(np.float32)
    cols.update(_tsnr2(r))
    return cols


# Legacy Surveys A/E(B−V) coefficients (DECam g, r, z; WISE W1, W2) for MW_TRANSMISSION_*
_EXT_COEFF = {"G": 3.214, "R": 2.165, "Z": 1.211, "W1": 0.184, "W2": 0.113}


def _finish_rows(r: dict[str, Any], obs: dict[str, qs.Observed], cfg: QuasarConfig, rng: np.random.Generator) -> None:
    """Fibermap, exposure, SCORES columns and the zcatalog / QSO-catalog rows of one pixel."""
    from desilab.io.qso import BAL_COLUMNS, SNR_COLUMNS

    n = r["n"]
    fm = _fibermap_columns(r, cfg, rng)
    exp = _exp_fibermap(r, fm, rng)
    r["fibermap_cols"] = {k: v for k, v in fm.items() if k not in ("MIN_MJD", "MAX_MJD", "MEAN_MJD")}
    r["exp_cols"] = exp
    r["scores_cols"] = _scores(r, obs)
    red = _redshifts_cols(r)
    tsnr2 = _tsnr2(r)
    names = set(_zcat_names())
    zrows: list[dict[str, Any]] = []
    qrows: list[dict[str, Any]] = []
    bal_fill: dict[str, Any] = {}
    for col in (*BAL_COLUMNS, *SNR_COLUMNS):
        if col.name.startswith(("VMIN", "VMAX", "POSMIN", "FMIN")):
            bal_fill[col.name] = -np.ones(col.shape[0], dtype=np.float32)
        elif col.name == "PCA_COEFFS":
            bal_fill[col.name] = np.zeros(col.shape[0], dtype=np.float32)
        elif col.name.startswith("SNR") or col.name == "BAL_PROB":
            bal_fill[col.name] = -1.0
        elif col.name.startswith("N"):
            bal_fill[col.name] = 0
        else:
            bal_fill[col.name] = 0.0
    for i in range(n):
        row: dict[str, Any] = {}
        for k, v in fm.items():
            if k in names:
                row[k] = v[i]
        for k, v in red.items():
            if k in names:
                row[k] = v[i]
        for k, v in tsnr2.items():
            if k in names:
                row[k] = v[i]
        row.update(
            SURVEY=cfg.survey,
            PROGRAM=cfg.program,
            HEALPIX=r["healpix"],
            SPGRPVAL=r["healpix"],
            ZCAT_NSPEC=1,
            ZCAT_PRIMARY=True,
            DESINAME=_desiname(float(r["ra"][i]), float(r["dec"][i])),
        )
        zrows.append({k: _scalar(v) for k, v in row.items()})
        z = float(red["Z"][i])
        q: dict[str, Any] = {
            "TARGETID": int(r["targetid"][i]),
            "Z": z,
            "ZERR": float(red["ZERR"][i]),
            "ZWARN": int(red["ZWARN"][i]),
            "SPECTYPE": red["SPECTYPE"][i],
            "COADD_FIBERSTATUS": 0,
            "TARGET_RA": float(r["ra"][i]),
            "TARGET_DEC": float(r["dec"][i]),
            "MORPHTYPE": "PSF",
            "EBV": float(r["ebv"][i]),
        }
        for b in ("G", "R", "Z", "W1", "W2"):
            q[f"FLUX_{b}"] = float(fm[f"FLUX_{b}"][i])
            q[f"FLUX_IVAR_{b}"] = float(fm[f"FLUX_IVAR_{b}"][i])
            q[f"MW_TRANSMISSION_{b}"] = float(10.0 ** (-0.4 * _EXT_COEFF[b] * r["ebv"][i]))
        q.update(
            MASKBITS=0,
            DESI_TARGET=4,
            COADD_NUMEXP=int(r["nexp"][i]),
            COADD_EXPTIME=float(r["exptime"][i]),
            TSNR2_LYA=float(tsnr2["TSNR2_LYA"][i]),
            TSNR2_QSO=float(tsnr2["TSNR2_QSO"][i]),
            Z_RR=z,
            SURVEY=cfg.survey,
            PROGRAM=cfg.program,
            HEALPIX=int(r["healpix"]),
        )
        measured = r["bal"][i]
        for k, fill in bal_fill.items():
            q[k] = measured.get(k, fill)
        q["BALMASK"] = 0 if 1.57 <= z <= 5.0 else 2
        qrows.append({k: _scalar(v) for k, v in q.items()})
    r["zcat"] = zrows
    r["qso"] = qrows


def _scalar(v: Any) -> Any:
    """numpy scalars → Python scalars (arrays kept) so that Arrow infers stable types."""
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _arrow(v: Any) -> pa.Array:
    if isinstance(v, list):
        return pa.array(v)
    arr = np.asarray(v)
    if arr.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel()), arr.shape[1])
    return pa.array(arr)


def _table(cols: dict[str, Any]) -> pa.Table:
    return pa.table({k: _arrow(v) for k, v in cols.items() if not k.startswith("_")})


def _redshifts_cols(r: dict[str, Any]) -> dict[str, Any]:
    red = r["red"]
    n = r["n"]
    coeff = np.zeros((n, 10))
    coeff[:, 0] = [x["DELTACHI2"] ** 0.5 for x in red]
    return {
        "TARGETID": r["targetid"].astype(np.int64),
        "Z": np.array([x["Z"] for x in red]),
        "ZERR": np.array([x["ZERR"] for x in red]),
        "ZWARN": np.array([x["ZWARN"] for x in red], np.int64),
        "CHI2": np.array([x["CHI2"] for x in red]),
        "COEFF": coeff,
        "NPIXELS": np.array([x["NPIXELS"] for x in red], np.int64),
        "SPECTYPE": [x["SPECTYPE"] for x in red],
        "SUBTYPE": [""] * n,
        "NCOEFF": np.full(n, 4, np.int64),
        "DELTACHI2": np.array([x["DELTACHI2"] for x in red]),
    }


def _write_pixel(shard: _Shard, obs: dict[str, qs.Observed], r: dict[str, Any]) -> list[str]:
    """Write the coadd and redrock files of one pixel through desilab.io."""
    from desilab.io.coadd import healpix_header, write_coadd
    from desilab.io.redrock import write_redrock
    from desilab.io.spectra import Spectra

    cfg = shard.cfg
    path = coadd_path(Path(shard.out_dir), cfg, shard.healpix)
    path.parent.mkdir(parents=True, exist_ok=True)
    fm, exp = r["fibermap_cols"], r["exp_cols"]
    meta = {
        **healpix_header(cfg.survey, cfg.program, shard.healpix),
        "SPECPROD": cfg.specprod,
        "DLSAMPLE": "desilab sample sky (mock quasars)",
        "QSOTMPL": shard.templates,
    }
    spectra = Spectra(
        bands=["b", "r", "z"],
        wave={a: bt.arm_wave(a) for a in "brz"},
        flux={a: obs[a].flux for a in "brz"},
        ivar={a: obs[a].ivar for a in "brz"},
        mask={a: obs[a].mask for a in "brz"},
        resolution={a: obs[a].resolution for a in "brz"},
        fibermap=_table(fm),
        exp_fibermap=_table(exp),
        scores=_table(r["scores_cols"]),
        meta=meta,
    )
    write_coadd(path, spectra)
    rr = path.with_name(path.name.replace("coadd-", "redrock-", 1))
    tsnr2 = {"TARGETID": r["targetid"].astype(np.int64), **_tsnr2(r)}
    write_redrock(
        rr, _table(_redshifts_cols(r)), _table(fm), _table(tsnr2), {**meta, **_REDROCK_HEADER}, exp_fibermap=_table(exp)
    )
    return [str(path), str(rr)]


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _resolve_config(cfg: Any) -> QuasarConfig:
    if isinstance(cfg, QuasarConfig):
        return cfg
    if isinstance(cfg, str):
        return QuasarConfig.for_scale(cfg)
    inner = getattr(cfg, "quasars", None)
    if isinstance(inner, QuasarConfig):
        return inner
    n = getattr(cfg, "n_quasar_spectra", None)
    if isinstance(n, int | np.integer):
        return QuasarConfig(n_quasars=int(n))
    raise ConfigError(
        "expected a QuasarConfig, a scale name, or an object with .quasars or .n_quasar_spectra, "
        f"got {type(cfg).__name__}",
        parameter="cfg",
    )


def generate_quasars(
    cfg: QuasarConfig | str | Any,
    seed: int,
    out_dir: Path | str,
    *,
    executor: Any = None,
    templates: str = "builtin",
    footprint: Any = None,
    shared_dir: Path | str | None = None,
    qso_catalog_path: Path | str | None = None,
    write_spectra: bool | None = None,
    progress: Any = None,
) -> QuasarSample:
    """Generate the sample-sky quasars: spectra files, catalog rows and truth tables.

    Parameters
    ----------
    cfg
        A :class:`QuasarConfig`, a scale name (``"tiny"``, ``"small"``, ``"full"``), an
        object whose ``.quasars`` attribute is a QuasarConfig, or one with an integer
        ``n_quasar_spectra`` (e.g. :class:`desilab.sample.config.SampleConfig`; the other
        quasar settings then take their defaults).
    seed
        Root seed. Each HEALPix pixel draws from ``shard_rng(seed', pixel)`` with
        ``seed'`` derived from *seed* and the word "quasars", so the quasars' streams never
        coincide with those of other generators using the same pixel ids.
    out_dir
        Root of the spectra tree: files go to ``out_dir/{specprod}/healpix/...``.
    executor
        A :mod:`desilab.compute` executor (``.map(fn, shards, seed=, ids=)``); default:
        serial. Results do not depend on it.
    templates
        ``"builtin"`` (default; no dependence on ``../shared``) or ``"real"`` (the real
        Fe II templates read from *shared_dir*). Recorded as ``TEMPLATES`` in the truth
        and ``QSOTMPL`` in file headers.
    footprint
        Where quasars may go: ``None`` (a DESI-like NGC + SGC footprint); an object with
        an ``observed(ra, dec)`` or ``contains(ra, dec)`` method returning booleans (e.g.
        :class:`desilab.sample.footprint.Footprint`), tested at nside-64 pixel centres; an
        object with a ``.pixels`` array; a callable ``(ra, dec) -> bool array``; or an
        array of nside-64 NESTED pixels. Pixels are drawn from it, ~``cfg.per_pixel``
        quasars each (all quasars of a pixel lie inside that pixel).
    shared_dir
        The ``shared`` folder (only for ``templates="real"``).
    qso_catalog_path
        When given, also write the QSO catalog there (``qso_cat`` layout + BAL block).
    write_spectra
        Override ``cfg.write_spectra`` (``False``: catalogs and truth only; the tables are
        identical either way).
    progress
        Passed to ``executor.map``.

    Returns
    -------
    QuasarSample

    Raises
    ------
    ConfigError
        Bad settings or template set.
    InputError
        A bad footprint, or ``templates="real"`` without the shared files.
    """
    t0 = time.perf_counter()
    qcfg = _resolve_config(cfg)
    if templates not in bt.TEMPLATE_SETS:
        raise ConfigError(f"unknown template set {templates!r} (builtin, real)", parameter="templates")
    shared = str(shared_dir) if shared_dir is not None else None
    if templates == "real":
        bt.feii_templates("real", shared)  # fail early, in this process
    do_write = qcfg.write_spectra if write_spectra is None else bool(write_spectra)
    candidates = _footprint_pixels(footprint)
    plan_rng = np.random.default_rng(shard_seed(seed, "quasars-plan"))
    n = qcfg.n_quasars
    npix = min(max(1, math.ceil(n / qcfg.per_pixel)), candidates.size) if n else 0
    pixels = np.sort(plan_rng.choice(candidates, npix, replace=False)) if npix else np.zeros(0, np.int64)
    weights = plan_rng.gamma(6.0, size=npix)
    counts = plan_rng.multinomial(n, weights / weights.sum()) if npix else np.zeros(0, np.int64)
    shards = []
    for p, c in zip(pixels, counts, strict=True):
        if c == 0:
            continue
        ra, dec = _positions(np.random.default_rng(shard_seed(seed, ("quasars-pos", int(p)))), int(p), int(c))
        shards.append(
            _Shard(
                int(p), int(c), tuple(ra.tolist()), tuple(dec.tolist()), qcfg, str(out_dir), templates, shared, do_write
            )
        )
    qseed = int(shard_seed(seed, "quasars").generate_state(1, np.uint64)[0] >> np.uint64(1))
    ex = executor if executor is not None else SerialExecutor()
    results = ex.map(
        _shard_entry, shards, seed=qseed, ids=[s.healpix for s in shards], progress=progress, desc="quasars"
    )
    sample = _assemble(results, qcfg, templates)
    sample.pixels = np.array([s.healpix for s in shards], dtype=np.int64)
    if qso_catalog_path is not None:
        from desilab.io.qso import write_qso_catalog

        path = Path(qso_catalog_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_qso_catalog(
            path,
            sample.qso_catalog,
            with_bal=True,
            layout="qso_cat",
            header={"DESIDR": "dr1", "QSOTMPL": templates, "DLSAMPLE": "desilab sample sky"},
        )
        sample.files.append(path)
    sample.seconds = time.perf_counter() - t0
    log.info("quasars: %d spectra in %d pixels, %.1f s", n, len(shards), sample.seconds)
    return sample


def _shard_entry(shard: _Shard, rng: np.random.Generator) -> dict[str, Any]:
    """Executor entry point: generate one pixel and return its rows (no arrays of spectra)."""
    r = _run_shard(shard, rng)
    return _rows_only(r, shard)


def _rows_only(r: dict[str, Any], shard: _Shard) -> dict[str, Any]:
    keep = ("n", "truth", "lines", "troughs", "anomalies", "zcat", "qso", "files")
    return {k: r[k] for k in keep if k in r}


_ZCAT_COLUMNS_CACHE: list[str] = []


def _zcat_names() -> list[str]:
    if not _ZCAT_COLUMNS_CACHE:
        from desilab.io.zcatalog import ZPIX

        _ZCAT_COLUMNS_CACHE.extend(c.name for c in ZPIX.hdu("ZCATALOG").columns)
    return _ZCAT_COLUMNS_CACHE


def _concat(parts: Sequence[list[dict[str, Any]]]) -> pa.Table:
    rows = [row for part in parts for row in part]
    if not rows:
        return pa.table({})
    names = list(rows[0])
    cols = {}
    for k in names:
        vals = [row[k] for row in rows]
        if isinstance(vals[0], np.ndarray):
            cols[k] = pa.FixedSizeListArray.from_arrays(pa.array(np.concatenate(vals)), len(vals[0]))
        else:
            cols[k] = pa.array(vals)
    return pa.table(cols)


def _add_luminosities(truth: pa.Table) -> pa.Table:
    """λL_λ of the power-law continuum at 1350, 3000, 5100 Å (erg/s; FIDUCIAL cosmology)."""
    from desilab.sky.cosmology import FIDUCIAL

    if truth.num_rows == 0:
        return truth
    z = truth.column("Z_SYS").to_numpy()
    alpha = truth.column("ALPHA_LAMBDA").to_numpy()
    scale = truth.column("FLUX_SCALE").to_numpy()
    dl = FIDUCIAL.luminosity_distance_cm(z)
    for lam in (1350.0, 3000.0, 5100.0):
        logl = np.log10(lam * 4 * np.pi * dl**2 * (lam / 3000.0) ** alpha * scale * 1e-17)
        truth = truth.append_column(f"LOG_L{int(lam)}", pa.array(logl))
    return truth


def _assemble(results: list[dict[str, Any]], cfg: QuasarConfig, templates: str) -> QuasarSample:
    meta = {b"templates": templates.encode(), b"config": json.dumps(cfg.as_header(), default=str).encode()}
    truth = {
        "qso_truth": _add_luminosities(_concat([r["truth"] for r in results])),
        "qso_lines": _concat([r["lines"] for r in results]),
        "qso_troughs": _concat([r["troughs"] for r in results]),
        "qso_anomalies": _concat([r["anomalies"] for r in results]),
    }
    truth = {k: t.replace_schema_metadata(meta) for k, t in truth.items()}
    zcat = _concat([r["zcat"] for r in results])
    qso = _concat([r["qso"] for r in results])
    files = [Path(f) for r in results for f in r["files"]]
    return QuasarSample(zcat, qso, truth, files, cfg, templates)
