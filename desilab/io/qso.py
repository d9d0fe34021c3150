"""DESI QSO catalogs and BAL (broad absorption line) catalogs.

Three layouts are read and written (desi-formats.md §5):

``qso_cat``
    The DR1 QSO catalog ``QSO_cat_{SPECPROD}_cumulative_{VERSION}.fits``: HDU ``QSO_CAT``
    (desidatamodel ``QSO_cat_cumulative.rst``). No BAL columns.
``balcat``
    The standalone BAL table written by baltools (``baltable.py::initbaltab_desi``),
    HDU ``BALCAT``: TARGETID, TARGET_RA/DEC, Z, ZERR, ZWARN (all float32 but TARGETID),
    then the BAL block.
``appended``
    A QSO catalog with the BAL block appended (``popqsotab.py::inittab`` +
    ``bin/appendbalinfo_hp.py``), written with EXTNAME ``ZCATALOG``: the input catalog's
    columns, then PCA_COEFFS … FMIN_SIIV_450, BALMASK, SNR_CIV.

The DR1 BAL layout is in no public datamodel: see ``docs/formats/qso.md`` for exactly what
comes from baltools code and what is assumed. Older BAL files spell Si IV as ``SIV``
(``BI_SIV``, ``NSIV_2000``…); :func:`read_qso_catalog` returns them as ``SIIV`` (mapping in
:data:`SIV_TO_SIIV`).

The BAL-finder constants (line wavelengths, velocity windows, redshift range, trough
counts) live here, with their source, for the pipelines to import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import fitsio
import numpy as np
import pyarrow as pa

from desilab.errors import FormatError, SchemaError
from desilab.io.fits import (
    arrow_to_numpy,
    atomic_output,
    find_hdu,
    hdu_names,
    numpy_to_arrow,
    open_fits,
    read_table,
    rows_for_targetids,
)
from desilab.io.schema import Column, ProductSchema, TableHDU, register
from desilab.io.validate import allow_variable_repeat

__all__ = [
    "AI_MIN_WIDTH",
    "AI_VMAX",
    "BALCAT_SCHEMA",
    "BALMASK_DZ",
    "BALMASK_NOT_IN_BALCAT",
    "BALMASK_Z_RANGE",
    "BAL_APPENDED_SCHEMA",
    "BAL_LAMBDA_MAX",
    "BAL_LAMBDA_MIN",
    "BAL_ZMAX",
    "BAL_ZMIN",
    "BI_FLUX_THRESHOLD",
    "BI_MIN_WIDTH",
    "BI_VMAX",
    "C_KMS",
    "LAMBDA_CIV",
    "LAMBDA_SIIV",
    "NAI",
    "NBI",
    "NPCA",
    "QSO_CAT_SCHEMA",
    "SIV_TO_SIIV",
    "VMAX_BAL",
    "VMIN_BAL",
    "format_doc",
    "read_qso_catalog",
    "write_qso_catalog",
]

# --------------------------------------------------------------------------------------
# BAL-finder constants. Source: paulmartini/baltools @ d47c815 py/baltools/balconfig.py
# (and fitbal.py for the trough definitions), as summarised in desi-formats.md §5b.
# --------------------------------------------------------------------------------------

#: Speed of light [km/s] (baltools uses astropy ``const.c``).
C_KMS = 299792.458
#: Rest wavelength of C IV used by baltools [Å] (approximate, as in balconfig).
LAMBDA_CIV = 1549.0
#: Rest wavelength of Si IV used by baltools [Å].
LAMBDA_SIIV = 1398.0
#: Trough search window [km/s]; velocities are negative for outflows.
VMIN_BAL = -25000.0
VMAX_BAL = 0.0
#: Upper edge of the balnicity-index (BI) window [km/s]: −25000 < v < −3000.
BI_VMAX = -3000.0
#: Upper edge of the absorption-index (AI) window [km/s]: −25000 < v < 0.
AI_VMAX = 0.0
#: Minimum contiguous trough width [km/s] for BI and AI troughs.
BI_MIN_WIDTH = 2000.0
AI_MIN_WIDTH = 450.0
#: Continuum-normalised flux below which a pixel is "in a trough" (BI/AI integrand 1 − f/0.9).
BI_FLUX_THRESHOLD = 0.9
#: baltools subtracts this many σ of the normalised flux in the trough test.
TROUGH_SIGMA = 0.5
#: Rest-frame window of the PCA continuum fit [Å].
BAL_LAMBDA_MIN = 1261.0
BAL_LAMBDA_MAX = 2399.0
#: Redshift range searched for BALs (BAL_ZMIN ≤ z ≤ BAL_ZMAX).
BAL_ZMIN = 1.57
BAL_ZMAX = 5.0
#: Number of PCA coefficients (4 with the alternative Brodzeller templates).
NPCA = 5
#: Maximum number of BI (2000 km/s) and AI (450 km/s) troughs stored per quasar.
NBI = 5
NAI = 17
#: BALMASK bits (popqsotab.addbalinfo / appendbalinfo_hp): 0 = processed.
BALMASK_NOT_IN_BALCAT = 1
BALMASK_Z_RANGE = 2
BALMASK_DZ = 4
#: |Z_catalog − Z_BALCAT| above which BALMASK_DZ is set.
BAL_DZ_TOL = 0.001

SOURCE_QSO = "desihub/desidatamodel @ ca5aa4c doc/DESI_ROOT/survey/catalogs/RELEASE/QSO/SPECPROD/QSO_cat_cumulative.rst"
SOURCE_BAL = (
    "paulmartini/baltools @ d47c815 (py/baltools/baltable.py::initbaltab_desi, "
    "popqsotab.py::inittab/addbalinfo, fitbal.py::initialize, balconfig.py, bin/appendbalinfo_hp.py)"
)

# --------------------------------------------------------------------------------------
# Golden schemas
# --------------------------------------------------------------------------------------

_NMGY = "nanomaggy"
_IVAR = "nanomaggy^-2"
_CORE = {"TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "TARGET_RA", "TARGET_DEC"}


def _qso_columns() -> tuple[Column, ...]:
    spec: list[tuple[str, str, str | None, str]] = [
        ("TARGETID", "K", None, "Unique DESI target ID"),
        ("Z", "D", None, "Redshift (Redrock, possibly replaced by QuasarNET/MgII)"),
        ("ZERR", "D", None, "Redshift error"),
        ("ZWARN", "K", None, "Redrock warning bitmask"),
        ("SPECTYPE", "6A", None, "Spectral type of the best Redrock template (width assumed)"),
        ("LOCATION", "K", None, "PETAL_LOC*1000 + DEVICE_LOC"),
        ("COADD_FIBERSTATUS", "J", None, "Bitwise AND of input FIBERSTATUS"),
        ("TARGET_RA", "D", "deg", "Right ascension (ICRS)"),
        ("TARGET_DEC", "D", "deg", "Declination (ICRS)"),
        ("MORPHTYPE", "4A", None, "Tractor morphological type (width assumed)"),
        ("EBV", "E", "mag", "E(B-V) from SFD98"),
        *((f"FLUX_{b}", "E", _NMGY, f"{b} flux (not extinction-corrected)") for b in ("G", "R", "Z", "W1", "W2")),
        *((f"FLUX_IVAR_{b}", "E", _IVAR, f"Inverse variance of FLUX_{b}") for b in ("G", "R", "Z", "W1")),
        *((f"MW_TRANSMISSION_{b}", "D", None, f"Milky Way transmission, {b}") for b in ("G", "R", "Z", "W1", "W2")),
        ("PROBA_RF", "D", None, "Random-forest QSO probability (targeting)"),
        ("FLUX_IVAR_W2", "E", _IVAR, "Inverse variance of FLUX_W2"),
        ("MASKBITS", "I", None, "Imaging mask bits"),
        ("CMX_TARGET", "K", None, "Commissioning target bits"),
        ("DESI_TARGET", "K", None, "Main-survey dark-time target bits"),
        ("COADD_NUMEXP", "I", None, "Number of exposures in the coadd"),
        ("COADD_EXPTIME", "E", "s", "Summed exposure time"),
        *((f"SV{i}_DESI_TARGET", "K", None, f"SV{i} target bits") for i in (1, 2, 3)),
        *((f"SV{i}_SCND_TARGET", "K", None, f"SV{i} secondary target bits") for i in (1, 2, 3)),
        ("SCND_TARGET", "K", None, "Secondary target bits"),
        ("TSNR2_LYA", "E", None, "LYA template (S/N)^2"),
        ("TSNR2_QSO", "E", None, "QSO template (S/N)^2"),
        ("DELTA_CHI2_MGII", "E", None, "MgII afterburner: chi2(redrock) - chi2(MgII fit)"),
        ("A_MGII", "E", None, "MgII fit amplitude"),
        ("SIGMA_MGII", "E", "Angstrom", "MgII fit width"),
        ("B_MGII", "E", None, "MgII fit constant"),
        ("VAR_A_MGII", "E", None, "Variance of A_MGII"),
        ("VAR_SIGMA_MGII", "E", None, "Variance of SIGMA_MGII"),
        ("VAR_B_MGII", "E", None, "Variance of B_MGII"),
        ("Z_RR", "E", None, "Redrock redshift"),
        ("Z_QN", "E", None, "QuasarNET redshift (line of highest confidence)"),
        *((f"C_{ln}", "E", None, f"QuasarNET confidence for {ln}") for ln in _QN_LINES),
        *((f"Z_{ln}", "E", None, f"QuasarNET redshift from {ln}") for ln in _QN_LINES),
        ("QSO_MASKBITS", "J", None, "QSO selection bits"),
        ("TILEID", "K", None, "Tile ID"),
        ("LASTNIGHT", "K", None, "Last night included in the coadd"),
        ("PETAL_LOC", "K", None, "Petal 0-9"),
        ("SURVEY", "7A", None, "Survey (cmx, sv1, sv2, sv3, main) (width assumed)"),
        ("PROGRAM", "6A", None, "Program (dark, bright, backup, other) (width assumed)"),
    ]
    return tuple(Column(n.upper(), t, u, d, required=n.upper() in _CORE) for n, t, u, d in spec)


_QN_LINES = ("LYA", "CIV", "CIII", "MgII", "Hbeta", "Halpha")
#: TTYPE spelling of mixed-case QSO_CAT columns (schema names are upper case).
TTYPE_SPELLING: dict[str, str] = {f"{p}_{ln}".upper(): f"{p}_{ln}" for p in ("C", "Z") for ln in _QN_LINES}

QSO_COLUMNS = _qso_columns()


def _ion_block(ion: str) -> tuple[Column, ...]:
    win = {"2000": (NBI, "BI", "balnicity index"), "450": (NAI, "AI", "absorption index")}
    cols: list[Column] = []
    for width, (nslot, idx, words) in win.items():
        cols += [
            Column(f"{idx}_{ion}", "E", None, f"{ion} {words} [km/s]"),
            Column(f"ERR_{idx}_{ion}", "E", None, f"Uncertainty of {idx}_{ion} [km/s]"),
            Column(f"N{ion}_{width}", "J", None, f"Number of {idx} troughs (max {nslot})"),
            Column(f"VMIN_{ion}_{width}", f"{nslot}E", None, "Trough start, positive outflow speed [km/s]; -1 unused"),
            Column(f"VMAX_{ion}_{width}", f"{nslot}E", None, "Trough end, positive outflow speed [km/s]; -1 unused"),
            Column(f"POSMIN_{ion}_{width}", f"{nslot}E", None, "Speed of the trough minimum [km/s]; -1 unused"),
            Column(f"FMIN_{ion}_{width}", f"{nslot}E", None, "Normalised flux at the minimum; -1 unused"),
        ]
    return tuple(cols)


#: The BAL block (order as baltools writes it).
BAL_COLUMNS: tuple[Column, ...] = (
    Column("PCA_COEFFS", f"{NPCA}E", None, "PCA continuum coefficients (4E with Brodzeller templates)"),
    Column("PCA_CHI2", "E", None, "Reduced chi2 of the PCA fit"),
    Column("BAL_PROB", "E", None, "CNN BAL probability; -1 not computed, -99 not yet filled"),
    *_ion_block("CIV"),
    *_ion_block("SIIV"),
)
BALMASK_COLUMN = Column("BALMASK", "B", None, "1 not in BAL table; 2 Z outside [1.57, 5]; 4 |dZ|>0.001; 0 ok")
SNR_COLUMNS: tuple[Column, ...] = (
    Column("SNR_CIV", "E", None, "Median S/N in the C IV search window (-1 n/a)", required=False),
    Column("SNR_REDSIDE", "E", None, "S/N redward of Lya (-1 n/a; newer baltools)", required=False),
    Column("SNR_FOREST", "E", None, "S/N in the Lya forest (-1 n/a; newer baltools)", required=False),
)

#: Old Si IV spelling → current (``BI_SIV`` → ``BI_SIIV``, ``NSIV_2000`` → ``NSIIV_2000`` …).
SIV_TO_SIIV: dict[str, str] = {c.name.replace("SIIV", "SIV"): c.name for c in BAL_COLUMNS if "SIIV" in c.name}

BALCAT_COLUMNS: tuple[Column, ...] = (
    Column("TARGETID", "K", None, "DESI TARGETID (join on it, never on coordinates)"),
    Column("TARGET_RA", "E", None, "RA [deg], float32 copy from the fibermap"),
    Column("TARGET_DEC", "E", None, "Dec [deg], float32 copy from the fibermap"),
    Column("Z", "E", None, "Redrock redshift, float32 copy"),
    Column("ZERR", "E", None, "Redshift error, float32 copy"),
    Column("ZWARN", "E", None, "ZWARN stored as float32 by baltools"),
    *BAL_COLUMNS,
    *SNR_COLUMNS,
)

_QSO_HDU = TableHDU(extname="QSO_CAT", columns=QSO_COLUMNS, keywords=("DESIDR",), description="One row per quasar.")
_BALCAT_HDU = TableHDU(extname="BALCAT", columns=BALCAT_COLUMNS, description="One row per QSO searched for BALs.")
_APPENDED_QSO = tuple(
    Column(c.name, c.tform, c.unit, c.description, required=c.name in {"TARGETID", "Z", "TARGET_RA", "TARGET_DEC"})
    for c in QSO_COLUMNS
)
_APPENDED_HDU = TableHDU(
    extname="ZCATALOG",
    columns=(*_APPENDED_QSO, *BAL_COLUMNS, BALMASK_COLUMN, *SNR_COLUMNS),
    description="QSO catalog columns (whatever the input had) followed by the BAL block.",
)


def _identify_qso(extnames: list[str], header: dict) -> bool:
    return "QSO_CAT" in {n.upper() for n in extnames}


def _identify_balcat(extnames: list[str], header: dict) -> bool:
    return "BALCAT" in {n.upper() for n in extnames}


def _identify_appended(extnames: list[str], header: dict) -> bool:
    names = {n.upper() for n in extnames}
    # zcatalog files carry ZCATVER in PRIMARY and coadd/redrock files SPGRP; baltools' output has neither
    return "ZCATALOG" in names and "EXP_FIBERMAP" not in names and not ({"ZCATVER", "SPGRP"} & set(header))


QSO_CAT_SCHEMA = register(
    ProductSchema(
        name="qso-cat",
        title="DESI QSO catalog (QSO_CAT)",
        filename=r"(?i)^QSO_cat_(?![^/]*bal)[^/]*\.fits(\.gz)?$",
        hdus=(_QSO_HDU,),
        source=SOURCE_QSO,
        identify=_identify_qso,
        notes=(
            "Columns, order, types and units from the DR1 datamodel (not checked on a real file). "
            "String widths are not in the datamodel ('char stream'): SPECTYPE 6A, MORPHTYPE 4A, "
            "SURVEY 7A, PROGRAM 6A are assumed (the datamodel NAXIS1=384 implies 32 bytes for the four, "
            "so the real widths differ); readers accept any width. Only the core columns are required "
            "(healpix variants of the catalog may lack tile columns). C_*/Z_* QuasarNET columns are "
            "spelled LYA, CIV, CIII, MgII, Hbeta, Halpha in the files."
        ),
    )
)

BALCAT_SCHEMA = register(
    ProductSchema(
        name="qso-balcat",
        title="baltools standalone BAL table (BALCAT)",
        filename=r"(?i)^baltable-[^/]*\.fits(\.gz)?$",
        hdus=(_BALCAT_HDU,),
        source=SOURCE_BAL,
        identify=_identify_balcat,
        notes=(
            "From baltools code, no real DR1 file seen: TARGETID K; TARGET_RA/DEC, Z, ZERR and ZWARN "
            "float32 (E) as initbaltab_desi writes them; PCA_COEFFS 5E (4E with alternate templates); "
            "no TUNITs (baltools writes none). SNR_CIV/SNR_REDSIDE/SNR_FOREST come from newer fitbal "
            "(assumed E, optional). Older files spell SiIV as SIV."
        ),
    )
)

BAL_APPENDED_SCHEMA = register(
    ProductSchema(
        name="qso-bal-appended",
        title="QSO catalog with baltools BAL columns appended (ZCATALOG)",
        filename=r"(?i)^(?!baltable-)[^/]*(qso[-_]?balcat|balcat[-_]|[-_]bal[-_.])[^/]*\.fits(\.gz)?$",
        hdus=(_APPENDED_HDU,),
        source=SOURCE_BAL,
        identify=_identify_appended,
        notes=(
            "From baltools popqsotab.inittab + appendbalinfo_hp (no public datamodel, no real DR1 file "
            "seen): the input QSO catalog's columns, then PCA_COEFFS..FMIN_SIIV_450, BALMASK (B), "
            "SNR_CIV (newer versions; SNR_REDSIDE/SNR_FOREST assumed to follow). EXTNAME ZCATALOG. "
            "Rows never matched keep baltools' init values (zeros, BAL_PROB -99, BALMASK 1|2)."
        ),
    )
)

# PCA_COEFFS is 4E when baltools ran with the alternate (Brodzeller) templates
for _product, _ext in (("qso-balcat", "BALCAT"), ("qso-bal-appended", "ZCATALOG")):
    allow_variable_repeat(_product, _ext, "PCA_COEFFS")

_LAYOUT_OF_EXT = {"QSO_CAT": "qso_cat", "BALCAT": "balcat", "ZCATALOG": "appended"}
_HDU_OF_LAYOUT = {"qso_cat": _QSO_HDU, "balcat": _BALCAT_HDU, "appended": _APPENDED_HDU}
_EXT_OF_LAYOUT = {"qso_cat": "QSO_CAT", "balcat": "BALCAT", "appended": "ZCATALOG"}

# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    """Upper-case lookup key of a column name, with the old SIV spelling mapped to SIIV."""
    up = name.upper()
    return SIV_TO_SIIV.get(up, up)


def read_qso_catalog(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    targetids: Sequence[int] | np.ndarray | None = None,
) -> pa.Table:
    """Read a QSO catalog, a BAL table or a QSO catalog with BAL columns.

    The table HDU is looked up by EXTNAME: ``QSO_CAT``, else ``ZCATALOG``, else ``BALCAT``.
    Only the requested columns and rows are read.

    Parameters
    ----------
    path
        FITS file.
    columns
        Columns to read (case-insensitive; ``SIIV`` names also find old ``SIV`` columns).
        Default: all.
    targetids
        Read only rows whose TARGETID is in this list (file order kept; absent ids are
        skipped).

    Returns
    -------
    pyarrow.Table
        Columns keep the file's spelling (e.g. ``C_MgII``) except that old Si IV names are
        returned as ``SIIV`` (:data:`SIV_TO_SIIV`); units in field metadata.

    Raises
    ------
    FormatError
        No QSO_CAT/ZCATALOG/BALCAT HDU, or a missing required/requested column (naming file,
        HDU and column).
    """
    p = Path(path)
    with open_fits(p) as fits:
        hdu = find_hdu(fits, "QSO_CAT", "ZCATALOG", "BALCAT")
        if hdu is None:
            raise FormatError(
                f"no QSO_CAT, ZCATALOG or BALCAT HDU (file has {', '.join(hdu_names(fits))})",
                file=p,
                hdu="QSO_CAT/ZCATALOG/BALCAT",
            )
        extname = hdu.get_extname().strip().upper()
        stored = hdu.get_colnames()
        by_key = {_canonical(s): s for s in stored}
        layout = _LAYOUT_OF_EXT[extname]
        if columns is None:
            spec = _HDU_OF_LAYOUT[layout]
            has_bal = "BI_CIV" in by_key
            for col in spec.columns:
                if not col.required or (layout == "appended" and not has_bal and col.name not in {"TARGETID", "Z"}):
                    continue  # a ZCATALOG without BAL columns is read as a plain catalog
                if col.name not in by_key:
                    raise FormatError("missing required column", file=p, hdu=extname, column=col.name)
            src = None
            out_names = [_rename(s) for s in stored]
        else:
            src = []
            for col in columns:
                if _canonical(col) not in by_key:
                    raise FormatError("missing column", file=p, hdu=extname, column=col)
                src.append(by_key[_canonical(col)])
            out_names = [_rename(s) for s in src]
        rows = None
        if targetids is not None:
            if "TARGETID" not in by_key:
                raise FormatError("no TARGETID column to select rows", file=p, hdu=extname, column="TARGETID")
            rows = rows_for_targetids(hdu.read_column(by_key["TARGETID"]), targetids)
    if src is None:
        table = read_table(p, extname, rows=rows)
    else:
        # ask in file order (one pass over the rows), then restore the caller's order
        in_file = sorted(dict.fromkeys(src), key=stored.index)
        table = read_table(p, extname, columns=in_file, rows=rows)
        table = table.select([in_file.index(s) for s in src])
    return table.rename_columns(out_names)


def _rename(stored: str) -> str:
    up = stored.upper()
    return SIV_TO_SIIV.get(up, stored)


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------

#: Fill values of BAL columns for rows without BAL measurements (baltools conventions:
#: fitbal.initialize for troughs and S/N, BAL_PROB −1 = "not computed").
BAL_FILL: dict[str, float] = {
    **{c.name: (-1.0 if c.name.split("_")[0] in {"VMIN", "VMAX", "POSMIN", "FMIN"} else 0.0) for c in BAL_COLUMNS},
    "BAL_PROB": -1.0,
    **{c.name: -1.0 for c in SNR_COLUMNS},
}


def _fill_value(col: Column) -> Any:
    if col.name in BAL_FILL:
        return BAL_FILL[col.name]
    kind = col.dtype.kind
    if kind == "U":
        return ""
    if kind == "f":
        return np.nan
    return 0


def _as_arrow(table: pa.Table | np.ndarray) -> pa.Table:
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, np.ndarray) and table.dtype.names:
        return numpy_to_arrow(table)
    raise SchemaError("table must be a pyarrow.Table or a structured numpy array")


def write_qso_catalog(
    path: str | os.PathLike[str],
    table: pa.Table | np.ndarray,
    *,
    with_bal: bool = False,
    layout: Literal["qso_cat", "balcat", "appended"] = "qso_cat",
    header: Mapping[str, Any] | None = None,
) -> Path:
    """Write a QSO / BAL catalog in one of the three DR1 layouts.

    ``layout="qso_cat"``
        HDU ``QSO_CAT``: every datamodel column in datamodel order (missing ones filled:
        integers 0, floats NaN, strings ``""``), then any extra input columns; header
        ``DESIDR`` (default ``"dr1"``). With ``with_bal=True`` the BAL block, BALMASK and
        SNR_* follow.
    ``layout="balcat"``
        HDU ``BALCAT``: TARGETID, TARGET_RA/DEC, Z, ZERR, ZWARN (float32 as baltools), the
        BAL block and SNR_CIV/SNR_REDSIDE/SNR_FOREST. Extra columns are refused.
    ``layout="appended"``
        HDU ``ZCATALOG``: the input's QSO columns (datamodel ones in datamodel order, then
        extras), then the BAL block, BALMASK, SNR_*.

    Missing BAL columns are filled as baltools does for a QSO without troughs: trough
    slots (VMIN/VMAX/POSMIN/FMIN) −1, BI/AI/errors/counts 0, PCA 0, BAL_PROB −1, SNR −1.
    A missing BALMASK is computed: bit 1 (value 1) when the input has no BAL columns, bit 2
    (value 2) when Z is outside [BAL_ZMIN, BAL_ZMAX]; bit 4 (Δz) needs the BAL table and is
    left 0. Output is byte-deterministic and written atomically.

    Parameters
    ----------
    path
        Output file.
    table
        Input rows (any column-name case; ``SIV`` names are accepted as ``SIIV``).
        TARGETID is required, and Z for BAL layouts.
    with_bal
        Add the BAL block to the ``qso_cat`` layout (implied by the other layouts).
    layout
        ``"qso_cat"``, ``"balcat"`` or ``"appended"``.
    header
        Extra keywords for the table HDU.

    Returns
    -------
    Path

    Raises
    ------
    SchemaError
        Unknown layout, missing TARGETID/Z, wrong vector length, strings too long for
        their column, text in a numeric column.
    """
    if layout not in _HDU_OF_LAYOUT:
        raise SchemaError(f"unknown layout {layout!r} (qso_cat, balcat, appended)", parameter="layout")
    data = _as_arrow(table)
    extname = _EXT_OF_LAYOUT[layout]
    by_key: dict[str, str] = {}
    for name in data.column_names:
        key = _canonical(name)
        if key in by_key:
            raise SchemaError(f"duplicate column {name!r} (case-insensitive / SIV=SIIV)", hdu=extname, column=name)
        by_key[key] = name
    bal = layout != "qso_cat" or with_bal
    for need in ("TARGETID", "Z") if bal else ("TARGETID",):
        if need not in by_key:
            raise SchemaError("missing required column", hdu=extname, column=need)

    bal_cols = (*BAL_COLUMNS, BALMASK_COLUMN, *SNR_COLUMNS) if bal else ()
    if layout == "balcat":
        plan = list(BALCAT_COLUMNS)
        known = {c.name for c in plan}
        extras = [n for k, n in by_key.items() if k not in known and k != "BALMASK"]
        if extras:
            raise SchemaError(f"columns not in the BALCAT layout: {', '.join(extras)}", hdu=extname, column=extras[0])
        extras = []
    else:
        qso = list(QSO_COLUMNS) if layout == "qso_cat" else [c for c in QSO_COLUMNS if c.name in by_key]
        if layout == "appended":
            for need in ("TARGET_RA", "TARGET_DEC"):
                if need not in by_key:
                    raise SchemaError("missing required column", hdu=extname, column=need)
        known = {c.name for c in (*QSO_COLUMNS, *bal_cols)}
        extras = [n for k, n in by_key.items() if k not in known]
        plan = qso
    records, units = _encode(data, by_key, plan, extras, list(bal_cols) if layout != "balcat" else [], extname)
    if bal and layout != "balcat" and "BALMASK" not in by_key:
        records["BALMASK"] = _balmask(records["Z"], has_bal="BI_CIV" in by_key)

    keys = dict(header or {})
    if layout == "qso_cat":
        keys.setdefault("DESIDR", "dr1")
    hdr = [{"name": str(k).upper(), "value": v} for k, v in keys.items()]
    out = Path(path)
    with atomic_output(out) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None)
        fits.write_table(records, extname=extname, units=units, header=hdr)
    return out


def _balmask(z: np.ndarray, *, has_bal: bool) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    inside = (z >= BAL_ZMIN) & (z <= BAL_ZMAX)
    mask = np.where(inside, 0, BALMASK_Z_RANGE).astype(np.uint8)
    if not has_bal:
        mask |= BALMASK_NOT_IN_BALCAT
    return mask


def _encode(
    data: pa.Table,
    by_key: Mapping[str, str],
    plan: Sequence[Column],
    extras: Sequence[str],
    tail: Sequence[Column],
    extname: str,
) -> tuple[np.ndarray, list[str]]:
    """Build the record array: schema columns (*plan*), extra input columns, then *tail*."""
    nrow = data.num_rows
    schema_cols = [*plan, *tail]
    used = [by_key[c.name] for c in schema_cols if c.name in by_key] + list(extras)
    widths = {by_key[c.name]: int(c.tform[:-1]) for c in schema_cols if c.name in by_key and c.tform.endswith("A")}
    for col in schema_cols:
        if col.name in by_key and col.tform.endswith("A"):
            values = data.column(by_key[col.name]).to_pylist()
            longest = max((len(v) for v in values if v is not None), default=0)
            if longest > widths[by_key[col.name]]:
                raise SchemaError(
                    f"value of {longest} characters does not fit {col.tform}", hdu=extname, column=col.name
                )
    src = arrow_to_numpy(data.select(used), string_widths=widths) if used else None

    fields: list[tuple[str, Any, Any, str | None, Any]] = []  # (ttype, dtype, shape, unit, values)
    for col in plan:
        fields.append(_schema_field(col, by_key, src, extname))
    for name in extras:
        values = src[name]
        fld = data.schema.field(name)
        unit = fld.metadata.get(b"unit", b"").decode() if fld.metadata else ""
        fields.append((name, values.dtype.base, values.shape[1:], unit or None, values))
    for col in tail:
        fields.append(_schema_field(col, by_key, src, extname))

    out = np.zeros(nrow, dtype=[(f[0], f[1], f[2]) for f in fields])
    for ttype, _dtype, _shape, _unit, values in fields:
        out[ttype] = values
    return out, [f[3] or "" for f in fields]


def _schema_field(col: Column, by_key: Mapping[str, str], src: np.ndarray | None, extname: str):
    ttype = TTYPE_SPELLING.get(col.name, col.name)
    shape = col.shape
    if col.name not in by_key:
        return (ttype, col.dtype, shape, col.unit, _fill_value(col))
    values = src[by_key[col.name]]
    if col.dtype.kind == "U":
        return (ttype, col.dtype, shape, col.unit, values)
    if values.dtype.kind in "SUO":
        raise SchemaError(f"expected numbers, got {values.dtype}", hdu=extname, column=col.name)
    if col.dtype.kind in "iu" and values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
        raise SchemaError("non-integer values for an integer column", hdu=extname, column=col.name)
    got = values.shape[1:]
    if got != shape:
        if col.name == "PCA_COEFFS" and got == (NPCA - 1,):
            shape = got  # Brodzeller templates: 4 coefficients (baltools --alttemp)
        else:
            raise SchemaError(f"expected per-row shape {shape or 'scalar'}, got {got}", hdu=extname, column=col.name)
    return (ttype, col.dtype, shape, col.unit, values)


# --------------------------------------------------------------------------------------
# Documentation page (docs/formats/qso.md is generated from this)
# --------------------------------------------------------------------------------------

DOC_PREAMBLE = """\
# QSO and BAL catalogs

Files: the DR1 QSO catalog `QSO_cat_{SPECPROD}_cumulative_{VERSION}.fits` (HDU `QSO_CAT`,
desidatamodel) and its healpix variants; baltools BAL tables `baltable-*.fits` (HDU
`BALCAT`); QSO catalogs with the BAL columns appended (HDU `ZCATALOG`, baltools
`appendbalinfo_hp.py`). Module: `desilab.io.qso`. This page is generated from the golden
schemas (`desilab.io.qso.format_doc()`); a test fails when it is out of date.

**The DR1 BAL layout is in no public datamodel.** What follows for `BALCAT` and the
appended layout is transcribed from baltools code; see "Verified and assumed".

## Reading

`read_qso_catalog(path, columns=None, targetids=None)` finds `QSO_CAT`, else `ZCATALOG`,
else `BALCAT` by EXTNAME and reads only the requested columns (case-insensitive) and, with
`targetids`, only the matching rows (TARGETID is read first; file order is kept). Without
`columns`, the layout's required columns are checked and a missing one raises
`FormatError` naming file, HDU and column. Column names keep the file's spelling
(`C_MgII`, `Z_Halpha`), except the old Si IV spelling, which is returned as `SIIV`:

| stored (old) | returned |
|---|---|
@SIVTABLE@

## Writing

`write_qso_catalog(path, table, with_bal=False, layout="qso_cat"|"balcat"|"appended",
header=None)`:

- `qso_cat`: HDU `QSO_CAT`, every datamodel column in datamodel order (missing ones filled
  with 0 / NaN / ""), extra input columns after them, keyword `DESIDR` (default `dr1`);
  `with_bal=True` appends the BAL block, BALMASK and SNR_* as in the appended layout.
- `balcat`: HDU `BALCAT`, exactly the baltools columns (TARGET_RA/DEC, Z, ZERR, ZWARN as
  float32, as `initbaltab_desi` writes them); other columns are refused.
- `appended`: HDU `ZCATALOG`: the input's QSO columns (datamodel ones in datamodel order,
  then extras), then PCA_COEFFS … FMIN_SIIV_450, BALMASK, SNR_CIV, SNR_REDSIDE, SNR_FOREST.

Missing BAL columns are filled as baltools fills a quasar without troughs
(`fitbal.initialize`): trough slots VMIN/VMAX/POSMIN/FMIN = −1, BI/AI, their errors and the
trough counts = 0, PCA_COEFFS/PCA_CHI2 = 0, SNR_* = −1, and BAL_PROB = −1 ("not computed",
the value `addbalinfo` sets once a row has been visited). A missing BALMASK is computed
from its bits: 1 = not in a BAL table (set when the input has no BAL columns at all),
2 = Z outside [BAL_ZMIN, BAL_ZMAX] = [1.57, 5.0], 4 = |ΔZ| > 0.001 between the QSO and BAL
catalogs (needs the BAL table, so left 0). Rows that baltools never matched keep its
`inittab` values in real files (zeros in the trough slots, BAL_PROB −99, BALMASK 1|2): test
BALMASK, not the slot values. Strings longer than their TFORM width, wrong vector lengths
and text in numeric columns raise `SchemaError`; PCA_COEFFS may have 4 values (baltools
`--alttemp`), written as `4E`. Output is byte-deterministic and written atomically.

## Constants

Module-level constants, from baltools `balconfig.py` (and `fitbal.py` for the trough
definitions): `LAMBDA_CIV` = 1549 Å, `LAMBDA_SIIV` = 1398 Å, `VMIN_BAL` = −25000 km/s,
`BI_VMAX` = −3000 km/s, `AI_VMAX` = `VMAX_BAL` = 0, `BI_MIN_WIDTH` = 2000 km/s,
`AI_MIN_WIDTH` = 450 km/s, `BI_FLUX_THRESHOLD` = 0.9, `TROUGH_SIGMA` = 0.5,
`BAL_LAMBDA_MIN/MAX` = 1261/2399 Å (PCA fit window), `BAL_ZMIN/MAX` = 1.57/5.0, `NPCA` = 5,
`NBI` = 5, `NAI` = 17, `C_KMS` = 299792.458, BALMASK bits `BALMASK_NOT_IN_BALCAT` = 1,
`BALMASK_Z_RANGE` = 2, `BALMASK_DZ` = 4, `BAL_DZ_TOL` = 0.001. VMIN/VMAX are positive
outflow speeds; a trough masks λ between λ_line·(1 − VMAX/c) and λ_line·(1 − VMIN/c).

## Verified and assumed

@NOTES@
"""

_NOTES = """\
- **QSO_CAT** (desidatamodel `QSO_cat_cumulative.rst` @ ca5aa4c): column names, order,
  types and units transcribed; not checked on a real file. String widths are not in the
  datamodel ("char stream"): SPECTYPE `6A`, MORPHTYPE `4A`, SURVEY `7A`, PROGRAM `6A` are
  our assumption, and the datamodel's NAXIS1 = 384 implies the four take 32 bytes, so the
  real widths differ (readers accept any width; `validate` only warns on string widths).
  Only TARGETID, Z, ZERR, ZWARN, SPECTYPE, TARGET_RA/DEC are required, because the
  healpix-based variants may lack tile columns. The QuasarNET columns are spelled
  `C_MgII`, `C_Hbeta`, `C_Halpha`, `Z_MgII`, … in the files (schema names are upper case;
  our writer uses the file spelling).
- **From baltools code** (`baltable.py::initbaltab_desi`, `popqsotab.py::inittab` and
  `addbalinfo`, `fitbal.py::initialize`, `bin/appendbalinfo_hp.py`, `balconfig.py`; several
  versions of these files were read): the BALCAT columns and TFORMs (TARGETID `K`;
  TARGET_RA/DEC, Z, ZERR and **ZWARN as `E`**; PCA_COEFFS `5E`; `NCIV_2000` etc. `J`;
  `5E`/`17E` trough vectors); the appended order (catalog columns, PCA, BAL_PROB, C IV
  block, Si IV block, BALMASK `B`, SNR_CIV `E`) and EXTNAME `ZCATALOG`; BALMASK bit
  meanings; fill conventions; no TUNITs anywhere (baltools writes none; velocities are
  km/s, FMIN is a normalised flux).
- **Assumed**: that the DR1 BAL-augmented QSO catalog follows the newest baltools layout;
  SNR_REDSIDE and SNR_FOREST as `E` columns after SNR_CIV (the newest `appendbalinfo_hp.py`
  copies them and `fitbal.initialize` defines them, but no writer of those columns was
  found), and SNR_CIV in BALCAT (copied from BAL tables by the same script). These three
  are optional when reading. `TROUGH_10K` exists in `fitbal.initialize` but is never written
  as a column. The old `SIV` spelling mapping comes from `baltable.cattobalinfo`.
- The baltools snapshot named in desi-formats.md is `d47c815`; the search index held other
  commits of the same files, which agree on everything above except the SNR_* columns.
"""


def format_doc() -> str:
    """The content of ``docs/formats/qso.md`` (generated from the schemas)."""
    from desilab.io.validate import schema_markdown

    table = "\n".join(f"| `{old}` | `{new}` |" for old, new in SIV_TO_SIIV.items())
    parts = [DOC_PREAMBLE.replace("@NOTES@", _NOTES).replace("@SIVTABLE@", table)]
    parts += [schema_markdown(s) for s in (QSO_CAT_SCHEMA, BALCAT_SCHEMA, BAL_APPENDED_SCHEMA)]
    return "\n".join(parts)
