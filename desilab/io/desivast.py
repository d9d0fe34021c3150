"""DESIVAST void catalogs (VoidFinder and V²) and VAST galaxy input tables.

The DR1 void VAC (``dr1/vac/dr1/desivast/v1.0``) has no desidatamodel page. Its layout is
taken from the code that wrote it, ``DESI-UR/VAST`` @ 0339f1a, checked against the HDU /
column / dtype / unit dump of the real v1.0 files that a third party published (see
``docs/formats/desivast.md`` for what is verified and what is assumed):

* VoidFinder (``DESIVAST_BGS_VOLLIM_VoidFinder_{NGC,SGC}.fits``): PRIMARY (keywords only),
  ``MAXIMALS`` (one row per void, 11 columns) and ``HOLES`` (5 columns).
* V² (``DESIVAST_BGS_VOLLIM_V2_{REVOLVER,VIDE,ZOBOV}_{NGC,SGC}.fits``): PRIMARY,
  ``VOIDS`` (19 columns), ``ZONEVOID``, ``GALZONE`` and, for REVOLVER/VIDE, the rendering
  tables ``TRIANGLE`` and ``GALVIZ`` (90% of the bytes: never read unless asked). Current
  VAST also writes a ``MASK`` image after PRIMARY.

Readers look HDUs up by EXTNAME, accept upper- or lower-case column names (VAST writes
lower case unless ``capitalize_colnames=True``) and return upper-case Arrow columns.

RA quirk: VoidFinder computes ``RA = atan(y/x)`` (+180° when x < 0), so NGC values span
about −90…270°. The stored column is returned untouched unless ``ra_wrap=True``; use
:func:`wrap_ra` (``RA % 360``) before any sky matching.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pyarrow as pa

from desilab.errors import FormatError, SchemaError
from desilab.io.fits import (
    arrow_to_numpy,
    atomic_output,
    hdu_names,
    numpy_to_arrow,
    open_fits,
    read_table,
    require_hdu,
)
from desilab.io.schema import Column, ImageHDU, ProductSchema, TableHDU, register

__all__ = [
    "GALAXY_SCHEMA",
    "PRUNINGS",
    "V2_SCHEMA",
    "VOIDFINDER_SCHEMA",
    "V2Catalog",
    "VoidFinderCatalog",
    "format_doc",
    "pruning_from_name",
    "read_v2",
    "read_vast_galaxies",
    "read_voidfinder",
    "wrap_ra",
    "write_v2",
    "write_voidfinder",
]

#: Where the layouts below come from.
SOURCE = (
    "DESI-UR/VAST @ 0339f1a (python/vast/voidfinder/postprocessing.py::save_output_from_find_voids, "
    "voidfinder_functions.py::xyz_to_radecz, catalog/void_catalog.py::calculate_r_eff, "
    "vsquared/zobov.py::saveVoids/saveZones/preViz, vsquared/util.py::open_fits_file_V2); "
    "hbrincon/DESIVAST (pipeline that produced the VAC); observed v1.0 structure: "
    "Pxomox-Astronomy-Lab/desi-cosmic-void-galaxies "
    "infrastructure/deployment/dataset-downloads/desivast-fits-inspector-output.md"
)

#: TUNIT written by astropy for VAST's ``'Mpc/h'`` (astropy reads the ``h`` as hour).
MPC_H = "Mpc h-1"
#: TUNIT of RA/DEC.
DEG = "deg"
#: TUNIT of V² TOT_AREA/EDGE_AREA: VAST's ``'(Mpc/h)^2'`` does not parse as an astropy
#: unit, so it is written verbatim (inferred from the code; not in the third-party dump).
AREA = "(Mpc/h)^2"

#: Pruning names VAST puts in V² file names (``open_fits_file_V2``); DR1 has the first three.
PRUNINGS = ("REVOLVER", "VIDE", "ZOBOV", "REVOLVER2")

_V2_NAME_RE = re.compile(r"_V2_(REVOLVER2|REVOLVER|VIDE|ZOBOV2|ZOBOV)(?=[_.]|$)", re.IGNORECASE)

# --------------------------------------------------------------------------------------
# Golden schemas
# --------------------------------------------------------------------------------------


def _xyz(unit: str | None, what: str) -> tuple[Column, ...]:
    return tuple(Column(c, "D", unit, f"Cartesian {c.lower()} of {what} (comoving)") for c in "XYZ")


MAXIMALS = TableHDU(
    extname="MAXIMALS",
    description="One row per void: its largest (maximal) sphere.",
    keywords=("VOID",),
    columns=(
        *_xyz(MPC_H, "the maximal sphere centre"),
        Column("RADIUS", "D", MPC_H, "Radius of the maximal sphere"),
        Column("VOID", "K", None, "Void index 0..Nvoid-1 (HOLES.VOID refers to it)"),
        Column(
            "EDGE",
            "K",
            None,
            "0 interior; 1 a member hole extends outside the survey; "
            "2 a member hole centre lies within 10 Mpc/h of the boundary",
        ),
        Column("R", "D", MPC_H, "Comoving distance of the centre"),
        Column("RA", "D", DEG, "atan(y/x) (+180 if x<0): about -90..270 deg; wrap with RA % 360"),
        Column("DEC", "D", DEG, "Declination of the centre"),
        Column(
            "R_EFF",
            "D",
            MPC_H,
            "Radius of a sphere with the volume of the union of the void's holes",
            required=False,
        ),
        Column("R_EFF_UNCERT", "D", MPC_H, "Uncertainty of R_EFF", required=False),
    ),
)

HOLES = TableHDU(
    extname="HOLES",
    description="All spheres (holes) of all voids, maximals included.",
    keywords=("VOID", "HOLE"),
    columns=(
        *_xyz(MPC_H, "the hole centre"),
        Column("RADIUS", "D", MPC_H, "Hole radius"),
        Column("VOID", "K", None, "Index into MAXIMALS.VOID"),
    ),
)

VF_MASK = ImageHDU(
    extname="MASK",
    dtypes=("i8", "i4", "i2", "u1"),
    ndim=2,
    required=False,
    description="Angular survey mask (RA x DEC grid scaled by MSKRES); not in the DR1 files.",
    keywords=("MSKRES", "COVSTR"),
)

WALL = TableHDU(
    extname="WALL",
    required=False,
    description="Wall galaxies (VAST optional output; not in the DR1 files).",
    keywords=("WALLNUM",),
    columns=_xyz(MPC_H, "the galaxy"),
)

FIELD = TableHDU(
    extname="FIELD",
    required=False,
    description="Field galaxies (VAST optional output; not in the DR1 files).",
    keywords=("FIELDNUM",),
    columns=_xyz(MPC_H, "the galaxy"),
)

VOIDS = TableHDU(
    extname="VOIDS",
    description="One row per V² void.",
    keywords=("VOID",),
    columns=(
        Column("VOID", "K", None, "Void index"),
        *_xyz(MPC_H, "the volume-weighted void centre"),
        Column("REDSHIFT", "D", None, "Redshift of the centre"),
        Column("RA", "D", DEG, "RA of the centre (0..360)"),
        Column("DEC", "D", DEG, "Dec of the centre"),
        Column("RADIUS", "D", MPC_H, "Effective radius from the summed Voronoi volume"),
        *(
            Column(f"{c}{i}", "D", MPC_H, f"{c.lower()} component of ellipsoid semi-axis {i}")
            for i in (1, 2, 3)
            for c in "XYZ"
        ),
        Column(
            "TOT_AREA",
            "D",
            AREA,
            "Void surface area (written when VAST runs with visualize=True, as in DR1)",
            required=False,
        ),
        Column(
            "EDGE_AREA",
            "D",
            AREA,
            "Part of the surface on the survey boundary (with visualize=True, as in DR1)",
            required=False,
        ),
        Column(
            "EDGE",
            "K",
            None,
            "1 = void touches the survey boundary (written only with visualize=False; not in DR1)",
            required=False,
        ),
    ),
)

ZONEVOID = TableHDU(
    extname="ZONEVOID",
    description="Zone -> void map.",
    keywords=("COUNT",),
    columns=(
        Column("ZONE", "K", None, "Zone index"),
        Column("VOID0", "K", None, "Smallest void containing the zone (-1 = none)"),
        Column("VOID1", "K", None, "Largest void containing the zone (-1 = none)"),
    ),
)

GALZONE = TableHDU(
    extname="GALZONE",
    description="One row per input galaxy (includes OUT=1 galaxies and the buffer).",
    keywords=("COUNT",),
    columns=(
        Column("GAL", "K", None, "Running galaxy id"),
        Column("TARGET", "K", None, "DESI TARGETID (present when the input had target ids)", required=False),
        *_xyz(None, "the galaxy (Mpc/h; VAST writes no TUNIT here)"),
        Column("ZONE", "K", None, "Zone of the galaxy's Voronoi cell (-1 = none)"),
        Column("DEPTH", "K", None, "Depth of the cell in its zone"),
        Column("EDGE", "K", None, "1 = the Voronoi cell touches the boundary / has no finite volume"),
        Column("OUT", "K", None, "1 = outside the survey mask"),
    ),
)

TRIANGLE = TableHDU(
    extname="TRIANGLE",
    required=False,
    description="Void-surface triangles for rendering (REVOLVER/VIDE only in DR1).",
    keywords=("COUNT",),
    columns=(
        Column("VOID", "K", None, "Void of the triangle"),
        *(Column(f"N_{c}", "D", MPC_H, f"Triangle normal, {c.lower()} component") for c in "XYZ"),
        *(Column(f"P{i}_{c}", "D", MPC_H, f"Vertex {i}, {c.lower()} coordinate") for i in (1, 2, 3) for c in "XYZ"),
    ),
)

GALVIZ = TableHDU(
    extname="GALVIZ",
    required=False,
    description="Galaxy -> void lookup for rendering (REVOLVER/VIDE only in DR1).",
    keywords=("COUNT",),
    columns=(
        Column("GID", "K", None, "Galaxy index"),
        Column("G2V", "K", None, "Void containing the galaxy (-1 = none)"),
        Column("G2V2", "K", None, "Void containing the galaxy's nearest neighbour"),
    ),
)

V2_MASK = ImageHDU(
    extname="MASK",
    dtypes=("i8", "i4", "i2", "u1"),
    ndim=2,
    required=False,
    description="Angular mask written after PRIMARY by current VAST (not in the DR1 files).",
    keywords=("COVSTR",),
)

#: PRIMARY keywords of VoidFinder files (desi-formats.md §4a, written by VAST's
#: save_output_from_* functions).
VOIDFINDER_KEYWORDS = (
    "INFILE", "METRIC", "DLIML", "DLIMU", "ZLIML", "ZLIMU", "OMEGAM", "HP", "MAGCUT", "MAGLIM",
    "RMISO", "NNS", "NNSA", "NNSS", "MSKRES", "COVSTR", "COVDEG", "VOLUME", "GALAXY",
    "WALLNUM", "FIELDNUM", "DENSITY", "AVSEP", "VOID", "HGEL", "GOX", "GOY", "GOZ",
)  # fmt: skip

#: PRIMARY keywords of V² files (``Zobov.initialize_fits_hdu_header``).
V2_KEYWORDS = (
    "INFILE", "HP", "OMEGAM", "ZLIML", "ZLIMU", "DLIML", "DLIMU", "MINR", "ZSTEP", "NSIDE",
    "MAGLIM", "PXMIN", "PYMIN", "PZMIN", "PXMAX", "PYMAX", "PZMAX", "BUFFER",
)  # fmt: skip

#: FITS comments VAST writes for its keywords (used by our writers).
KEYWORD_COMMENTS: dict[str, str] = {
    "INFILE": "Input Galaxy Table",
    "METRIC": "Distance Metric",
    "DLIML": "Lower Distance Limit (Mpc/h)",
    "DLIMU": "Upper Distance Limit (Mpc/h)",
    "ZLIML": "Lower Redshift Limit",
    "ZLIMU": "Upper Redshift Limit",
    "OMEGAM": "Matter Density",
    "HP": "Reduced Hubble Parameter h (((km/s)/Mpc)/100)",
    "RMISO": "Isolated Galaxies Removed",
    "MAGCUT": "Magnitude Cut Applied",
    "MAGLIM": "R-Band Magnitude Limit",
    "NNS": "Nth Neighbor Used for Wall-Field Separation",
    "NNSA": "Average Nth Neighbor Separation (Mpc/h)",
    "NNSS": "STD of Nth Neighbor Separation (Mpc/h)",
    "DUPL": "Number of Duplicate Galaxies Removed",
    "MSKRES": "Mask Resolution",
    "COVSTR": "Sky Coverage (Steradians)",
    "COVDEG": "Sky Coverage (Degrees^2)",
    "VOLUME": "Survey Volume (Mpc/h)^3",
    "GALAXY": "Galaxy Count",
    "WALLNUM": "Wall Galaxy Count",
    "FIELDNUM": "Field Galaxy Count",
    "DENSITY": "Galaxy Count Density (Mpc/h)^-3",
    "AVSEP": "Average Galaxy Separation (Mpc/h)",
    "VOID": "Void Count",
    "HOLE": "Hole Count",
    "COUNT": "Row Count",
    "CHKE": "Check Only Empty Cells",
    "MHMO": "Max Hole Mask Overlap",
    "HGEL": "Hole Grid Edge Length",
    "GOX": "Grid Origin X Coordinate",
    "GOY": "Grid Origin Y Coordinate",
    "GOZ": "Grid Origin Z Coordinate",
    "MMR": "Minimum Allowed Maximal Radius",
    "PPUV": "Points per Unit Volume",
    "NCPU": "Number of CPUs",
    "BS": "Batch Size",
    "MINR": "Minimum Void Radius (Mpc/h)",
    "ZSTEP": "Step Size for r-to-z Lookup Table",
    "NSIDE": "NSIDE for HEALPix Pixelization",
    "PXMIN": "Lower X-limit for Periodic Boundary Conditions",
    "PYMIN": "Lower Y-limit for Periodic Boundary Conditions",
    "PZMIN": "Lower Z-limit for Periodic Boundary Conditions",
    "PXMAX": "Upper X-limit for Periodic Boundary Conditions",
    "PYMAX": "Upper Y-limit for Periodic Boundary Conditions",
    "PZMAX": "Upper Z-limit for Periodic Boundary Conditions",
    "BUFFER": "Periodic Buffer Shell Width (Mpc/h)",
    "PRUNING": "V2 pruning method (desilab addition)",
}

_COUNT_COMMENTS = {
    "VOIDS": "Void Count",
    "ZONEVOID": "Zone Count",
    "GALZONE": "Galaxy Count",
    "TRIANGLE": "Triangle Count",
    "GALVIZ": "Galaxy Count",
}


def _identify_voidfinder(extnames: list[str], header: dict) -> bool:
    names = {n.upper() for n in extnames}
    return {"MAXIMALS", "HOLES"} <= names


def _identify_v2(extnames: list[str], header: dict) -> bool:
    names = {n.upper() for n in extnames}
    return {"VOIDS", "ZONEVOID", "GALZONE"} <= names


VOIDFINDER_SCHEMA = register(
    ProductSchema(
        name="desivast-voidfinder",
        title="DESIVAST VoidFinder void catalog (MAXIMALS + HOLES)",
        filename=r"(?i)voidfinder[^/]*\.fits(\.gz)?$",
        hdus=(MAXIMALS, HOLES, VF_MASK, WALL, FIELD),
        source=SOURCE,
        primary_keywords=VOIDFINDER_KEYWORDS,
        identify=_identify_voidfinder,
        notes=(
            "Verified against VAST code and the third-party dump of the real v1.0 files: HDU names, "
            "column names/counts, float64/int64 dtypes, TUNIT 'Mpc h-1' on X/Y/Z/RADIUS and 'deg' on "
            "RA/DEC. Assumed from VAST code only: TUNIT 'Mpc h-1' on R, R_EFF, R_EFF_UNCERT; the "
            "PRIMARY keyword list (real headers not seen by us); MASK/WALL/FIELD exist only in plain "
            "VAST output, not in DR1. RA is atan(y/x)(+180) and spans about -90..270: wrap with "
            "RA % 360. EDGE counts differ from the paper's 'interior' counts: filter explicitly."
        ),
    )
)

V2_SCHEMA = register(
    ProductSchema(
        name="desivast-v2",
        title="DESIVAST V² void catalog (REVOLVER / VIDE / ZOBOV pruning)",
        filename=r"(?i)_V2_(REVOLVER2?|VIDE|ZOBOV2?)[^/]*\.fits(\.gz)?$",
        hdus=(V2_MASK, VOIDS, ZONEVOID, GALZONE, TRIANGLE, GALVIZ),
        source=SOURCE,
        primary_keywords=V2_KEYWORDS,
        identify=_identify_v2,
        notes=(
            "Verified (VAST code + third-party dump of the real v1.0 files): HDU names and row/column "
            "counts, VOIDS has TOT_AREA/EDGE_AREA and no EDGE, GALZONE has TARGET, int64/float64 "
            "dtypes, TUNIT 'Mpc h-1'/'deg' on X/Y/Z/RADIUS/RA/DEC of VOIDS. TRIANGLE/GALVIZ are in "
            "the REVOLVER/VIDE files only. Assumed from code: TOT_AREA/EDGE_AREA TUNIT '(Mpc/h)^2', "
            "no TUNIT on GALZONE X/Y/Z, TRIANGLE TUNITs, the PRIMARY keyword list. The pruning is not "
            "a keyword in the real files (taken from the file name); desilab writers add PRUNING. "
            "Newer VAST writes GALZONE ZONE/EDGE as int32 - accepted on read."
        ),
    )
)

GALAXY_TABLE = TableHDU(
    extname="HDU1",
    aliases=("GALAXIES", "CATALOG"),
    description="VAST input galaxy table; the real files have no EXTNAME (first table HDU).",
    columns=(
        Column("ra", "E", None, "Right ascension [deg]"),
        Column("dec", "E", None, "Declination [deg]"),
        Column("z", "E", None, "Redshift (VAST config may call it 'redshift')"),
        Column("rabsmag", "E", None, "r-band absolute magnitude (or 'magnitude')", required=False),
        Column("weight", "E", None, "Galaxy weight", required=False),
    ),
)

GALAXY_SCHEMA = register(
    ProductSchema(
        name="vast-galaxies",
        title="VAST galaxy input table (ra, dec, z[, rabsmag, weight])",
        filename=r"^(vollim_[^/]*|test_data)\.(fits|dat|txt)$",
        hdus=(GALAXY_TABLE,),
        source=(
            "DESI-UR/VAST @ 0339f1a (example_scripts/vollim_dr7_cbp_102709.fits, "
            "python/vast/vsquared/tests/test_data.fits, config [Galaxy Column Names])"
        ),
        notes=(
            "Verified on the two real files: lower-case columns z, ra, dec, weight, all float32 (E), "
            "no TUNIT, no EXTNAME. Column names are matched case-insensitively; 'redshift' is "
            "accepted for z and 'magnitude' for rabsmag. The ASCII twin (ascii.commented_header) is "
            "read with astropy."
        ),
    )
)

# --------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoidFinderCatalog:
    """A VoidFinder catalog as read from one file.

    Attributes
    ----------
    maximals, holes
        The MAXIMALS and HOLES tables (upper-case columns, units in field metadata).
    header
        PRIMARY header keywords (``None`` for keywords without a value).
    omega_m, h
        Cosmology the distances were computed with (OMEGAM, HP or caller override);
        distances are in Mpc/h.
    path
        The file read.
    """

    maximals: pa.Table
    holes: pa.Table
    header: dict[str, Any]
    omega_m: float
    h: float
    path: Path


@dataclass(frozen=True)
class V2Catalog:
    """A V² catalog as read from one file; HDUs not asked for are ``None``.

    Attributes
    ----------
    voids, zonevoid, galzone, triangle, galviz
        Arrow tables of the corresponding HDUs (upper-case columns), or None.
    header
        PRIMARY header keywords.
    pruning
        ``"REVOLVER"``, ``"VIDE"``, ``"ZOBOV"`` (from the PRUNING keyword or the file name),
        or None when neither says.
    omega_m, h
        Cosmology (OMEGAM, HP or caller override).
    path
        The file read.
    mask
        The MASK image when asked for (current VAST only), else None.
    """

    voids: pa.Table | None
    zonevoid: pa.Table | None
    galzone: pa.Table | None
    triangle: pa.Table | None
    galviz: pa.Table | None
    header: dict[str, Any]
    pruning: str | None
    omega_m: float
    h: float
    path: Path
    mask: np.ndarray | None = field(default=None, compare=False)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def wrap_ra(table: pa.Table, column: str = "RA") -> pa.Table:
    """Return *table* with ``column`` replaced by ``column % 360`` (degrees in [0, 360)).

    VoidFinder's MAXIMALS store RA = atan(y/x) (+180° for x < 0), i.e. about −90…270° in
    the NGC; apply this before matching voids to sky positions. Field metadata (unit) is
    kept.

    Parameters
    ----------
    table
        Table with an RA column.
    column
        Name of the RA column.

    Returns
    -------
    pyarrow.Table
    """
    idx = table.schema.get_field_index(column)
    if idx < 0:
        raise FormatError("no RA column to wrap", column=column)
    fld = table.schema.field(idx)
    ra = table.column(idx).to_numpy(zero_copy_only=False).astype(np.float64)
    wrapped = np.mod(ra, 360.0)
    return table.set_column(idx, pa.field(fld.name, pa.float64(), metadata=fld.metadata), pa.array(wrapped))


def pruning_from_name(path: str | os.PathLike[str]) -> str | None:
    """Pruning method encoded in a V² file name (``…_V2_REVOLVER_NGC.fits`` → ``"REVOLVER"``)."""
    m = _V2_NAME_RE.search(Path(path).name)
    return m.group(1).upper() if m else None


def _header_dict(hdu: fitsio.hdu.base.HDUBase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rec in hdu.read_header().records():
        name = rec.get("name")
        if name and name not in ("COMMENT", "HISTORY", "CONTINUE"):
            out[name] = rec.get("value")
    return out


def _cosmology(header: Mapping[str, Any], path: Path, omega_m: float | None, h: float | None):
    vals = []
    for key, given in (("OMEGAM", omega_m), ("HP", h)):
        if given is not None:
            vals.append(float(given))
            continue
        value = header.get(key)
        if value is None:
            what = "omega_m" if key == "OMEGAM" else "h"
            raise FormatError(
                f"PRIMARY keyword {key} is missing or empty, so the cosmology of the distances is unknown",
                file=path,
                hdu="PRIMARY",
                hint=f"pass {what}=... explicitly",
            )
        try:
            vals.append(float(value))
        except (TypeError, ValueError) as exc:
            raise FormatError(f"PRIMARY keyword {key}={value!r} is not a number", file=path, hdu="PRIMARY") from exc
    return vals[0], vals[1]


def _check_required(hdu: fitsio.hdu.TableHDU, spec: TableHDU, path: Path) -> None:
    stored = {c.upper() for c in hdu.get_colnames()}
    for col in spec.columns:
        if col.required and col.name not in stored:
            raise FormatError("missing required column", file=path, hdu=spec.extname, column=col.name)


def _upper(table: pa.Table) -> pa.Table:
    return table.rename_columns([n.upper() for n in table.column_names])


def _read_hdus(
    path: Path,
    specs: Sequence[TableHDU],
    columns: Mapping[str, Sequence[str]] | None,
    rows: Mapping[str, np.ndarray] | None = None,
) -> dict[str, pa.Table]:
    columns = {k.upper(): v for k, v in (columns or {}).items()}
    rows = rows or {}
    stored: dict[str, list[str]] = {}
    with open_fits(path) as fits:
        for spec in specs:
            hdu = require_hdu(fits, spec.extname)
            stored[spec.extname] = [c.upper() for c in hdu.get_colnames()]
            if spec.extname not in columns:
                _check_required(hdu, spec, path)
    out = {}
    for spec in specs:
        cols = columns.get(spec.extname)
        if cols is None:
            table = read_table(path, spec.extname, rows=rows.get(spec.extname))
        else:
            # ask in file order, then restore the caller's order
            order = stored[spec.extname]
            in_file = sorted(cols, key=lambda c: order.index(c.upper()) if c.upper() in order else -1)
            table = read_table(path, spec.extname, columns=in_file, rows=rows.get(spec.extname))
            table = table.select([in_file.index(c) for c in cols])
        out[spec.extname] = _upper(table)
    return out


# --------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------


def read_voidfinder(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, Sequence[str]] | None = None,
    omega_m: float | None = None,
    h: float | None = None,
    ra_wrap: bool = False,
) -> VoidFinderCatalog:
    """Read a VoidFinder catalog (MAXIMALS + HOLES).

    Parameters
    ----------
    path
        ``DESIVAST_*_VoidFinder_*.fits`` or any VAST VoidFinder output.
    columns
        Optional ``{"MAXIMALS": [...], "HOLES": [...]}`` to read only some columns
        (case-insensitive); HDUs not named are read whole.
    omega_m, h
        Override the OMEGAM / HP keywords (needed when the file lacks them).
    ra_wrap
        If True, return MAXIMALS.RA as ``RA % 360`` (see :func:`wrap_ra`); the default
        keeps the stored values (about −90…270° in the NGC).

    Returns
    -------
    VoidFinderCatalog

    Raises
    ------
    FormatError
        Not FITS / truncated, missing HDU or required column (naming file, HDU and
        column), or OMEGAM/HP missing and not given (naming file and keyword).
    """
    p = Path(path)
    with open_fits(p) as fits:
        header = _header_dict(fits[0])
    om, hh = _cosmology(header, p, omega_m, h)
    tables = _read_hdus(p, (MAXIMALS, HOLES), columns)
    maximals = tables["MAXIMALS"]
    if ra_wrap and "RA" in maximals.column_names:
        maximals = wrap_ra(maximals)
    return VoidFinderCatalog(maximals, tables["HOLES"], header, om, hh, p)


_V2_SPECS = {"VOIDS": VOIDS, "ZONEVOID": ZONEVOID, "GALZONE": GALZONE, "TRIANGLE": TRIANGLE, "GALVIZ": GALVIZ}


def read_v2(
    path: str | os.PathLike[str],
    hdus: Sequence[str] = ("VOIDS", "ZONEVOID", "GALZONE"),
    *,
    columns: Mapping[str, Sequence[str]] | None = None,
    targetids: Sequence[int] | np.ndarray | None = None,
    omega_m: float | None = None,
    h: float | None = None,
    ra_wrap: bool = False,
) -> V2Catalog:
    """Read a V² catalog, only the HDUs asked for.

    TRIANGLE and GALVIZ (≈90% of the real REVOLVER/VIDE files) are read only if named in
    *hdus*. ``"MASK"`` may be named to get the mask image of current-VAST files.

    Parameters
    ----------
    path
        ``DESIVAST_*_V2_{REVOLVER,VIDE,ZOBOV}_*.fits`` or any VAST V² output.
    hdus
        EXTNAMEs to read (case-insensitive).
    columns
        Optional ``{EXTNAME: [columns]}`` subsets (case-insensitive).
    targetids
        If given, GALZONE is restricted to rows whose ``TARGET`` is in this list (file
        order kept); requires the TARGET column.
    omega_m, h
        Override the OMEGAM / HP keywords.
    ra_wrap
        Return VOIDS.RA as ``RA % 360`` (V² already stores 0…360; harmless).

    Returns
    -------
    V2Catalog

    Raises
    ------
    FormatError
        Missing HDU / required column, OMEGAM/HP missing and not given, unknown HDU name.
    """
    p = Path(path)
    wanted = [h_.upper() for h_ in hdus]
    for name in wanted:
        if name not in _V2_SPECS and name != "MASK":
            raise FormatError(f"not a V2 HDU (choose from {', '.join([*_V2_SPECS, 'MASK'])})", file=p, hdu=name)
    mask = None
    rows: dict[str, np.ndarray] = {}
    with open_fits(p) as fits:
        header = _header_dict(fits[0])
        if "MASK" in wanted:
            mask = require_hdu(fits, "MASK").read()
        if targetids is not None and "GALZONE" in wanted:
            gz = require_hdu(fits, "GALZONE")
            stored = {c.upper(): c for c in gz.get_colnames()}
            if "TARGET" not in stored:
                raise FormatError("no TARGET column, cannot select by TARGETID", file=p, hdu="GALZONE", column="TARGET")
            tid = gz.read_column(stored["TARGET"])
            rows["GALZONE"] = np.flatnonzero(np.isin(tid, np.asarray(targetids, dtype=np.int64)))
    om, hh = _cosmology(header, p, omega_m, h)
    specs = [_V2_SPECS[n] for n in wanted if n in _V2_SPECS]
    tables = _read_hdus(p, specs, columns, rows)
    voids = tables.get("VOIDS")
    if ra_wrap and voids is not None and "RA" in voids.column_names:
        voids = wrap_ra(voids)
    pruning = header.get("PRUNING")
    pruning = str(pruning).strip().upper() if pruning else pruning_from_name(p)
    return V2Catalog(
        voids=voids,
        zonevoid=tables.get("ZONEVOID"),
        galzone=tables.get("GALZONE"),
        triangle=tables.get("TRIANGLE"),
        galviz=tables.get("GALVIZ"),
        header=header,
        pruning=pruning,
        omega_m=om,
        h=hh,
        path=p,
        mask=mask,
    )


_GALAXY_ALIASES = {
    "ra": ("ra",),
    "dec": ("dec",),
    "z": ("z", "redshift"),
    "rabsmag": ("rabsmag", "magnitude"),
    "weight": ("weight",),
}


def _galaxy_name_map(stored: Sequence[str]) -> dict[str, str]:
    """Map requested lower-case names (canonical or stored) to stored names."""
    lower = {s.lower(): s for s in stored}
    out = dict(lower)
    for canon, aliases in _GALAXY_ALIASES.items():
        for alias in aliases:
            if alias in lower:
                out[canon] = lower[alias]
                break
    return out


def read_vast_galaxies(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    ext: str | None = None,
) -> pa.Table:
    """Read a VAST galaxy input table (FITS, or the ASCII ``commented_header`` twin).

    Parameters
    ----------
    path
        e.g. ``vollim_dr7_cbp_102709.fits``.
    columns
        Columns to read (case-insensitive). Default: ``ra, dec, z`` plus ``rabsmag`` and
        ``weight`` when present. ``z`` also matches a ``redshift`` column and ``rabsmag``
        a ``magnitude`` column.
    ext
        EXTNAME of the table (FITS only); default: the first table HDU (the real files
        have no EXTNAME).

    Returns
    -------
    pyarrow.Table
        Columns named ``ra, dec, z, rabsmag, weight`` (canonical, lower case) or as
        stored for other requested columns; dtypes as stored.

    Raises
    ------
    FormatError
        Unreadable file, no table, or a missing column (naming file, HDU and column).
    """
    p = Path(path)
    if not p.exists():
        raise FormatError("file does not exist", file=p)
    with p.open("rb") as fh:
        is_fits = fh.read(9) == b"SIMPLE  ="
    if is_fits:
        with open_fits(p) as fits:
            if ext is not None:
                hdu = require_hdu(fits, ext)
            else:
                hdu = next((h_ for h_ in fits if h_.get_exttype() in ("BINARY_TBL", "ASCII_TBL")), None)
                if hdu is None:
                    raise FormatError(f"no table HDU (file has {', '.join(hdu_names(fits))})", file=p)
            extnum = hdu.get_extnum()
            hduname = hdu.get_extname() or f"HDU{extnum}"
            stored = hdu.get_colnames()
    else:
        from astropy.table import Table  # ASCII only: the FITS path never needs astropy

        try:
            atab = Table.read(p, format="ascii.commented_header")
        except Exception:
            try:
                atab = Table.read(p, format="ascii")
            except Exception as exc:
                raise FormatError(f"neither FITS nor a readable ASCII table: {exc}", file=p) from exc
        hduname = "ASCII"
        stored = list(atab.colnames)
    names = _galaxy_name_map(stored)
    if columns is None:
        wanted = ["ra", "dec", "z"] + [c for c in ("rabsmag", "weight") if c in names]
    else:
        wanted = [c.lower() for c in columns]
    for col in wanted:
        if col not in names:
            raise FormatError("missing column", file=p, hdu=hduname, column=col)
    src = [names[c] for c in wanted]
    if is_fits:
        with open_fits(p) as fits:
            data = fits[extnum].read(columns=list(dict.fromkeys(src)))  # fitsio returns file order
        table = numpy_to_arrow(np.atleast_1d(data))
    else:
        table = numpy_to_arrow(atab[list(dict.fromkeys(src))].as_array())
    return table.select(src).rename_columns(wanted)


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------

_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|"
    r"T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+|CHECKSUM|DATASUM|BSCALE|BZERO|COMMENT|HISTORY)$"
)


def _as_arrow(data: pa.Table | np.ndarray, what: str) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, np.ndarray) and data.dtype.names:
        return numpy_to_arrow(data)
    raise SchemaError(f"{what} must be a pyarrow.Table or a structured numpy array", hdu=what)


def _records(table: pa.Table, spec: TableHDU) -> tuple[np.ndarray, list[str]]:
    """Order/cast *table* to *spec*; optional schema columns are written only if given."""
    by_upper = {n.upper(): n for n in table.column_names}
    if len(by_upper) != len(table.column_names):
        raise SchemaError("duplicate column names (case-insensitive)", hdu=spec.extname)
    known = {c.name for c in spec.columns}
    for col in spec.columns:
        if col.required and col.name not in by_upper:
            raise SchemaError("missing required column", hdu=spec.extname, column=col.name)
    extras = [n for n in table.column_names if n.upper() not in known]
    if extras:
        raise SchemaError(
            f"columns not in the {spec.extname} layout: {', '.join(extras)}", hdu=spec.extname, column=extras[0]
        )
    cols = [c for c in spec.columns if c.name in by_upper]
    src = arrow_to_numpy(table.select([by_upper[c.name] for c in cols]))
    out = np.zeros(table.num_rows, dtype=[(c.name, c.dtype, c.shape) for c in cols])
    for c in cols:
        values = src[by_upper[c.name]]
        if values.dtype.kind in "SUO":
            raise SchemaError(f"expected numbers, got {values.dtype}", hdu=spec.extname, column=c.name)
        if c.dtype.kind in "iu" and values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise SchemaError("non-integer values for an integer column", hdu=spec.extname, column=c.name)
        out[c.name] = values
    return out, [c.unit or "" for c in cols]


def _card(name: str, value: Any, comment: str) -> dict | fitsio.FITSRecord:
    if value is None:  # undefined value, as astropy writes None
        return fitsio.FITSRecord(f"{name:<8}= {'':>20} / {comment}"[:80])
    if isinstance(value, np.generic):
        value = value.item()
    return {"name": name, "value": value, "comment": comment}


def _primary_header(header: Mapping[str, Any], required: Sequence[str], extra: Mapping[str, Any]) -> fitsio.FITSHDR:
    merged: dict[str, tuple[Any, str]] = {}
    for key, value in [*header.items(), *extra.items()]:
        k = str(key).upper()
        if _STRUCTURAL.match(k):
            continue
        if len(k) > 8:
            raise SchemaError(f"header keyword {k!r} is longer than 8 characters", hdu="PRIMARY")
        comment = KEYWORD_COMMENTS.get(k, "")
        if isinstance(value, tuple) and len(value) == 2:
            value, comment = value
        merged[k] = (value, comment)
    for key in required:
        if merged.get(key, (None, ""))[0] is None:
            raise SchemaError(f"header must give {key}", hdu="PRIMARY")
    hdr = fitsio.FITSHDR()
    for key, (value, comment) in merged.items():
        hdr.add_record(_card(key, value, comment))
    return hdr


def _count_header(keys: Mapping[str, int], comments: Mapping[str, str] | None = None) -> list[dict]:
    comments = comments or {}
    return [
        {"name": k, "value": int(v), "comment": comments.get(k, KEYWORD_COMMENTS.get(k, ""))} for k, v in keys.items()
    ]


def _write_mask(fits: fitsio.FITS, mask: np.ndarray | None, keys: Mapping[str, Any]) -> None:
    if mask is None:
        return
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise SchemaError(f"MASK must be 2-d, got shape {arr.shape}", hdu="MASK")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    hdr = [_card(k, v, KEYWORD_COMMENTS.get(k, "")) for k, v in keys.items()]
    fits.write(np.ascontiguousarray(arr), extname="MASK", header=hdr)


def write_voidfinder(
    path: str | os.PathLike[str],
    maximals: pa.Table | np.ndarray,
    holes: pa.Table | np.ndarray,
    header: Mapping[str, Any],
    *,
    mask: np.ndarray | None = None,
) -> Path:
    """Write a VoidFinder catalog in the DR1 layout (PRIMARY, MAXIMALS, HOLES).

    Columns are written in schema order with the schema TFORM (float64/int64) and TUNIT;
    column names may be given in any case. MAXIMALS carries ``VOID`` and HOLES ``VOID`` /
    ``HOLE`` counts, as VAST writes them. The output is byte-deterministic (no dates, no
    checksums) and written through :func:`~desilab.io.fits.atomic_output`.

    Parameters
    ----------
    path
        Output file.
    maximals, holes
        Tables with the MAXIMALS / HOLES columns (R_EFF, R_EFF_UNCERT optional).
    header
        PRIMARY keywords (e.g. ``VoidFinderCatalog.header``); must give OMEGAM and HP.
        Values may be ``(value, comment)``; structural keywords are ignored, ``None``
        becomes an undefined value.
    mask
        Optional 2-d mask image written as a ``MASK`` HDU (plain VAST layout; DR1 has none).

    Returns
    -------
    Path

    Raises
    ------
    SchemaError
        Missing required column, unknown column, non-numeric column, or OMEGAM/HP missing.
    """
    mrec, munits = _records(_as_arrow(maximals, "MAXIMALS"), MAXIMALS)
    hrec, hunits = _records(_as_arrow(holes, "HOLES"), HOLES)
    phdr = _primary_header(header, ("OMEGAM", "HP"), {})
    out = Path(path)
    with atomic_output(out) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=phdr)
        fits.write_table(mrec, extname="MAXIMALS", units=munits, header=_count_header({"VOID": len(mrec)}))
        fits.write_table(
            hrec, extname="HOLES", units=hunits, header=_count_header({"VOID": len(mrec), "HOLE": len(hrec)})
        )
        _write_mask(fits, mask, {k: header[k] for k in ("MSKRES", "COVSTR") if k in header})
    return out


def write_v2(
    path: str | os.PathLike[str],
    voids: pa.Table | np.ndarray,
    zonevoid: pa.Table | np.ndarray,
    galzone: pa.Table | np.ndarray,
    header: Mapping[str, Any],
    *,
    pruning: str,
    triangle: pa.Table | np.ndarray | None = None,
    galviz: pa.Table | np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> Path:
    """Write a V² catalog in the DR1 layout.

    HDU order: PRIMARY, [MASK], VOIDS, ZONEVOID, GALZONE, [TRIANGLE, GALVIZ]. Each table HDU
    carries VAST's count keyword (``VOID`` for VOIDS, ``COUNT`` for the others). The
    PRIMARY header gets the caller's keywords plus ``PRUNING`` (a desilab addition: the
    real files carry the pruning only in their name). Byte-deterministic.

    Parameters
    ----------
    path
        Output file.
    voids, zonevoid, galzone
        Tables with the VOIDS / ZONEVOID / GALZONE columns (VOIDS: TOT_AREA/EDGE_AREA as in
        DR1, or EDGE as VAST writes without visualisation).
    header
        PRIMARY keywords (must give OMEGAM and HP).
    pruning
        One of :data:`PRUNINGS`.
    triangle, galviz
        Optional rendering tables (present in the DR1 REVOLVER/VIDE files).
    mask
        Optional 2-d mask image written right after PRIMARY (current VAST layout).

    Returns
    -------
    Path

    Raises
    ------
    SchemaError
        Bad pruning, missing/unknown/non-numeric column, OMEGAM/HP missing.
    """
    prune = str(pruning).upper()
    if prune not in PRUNINGS:
        raise SchemaError(f"unknown pruning {pruning!r} (choose from {', '.join(PRUNINGS)})", parameter="pruning")
    parts = [
        ("VOIDS", voids, VOIDS, "VOID"),
        ("ZONEVOID", zonevoid, ZONEVOID, "COUNT"),
        ("GALZONE", galzone, GALZONE, "COUNT"),
    ]
    if triangle is not None:
        parts.append(("TRIANGLE", triangle, TRIANGLE, "COUNT"))
    if galviz is not None:
        parts.append(("GALVIZ", galviz, GALVIZ, "COUNT"))
    encoded = [(name, *_records(_as_arrow(data, name), spec), key) for name, data, spec, key in parts]
    phdr = _primary_header(header, ("OMEGAM", "HP"), {"PRUNING": prune})
    out = Path(path)
    with atomic_output(out) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=phdr)
        _write_mask(fits, mask, {k: header[k] for k in ("COVSTR",) if k in header})
        for name, rec, units, key in encoded:
            hdr = _count_header({key: len(rec)}, {key: _COUNT_COMMENTS[name]})
            fits.write_table(rec, extname=name, units=units, header=hdr)
    return out


# --------------------------------------------------------------------------------------
# Documentation page (docs/formats/desivast.md is generated from this)
# --------------------------------------------------------------------------------------

DOC_PREAMBLE = """\
# DESIVAST void catalogs and VAST galaxy tables

Files (DR1 VAC `dr1/vac/dr1/desivast/v1.0`): `DESIVAST_BGS_VOLLIM_VoidFinder_{NGC,SGC}.fits`
and `DESIVAST_BGS_VOLLIM_V2_{REVOLVER,VIDE,ZOBOV}_{NGC,SGC}.fits`; VAST's galaxy input
tables (e.g. `vollim_dr7_cbp_102709.fits`). Module: `desilab.io.desivast`. This page is
generated from the golden schemas (`desilab.io.desivast.format_doc()`); a test fails when
it is out of date.

## Reading

- `read_voidfinder(path, columns=None, omega_m=None, h=None, ra_wrap=False)` returns a
  `VoidFinderCatalog` (`maximals`, `holes` as Arrow tables, `header`, `omega_m`, `h`).
- `read_v2(path, hdus=("VOIDS", "ZONEVOID", "GALZONE"), columns=None, targetids=None, ...)`
  returns a `V2Catalog`; `TRIANGLE` and `GALVIZ` (about 90% of the REVOLVER/VIDE files) are
  read only when named in `hdus`, `MASK` likewise. `targetids` selects GALZONE rows by
  `TARGET` (= DESI TARGETID), reading that column first and then only the matching rows.
  `pruning` comes from the `PRUNING` keyword (written by desilab) or the file name
  (`..._V2_REVOLVER_...`); the real files have no such keyword.
- HDUs are found by EXTNAME. Column names are matched case-insensitively (plain VAST
  writes lower case) and returned upper case; units are in the Arrow field metadata.
- `omega_m`, `h` come from the PRIMARY keywords `OMEGAM` and `HP`. A file without them
  raises `FormatError` naming the file and the keyword, unless the caller passes
  `omega_m=` / `h=`. Distances are comoving in Mpc/h (`HP` = 1 in DR1).
- **RA quirk.** VoidFinder stores `RA = atan(y/x)` (+180° when x < 0), so NGC values span
  about −90…270°. The stored column is returned untouched; `ra_wrap=True` or
  `wrap_ra(table)` gives `RA % 360`. V² RA are already in 0…360.
- `read_vast_galaxies(path, columns=None)` reads `ra, dec, z` (+ `rabsmag`, `weight` when
  present) from the first table HDU of a FITS file, or from the ASCII
  `commented_header` twin; names are case-insensitive, `redshift` is accepted for `z` and
  `magnitude` for `rabsmag`; dtypes are kept (float32 in the DR7 files).

## Writing

`write_voidfinder(path, maximals, holes, header, mask=None)` and
`write_v2(path, voids, zonevoid, galzone, header, pruning=..., triangle=None, galviz=None,
mask=None)` write the DR1 layout: HDU order PRIMARY, [MASK], tables; schema column order,
TFORM `D`/`K`, the TUNITs below; count keywords `VOID`/`HOLE` (VoidFinder) and `VOID` /
`COUNT` (V²) as VAST writes them; the caller's PRIMARY keywords (structural ones dropped,
`None` written as an undefined value, VAST's comments) plus `PRUNING` for V². `OMEGAM`
and `HP` are required. Optional schema columns are written only when given; unknown
columns are refused. Output is byte-deterministic (no dates, no CHECKSUM) and goes
through `atomic_output`.

## Using the catalogs

- `EDGE` (MAXIMALS): 0 interior, 1 a hole extends outside the survey, 2 a hole centre within
  10 Mpc/h of the boundary. The DESIVAST paper counts "interior" voids differently
  (EDGE==0 gives 1,489 NGC+SGC voids vs 1,461 in the paper): filter explicitly and say how.
- V² VOIDS has `TOT_AREA`/`EDGE_AREA` (edge fraction = EDGE_AREA/TOT_AREA), not `EDGE`,
  because DR1 ran VAST with visualisation; plain VAST output has `EDGE` instead.
- GALZONE holds every input galaxy (604,032 NGC rows, more than the volume-limited
  sample): require `OUT == 0` and apply the z / M_r limits (`ZLIML`, `ZLIMU`, `MAGLIM`).
  A tracer galaxy is in a void when `ZONE >= 0` and `ZONEVOID.VOID0[ZONE] >= 0`. Zone and
  void ids restart in each file: never mix NGC and SGC ids.

## Verified and assumed

@NOTES@
"""

_NOTES = """\
- **Verified** against `DESI-UR/VAST` @ 0339f1a code (`postprocessing.py`,
  `voidfinder_functions.py::xyz_to_radecz`, `void_catalog.py::calculate_r_eff`,
  `zobov.py::saveVoids/saveZones/preViz`, `util.py::open_fits_file_V2`) **and** the
  third-party dump of the real v1.0 files (`Pxomox-Astronomy-Lab/desi-cosmic-void-galaxies`,
  `desivast-fits-inspector-output.md`): HDU names and order, row and column counts
  (MAXIMALS 11, HOLES 5, VOIDS 19, ZONEVOID 3, GALZONE 9, TRIANGLE 13, GALVIZ 3), float64 /
  int64 dtypes, TUNIT `Mpc h-1` on X/Y/Z/RADIUS and `deg` on RA/DEC, no TRIANGLE/GALVIZ in
  the ZOBOV files, no MASK/WALL/FIELD HDUs in DR1.
- **Verified on the real VAST inputs** (`vollim_dr7_cbp_102709.fits`, `test_data.fits`):
  lower-case `z, ra, dec, weight`, all `E`, no TUNIT, no EXTNAME; our reader equals
  astropy array for array.
- **From VAST code only (not seen in a real file)**: TUNIT `Mpc h-1` on `R`, `R_EFF`,
  `R_EFF_UNCERT` (VAST sets `'Mpc/h'`, which astropy writes as `Mpc h-1`); TUNIT
  `(Mpc/h)^2` on TOT_AREA/EDGE_AREA (astropy cannot parse it, so it is written verbatim);
  no TUNIT on GALZONE X/Y/Z; TUNIT `Mpc h-1` on the TRIANGLE normals and vertices; the
  per-HDU count keywords; the PRIMARY keyword lists (desi-formats.md §4a/§4b; the real
  headers were not available to us — `validate` only warns when one is missing).
- **Assumed**: that the DR1 files carry VAST's keyword comments; our `PRUNING` keyword is
  a desilab addition. Newer VAST writes GALZONE `ZONE`/`EDGE` as int32; readers accept it,
  `validate` reports the TFORM difference.
"""


def format_doc() -> str:
    """The content of ``docs/formats/desivast.md`` (generated from the schemas)."""
    from desilab.io.validate import schema_markdown

    parts = [DOC_PREAMBLE.replace("@NOTES@", _NOTES)]
    parts += [schema_markdown(s) for s in (VOIDFINDER_SCHEMA, V2_SCHEMA, GALAXY_SCHEMA)]
    return "\n".join(parts)
