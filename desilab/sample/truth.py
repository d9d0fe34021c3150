"""Truth tables of the sample sky: what the mock *is*, for injection–recovery tests.

Three kinds of truth, all written under ``truth/`` (Parquet, one file per table, each
column documented in its field metadata and in ``docs/sample-sky.md``):

* ``galaxies.parquet`` — one row per BGS target galaxy (observed or not): true position
  and redshift, web element (``ENV_TRUE``), true stellar mass and star formation, the
  **injected quenching probability** ``P_QUENCHED``, observation flags, the tracer flag,
  and the environment that the void catalogues give it (``ENV_VOIDFINDER``,
  ``ENV_V2_REVOLVER``, ``ENV_V2_VIDE``, VAST flag codes 0 wall, 1 void, 2 edge, 9 out).
* ``voidfinder_holes.parquet`` — per hole, the TARGETIDs of the four tracers on its surface.
* ``v2_zones.parquet`` — per zone, its volume (sum of Voronoi cells), its core-cell volume
  and the void it belongs to in each pruning; with ``CELL_VOLUME`` in ``galaxies.parquet``
  this lets a test re-add zone volumes to void volumes.
* ``summary.json`` — configuration, seed, counts, and the measured void statistics.

Classification here is the *reference*: brute force, float64, with the boundary
tolerance :data:`BOUNDARY_TOL` — galaxies on a hole's surface (the four that bound it) are
wall galaxies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.spatial import cKDTree

from desilab.io.fits import atomic_output
from desilab.sample.voids import Survey, points_in_spheres

__all__ = [
    "BOUNDARY_TOL",
    "ENV_EDGE",
    "ENV_OUT",
    "ENV_VOID",
    "ENV_WALL",
    "classify_v2",
    "classify_voidfinder",
    "nearest_void_distance",
    "write_json",
    "write_parquet",
]

#: VAST flag codes.
ENV_WALL, ENV_VOID, ENV_EDGE, ENV_OUT = 0, 1, 2, 9

#: Boundary tolerance [Mpc/h] of the reference classification: a galaxy is inside a hole
#: when ``|x − c| < R − BOUNDARY_TOL``. The four galaxies defining a hole lie on its
#: surface to ~1e-12 Mpc/h; 1e-6 Mpc/h separates them from interior galaxies with a
#: margin of 6 orders of magnitude either way.
BOUNDARY_TOL = 1e-6


def classify_voidfinder(
    xyz: np.ndarray, centres: np.ndarray, radii: np.ndarray, survey: Survey, *, edge_probe: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """VAST ``determine_vflag`` on points: 1 inside a hole, 9 outside, 2 edge, 0 wall.

    Parameters
    ----------
    xyz
        (n, 3) positions [Mpc/h] (redshift space, catalogue cosmology).
    centres, radii
        VoidFinder holes.
    survey
        The survey volume (mask and distance limits).
    edge_probe
        VAST's six-point edge probe distance [Mpc/h].

    Returns
    -------
    flag, hole
        Flag per point and the index of a hole containing it (−1 if none).
    """
    hole = points_in_spheres(xyz, centres, radii, tol=BOUNDARY_TOL)
    flag = np.full(len(xyz), ENV_WALL, dtype=np.int16)
    inside = survey.contains(xyz) if len(xyz) else np.zeros(0, bool)
    edge = survey.edge_probe(xyz, edge_probe) if len(xyz) else np.zeros(0, bool)
    flag[edge] = ENV_EDGE
    flag[~inside] = ENV_OUT
    flag[hole >= 0] = ENV_VOID
    return flag, hole


def classify_v2(
    xyz: np.ndarray,
    tess_xyz: np.ndarray,
    tess_zone: np.ndarray,
    zone_void: np.ndarray,
    survey: Survey,
    *,
    edge_probe: float = 10.0,
) -> np.ndarray:
    """V² environment of points via the Voronoi cell (nearest tessellated galaxy) they fall in.

    1 if the cell's zone belongs to a void (VOID0 ≥ 0), 9 outside the survey, 2 near the
    edge (six-point probe), else 0.
    """
    flag = np.full(len(xyz), ENV_WALL, dtype=np.int16)
    if len(xyz) == 0:
        return flag
    if len(tess_xyz):
        _, nn = cKDTree(tess_xyz).query(xyz, k=1)
        z = tess_zone[nn]
        in_void = (z >= 0) & (zone_void[np.maximum(z, 0)] >= 0) if len(zone_void) else np.zeros(len(xyz), bool)
    else:
        in_void = np.zeros(len(xyz), bool)
    inside = survey.contains(xyz)
    flag[survey.edge_probe(xyz, edge_probe)] = ENV_EDGE
    flag[~inside] = ENV_OUT
    flag[in_void & inside] = ENV_VOID
    return flag


def nearest_void_distance(xyz: np.ndarray, centres: np.ndarray, radii: np.ndarray, k: int = 8) -> np.ndarray:
    """Distance to the nearest void centre in units of that void's radius (min over k nearest)."""
    if len(centres) == 0 or len(xyz) == 0:
        return np.full(len(xyz), np.inf)
    k = min(k, len(centres))
    d, i = cKDTree(centres).query(xyz, k=k)
    d = d.reshape(len(xyz), k)
    i = i.reshape(len(xyz), k)
    return np.min(d / radii[i], axis=1)


def write_parquet(
    path: Path, table: pa.Table, docs: dict[str, str] | None = None, meta: dict[str, Any] | None = None
) -> Path:
    """Write a truth table as Parquet, deterministically (fixed options, no timestamps).

    Column descriptions go into each field's metadata (``description``), *meta* into the
    schema metadata as JSON.
    """
    docs = docs or {}
    fields = []
    for f in table.schema:
        md = dict(f.metadata or {})
        if f.name in docs:
            md[b"description"] = docs[f.name].encode()
        fields.append(f.with_metadata(md))
    schema = pa.schema(fields, metadata={b"desilab": json.dumps(meta or {}, sort_keys=True, default=str).encode()})
    table = table.cast(schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False, use_dictionary=False)
    return path


def write_json(path: Path, obj: Any) -> Path:
    """Deterministic JSON (sorted keys, fixed float formatting by ``json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
