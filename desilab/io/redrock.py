"""Redrock redshift files ``redrock-SURVEY-PROGRAM-HPX.fits`` (and tile ``redrock-*``).

Golden schema ``redrock``, :func:`read_redrock`, :func:`write_redrock` and a content
check. Layout as Redrock's ``write_zbest`` writes it (desihub/redrock
``py/redrock/external/desi.py``): PRIMARY (RRVER, TEMNAMnn/TEMVERnn, and the spectral
group keywords copied from the coadd), REDSHIFTS, FIBERMAP, EXP_FIBERMAP, TSNR2, all
row-matched by TARGETID except EXP_FIBERMAP. Redrock writes no TUNITs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from desilab.errors import FormatError, SchemaError
from desilab.io._tables import read_table_with_header, write_table
from desilab.io.coadd import EXP_FIBERMAP_COLUMNS, FIBERMAP_COLUMNS, TSNR2_COLUMNS, _primary_header
from desilab.io.fits import atomic_output, find_hdu, hdu_names, open_fits, require_columns
from desilab.io.schema import Column, Problem, ProductSchema, TableHDU, register
from desilab.io.spectra import rows_for_targetids_ordered
from desilab.io.validate import register_check

__all__ = [
    "REDROCK_SCHEMA",
    "REDSHIFTS_COLUMNS",
    "REDSHIFTS_HDU",
    "check_redrock",
    "read_redrock",
    "write_redrock",
]

REDSHIFTS_COLUMNS: tuple[Column, ...] = (
    Column("TARGETID", "K", None, "Target ID for this row"),
    Column("Z", "D", None, "Best fit redshift"),
    Column("ZERR", "D", None, "Uncertainty on best fit redshift"),
    Column("ZWARN", "K", None, "Warning flags; 0 is good"),
    Column("CHI2", "D", None, "Best fit chi2"),
    Column("COEFF", "10D", None, "Redrock template coefficients"),
    Column("FITMETHOD", "4A", None, "Fit method (newer Redrock, e.g. PCA/NMF)", False),
    Column("NPIXELS", "K", None, "Number of unmasked pixels in the fit"),
    Column("SPECTYPE", "6A", None, "Spectral type: GALAXY, QSO, STAR"),
    Column("SUBTYPE", "20A", None, "Spectral subtype (may be blank)"),
    Column("NCOEFF", "K", None, "Number of template coefficients used"),
    Column("DELTACHI2", "D", None, "chi2 difference to the next best fit"),
)

REDSHIFTS_HDU = TableHDU("REDSHIFTS", REDSHIFTS_COLUMNS, aliases=("ZBEST",), description="best-fit redshift per target")


def _unitless(cols: tuple[Column, ...]) -> tuple[Column, ...]:
    return tuple(dataclasses.replace(c, unit=None) for c in cols)


def _identify(extnames: list[str], header: dict) -> bool:
    names = set(extnames)
    return (
        ("REDSHIFTS" in names or "ZBEST" in names)
        and "FIBERMAP" in names
        and not any(n.endswith("_FLUX") for n in names)
    )


REDROCK_SCHEMA = register(
    ProductSchema(
        name="redrock",
        title="Redrock redshifts for one coadd",
        filename=(
            r"^redrock-((cmx|main|special|sv1|sv2|sv3)-(backup|bright|dark|other)-\d+"
            r"|\d-\d+-(thru\d{8}|\d{8}|exp\d{8}|all))\.fits(\.gz)?$"
        ),
        hdus=(
            REDSHIFTS_HDU,
            TableHDU("FIBERMAP", _unitless(FIBERMAP_COLUMNS), description="coadd FIBERMAP, row-matched"),
            TableHDU("EXP_FIBERMAP", _unitless(EXP_FIBERMAP_COLUMNS), required=False, description="per-exposure rows"),
            TableHDU(
                "TSNR2",
                (Column("TARGETID", "K", None, "Unique DESI target ID"), *TSNR2_COLUMNS),
                description="template S/N^2 from the coadd SCORES, row-matched",
            ),
        ),
        source=(
            "desihub/redrock@69d8cb0 py/redrock/external/desi.py::write_zbest; desihub/desidatamodel@035102b "
            "doc/DESI_SPECTRO_REDUX/SPECPROD/healpix/.../redrock-SURVEY-PROGRAM-PIXNUM.rst; checked on "
            "desihub/fastspecfit@d7b28da py/fastspecfit/test/data/redrock-*.fits"
        ),
        primary_keywords=("RRVER",),
        identify=_identify,
        notes=(
            "Verified on an iron tile file (RRVER 0.17.0) and a loa healpix file (RRVER 0.20.2): "
            "HDU names/order, REDSHIFTS/FIBERMAP/EXP_FIBERMAP/TSNR2 columns, no TUNITs. FITMETHOD "
            "appears in newer Redrock only; COEFF is written with TDIM in some versions. Older "
            "productions named the file zbest-* with a ZBEST HDU (accepted as an alias). "
            "PRIMARY keywords besides RRVER/TEMNAMnn/TEMVERnn are copied from the coadd "
            "(SPGRP, SPGRPVAL, HPXPIXEL, ... or TILEID, PETAL, NIGHT)."
        ),
    )
)

_TABLES = {h.extname: h for h in REDROCK_SCHEMA.hdus if isinstance(h, TableHDU)}


def read_redrock(
    path: str | os.PathLike[str],
    *,
    targetids: Sequence[int] | np.ndarray | None = None,
    columns: Sequence[str] | None = None,
    on_missing: Literal["raise", "skip"] = "raise",
) -> pa.Table:
    """Read the REDSHIFTS table of a Redrock file.

    Parameters
    ----------
    path
        ``redrock-*.fits`` (``zbest-*`` with a ZBEST HDU is accepted too).
    targetids
        Only these TARGETIDs, in this order (the TARGETID column is read first, then
        only the matching rows).
    columns
        Only these columns (default all).
    on_missing
        Requested TARGETIDs absent from the file: ``"raise"`` (InputError) or ``"skip"``.

    Returns
    -------
    pyarrow.Table
        Its file's own REDSHIFTS keywords are in the schema metadata ``fits_header``.

    Raises
    ------
    FormatError
        Missing HDU or a required column (TARGETID, Z, ZERR, ZWARN, SPECTYPE) when all
        columns are read, or a requested column.
    """
    path = Path(path)
    with open_fits(path) as fits:
        hdu = find_hdu(fits, "REDSHIFTS", "ZBEST")
        if hdu is None:
            raise FormatError(f"missing HDU (file has {', '.join(hdu_names(fits))})", file=path, hdu="REDSHIFTS")
        require_columns(hdu, ["TARGETID"], file=path)
        if columns is None:
            require_columns(hdu, ["Z", "ZERR", "ZWARN", "SPECTYPE"], file=path)
        rows = None
        if targetids is not None:
            rows = rows_for_targetids_ordered(
                hdu.read_column("TARGETID"), targetids, on_missing=on_missing, what=f"file {path}"
            )
        return read_table_with_header(hdu, rows=rows, columns=columns, file=path)


def write_redrock(
    path: str | os.PathLike[str],
    redshifts: pa.Table,
    fibermap: pa.Table,
    tsnr2: pa.Table,
    header: dict[str, Any] | None = None,
    *,
    exp_fibermap: pa.Table | None = None,
) -> Path:
    """Write a Redrock file in the layout Redrock writes, byte-deterministically.

    Parameters
    ----------
    path
        Output file (temporary name, renamed when complete).
    redshifts
        REDSHIFTS rows (TARGETID, Z, ZERR, ZWARN, CHI2, COEFF[10], NPIXELS, SPECTYPE,
        SUBTYPE, NCOEFF, DELTACHI2, optional FITMETHOD); strings are padded to the
        schema widths (SPECTYPE 6A, SUBTYPE 20A, FITMETHOD 4A).
    fibermap
        The coadd FIBERMAP, row-matched to *redshifts*.
    tsnr2
        TARGETID + TSNR2_* columns, row-matched (e.g. the TSNR2 columns of SCORES).
    header
        PRIMARY keywords: RRVER, TEMNAMnn/TEMVERnn and the coadd's spectral-group
        keywords (SPGRP, SPGRPVAL, HPXPIXEL, HPXNSIDE, HPXNEST, SURVEY, PROGRAM).
    exp_fibermap
        The coadd EXP_FIBERMAP (written as HDU 3 when given; real files have it).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    SchemaError
        Tables not row-matched by TARGETID, or values that do not fit the TFORMs.
    """
    path = Path(path)
    tids = redshifts.column("TARGETID") if "TARGETID" in redshifts.column_names else None
    if tids is None:
        raise SchemaError("missing required column", hdu="REDSHIFTS", column="TARGETID")
    for name, table in (("FIBERMAP", fibermap), ("TSNR2", tsnr2)):
        if "TARGETID" not in table.column_names:
            raise SchemaError("missing required column", hdu=name, column="TARGETID")
        if table.num_rows != redshifts.num_rows or not pc.all(pc.equal(table.column("TARGETID"), tids)).as_py():
            raise SchemaError("TARGETID is not row-matched to REDSHIFTS", hdu=name, column="TARGETID")
    primary = _primary_header(dict(header or {}))
    with atomic_output(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=primary)
        write_table(fits, redshifts, "REDSHIFTS", _TABLES["REDSHIFTS"], units=False)
        write_table(fits, fibermap, "FIBERMAP", _TABLES["FIBERMAP"], units=False)
        if exp_fibermap is not None:
            write_table(fits, exp_fibermap, "EXP_FIBERMAP", _TABLES["EXP_FIBERMAP"], units=False)
        write_table(fits, tsnr2, "TSNR2", _TABLES["TSNR2"], units=False)
    return path


def check_redrock(path: str | os.PathLike[str], fits: fitsio.FITS) -> list[Problem]:
    """Content checks: FIBERMAP and TSNR2 row-matched to REDSHIFTS by TARGETID.

    Parameters
    ----------
    path
        The file (for messages).
    fits
        The same file opened with fitsio.

    Returns
    -------
    list of Problem
    """
    f = str(path)
    problems: list[Problem] = []
    rs = find_hdu(fits, "REDSHIFTS", "ZBEST")
    if rs is None or "TARGETID" not in rs.get_colnames():
        return problems
    tids = rs.read_column("TARGETID")
    for ext in ("FIBERMAP", "TSNR2"):
        hdu = find_hdu(fits, ext)
        if hdu is None or "TARGETID" not in hdu.get_colnames():
            continue
        if hdu.get_nrows() != len(tids) or not np.array_equal(hdu.read_column("TARGETID"), tids):
            problems.append(Problem(f, "TARGETID not row-matched to REDSHIFTS", hdu=ext, column="TARGETID"))
    if "ZWARN" in rs.get_colnames() and "Z" in rs.get_colnames():
        z = rs.read_column("Z")
        bad = ~np.isfinite(z)
        if np.any(bad):
            problems.append(Problem(f, f"{int(bad.sum())} non-finite Z values", hdu=rs.get_extname(), column="Z"))
    return problems


register_check("redrock", check_redrock)
