"""Void catalogs prepared for classification (thin driver over :mod:`desilab.io.desivast`).

One :class:`VoidSet` holds every catalog of a run — VoidFinder holes of all caps in one
grid, each V² pruning's GALZONE/ZONEVOID of all caps — in the *catalogs' own*
cosmology (all files must declare the same OMEGAM/HP, else a FormatError), with every
file's centres checked against its declaration (:func:`desilab.voids.coords.check_catalog_distances`).

The survey mask: the DR1 files carry none. As VAST does when it has to
(``generate_mask`` from the galaxy positions), the mask is the set of HEALPix pixels
(NESTED, nside = ``MSKRES`` of the VoidFinder header, else ``NSIDE`` of the V² header,
else 64) holding at least one in-mask tracer — GALZONE rows with ``OUT == 0`` when a V²
file is given, else the tracer galaxies supplied by the caller; the distance limits are
``DLIML``/``DLIMU``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desilab.errors import FormatError, InputError
from desilab.io.desivast import read_v2, read_voidfinder
from desilab.io.validate import identify
from desilab.sky.cosmology import Cosmology
from desilab.voids.coords import CENTRE_TOL, catalog_cosmology, check_catalog_distances
from desilab.voids.membership import BOUNDARY_TOL, HoleGrid, SurveyMask

__all__ = ["V2Set", "VoidFinderSet", "VoidSet", "load_void_catalogs", "voidset_from_store"]

_CAP = re.compile(r"_(NGC|SGC)\b", re.IGNORECASE)


def _col(table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False))


@dataclass
class VoidFinderSet:
    """VoidFinder holes and voids of all caps (void ids made unique by ``cap_index``)."""

    hole_xyz: np.ndarray
    hole_radius: np.ndarray
    hole_void: np.ndarray  # global void row
    void_xyz: np.ndarray
    void_reff: np.ndarray
    void_radius: np.ndarray
    void_id: np.ndarray  # VOID column within its file
    void_edge: np.ndarray
    void_cap: np.ndarray
    files: list[str]
    grid: HoleGrid | None = None


@dataclass
class V2Set:
    """One V² pruning (REVOLVER, VIDE, ZOBOV) over all caps; zones made unique per file."""

    pruning: str
    gz_target: np.ndarray
    gz_xyz: np.ndarray
    gz_zone: np.ndarray  # global zone key = file_index * 2**32 + ZONE (−1 kept)
    gz_out: np.ndarray
    zone_key: np.ndarray
    zone_void0: np.ndarray
    zone_void1: np.ndarray
    void_xyz: np.ndarray
    void_radius: np.ndarray
    files: list[str]


@dataclass
class VoidSet:
    """Everything a classification needs."""

    cosmology: Cosmology
    header: dict
    voidfinder: VoidFinderSet | None
    v2: dict[str, V2Set] = field(default_factory=dict)
    survey: SurveyMask | None = None
    z_min: float = 0.0
    z_max: float = np.inf
    mag_limit: float | None = None

    def build_survey(self, tracer_xyz: np.ndarray | None = None) -> SurveyMask:
        """The survey mask (module docstring); ``tracer_xyz`` is used when no V² file is loaded."""
        nside = int(self.header.get("MSKRES") or self.header.get("NSIDE") or 64)
        pts = None
        for s in self.v2.values():
            pts = s.gz_xyz[s.gz_out == 0]
            break
        if pts is None:
            if tracer_xyz is None or len(tracer_xyz) == 0:
                raise InputError(
                    "no V2 file and no tracer galaxies: cannot build the survey mask", parameter="voids"
                )
            pts = tracer_xyz
        d_lo = float(self.header.get("DLIML") or 0.0)
        d_hi = self.header.get("DLIMU")
        if d_hi is None:
            d_hi = float(np.linalg.norm(pts, axis=1).max())
        self.survey = SurveyMask.from_points(pts, nside, d_lo, float(d_hi))
        return self.survey


def _cap(path: Path) -> str:
    m = _CAP.search(path.name)
    return m.group(1).upper() if m else ""


def _vf_part(name: str, cap: str, header: dict, m: dict[str, np.ndarray], h: dict[str, np.ndarray],
             cosmo: Cosmology, check_tol: float) -> dict:
    """Checked VoidFinder arrays of one catalog (``m``/``h``: MAXIMALS/HOLES columns, upper-case)."""
    d_max = header.get("DLIMU")
    z_max = header.get("ZLIMU")
    mx = np.stack([m["X"], m["Y"], m["Z"]], axis=1).astype(np.float64)
    check_catalog_distances(
        mx, cosmo, r=m.get("R"), d_max=float(d_max) if d_max is not None else None,
        z_max=float(z_max) if z_max is not None else None, file=name, hdu="MAXIMALS", tol=check_tol,
    )
    hx = np.stack([h["X"], h["Y"], h["Z"]], axis=1).astype(np.float64)
    hrad = np.asarray(h["RADIUS"], np.float64)
    if len(hx) and d_max is not None:
        far = np.linalg.norm(hx, axis=1) - float(d_max)
        if far.max() > check_tol:
            raise FormatError(
                f"a hole centre lies {far.max():.3f} beyond DLIMU = {float(d_max):.3f} of the declared cosmology",
                file=name, hdu="HOLES", hint="distances must be in the units the header declares (HP = 1: Mpc/h)",
            )
    reff = m.get("R_EFF")
    return {
        "file": name, "cap": cap, "mx": mx,
        "reff": np.asarray(reff if reff is not None else m["RADIUS"], np.float64),
        "mrad": np.asarray(m["RADIUS"], np.float64), "mvoid": np.asarray(m["VOID"], np.int64),
        "medge": np.asarray(m.get("EDGE", np.zeros(len(mx))), np.int16),
        "hx": hx, "hrad": hrad, "hvoid": np.asarray(h["VOID"], np.int64),
    }


def _v2_part(name: str, fi: int, voids: dict, zonevoid: dict, galzone: dict, cosmo: Cosmology,
             check_tol: float) -> dict:
    """Checked V² arrays of one catalog (upper-case columns)."""
    vx = np.stack([voids["X"], voids["Y"], voids["Z"]], axis=1).astype(np.float64)
    check_catalog_distances(vx, cosmo, redshift=np.asarray(voids["REDSHIFT"]), file=name, hdu="VOIDS", tol=check_tol)
    return {
        "file": name, "fi": fi,
        "gt": np.asarray(galzone["TARGET"], np.int64),
        "gx": np.stack([galzone["X"], galzone["Y"], galzone["Z"]], axis=1).astype(np.float64),
        "gzone": np.asarray(galzone["ZONE"], np.int64), "gout": np.asarray(galzone["OUT"], np.int16),
        "zone": np.asarray(zonevoid["ZONE"], np.int64), "v0": np.asarray(zonevoid["VOID0"], np.int64),
        "v1": np.asarray(zonevoid["VOID1"], np.int64), "vx": vx, "vr": np.asarray(voids["RADIUS"], np.float64),
    }


def _merge_cosmology(cosmo: Cosmology | None, c: Cosmology, name: str) -> Cosmology:
    if cosmo is None:
        return c
    if abs(c.omega_m - cosmo.omega_m) > 1e-6 or abs(c.h - cosmo.h) > 1e-6:
        raise FormatError(
            f"catalog cosmology (OMEGAM={c.omega_m}, HP={c.h}) differs from the other catalogs' "
            f"(OMEGAM={cosmo.omega_m}, HP={cosmo.h})",
            file=name, hdu="PRIMARY",
        )
    return cosmo


def _table_dict(table) -> dict[str, np.ndarray]:
    return {c.upper(): _col(table, c) for c in table.column_names}


def load_void_catalogs(
    paths: Sequence[str | os.PathLike[str]], *, tol: float = BOUNDARY_TOL, check_tol: float = CENTRE_TOL
) -> VoidSet:
    """Read VoidFinder and V² files, check them, and prepare grids and joins.

    Parameters
    ----------
    paths
        DESIVAST ``*_VoidFinder_*.fits`` and ``*_V2_{REVOLVER,VIDE,ZOBOV}_*.fits`` files
        (any subset, any caps).
    tol
        Boundary tolerance of the hole grid [catalog units].
    check_tol
        Allowed deviation of centres from the declared cosmology [catalog units].

    Raises
    ------
    FormatError
        Unknown file kind, inconsistent cosmologies between files, centres that disagree
        with the declared cosmology (naming file and HDU).
    """
    if not paths:
        raise InputError("no void catalog given", parameter="voids")
    cosmo: Cosmology | None = None
    header: dict = {}
    vf_parts: list[dict] = []
    v2_parts: dict[str, list[dict]] = {}
    for fi, p in enumerate(Path(x) for x in paths):
        kind = identify(p)
        name = getattr(kind, "name", "")
        if name == "desivast-voidfinder":
            cat = read_voidfinder(p, ra_wrap=True)
        elif name == "desivast-v2":
            cat = read_v2(p, ("VOIDS", "ZONEVOID", "GALZONE"))
        else:
            raise FormatError(f"not a DESIVAST VoidFinder or V2 catalog (identified as {name or 'unknown'})", file=p)
        c = catalog_cosmology(cat.header, file=p)
        cosmo = _merge_cosmology(cosmo, c, str(p))
        for k, v in cat.header.items():
            header.setdefault(k, v)
        if name == "desivast-voidfinder":
            vf_parts.append(_vf_part(str(p), _cap(p), cat.header, _table_dict(cat.maximals), _table_dict(cat.holes),
                                     c, check_tol))
        else:
            prune = (cat.pruning or "V2").upper()
            v2_parts.setdefault(prune, []).append(
                _v2_part(str(p), fi, _table_dict(cat.voids), _table_dict(cat.zonevoid), _table_dict(cat.galzone), c,
                         check_tol)
            )
    return _assemble(cosmo, header, vf_parts, v2_parts, tol)


def voidset_from_store(store, *, tol: float = BOUNDARY_TOL, check_tol: float = CENTRE_TOL) -> VoidSet:
    """The same :class:`VoidSet` built from a store's void tables (``void_catalogs`` and friends).

    Rows are read in file order (``_file_id``, ``_row``), so hole indices and the
    lowest-index rule match the files.
    """
    import json

    sql = "SELECT catalog, cap, pruning, algorithm, header FROM void_catalogs ORDER BY catalog"
    cats = store.query(sql).to_pylist()
    if not cats:
        raise InputError("the store holds no void catalog (ingest DESIVAST files first)", parameter="store")
    cosmo: Cosmology | None = None
    header: dict = {}
    vf_parts: list[dict] = []
    v2_parts: dict[str, list[dict]] = {}

    def q(sql: str) -> dict[str, np.ndarray]:
        return _table_dict(store.query(sql))

    for fi, row in enumerate(cats):
        name = row["catalog"]
        hdr = json.loads(row["header"] or "{}")
        c = catalog_cosmology(hdr, file=name)
        cosmo = _merge_cosmology(cosmo, c, name)
        for k, v in hdr.items():
            header.setdefault(k, v)
        lit = name.replace("'", "''")
        if row["algorithm"] == "VoidFinder":
            m = q(f"SELECT x, y, z, radius, void, edge, r, r_eff FROM voidfinder_maximals WHERE catalog = '{lit}' "
                  "ORDER BY _row")
            h = q(f"SELECT x, y, z, radius, void FROM voidfinder_holes WHERE catalog = '{lit}' ORDER BY _row")
            if np.all(~np.isfinite(m.get("R_EFF", np.array([np.nan])))):
                m.pop("R_EFF", None)
            vf_parts.append(_vf_part(name, row["cap"] or "", hdr, m, h, c, check_tol))
        else:
            v = q(f"SELECT void, x, y, z, redshift, radius FROM v2_voids WHERE catalog = '{lit}' ORDER BY _row")
            zv = q(f"SELECT zone, void0, void1 FROM v2_zones WHERE catalog = '{lit}' ORDER BY _row")
            g = q(
                f"SELECT targetid AS target, x, y, z, zone, out FROM v2_galaxies WHERE catalog = '{lit}' ORDER BY _row"
            )
            prune = (row["pruning"] or "V2").upper()
            v2_parts.setdefault(prune, []).append(_v2_part(name, fi, v, zv, g, c, check_tol))
    return _assemble(cosmo, header, vf_parts, v2_parts, tol)


def _assemble(cosmo: Cosmology | None, header: dict, vf_parts: list[dict], v2_parts: dict[str, list[dict]],
              tol: float) -> VoidSet:
    assert cosmo is not None
    vf = None
    if vf_parts:
        void_off = np.cumsum([0] + [len(x["mx"]) for x in vf_parts])
        hole_void = []
        for k, x in enumerate(vf_parts):
            order = np.argsort(x["mvoid"])
            pos = np.searchsorted(x["mvoid"][order], x["hvoid"])
            pos = np.minimum(pos, max(len(order) - 1, 0))
            if len(x["hvoid"]) and (len(order) == 0 or not np.array_equal(x["mvoid"][order][pos], x["hvoid"])):
                raise FormatError("HOLES.VOID refers to a void missing from MAXIMALS", file=x["file"], hdu="HOLES",
                                  column="VOID")
            hole_void.append(order[pos] + void_off[k] if len(order) else np.zeros(0, np.int64))
        vf = VoidFinderSet(
            hole_xyz=np.vstack([x["hx"] for x in vf_parts]),
            hole_radius=np.concatenate([x["hrad"] for x in vf_parts]),
            hole_void=np.concatenate(hole_void).astype(np.int64),
            void_xyz=np.vstack([x["mx"] for x in vf_parts]),
            void_reff=np.concatenate([x["reff"] for x in vf_parts]),
            void_radius=np.concatenate([x["mrad"] for x in vf_parts]),
            void_id=np.concatenate([x["mvoid"] for x in vf_parts]),
            void_edge=np.concatenate([x["medge"] for x in vf_parts]),
            void_cap=np.concatenate([[x["cap"]] * len(x["mx"]) for x in vf_parts]),
            files=[x["file"] for x in vf_parts],
        )
        vf.grid = HoleGrid.build(vf.hole_xyz, vf.hole_radius, tol=tol)
    v2: dict[str, V2Set] = {}
    for prune, parts in v2_parts.items():
        def key(fi: int, z: np.ndarray) -> np.ndarray:
            return np.where(z >= 0, fi * (1 << 32) + z, -1)

        void_off = np.cumsum([0] + [len(x["vx"]) for x in parts])
        v2[prune] = V2Set(
            pruning=prune,
            gz_target=np.concatenate([x["gt"] for x in parts]),
            gz_xyz=np.vstack([x["gx"] for x in parts]),
            gz_zone=np.concatenate([key(x["fi"], x["gzone"]) for x in parts]),
            gz_out=np.concatenate([x["gout"] for x in parts]),
            zone_key=np.concatenate([key(x["fi"], x["zone"]) for x in parts]),
            zone_void0=np.concatenate(
                [np.where(x["v0"] >= 0, x["v0"] + o, -1) for x, o in zip(parts, void_off, strict=False)]
            ),
            zone_void1=np.concatenate(
                [np.where(x["v1"] >= 0, x["v1"] + o, -1) for x, o in zip(parts, void_off, strict=False)]
            ),
            void_xyz=np.vstack([x["vx"] for x in parts]),
            void_radius=np.concatenate([x["vr"] for x in parts]),
            files=[x["file"] for x in parts],
        )
    mag = header.get("MAGLIM")
    return VoidSet(
        cosmology=cosmo, header=header, voidfinder=vf, v2=v2,
        z_min=float(header.get("ZLIML") or 0.0),
        z_max=float(header["ZLIMU"]) if header.get("ZLIMU") is not None else np.inf,
        mag_limit=float(mag) if mag is not None else None,
    )
