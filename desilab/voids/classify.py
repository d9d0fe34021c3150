"""Environment of every galaxy under every void finder loaded (one row per galaxy).

:func:`classify_galaxies` places galaxies in the void catalogs' own frame
(:mod:`desilab.voids.coords`), then gives each galaxy

* ``ENV_VOIDFINDER`` (VAST codes 0 wall, 1 void, 2 edge, 9 outside; edge by the
  chosen rule, VAST's six-point probe by default), ``VF_VOID`` (global void row, −1),
  ``VF_SHELL`` (within the boundary tolerance of a hole surface, inside none),
  ``DIST_VF_REFF`` (distance to the nearest VoidFinder centre in units of its R_EFF);
* per V² pruning ``P``: ``ENV_V2_P``, ``V2_P_VOID0``/``V2_P_VOID1`` (ZOBOV: VOID0 the
  smallest void holding the zone, VOID1 the largest), ``V2_P_JOINED`` (GALZONE TARGET
  join; otherwise the nearest tracer's Voronoi cell), ``DIST_V2_P_RADIUS``;
* ``EDGE_PROBE`` (VAST ±10 Mpc/h six-point probe) and ``EDGE_BUFFER`` (DESIVAST 30 Mpc/h
  buffer) for every galaxy, whichever rule the ENV flags used;
* ``OUT_OF_Z`` (outside the catalogs' [ZLIML, ZLIMU]), ``IS_TRACER`` and
  ``EXTRAPOLATED`` (not in the volume-limited tracer sample: classified geometrically,
  beyond what the published catalogs describe).

The heavy per-galaxy steps (VoidFinder flags; edge flags, distances and V² nearest-tracer
queries: :func:`galaxy_geometry`) are sharded into contiguous galaxy ranges and mapped
through a :mod:`desilab.compute` executor (the work per shard is deterministic; no
randomness is involved), so the output is the same for any executor or worker count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.errors import InputError
from desilab.voids.catalogs import VoidSet
from desilab.voids.coords import sky_to_xyz
from desilab.voids.membership import (
    EDGE_BUFFER,
    EDGE_PROBE,
    SHARD_SIZE,
    SurveyMask,
    classify_voidfinder,
    edge_flags,
    nearest_tracer,
    nearest_void_distance,
    numba_threads,
    shard_plan,
    v2_flags,
    v2_membership,
)

__all__ = ["COLUMN_DOCS", "GeometryShard", "agreement", "classify_galaxies", "galaxy_geometry"]

COLUMN_DOCS: dict[str, tuple[str, str]] = {
    "TARGETID": ("", "DESI target id"),
    "RA": ("deg", "Right ascension used"),
    "DEC": ("deg", "Declination used"),
    "Z": ("", "Redshift used"),
    "X": ("Mpc h-1", "Comoving x in the void catalogs' cosmology (OMEGAM, HP of their header)"),
    "Y": ("Mpc h-1", "Comoving y"),
    "ZC": ("Mpc h-1", "Comoving z (Cartesian; named ZC to avoid clashing with redshift Z)"),
    "ENV_VOIDFINDER": ("", "VoidFinder flag: 0 wall, 1 void (inside a hole by more than the tolerance), 2 edge, 9 out"),
    "VF_VOID": ("", "Row of the void (MAXIMALS, all caps concatenated) whose hole contains the galaxy, -1 none"),
    "VF_SHELL": ("", "Within the boundary tolerance of a hole surface and inside no hole (counted as wall)"),
    "DIST_VF_REFF": ("", "Distance to the nearest VoidFinder void centre in units of its R_EFF"),
    "EDGE_PROBE": ("", "VAST edge test: a point +-10 Mpc/h along x, y or z is outside the survey"),
    "EDGE_BUFFER": ("", "DESIVAST edge test: within 30 Mpc/h of the survey boundary"),
    "OUT_OF_Z": ("", "Redshift outside the catalogs' [ZLIML, ZLIMU]"),
    "IS_TRACER": ("", "In the volume-limited tracer sample (recipe, or GALZONE OUT == 0 when no recipe columns)"),
    "EXTRAPOLATED": ("", "Not a tracer: classified geometrically beyond what the published catalogs describe"),
}


def _v2_docs(p: str) -> dict[str, tuple[str, str]]:
    return {
        f"ENV_V2_{p}": ("", f"V2 {p} flag: 0 wall, 1 void (zone with VOID0 >= 0), 2 edge, 9 out"),
        f"V2_{p}_VOID0": ("", "Smallest void containing the galaxy's zone (rows of VOIDS, caps concatenated), -1"),
        f"V2_{p}_VOID1": ("", "Largest void containing the zone (differs from VOID0 only for ZOBOV), -1"),
        f"V2_{p}_JOINED": ("", "Zone from the GALZONE TARGET join (else from the nearest tracer's Voronoi cell)"),
        f"DIST_V2_{p}_RADIUS": ("", f"Distance to the nearest V2 {p} void centre in units of its RADIUS"),
    }


@dataclass(frozen=True)
class GeometryShard:
    """Edge flags, void-centre distances and nearest V² tracers of one galaxy range (picklable).

    Attributes
    ----------
    shard_id
        Position of the range (shards are returned in this order).
    xyz
        (n, 3) positions of the range [Mpc/h].
    survey, theta
        Survey volume and its :meth:`~desilab.voids.membership.SurveyMask.edge_angles`.
    voids
        ``(centres, radii)`` per catalog whose ``DIST_*`` column is wanted.
    tracers
        GALZONE positions per V² catalog: the nearest one's row is wanted for every galaxy
        (the Voronoi cell of galaxies the TARGETID join does not match).
    threads
        numba threads of this shard (``None``: this process's setting).
    kd_workers
        Threads for the KD-tree queries (−1: all cores).
    """

    shard_id: int
    xyz: np.ndarray
    survey: SurveyMask
    theta: np.ndarray
    voids: tuple[tuple[np.ndarray, np.ndarray], ...]
    threads: int | None = None
    kd_workers: int = -1
    tracers: tuple[np.ndarray, ...] = ()


def galaxy_geometry(shard: GeometryShard) -> dict[str, Any]:
    """Run one :class:`GeometryShard`: edge flags, void-centre distances, nearest tracers.

    Returns
    -------
    dict
        ``edge_probe``, ``edge_buffer`` (bool), ``dist`` (list of float64 arrays, one per
        ``shard.voids`` entry, in units of the void's radius) and ``nearest`` (list of
        int64 GALZONE rows, one per ``shard.tracers`` entry).
    """
    with numba_threads(shard.threads):
        probe = edge_flags(shard.xyz, shard.survey, rule="probe", edge_theta=shard.theta)
        buffer = edge_flags(shard.xyz, shard.survey, rule="buffer", edge_theta=shard.theta)
        dist = [nearest_void_distance(shard.xyz, c, r, workers=shard.kd_workers)[0] for c, r in shard.voids]
        nearest = [nearest_tracer(shard.xyz, t, workers=shard.kd_workers) for t in shard.tracers]
    return {"edge_probe": probe, "edge_buffer": buffer, "dist": dist, "nearest": nearest}


def _geometry(
    xyz: np.ndarray, survey: SurveyMask, theta: np.ndarray, voids: list[tuple[np.ndarray, np.ndarray]],
    tracers: list[np.ndarray], executor: Any, shard_size: int, workers: int,
) -> dict[str, Any]:
    """:func:`galaxy_geometry` over contiguous shards through *executor*, concatenated in order."""
    from desilab.compute import SerialExecutor

    ex = executor if executor is not None else SerialExecutor()
    ranges, threads, remote = shard_plan(len(xyz), ex, shard_size)
    shards = [
        GeometryShard(i, xyz[a:b], survey, theta, tuple(voids), threads, threads if remote else max(1, workers),
                      tuple(tracers))
        for i, (a, b) in enumerate(ranges)
    ]
    parts = ex.map(galaxy_geometry, shards, desc="edge flags and distances")
    return {
        "edge_probe": np.concatenate([p["edge_probe"] for p in parts]),
        "edge_buffer": np.concatenate([p["edge_buffer"] for p in parts]),
        "dist": [np.concatenate([p["dist"][k] for p in parts]) for k in range(len(voids))],
        "nearest": [np.concatenate([p["nearest"][k] for p in parts]) for k in range(len(tracers))],
    }


def classify_galaxies(
    targetid: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    z: np.ndarray,
    voids: VoidSet,
    *,
    is_tracer: np.ndarray | None = None,
    edge_rule: str = "probe",
    edge_distance: float | None = None,
    workers: int = 1,
    executor: Any = None,
    shard_size: int = SHARD_SIZE,
) -> tuple[pa.Table, dict[str, Any]]:
    """Classify galaxies against every loaded catalog (module docstring).

    Parameters
    ----------
    targetid, ra, dec, z
        Galaxies (degrees; redshift).
    voids
        :func:`~desilab.voids.catalogs.load_void_catalogs`; its survey mask is built here
        when missing (:meth:`VoidSet.build_survey`).
    is_tracer
        Tracer-sample flag (:func:`~desilab.voids.sample.select_tracers`); default: the
        galaxy's TARGETID is a GALZONE TARGET with OUT == 0 and its z is in range.
    edge_rule, edge_distance
        Rule of the code-2 flags: ``"probe"`` (VAST, ±10 Mpc/h) or ``"buffer"``
        (DESIVAST, 30 Mpc/h).
    workers
        Threads for KD-tree queries (in this process).
    executor, shard_size
        :mod:`desilab.compute` executor for the heavy per-galaxy steps — VoidFinder flags
        (:func:`~desilab.voids.membership.classify_voidfinder`), both edge rules, the
        distances to void centres and the V² nearest-tracer (Voronoi cell) queries
        (:func:`galaxy_geometry`) — sharded into contiguous
        ranges of ``shard_size`` galaxies (:func:`~desilab.voids.membership.shard_plan`);
        ``None``: in this process. The table is identical for any executor.

    Returns
    -------
    table, summary
        One row per galaxy (:data:`COLUMN_DOCS`), and counts (shell galaxies, flags per
        finder, out-of-range galaxies, the rule used).

    Raises
    ------
    InputError
        Mismatched lengths, or *every* galaxy outside the catalogs' redshift range.
        (Individual galaxies with non-finite, negative or out-of-range Z are kept,
        flagged ``OUT_OF_Z`` and given flag 9.)
    """
    n = len(targetid)
    if not (len(ra) == len(dec) == len(z) == n):
        raise InputError("TARGETID, RA, DEC and Z must have the same length", column="Z")
    zz = np.asarray(z, dtype=np.float64)
    bad = ~np.isfinite(zz) | (zz < 0)
    if np.isnan(zz).all() and n:
        raise InputError("every Z is NaN", column="Z")
    with np.errstate(invalid="ignore"):
        out_z = bad | (zz < voids.z_min) | (zz > voids.z_max)
    if n and out_z.all():
        raise InputError(
            f"all {n} galaxies lie outside the void catalogs' redshift range [{voids.z_min}, {voids.z_max}]",
            column="Z", hint="are these the right galaxies for these void catalogs?",
        )
    xyz = sky_to_xyz(ra, dec, np.where(bad, 0.0, zz), voids.cosmology)  # out-of-range rows get flag 9 below
    tid = np.asarray(targetid, dtype=np.int64)
    survey = voids.survey or voids.build_survey(xyz[~out_z] if is_tracer is None else xyz[np.asarray(is_tracer)])
    theta = survey.edge_angles()
    cols: dict[str, np.ndarray] = {
        "TARGETID": tid, "RA": np.asarray(ra, np.float64) % 360.0, "DEC": np.asarray(dec, np.float64), "Z": zz,
        "X": xyz[:, 0], "Y": xyz[:, 1], "ZC": xyz[:, 2],
    }
    summary: dict[str, Any] = {
        "n_galaxies": n,
        "edge_rule": edge_rule,
        "edge_distance": edge_distance
        if edge_distance is not None
        else (EDGE_PROBE if edge_rule == "probe" else EDGE_BUFFER),
        "cosmology": {
            "OMEGAM": voids.cosmology.omega_m,
            "HP": voids.cosmology.h,
            "units": "Mpc/h" if voids.cosmology.h == 1 else "Mpc",
        },
        "survey_mask": {
            "nside": survey.nside,
            "pixels": int(survey.mask.sum()),
            "d_min": survey.d_min,
            "d_max": survey.d_max,
        },
        "out_of_z": int(out_z.sum()),
        "bad_z": int(bad.sum()),
        "z_range": [voids.z_min, voids.z_max],
    }
    docs = dict(COLUMN_DOCS)
    # edge flags of both rules, every DIST_* column and the nearest V2 tracers: one pass over sharded galaxies
    centres: list[tuple[np.ndarray, np.ndarray]] = []
    if voids.voidfinder is not None:
        centres.append((voids.voidfinder.void_xyz, voids.voidfinder.void_reff))
    dist_index = {}
    tracers = []
    for prune, s in sorted(voids.v2.items()):
        dist_index[prune] = len(centres)
        centres.append((s.void_xyz, s.void_radius))
        tracers.append(s.gz_xyz)
    n_vf = 1 if voids.voidfinder is not None else 0
    geo = _geometry(xyz, survey, theta, centres, tracers, executor, shard_size, workers)
    if voids.voidfinder is not None:
        vf = voids.voidfinder
        res = classify_voidfinder(
            xyz, vf.grid, survey, rule=edge_rule, distance=edge_distance, edge_theta=theta, executor=executor,
            shard_size=shard_size,
        )
        void_row = np.where(res.hole >= 0, vf.hole_void[np.maximum(res.hole, 0)], -1)
        dist = geo["dist"][0]
        res.flag[bad] = 9
        cols["ENV_VOIDFINDER"] = res.flag
        cols["VF_VOID"] = void_row
        cols["VF_SHELL"] = res.shell
        cols["DIST_VF_REFF"] = dist
        summary["voidfinder"] = {
            "files": vf.files,
            "holes": len(vf.hole_radius),
            "voids": len(vf.void_reff),
            "boundary_tol": vf.grid.tol,
            "shell_galaxies": int(res.shell.sum()),
            "flags": _counts(res.flag),
        }
    in_tracer_gz = np.zeros(n, dtype=bool)
    for prune, s in sorted(voids.v2.items()):
        m = v2_membership(tid, xyz, s.gz_target, s.gz_xyz, s.gz_zone, s.gz_out, s.zone_key, s.zone_void0,
                          s.zone_void1, workers=workers, nearest=geo["nearest"][dist_index[prune] - n_vf])
        flag = v2_flags(m["in_void"], xyz, survey, rule=edge_rule, distance=edge_distance, edge_theta=theta,
                        gz_out=m["gz_out"] & m["joined"])
        flag[bad] = 9
        dist = geo["dist"][dist_index[prune]]
        cols[f"ENV_V2_{prune}"] = flag
        cols[f"V2_{prune}_VOID0"] = m["void0"]
        cols[f"V2_{prune}_VOID1"] = m["void1"]
        cols[f"V2_{prune}_JOINED"] = m["joined"]
        cols[f"DIST_V2_{prune}_RADIUS"] = dist
        docs.update(_v2_docs(prune))
        in_tracer_gz |= m["joined"] & ~m["gz_out"]
        summary[f"v2_{prune.lower()}"] = {
            "files": s.files,
            "voids": len(s.void_radius),
            "joined": int(m["joined"].sum()),
            "flags": _counts(flag),
        }
    cols["EDGE_PROBE"] = geo["edge_probe"]
    cols["EDGE_BUFFER"] = geo["edge_buffer"]
    cols["OUT_OF_Z"] = out_z
    if is_tracer is None:
        tracer = in_tracer_gz & ~out_z
        summary["tracer_source"] = "GALZONE TARGET with OUT == 0 (no recipe columns given)"
    else:
        tracer = np.asarray(is_tracer, dtype=bool) & ~out_z & survey.contains(xyz)
        summary["tracer_source"] = (
            "DESIVAST recipe (desilab.voids.sample.select_tracers) inside the survey mask and distance limits"
        )
    cols["IS_TRACER"] = tracer
    cols["EXTRAPOLATED"] = ~tracer
    summary["tracers"] = int(tracer.sum())
    summary["agreement"] = agreement(cols)
    fields = []
    arrays = []
    for k, v in cols.items():
        unit, desc = docs.get(k, ("", ""))
        meta = {b"description": desc.encode()}
        if unit:
            meta[b"unit"] = unit.encode()
        arr = pa.array(v)
        fields.append(pa.field(k, arr.type, metadata=meta))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)), summary


def _counts(flag: np.ndarray) -> dict[str, int]:
    u, c = np.unique(flag, return_counts=True)
    return {str(int(a)): int(b) for a, b in zip(u, c, strict=False)}


def agreement(cols: dict[str, np.ndarray] | pa.Table) -> dict[str, Any]:
    """Pairwise agreement between finders on galaxies both call void or wall (flags 0/1).

    Returns, per pair, the fraction of galaxies with the same label, the number compared,
    and Cohen's kappa (agreement beyond chance).
    """
    if isinstance(cols, pa.Table):
        cols = {k: cols.column(k).to_numpy() for k in cols.column_names if k.startswith("ENV_")}
    names = [k for k in cols if k.startswith("ENV_")]
    out: dict[str, Any] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = np.asarray(cols[a]), np.asarray(cols[b])
            ok = np.isin(fa, (0, 1)) & np.isin(fb, (0, 1))
            if not ok.any():
                continue
            va, vb = fa[ok] == 1, fb[ok] == 1
            po = float(np.mean(va == vb))
            pa_, pb_ = va.mean(), vb.mean()
            pe = pa_ * pb_ + (1 - pa_) * (1 - pb_)
            kappa = float((po - pe) / (1 - pe)) if pe < 1 else 1.0
            out[f"{a} vs {b}"] = {"same_label": po, "n": int(ok.sum()), "kappa": kappa}
    return out

