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

Chunks of galaxies can be mapped through :mod:`desilab.compute` (the work per chunk is
deterministic; no randomness is involved).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from desilab.errors import InputError
from desilab.voids.catalogs import VoidSet
from desilab.voids.coords import sky_to_xyz
from desilab.voids.membership import (
    EDGE_BUFFER,
    EDGE_PROBE,
    classify_voidfinder,
    edge_flags,
    nearest_void_distance,
    v2_flags,
    v2_membership,
)

__all__ = ["COLUMN_DOCS", "agreement", "classify_galaxies"]

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
        Threads for KD-tree queries.

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
    if voids.voidfinder is not None:
        vf = voids.voidfinder
        res = classify_voidfinder(xyz, vf.grid, survey, rule=edge_rule, distance=edge_distance, edge_theta=theta)
        void_row = np.where(res.hole >= 0, vf.hole_void[np.maximum(res.hole, 0)], -1)
        dist, _ = nearest_void_distance(xyz, vf.void_xyz, vf.void_reff, workers=workers)
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
                          s.zone_void1, workers=workers)
        flag = v2_flags(m["in_void"], xyz, survey, rule=edge_rule, distance=edge_distance, edge_theta=theta,
                        gz_out=m["gz_out"] & m["joined"])
        flag[bad] = 9
        dist, _ = nearest_void_distance(xyz, s.void_xyz, s.void_radius, workers=workers)
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
    cols["EDGE_PROBE"] = edge_flags(xyz, survey, rule="probe")
    cols["EDGE_BUFFER"] = edge_flags(xyz, survey, rule="buffer", edge_theta=theta)
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

