"""Build a sample sky: footprint → galaxies → voids → quasars → files laid out like DR1.

:func:`build_sample_sky` is the one entry point (the CLI, the ``sample`` stage and the
tests call it). Work runs as shards through :mod:`desilab.compute` — one shard per
galactic cap for galaxies and their void catalogues, one per HEALPix pixel for quasars —
each with its own random stream spawned from the seed by shard id, so the output does not
depend on the number of workers. Every catalogue is written by a :mod:`desilab.io` writer
(the same code that reads DR1), under a folder laid out like the public DR1 tree::

    OUT/spectro/redux/iron/zcatalog/v1/zpix-main-bright.fits   galaxies (main/bright)
    OUT/spectro/redux/iron/zcatalog/v1/zpix-sv3-bright.fits    SV3 re-observations
    OUT/spectro/redux/iron/zcatalog/v1/zpix-main-dark.fits     quasars
    OUT/spectro/redux/iron/zcatalog/v1/zall-pix-iron.fits      all of them
    OUT/spectro/redux/iron/healpix/main/dark/…/coadd-…, redrock-…   quasar spectra
    OUT/vac/dr1/fastspecfit/iron/v3.0/catalogs/fastspec-iron-main-bright-nside1-hpNN.fits
    OUT/vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_{VoidFinder,V2_REVOLVER,V2_VIDE}_{NGC,SGC}.fits
    OUT/survey/catalogs/dr1/QSO/iron/QSO_cat_iron_main_dark_healpix_v1.fits
    OUT/truth/…                                                 truth tables + summary.json

Files carry no dates or checksums, so the same seed and options give byte-identical files.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pyarrow as pa

from desilab.compute import Executor, SerialExecutor, shard_rng
from desilab.errors import ConfigError
from desilab.sample import galaxies as gal
from desilab.sample import lss
from desilab.sample.config import SampleConfig
from desilab.sample.footprint import Footprint, build_footprint
from desilab.sample.truth import (
    BOUNDARY_TOL,
    classify_v2,
    classify_voidfinder,
    nearest_void_distance,
    write_json,
    write_parquet,
)
from desilab.sample.voids import Survey, points_in_spheres, run_v2, run_voidfinder, zone_to_sky
from desilab.sky.cosmology import Cosmology
from desilab.sky.geometry import radec_to_xyz

__all__ = ["SampleSky", "build_sample_sky", "sample_paths"]

log = logging.getLogger("desilab.sample")

SPECPROD = "iron"
RELEASE = "dr1"
#: V² input buffer of DESIVAST's selection (galaxies to M_r −19.5 and z 0.25 are in GALZONE).
V2_MAG_BUFFER = -19.5
V2_Z_BUFFER = 0.25
#: Edge buffer [Mpc/h] of DESIVAST's void fractions (``gal_membership.py``: edge_buffer = 30).
EDGE_BUFFER = 30.0


def sample_paths(out: Path) -> dict[str, Path]:
    """Folders of the DR1-like tree under *out*."""
    return {
        "redux": out / "spectro" / "redux" / SPECPROD,
        "zcatalog": out / "spectro" / "redux" / SPECPROD / "zcatalog" / "v1",
        "fastspecfit": out / "vac" / RELEASE / "fastspecfit" / SPECPROD / "v3.0" / "catalogs",
        "desivast": out / "vac" / RELEASE / "desivast" / "v1.0",
        "qso": out / "survey" / "catalogs" / RELEASE / "QSO" / SPECPROD,
        "truth": out / "truth",
    }


@dataclass
class SampleSky:
    """What :func:`build_sample_sky` made.

    Attributes
    ----------
    out_dir
        Root of the tree.
    files
        Every file written (DR1 products first, then truth).
    summary
        Counts, measured void statistics and timings (also in ``truth/summary.json``).
    """

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# One cap: galaxies, tracers, VoidFinder, V², environments
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapJob:
    """A cap shard's inputs (picklable)."""

    cfg: SampleConfig
    footprint: Footprint
    cap: str

    @property
    def shard_id(self) -> str:
        """Shard id: the cap name (its random stream never depends on worker count)."""
        return self.cap


def _catalogue_xyz(ra: np.ndarray, dec: np.ndarray, z: np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Positions as a reader computes them from TARGET_RA, TARGET_DEC, Z (Mpc/h)."""
    return radec_to_xyz(ra, dec, cosmo.comoving_distance_mpch(np.clip(z, 0.0, None)))


def _randoms(fp: Footprint, cap: str, survey: Survey, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform points in a cap's survey volume (rejection from its RA/Dec/r³ sector)."""
    ra0, ra1, dec0, dec1 = fp.sector(cap, pad_deg=0.5)
    s0, s1 = np.sin(np.radians(dec0)), np.sin(np.radians(dec1))
    frac = max(fp.mask_area_deg2(cap) / ((ra1 - ra0) * (s1 - s0) * 180.0 / np.pi), 0.05)
    out = []
    need = n
    while need > 0:
        m = int(need / frac * 1.2) + 100
        ra = np.mod(rng.uniform(ra0, ra1, m), 360.0)
        dec = np.degrees(np.arcsin(rng.uniform(s0, s1, m)))
        r = (survey.d_min**3 + rng.random(m) * (survey.d_max**3 - survey.d_min**3)) ** (1.0 / 3.0)
        xyz = radec_to_xyz(ra, dec, r)
        xyz = xyz[survey.contains(xyz)][:need]
        out.append(xyz)
        need -= len(xyz)
    return np.concatenate(out)


def _warm_up(i: int) -> int:
    """Trivial shard: starts a worker (and its imports) before the real work."""
    return i


def _run_cap(job: CapJob, rng: np.random.Generator) -> dict[str, Any]:
    """Executor entry point for one cap (see the module docstring)."""
    cfg, fp, cap = job.cfg, job.footprint, job.cap
    cosmo = Cosmology(cfg.omega_m, cfg.h)
    r_gal, r_vf, r_rand = rng.spawn(3)
    t0 = time.perf_counter()
    g = gal.generate_cap(cfg, fp, cap, cosmo, r_gal)
    n = len(g["RA"])
    tid, brick, objid = gal.make_targetids(g["RA"], g["DEC"], g["PHOTSYS"], cap_index=list(cfg.caps).index(cap))
    g["TARGETID"], g["BRICKID"], g["BRICK_OBJID"] = tid, brick, objid
    g["HEALPIX"] = np.asarray(hp.ang2pix(64, g["RA"], g["DEC"], nest=True, lonlat=True), dtype=np.int64)
    absmag32 = g["ABSMAG01_SDSS_R"].astype(np.float32)  # the value a reader gets from the file
    obs = g["OBSERVED"]
    good = (
        obs
        & ((g["BGS_TARGET"] & (1 << gal.BGS_BITS["BGS_BRIGHT"])) != 0)
        & (g["SPECTYPE"] == "GALAXY")
        & (g["ZWARN"] == 0)
        & (g["DELTACHI2"] > 40.0)
    )
    m_r = absmag32.astype(np.float64) + cfg.evolution_q * (g["Z"] - 0.1)
    tracer = obs & gal.tracer_selection(
        g["Z"], absmag32, g["BGS_TARGET"], g["SPECTYPE"], g["ZWARN"], g["DELTACHI2"], g["IN_MASK"], cfg
    )
    g["IS_TRACER"] = tracer
    g["M_R_RECIPE"] = np.where(obs, m_r, np.nan)
    xyz = _catalogue_xyz(g["RA"], g["DEC"], g["Z"], cosmo)
    d_lo, d_hi = 0.0, float(cosmo.comoving_distance_mpch(cfg.z_max_tracers))
    survey = Survey(fp.cap_map(fp.mask_map, cap), fp.nside, d_lo, d_hi)
    t1 = time.perf_counter()

    # --- VoidFinder on the tracers ---------------------------------------------------------
    ti = np.flatnonzero(tracer)
    vf = run_voidfinder(
        xyz[ti],
        survey,
        r_vf,
        grid=cfg.hole_grid,
        min_maximal_radius=cfg.min_maximal_radius,
        maximal_overlap=cfg.maximal_overlap,
        join_fraction=cfg.hole_join_fraction,
        mask_overlap=cfg.hole_mask_overlap,
        field_neighbour=cfg.field_neighbour,
        field_sigma=cfg.field_sigma,
        edge_probe=cfg.edge_probe,
    )
    is_field = np.zeros(n, dtype=bool)
    is_field[ti] = vf.is_field
    g["VF_FIELD"] = is_field
    hc = np.column_stack([vf.holes["X"], vf.holes["Y"], vf.holes["Z"]])
    hr = vf.holes["RADIUS"]
    flag, hole = classify_voidfinder(xyz, hc, hr, survey, edge_probe=cfg.edge_probe)
    flag[~obs] = -1
    hole[~obs] = -1
    g["ENV_VOIDFINDER"] = flag
    g["VF_VOID"] = np.where(hole >= 0, vf.holes["VOID"][np.maximum(hole, 0)], -1)
    mc = np.column_stack([vf.maximals["X"], vf.maximals["Y"], vf.maximals["Z"]])
    g["DIST_VF_REFF"] = np.where(obs, nearest_void_distance(xyz, mc, vf.maximals["R_EFF"]), np.nan)
    t2 = time.perf_counter()

    # --- V²: tessellate tracers (in and out of the mask), buffer galaxies join their cell -----
    v2_in = good & (g["Z"] > 0) & (g["Z"] <= V2_Z_BUFFER) & (m_r <= V2_MAG_BUFFER)
    tess = v2_in & (g["Z"] < cfg.z_max_tracers) & (m_r <= cfg.tracer_mag_limit)
    tess_idx = np.flatnonzero(tess)
    in_survey_t = g["IN_MASK"][tess_idx] & survey.contains(xyz[tess_idx])
    v2 = run_v2(
        xyz[tess_idx],
        in_survey_t,
        survey,
        link_density=cfg.v2_link_density,
        min_radius=cfg.v2_min_radius,
    )
    cell_volume = np.full(n, np.nan)
    cell_volume[tess_idx] = v2.cell_volume
    g["CELL_VOLUME"] = cell_volume
    # GALZONE rows: every V² input galaxy, in catalogue order
    gz_idx = np.flatnonzero(v2_in)
    from scipy.spatial import cKDTree

    pos_in_tess = np.full(n, -1, dtype=np.int64)
    pos_in_tess[tess_idx] = np.arange(len(tess_idx))
    nnls = pos_in_tess[gz_idx].copy()
    need = nnls < 0
    zcut = (g["Z"][gz_idx] > 0) & (g["Z"][gz_idx] < cfg.z_max_tracers)
    if len(tess_idx) and need.any():
        _, nn = cKDTree(xyz[tess_idx]).query(xyz[gz_idx[need]], k=1)
        nnls[need] = nn
    nnls[~zcut] = -1
    zone = np.where(nnls >= 0, v2.zones.zone[np.maximum(nnls, 0)], -1)
    depth = np.where(nnls >= 0, v2.zones.depth[np.maximum(nnls, 0)], 0)
    out_flag = ~(g["IN_MASK"][gz_idx] & zcut)
    edge = np.where(nnls >= 0, v2.edge[np.maximum(nnls, 0)], False) & ~out_flag
    zone = np.where(out_flag, -1, zone)
    galzone = {
        "GAL": np.arange(len(gz_idx), dtype=np.int64),
        "TARGET": g["TARGETID"][gz_idx],
        "X": xyz[gz_idx, 0],
        "Y": xyz[gz_idx, 1],
        "Z": xyz[gz_idx, 2],
        "ZONE": zone.astype(np.int64),
        "DEPTH": depth.astype(np.int64),
        "EDGE": edge.astype(np.int64),
        "OUT": out_flag.astype(np.int64),
    }
    v2_tables = {}
    for prune, res in v2.voids.items():
        zred, zra, zdec = zone_to_sky(res.centre, cosmo)
        voids = {
            "VOID": np.arange(len(res.radius), dtype=np.int64),
            "X": res.centre[:, 0],
            "Y": res.centre[:, 1],
            "Z": res.centre[:, 2],
            "REDSHIFT": zred,
            "RA": zra,
            "DEC": zdec,
            "RADIUS": res.radius,
        }
        for i in (1, 2, 3):
            for j, c in enumerate("XYZ"):
                voids[f"{c}{i}"] = res.axes[:, i - 1, j] if len(res.radius) else np.zeros(0)
        voids["TOT_AREA"] = res.tot_area
        voids["EDGE_AREA"] = res.edge_area
        zonevoid = {
            "ZONE": np.arange(len(res.zonevoid), dtype=np.int64),
            "VOID0": res.zonevoid[:, 0],
            "VOID1": res.zonevoid[:, 1],
        }
        env = classify_v2(xyz, xyz[tess_idx], v2.zones.zone, res.zonevoid[:, 0], survey, edge_probe=cfg.edge_probe)
        env[~obs] = -1
        g[f"ENV_V2_{prune}"] = env
        members = [(i, int(z)) for i, zs in enumerate(res.zones) for z in zs]
        v2_tables[prune] = {
            "voids": voids,
            "zonevoid": zonevoid,
            "zone_volume": v2.zones.zone_volume,
            "members": np.array(members, dtype=np.int64).reshape(-1, 2),
        }
    bounds = (xyz[tess_idx].min(axis=0), xyz[tess_idx].max(axis=0)) if len(tess_idx) else (np.zeros(3), np.zeros(3))
    zones_truth = {
        "ZONE": np.arange(len(v2.zones.zone_volume), dtype=np.int64),
        "ZONE_VOLUME": v2.zones.zone_volume,
        "CORE_VOLUME": v2.zones.core_volume,
        "N_CELLS": np.bincount(v2.zones.zone[v2.zones.zone >= 0], minlength=len(v2.zones.zone_volume)),
        **{f"VOID_{p}": v2_tables[p]["zonevoid"]["VOID0"] for p in v2_tables},
        **{f"VOID1_{p}": v2_tables[p]["zonevoid"]["VOID1"] for p in v2_tables},
    }
    t3 = time.perf_counter()

    # --- statistics in the survey interior (outside the 10 Mpc/h edge shell) --------------------
    survey_vol = fp.mask_area_deg2(cap) / (4 * np.pi * (180 / np.pi) ** 2) * 4 / 3 * np.pi * (d_hi**3 - d_lo**3)
    nr = max(int(cfg.randoms_density * survey_vol), 1000)
    rnd = _randoms(fp, cap, survey, nr, r_rand)
    r_hole = points_in_spheres(rnd, hc, hr, tol=BOUNDARY_TOL) >= 0
    r_edge = survey.edge_probe(rnd, cfg.edge_probe)
    t_hole = hole[ti] >= 0
    t_edge = survey.edge_probe(xyz[ti], cfg.edge_probe) if len(ti) else np.zeros(0, bool)
    # DESIVAST's void fractions exclude a 30 Mpc/h buffer along the survey boundary
    r_buf = survey.edge_probe(rnd, EDGE_BUFFER)
    t_buf = survey.edge_probe(xyz[ti], EDGE_BUFFER) if len(ti) else np.zeros(0, bool)
    r_b20 = survey.edge_probe(rnd, 20.0)
    t_b20 = survey.edge_probe(xyz[ti], 20.0) if len(ti) else np.zeros(0, bool)
    stats = {
        "n_targets": int(n),
        "n_observed": int(obs.sum()),
        "n_tracers": len(ti),
        "n_field": int(vf.is_field.sum()),
        "n_voids": len(vf.maximals["VOID"]),
        "n_holes": len(hr),
        "n_v2_zones": len(v2.zones.zone_volume),
        **{f"n_v2_voids_{p}": len(v2_tables[p]["voids"]["VOID"]) for p in v2_tables},
        "n_galzone": len(gz_idx),
        "survey_volume": float(survey_vol),
        "mask_area_deg2": fp.mask_area_deg2(cap),
        "observed_area_deg2": fp.observed_area_deg2(cap),
        "n_randoms": len(rnd),
        "randoms_in_void": int(r_hole.sum()),
        "randoms_interior": int((~r_edge).sum()),
        "randoms_interior_in_void": int((r_hole & ~r_edge).sum()),
        "tracers_in_void": int(t_hole.sum()),
        "tracers_interior": int((~t_edge).sum()),
        "tracers_interior_in_void": int((t_hole & ~t_edge).sum()),
        "randoms_buffered": int((~r_buf).sum()),
        "randoms_buffered_in_void": int((r_hole & ~r_buf).sum()),
        "tracers_buffered": int((~t_buf).sum()),
        "tracers_buffered_in_void": int((t_hole & ~t_buf).sum()),
        "randoms_b20": int((~r_b20).sum()),
        "randoms_b20_in_void": int((r_hole & ~r_b20).sum()),
        "tracers_b20": int((~t_b20).sum()),
        "tracers_b20_in_void": int((t_hole & ~t_b20).sum()),
    }
    timing = {"galaxies": t1 - t0, "voidfinder": t2 - t1, "v2": t3 - t2}
    hole_members = g["TARGETID"][ti][vf.hole_members]
    return {
        "cap": cap,
        "galaxies": g,
        "vf": {"maximals": vf.maximals, "holes": vf.holes, "header": vf.header, "members": hole_members},
        "v2": v2_tables,
        "galzone": galzone,
        "bounds": bounds,
        "zones_truth": zones_truth,
        "stats": stats,
        "timing": timing,
    }


# --------------------------------------------------------------------------------------
# Tables in DR1 layouts
# --------------------------------------------------------------------------------------


def _desiname(ra: np.ndarray, dec: np.ndarray) -> list[str]:
    return [f"DESI J{a:08.4f}{d:+08.4f}" for a, d in zip(ra, dec, strict=True)]


def _brickname(ra: np.ndarray, dec: np.ndarray) -> list[str]:
    return [
        f"{int(a * 10) % 3600:04d}{'p' if d >= 0 else 'm'}{int(abs(d) * 10):03d}" for a, d in zip(ra, dec, strict=True)
    ]


def _mjd(g: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic observing dates from the pass count and sub-priority (MJD ~ 59200–59700)."""
    first = 59200.0 + 400.0 * g["SUBPRIORITY"]
    last = first + 30.0 * np.maximum(g["COADD_NUMEXP"] - 1, 0)
    return first, last, 0.5 * (first + last)


def zcatalog_table(g: dict[str, np.ndarray], rows: np.ndarray, survey: str = "main") -> pa.Table:
    """ZCATALOG rows of the galaxies at *rows* (main/bright or their SV3 re-observations)."""
    sub = {k: v[rows] for k, v in g.items()}
    n = len(rows)
    sv3 = survey == "sv3"
    z, dchi2, tsnr = sub["Z"], sub["DELTACHI2"], sub["TSNR2_BGS"]
    if sv3:
        # deeper SV3 coadds: larger DELTACHI2 and TSNR2, a slightly different Z
        z = sub["Z_TRUE"] + 0.5 * sub["ZERR"] * np.cos(1e3 * sub["SUBPRIORITY"])
        dchi2 = dchi2 * 3.0
        tsnr = tsnr * 2.5
    first, last, mean = _mjd(sub)
    coeff = np.zeros((n, 10))
    coeff[:, 0] = 10.0 ** (-0.4 * (sub["RMAG_TRUE"] - 22.5))
    cols: dict[str, Any] = {
        "TARGETID": sub["TARGETID"],
        "SURVEY": [survey] * n,
        "PROGRAM": ["bright"] * n,
        "HEALPIX": sub["HEALPIX"].astype(np.int32),
        "SPGRPVAL": sub["HEALPIX"].astype(np.int32),
        "Z": z,
        "ZERR": sub["ZERR"],
        "ZWARN": np.zeros(n, np.int64) if sv3 else sub["ZWARN"],
        "CHI2": sub["CHI2"],
        "COEFF": pa.FixedSizeListArray.from_arrays(pa.array(coeff.ravel()), 10),
        "NPIXELS": sub["NPIXELS"],
        "SPECTYPE": sub["SPECTYPE"].tolist(),
        "SUBTYPE": [""] * n,
        "NCOEFF": np.full(n, 10, np.int64),
        "DELTACHI2": dchi2,
        "COADD_FIBERSTATUS": np.zeros(n, np.int32),
        "TARGET_RA": sub["RA"],
        "TARGET_DEC": sub["DEC"],
        "REF_EPOCH": np.full(n, 2015.5, np.float32),
        "FA_TARGET": sub["BGS_TARGET"],
        "FA_TYPE": np.ones(n, np.uint8),
        "OBJTYPE": ["TGT"] * n,
        "SUBPRIORITY": sub["SUBPRIORITY"],
        "OBSCONDITIONS": np.full(n, 516, np.int32),
        "RELEASE": ((sub["TARGETID"] >> 42) & 0xFFFF).astype(np.int16),
        "BRICKNAME": _brickname(sub["RA"], sub["DEC"]),
        "BRICKID": sub["BRICKID"].astype(np.int32),
        "BRICK_OBJID": sub["BRICK_OBJID"].astype(np.int32),
        "MORPHTYPE": sub["MORPHTYPE"].tolist(),
        "EBV": sub["EBV"].astype(np.float32),
        "MASKBITS": np.zeros(n, np.int16),
        "SERSIC": sub["SERSIC"].astype(np.float32),
        "SHAPE_R": sub["SHAPE_R"].astype(np.float32),
        "PHOTSYS": sub["PHOTSYS"].tolist(),
        "PRIORITY_INIT": np.where(sub["BGS_BRIGHT_TRUE"], 2100, 2000).astype(np.int64),
        "NUMOBS_INIT": np.full(n, 2, np.int64),
        "DESI_TARGET": np.zeros(n, np.int64) if sv3 else sub["DESI_TARGET"],
        "BGS_TARGET": np.zeros(n, np.int64) if sv3 else sub["BGS_TARGET"],
        "MWS_TARGET": np.zeros(n, np.int64),
        "PLATE_RA": sub["RA"],
        "PLATE_DEC": sub["DEC"],
        "COADD_NUMEXP": sub["COADD_NUMEXP"].astype(np.int16),
        "COADD_EXPTIME": sub["COADD_EXPTIME"].astype(np.float32),
        "COADD_NUMNIGHT": sub["COADD_NUMEXP"].astype(np.int16),
        "COADD_NUMTILE": np.maximum(sub["NPASS"], 1).astype(np.int16),
        "MEAN_FIBER_RA": sub["RA"],
        "MEAN_FIBER_DEC": sub["DEC"],
        "MEAN_PSF_TO_FIBER_SPECFLUX": np.full(n, 0.78, np.float32),
        "MIN_MJD": first,
        "MAX_MJD": last,
        "MEAN_MJD": mean,
        "TSNR2_BGS": tsnr.astype(np.float32),
        "TSNR2_BGS_R": (0.6 * tsnr).astype(np.float32),
        "ZCAT_NSPEC": np.ones(n, np.int16),
        "ZCAT_PRIMARY": np.ones(n, bool),
        "DESINAME": _desiname(sub["RA"], sub["DEC"]),
    }
    if sv3:
        cols["SV3_BGS_TARGET"] = sub["BGS_TARGET"]
        cols["SV3_DESI_TARGET"] = sub["DESI_TARGET"]
    for band in ("G", "R", "Z", "W1", "W2"):
        cols[f"FLUX_{band}"] = sub[f"FLUX_{band}"].astype(np.float32)
        cols[f"FLUX_IVAR_{band}"] = sub[f"FLUX_IVAR_{band}"].astype(np.float32)
    for band in ("G", "R", "Z"):
        cols[f"FIBERFLUX_{band}"] = sub[f"FIBERFLUX_{band}"].astype(np.float32)
        cols[f"FIBERTOTFLUX_{band}"] = sub[f"FIBERTOTFLUX_{band}"].astype(np.float32)
    return pa.table(cols)


def exp_fibermap_table(g: dict[str, np.ndarray], rows: np.ndarray, tiles: np.ndarray) -> pa.Table:
    """EXP_FIBERMAP rows: COADD_NUMEXP exposures per target, deterministic."""
    sub = {k: v[rows] for k, v in g.items()}
    nexp = np.maximum(sub["COADD_NUMEXP"], 1)
    rep = np.repeat(np.arange(len(rows)), nexp)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(nexp) - nexp, nexp)
    first, _, _ = _mjd(sub)
    mjd = first[rep] + 30.0 * k
    night = _nights(mjd)
    tileid = tiles["TILEID"][(sub["BRICK_OBJID"][rep] + k) % max(len(tiles), 1)] if len(tiles) else np.zeros(len(rep))
    fiber = ((sub["TARGETID"][rep] + 7 * k) % 5000).astype(np.int32)
    return pa.table(
        {
            "TARGETID": sub["TARGETID"][rep],
            "PRIORITY": np.where(sub["BGS_BRIGHT_TRUE"][rep], 2100, 2000).astype(np.int32),
            "SUBPRIORITY": sub["SUBPRIORITY"][rep],
            "NIGHT": night,
            "EXPID": (100000 + (mjd - 59000.0) * 40).astype(np.int32),
            "MJD": mjd,
            "TILEID": np.asarray(tileid, dtype=np.int32),
            "EXPTIME": np.full(len(rep), 180.0),
            "PETAL_LOC": (fiber // 500).astype(np.int16),
            "DEVICE_LOC": (fiber % 500).astype(np.int32),
            "LOCATION": (1000 * (fiber // 500) + fiber % 500).astype(np.int64),
            "FIBER": fiber,
            "FIBERSTATUS": np.zeros(len(rep), np.int32),
            "FIBER_RA": sub["RA"][rep],
            "FIBER_DEC": sub["DEC"][rep],
            "PLATE_RA": sub["RA"][rep],
            "PLATE_DEC": sub["DEC"][rep],
            "PSF_TO_FIBER_SPECFLUX": np.full(len(rep), 0.78),
        }
    )


def _nights(mjd: np.ndarray) -> np.ndarray:
    """YYYYMMDD of the local (Kitt Peak) night starting at each MJD."""
    days = np.floor(mjd - 0.5).astype("int64") - 40587  # MJD 40587 = 1970-01-01
    dt = days.astype("datetime64[D]")
    y = dt.astype("datetime64[Y]").astype(int) + 1970
    m = dt.astype("datetime64[M]").astype(int) % 12 + 1
    d = (dt - dt.astype("datetime64[M]")).astype(int) + 1
    return (y * 10000 + m * 100 + d).astype(np.int32)


_FASTSPEC_KEYS = (
    "LOGMSTAR", "LOGMSTAR_IVAR", "SFR", "SFR_IVAR", "AGE", "AGE_IVAR", "ZZSUN", "ZZSUN_IVAR", "TAUV",
    "TAUV_IVAR", "VDISP", "VDISP_IVAR", "DN4000", "DN4000_OBS", "DN4000_IVAR", "DN4000_MODEL",
    "DN4000_MODEL_IVAR", "ABSMAG10_DECAM_G", "ABSMAG10_DECAM_R", "ABSMAG10_DECAM_Z",
    *(f"ABSMAG01_SDSS_{b}" for b in "UGRIZ"), *(f"ABSMAG01_IVAR_SDSS_{b}" for b in "UGRIZ"),
)  # fmt: skip
_LINE_KEYS = ("HALPHA", "HBETA", "NII_6584", "OII_3726", "OII_3729", "OIII_5007")


def fastspec_table(g: dict[str, np.ndarray], rows: np.ndarray, known: set[str]) -> pa.Table:
    """FastSpecFit v3.0 rows (METADATA + SPECPHOT + FASTSPEC columns; h = 1)."""
    sub = {k: v[rows] for k, v in g.items()}
    n = len(rows)
    cols: dict[str, Any] = {
        "TARGETID": sub["TARGETID"],
        "SURVEY": ["main"] * n,
        "PROGRAM": ["bright"] * n,
        "HEALPIX": sub["HEALPIX"].astype(np.int32),
        "RA": sub["RA"],
        "DEC": sub["DEC"],
        "COADD_FIBERSTATUS": np.zeros(n, np.int32),
        "DESI_TARGET": sub["DESI_TARGET"],
        "BGS_TARGET": sub["BGS_TARGET"],
        "MWS_TARGET": np.zeros(n, np.int64),
        "Z": sub["Z"],
        "ZWARN": sub["ZWARN"].astype(np.int8),
        "DELTACHI2": sub["DELTACHI2"],
        "SPECTYPE": sub["SPECTYPE"].tolist(),
        "SUBTYPE": [""] * n,
        "Z_RR": sub["Z"],
        "ZWARN_RR": sub["ZWARN"].astype(np.int8),
        "TSNR2_BGS": sub["TSNR2_BGS"].astype(np.float32),
        "PHOTSYS": sub["PHOTSYS"].tolist(),
        "LS_ID": sub["TARGETID"],
        "EBV": sub["EBV"].astype(np.float32),
    }
    for band in ("G", "R", "Z", "W1", "W2"):
        trans = sub[f"MW_TRANSMISSION_{band}"]
        cols[f"FLUX_{band}"] = (sub[f"FLUX_{band}"] / trans).astype(np.float32)
        cols[f"FLUX_IVAR_{band}"] = (sub[f"FLUX_IVAR_{band}"] * trans**2).astype(np.float32)
        cols[f"MW_TRANSMISSION_{band}"] = trans.astype(np.float32)
    for band in ("G", "R", "Z"):
        cols[f"FIBERFLUX_{band}"] = (sub[f"FIBERFLUX_{band}"] / sub[f"MW_TRANSMISSION_{band}"]).astype(np.float32)
        cols[f"FIBERTOTFLUX_{band}"] = (sub[f"FIBERTOTFLUX_{band}"] / sub[f"MW_TRANSMISSION_{band}"]).astype(np.float32)
    for key in _FASTSPEC_KEYS:
        cols[key] = sub[key].astype(np.float32)
    for line in _LINE_KEYS:
        for suffix in ("FLUX", "FLUX_IVAR", "EW", "SIGMA"):
            cols[f"{line}_{suffix}"] = sub[f"{line}_{suffix}"].astype(np.float32)
    cols = {k: v for k, v in cols.items() if k in known}
    return pa.table(cols)


def _voidfinder_header(cfg: SampleConfig, res: dict, cap: str, stats: dict, fp: Footprint, cosmo: Cosmology) -> dict:
    d_hi = float(cosmo.comoving_distance_mpch(cfg.z_max_tracers))
    area = fp.mask_area_deg2(cap)
    hdr = {
        "INFILE": f"desilab sample sky ({cfg.scale}) BGS_BRIGHT volume-limited {cap}",
        "METRIC": "comoving",
        "DLIML": 0.0,
        "DLIMU": d_hi,
        "ZLIML": 0.0,
        "ZLIMU": cfg.z_max_tracers,
        "OMEGAM": cfg.omega_m,
        "HP": cfg.h,
        "MAGCUT": True,
        "MAGLIM": cfg.tracer_mag_limit,
        "RMISO": True,
        "MSKRES": fp.nside,
        "COVSTR": area * (np.pi / 180.0) ** 2,
        "COVDEG": area,
        "VOLUME": stats["survey_volume"],
        "DENSITY": stats["n_tracers"] / max(stats["survey_volume"], 1.0),
        "AVSEP": (stats["survey_volume"] / max(stats["n_tracers"], 1)) ** (1.0 / 3.0),
        "DLSAMPLE": "desilab sample sky (mock): truth in truth/",
    }
    hdr.update(res["header"])
    hdr.pop("HOLE", None)
    return hdr


def _v2_header(cfg: SampleConfig, cap: str, fp: Footprint, cosmo: Cosmology, bounds: tuple) -> dict:
    lo, hi = bounds
    return {
        "INFILE": f"desilab sample sky ({cfg.scale}) BGS_BRIGHT volume-limited {cap}",
        "HP": cfg.h,
        "OMEGAM": cfg.omega_m,
        "ZLIML": 0.0,
        "ZLIMU": cfg.z_max_tracers,
        "DLIML": 0.0,
        "DLIMU": float(cosmo.comoving_distance_mpch(cfg.z_max_tracers)),
        "MINR": cfg.v2_min_radius,
        "ZSTEP": 5e-4,
        "NSIDE": fp.nside,
        "MAGLIM": cfg.tracer_mag_limit,
        "PXMIN": float(lo[0]),
        "PYMIN": float(lo[1]),
        "PZMIN": float(lo[2]),
        "PXMAX": float(hi[0]),
        "PYMAX": float(hi[1]),
        "PZMAX": float(hi[2]),
        "BUFFER": 5.0,
        "DLSAMPLE": "desilab sample sky (mock): truth in truth/",
    }


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def _columns(d: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({k: (v.tolist() if v.dtype.kind in "US" else v) for k, v in d.items()})


def build_sample_sky(
    cfg: SampleConfig,
    out_dir: Path | str,
    *,
    seed: int,
    spectra: bool = True,
    templates: str = "builtin",
    shared_dir: Path | str | None = None,
    executor: Executor | None = None,
    progress: Any = None,
    quasars: bool = True,
) -> SampleSky:
    """Generate a sample sky and write it under *out_dir*.

    Parameters
    ----------
    cfg
        Configuration (:func:`~desilab.sample.config.config_for_scale`).
    out_dir
        Root of the DR1-like tree (created).
    seed
        Root seed; every shard's stream is spawned from it by shard id.
    spectra
        Write quasar coadd/redrock files (``False``: catalogues only, identical tables).
    templates
        Quasar templates: ``builtin`` or ``real`` (read from *shared_dir*).
    shared_dir
        The ``shared`` folder holding ``data/real`` (only for ``templates="real"``).
    executor
        Where shards run (default: serial). Results do not depend on it.
    progress
        A rich ``Progress`` to report steps to (or None).
    quasars
        Generate the quasar half (tests of the galaxy half switch it off).

    Returns
    -------
    SampleSky
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = sample_paths(out)
    ex = executor if executor is not None else SerialExecutor()
    cosmo = Cosmology(cfg.omega_m, cfg.h)
    task = _Steps(progress, 6 if quasars else 5)

    task.start("footprint")
    fp = build_footprint(cfg, shard_rng(seed, "footprint"))
    task.done()

    # The quasar half is independent of the galaxies: it runs in a thread on the same
    # executor while the caps run, so that both cores stay busy. (A first, trivial map
    # starts the worker pool, so the two threads never race to create it.)
    quasar_job = None
    qsample = None
    files: list[Path] = []
    if quasars:
        from desilab.sample.quasars import QuasarConfig, generate_quasars

        ex.map(_warm_up, [0, 1], ids=[0, 1])
        qcfg = QuasarConfig.for_scale(cfg.scale)
        ra, dec = hp.pix2ang(fp.nside, fp.mask_pixels(), nest=True, lonlat=True)
        pix64 = np.unique(np.asarray(hp.ang2pix(64, ra, dec, nest=True, lonlat=True)))
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="desilab-quasars")
        quasar_job = pool.submit(
            generate_quasars,
            qcfg,
            seed,
            paths["redux"].parent,  # the quasar writer adds {specprod}/healpix/...
            executor=ex,
            templates=templates,
            footprint=pix64,
            shared_dir=shared_dir,
            qso_catalog_path=paths["qso"] / "QSO_cat_iron_main_dark_healpix_v1.fits",
            write_spectra=spectra,
        )
        pool.shutdown(wait=False)

    task.start("galaxies and voids, per cap")
    jobs = [CapJob(cfg, fp, cap) for cap in cfg.caps]
    results = ex.map(_run_cap, jobs, seed=seed, ids=[("cap", j.cap) for j in jobs])
    task.done()

    if quasar_job is not None:
        task.start("quasars")
        qsample = quasar_job.result()
        files.extend(qsample.files)
        task.done()

    task.start("write catalogues")
    tasks = _catalogue_tasks(cfg, fp, cosmo, results, qsample, paths)
    written = ex.map(_do_write, tasks, ids=[t.shard_id for t in tasks])
    files.extend(sorted(written))
    task.done()

    task.start("write truth")
    summary = _summary(cfg, seed, results, qsample, spectra, templates, t_start)
    files.extend(_write_truth(cfg, seed, results, qsample, paths, summary))
    task.done()
    task.close()
    # timings are reported, never written (files must not depend on the machine)
    summary["timing"] = {"steps": task.seconds, **{r["cap"]: r["timing"] for r in results}}
    summary["seconds_total"] = time.perf_counter() - t_start
    return SampleSky(out, files, summary)


class _Steps:
    """One progress task advanced per build step (no-op without a Progress)."""

    def __init__(self, progress: Any, total: int) -> None:
        self.p = progress
        self.task = progress.add_task("sample sky", total=total) if progress is not None else None
        self.seconds: dict[str, float] = {}
        self.what = ""
        self.t0 = time.perf_counter()

    def start(self, what: str) -> None:
        log.debug("sample sky: %s", what)
        self.what = what
        self.t0 = time.perf_counter()
        if self.p is not None:
            self.p.update(self.task, description=f"sample sky: {what}")

    def done(self) -> None:
        self.seconds[self.what] = time.perf_counter() - self.t0
        if self.p is not None:
            self.p.advance(self.task)

    def close(self) -> None:
        if self.p is not None:
            self.p.update(self.task, description="sample sky: done")


@dataclass(frozen=True)
class WriteTask:
    """One file to write (picklable, so writes can run on the executor in parallel).

    Attributes
    ----------
    kind
        ``zcatalog``, ``fastspec``, ``voidfinder`` or ``v2``.
    path
        Output file.
    args, kwargs
        Positional tables and keyword options of the writer.
    """

    kind: str
    path: Path
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    @property
    def shard_id(self) -> str:
        """The file name (unique within a sample sky)."""
        return self.path.name


def _do_write(task: WriteTask) -> Path:
    """Executor entry point: write one file through its :mod:`desilab.io` writer."""
    if task.kind == "zcatalog":
        from desilab.io.zcatalog import write_zcatalog

        return write_zcatalog(task.path, *task.args, **task.kwargs)
    if task.kind == "fastspec":
        from desilab.io.fastspecfit import write_fastspec

        return write_fastspec(task.path, *task.args, **task.kwargs)
    if task.kind == "voidfinder":
        from desilab.io.desivast import write_voidfinder

        return write_voidfinder(task.path, *task.args, **task.kwargs)
    if task.kind == "v2":
        from desilab.io.desivast import write_v2

        return write_v2(task.path, *task.args, **task.kwargs)
    raise ValueError(f"unknown write task {task.kind!r}")


def _catalogue_tasks(
    cfg: SampleConfig, fp: Footprint, cosmo: Cosmology, results: list[dict], qsample: Any, paths: dict[str, Path]
) -> list[WriteTask]:
    from desilab.io.fastspecfit import V30

    tasks: list[WriteTask] = []
    g = _merge([r["galaxies"] for r in results])
    obs = np.flatnonzero(g["OBSERVED"])
    hdr = {"RRVER": "0.17.9", "TEMNAM00": "GALAXY", "TEMVER00": "2.6", "DLSAMPLE": "desilab sample sky (mock)"}
    main = zcatalog_table(g, obs, "main")
    opts = {"kind": "zpix", "program": "bright", "header": hdr}
    tasks.append(
        WriteTask(
            "zcatalog",
            paths["zcatalog"] / "zpix-main-bright.fits",
            (main,),
            {**opts, "survey": "main", "exp_fibermap": exp_fibermap_table(g, obs, fp.tiles)},
        )
    )
    dup = obs[g["SV3_DUPLICATE"][obs]]
    sv3 = zcatalog_table(g, dup, "sv3")
    tasks.append(
        WriteTask(
            "zcatalog",
            paths["zcatalog"] / "zpix-sv3-bright.fits",
            (sv3,),
            {**opts, "survey": "sv3", "exp_fibermap": exp_fibermap_table(g, dup, fp.tiles)},
        )
    )
    parts = [main, sv3]
    if qsample is not None and qsample.zcatalog.num_rows:
        qz = qsample.zcatalog
        tasks.append(
            WriteTask(
                "zcatalog",
                paths["zcatalog"] / "zpix-main-dark.fits",
                (qz,),
                {"kind": "zpix", "survey": "main", "program": "dark", "header": hdr},
            )
        )
        parts.append(qz)
    tasks.append(
        WriteTask(
            "zcatalog",
            paths["zcatalog"] / f"zall-pix-{SPECPROD}.fits",
            (_zall(parts),),
            {"kind": "zall", "header": hdr},
        )
    )
    # FastSpecFit v3.0: main/bright, split by nside-1 pixel as in DR1
    known = {c.name for h in V30.hdus for c in getattr(h, "columns", ())}
    hp1 = g["HEALPIX"][obs] >> 12
    for p in np.unique(hp1):
        rows = obs[hp1 == p]
        tasks.append(
            WriteTask(
                "fastspec",
                paths["fastspecfit"] / f"fastspec-{SPECPROD}-main-bright-nside1-hp{int(p):02d}.fits",
                (fastspec_table(g, rows, known),),
                {"version": "v3.0", "header": {"DLSAMPLE": "desilab sample sky (mock)"}},
            )
        )
    # DESIVAST v1.0
    for r in results:
        cap = r["cap"]
        tasks.append(
            WriteTask(
                "voidfinder",
                paths["desivast"] / f"DESIVAST_BGS_VOLLIM_VoidFinder_{cap}.fits",
                (
                    _columns(r["vf"]["maximals"]),
                    _columns(r["vf"]["holes"]),
                    _voidfinder_header(cfg, r["vf"], cap, r["stats"], fp, cosmo),
                ),
            )
        )
        for prune, tabs in r["v2"].items():
            tasks.append(
                WriteTask(
                    "v2",
                    paths["desivast"] / f"DESIVAST_BGS_VOLLIM_V2_{prune}_{cap}.fits",
                    (
                        _columns(tabs["voids"]),
                        _columns(tabs["zonevoid"]),
                        _columns(r["galzone"]),
                        _v2_header(cfg, cap, fp, cosmo, r["bounds"]),
                    ),
                    {"pruning": prune},
                )
            )
    # the biggest files first, so that two workers finish together
    size = {"fastspec": 0, "zcatalog": 1, "v2": 2, "voidfinder": 3}
    return sorted(tasks, key=lambda t: (size[t.kind], t.path.name))


def _zall(parts: list[pa.Table]) -> pa.Table:
    """Concatenate zcatalog rows and recompute the duplicate bookkeeping columns."""
    names = [c for c in parts[0].column_names if all(c in p.column_names for p in parts)]
    types = {}
    for p in parts:
        for f in p.schema:
            types.setdefault(f.name, f.type)
    extra = sorted(set(types) - set(names))
    tables = []
    for p in parts:
        t = p.select(names)
        for c in extra:
            col = p.column(c) if c in p.column_names else pa.nulls(p.num_rows, types[c])
            if col.type != types[c]:
                col = col.cast(types[c])
            t = t.append_column(c, col)
        tables.append(t)
    t = pa.concat_tables(tables, promote_options="permissive")
    tid = t.column("TARGETID").to_numpy()
    survey = np.array(t.column("SURVEY").to_pylist())
    tsnr = (
        np.nan_to_num(t.column("TSNR2_BGS").to_numpy(zero_copy_only=False).astype(float))
        if "TSNR2_BGS" in t.column_names
        else np.zeros(len(tid))
    )
    order = np.lexsort((-tsnr, tid))
    first = np.r_[True, tid[order][1:] != tid[order][:-1]]
    primary = np.zeros(len(tid), bool)
    primary[order[first]] = True
    _, inv, counts = np.unique(tid, return_inverse=True, return_counts=True)
    is_sv = np.char.startswith(survey.astype(str), "sv")
    is_main = survey == "main"
    sv_n = np.bincount(inv, weights=is_sv, minlength=len(counts))[inv]
    main_n = np.bincount(inv, weights=is_main, minlength=len(counts))[inv]
    cols = {
        "ZCAT_NSPEC": counts[inv].astype(np.int16),
        "ZCAT_PRIMARY": primary,
        "SV_NSPEC": sv_n.astype(np.int16),
        "SV_PRIMARY": is_sv,
        "MAIN_NSPEC": main_n.astype(np.int16),
        "MAIN_PRIMARY": is_main,
    }
    for k, v in cols.items():
        if k in t.column_names:
            t = t.drop_columns([k])
        t = t.append_column(k, pa.array(v))
    return t


def _merge(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys = list(parts[0])
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


_TRUTH_DOCS = {
    "TARGETID": "DESI-encoded target id (OBJID | BRICKID<<22 | RELEASE<<42; OBJID < 2**21 for galaxies)",
    "CAP": "NGC or SGC (DESIVAST split: NGC = 83 < RA < 304 deg)",
    "RA": "Right ascension [deg] (TARGET_RA)",
    "DEC": "Declination [deg] (TARGET_DEC)",
    "Z_COSMO": "Cosmological redshift of the real-space position",
    "Z_TRUE": "True observed redshift: (1+Z_COSMO)(1+V_LOS/c)-1 (what a perfect spectrum gives)",
    "V_LOS": "Line-of-sight peculiar velocity [km/s]",
    "R_REAL": "Real-space comoving distance [Mpc/h]",
    "X_REAL": "Real-space x [Mpc/h]",
    "Y_REAL": "Real-space y [Mpc/h]",
    "Z_REAL": "Real-space z [Mpc/h]",
    "ENV_TRUE": "Web element the galaxy was placed in: 0 void, 1 wall, 2 filament, 3 node (drives the injection)",
    "NODE_ID": "Node (group/cluster) index for node galaxies, else -1",
    "VOID_CORE": "Void galaxy in an isolated (hard-core) place",
    "MASSIVE_POP": "From the massive population (log M* >= mass_split), else the sub-sampled low-mass one",
    "SAMPLING_WEIGHT": "Inverse sampling probability (1 for every possible tracer)",
    "LOGMSTAR_TRUE": "True log10 stellar mass [Msun], h = 1, Chabrier",
    "P_QUENCHED": "Injected probability of being quenched (f_Q(M*) x (1 - env_quenching) for ENV_TRUE void)",
    "QUENCHED_TRUE": "Drawn quenched state",
    "LOG_SSFR_TRUE": "True log10 specific SFR [1/yr]",
    "SFR_TRUE": "True SFR [Msun/yr], h = 1",
    "GR01_TRUE": "True ^0.1(g-r) colour",
    "ABSMAG_R_EVOL": "Evolution-corrected ^0.1 M_r - 5 log h (= DESIVAST's M_r without measurement noise)",
    "ABSMAG01_SDSS_R_TRUE": "True ABSMAG01_SDSS_R (FastSpecFit's adds 0.03 mag noise)",
    "RMAG_TRUE": "Extinction-free apparent r",
    "OBSERVED": "Got a fibre (in the zcatalog); unobserved targets exist only here",
    "P_OBS": "Probability of a fibre (passes and crowding): 1/P_OBS is the completeness weight",
    "NPASS": "Observed tiles covering the position",
    "IN_MASK": "Inside the completeness mask (void-finder survey)",
    "Z_CORRECT": "Catalogue Z is right (not a catastrophic failure or a star)",
    "IS_TRACER": "In the DESIVAST volume-limited tracer sample, by the recipe on catalogue values",
    "M_R_RECIPE": "ABSMAG01_SDSS_R (float32, as written) + 0.97 (Z - 0.1)",
    "VF_FIELD": "Tracer removed as a field galaxy by VoidFinder's 3rd-neighbour cut",
    "ENV_VOIDFINDER": "VAST flag from the VoidFinder holes: 0 wall, 1 void, 2 edge, 9 out, -1 unobserved",
    "VF_VOID": "VoidFinder void (MAXIMALS.VOID of its cap) containing the galaxy, else -1",
    "DIST_VF_REFF": "Distance to the nearest VoidFinder void centre in units of its R_EFF",
    "ENV_V2_REVOLVER": "VAST flag from V2 REVOLVER (zone of the nearest tracer's cell)",
    "ENV_V2_VIDE": "VAST flag from V2 VIDE (zone of the nearest tracer's cell)",
    "CELL_VOLUME": "Voronoi cell volume [(Mpc/h)^3] of tessellated tracers (0 = edge cell), else NaN",
}

_TRUTH_COLUMNS = (
    "TARGETID", "CAP", "RA", "DEC", "Z_COSMO", "Z_TRUE", "V_LOS", "R_REAL", "X_REAL", "Y_REAL", "Z_REAL",
    "ENV_TRUE", "NODE_ID", "VOID_CORE", "MASSIVE_POP", "SAMPLING_WEIGHT", "LOGMSTAR_TRUE", "P_QUENCHED",
    "QUENCHED_TRUE", "LOG_SSFR_TRUE", "SFR_TRUE", "GR01_TRUE", "ABSMAG_R_EVOL", "ABSMAG01_SDSS_R_TRUE",
    "RMAG_TRUE", "OBSERVED", "P_OBS", "NPASS", "IN_MASK", "Z_CORRECT", "IS_TRACER", "M_R_RECIPE", "VF_FIELD",
    "ENV_VOIDFINDER", "VF_VOID", "DIST_VF_REFF", "ENV_V2_REVOLVER", "ENV_V2_VIDE", "CELL_VOLUME",
)  # fmt: skip


def _summary(cfg, seed, results, qsample, spectra, templates, t_start) -> dict[str, Any]:
    """The content of ``truth/summary.json`` (no timings: files must be reproducible)."""
    caps = {r["cap"]: r["stats"] for r in results}
    tot = {k: sum(s[k] for s in caps.values()) for k in next(iter(caps.values()))}

    def frac(a: str, b: str) -> float:
        return tot[a] / tot[b] if tot[b] else float("nan")

    stats = {
        "void_volume_fraction": frac("randoms_in_void", "n_randoms"),
        "void_volume_fraction_interior": frac("randoms_interior_in_void", "randoms_interior"),
        "void_galaxy_fraction": frac("tracers_in_void", "n_tracers"),
        "void_galaxy_fraction_interior": frac("tracers_interior_in_void", "tracers_interior"),
        "void_volume_fraction_buffered": frac("randoms_buffered_in_void", "randoms_buffered"),
        "void_galaxy_fraction_buffered": frac("tracers_buffered_in_void", "tracers_buffered"),
        "field_fraction": frac("n_field", "n_tracers"),
    }
    stats["void_density_contrast"] = stats["void_galaxy_fraction"] / stats["void_volume_fraction"] - 1.0
    summary = {
        "scale": cfg.scale,
        "seed": seed,
        "spectra": spectra,
        "templates": templates,
        "env_quenching": cfg.env_quenching,
        "cosmology": {"OMEGAM": cfg.omega_m, "HP": cfg.h},
        "counts": tot,
        "caps": caps,
        "statistics": stats,
        "published": {
            "desivast_ngc_tracers": 364_058,
            "desivast_ngc_area_deg2": 2446,
            "voidfinder_ngc_voids": 3241,
            "voidfinder_ngc_holes": 89_003,
            "voidfinder_sgc_voids": 524,
            "voidfinder_sgc_holes": 12_860,
            "pan2012_void_volume_fraction": 0.60,
            "pan2012_void_galaxy_fraction": 0.07,
        },
        "config": cfg.to_dict(),
    }
    if qsample is not None:
        summary["quasars"] = {"n": int(qsample.zcatalog.num_rows), "templates": qsample.templates}
    return summary


def _write_truth(cfg, seed, results, qsample, paths, summary) -> list[Path]:
    files: list[Path] = []
    g = _merge([r["galaxies"] for r in results])
    meta = {"scale": cfg.scale, "seed": seed, "env_quenching": cfg.env_quenching}
    table = _columns({k: g[k] for k in _TRUTH_COLUMNS})
    files.append(write_parquet(paths["truth"] / "galaxies.parquet", table, _TRUTH_DOCS, meta))
    holes = []
    zones = []
    for r in results:
        m = r["vf"]["members"]
        holes.append(
            pa.table(
                {
                    "CAP": pa.array([r["cap"]] * len(m), pa.string()),
                    "HOLE": np.arange(len(m), dtype=np.int64),
                    "VOID": r["vf"]["holes"]["VOID"],
                    **{f"TARGETID_{i + 1}": m[:, i] if len(m) else np.zeros(0, np.int64) for i in range(4)},
                }
            )
        )
        zt = r["zones_truth"]
        zones.append(pa.table({"CAP": pa.array([r["cap"]] * len(zt["ZONE"]), pa.string()), **zt}))
    files.append(
        write_parquet(
            paths["truth"] / "voidfinder_holes.parquet",
            pa.concat_tables(holes),
            {"HOLE": "Row of the cap's HOLES HDU", "VOID": "HOLES.VOID", "TARGETID_1": "Tracer on the hole surface"},
            meta,
        )
    )
    membership = []
    for r in results:
        for prune, tabs in r["v2"].items():
            m = tabs["members"]
            membership.append(
                pa.table(
                    {
                        "CAP": pa.array([r["cap"]] * len(m), pa.string()),
                        "PRUNING": pa.array([prune] * len(m), pa.string()),
                        "VOID": m[:, 0],
                        "ZONE": m[:, 1],
                    }
                )
            )
    files.append(
        write_parquet(
            paths["truth"] / "v2_void_zones.parquet",
            pa.concat_tables(membership),
            {"VOID": "VOIDS.VOID of the cap's file for this pruning", "ZONE": "A zone of that void"},
            meta,
        )
    )
    files.append(
        write_parquet(
            paths["truth"] / "v2_zones.parquet",
            pa.concat_tables(zones),
            {
                "ZONE_VOLUME": "Sum of the zone's Voronoi cell volumes [(Mpc/h)^3]",
                "CORE_VOLUME": "Volume of the zone's largest cell",
                "VOID_REVOLVER": "ZONEVOID.VOID0 in the REVOLVER file",
                "VOID_VIDE": "ZONEVOID.VOID0 in the VIDE file",
            },
            meta,
        )
    )
    if qsample is not None:
        for name, t in qsample.truth.items():
            files.append(write_parquet(paths["truth"] / f"{name}.parquet", t, None, meta))
    files.append(write_json(paths["truth"] / "summary.json", summary))
    return files


def check_scale(scale: str) -> None:
    """Raise a ConfigError for an unknown scale name."""
    from desilab.sample.config import SCALES

    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}", parameter="--scale")


_ = lss  # re-exported for type references in docs
