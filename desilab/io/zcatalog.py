"""DESI DR1 redshift catalogs (zcatalog v1): ``zpix-SURVEY-PROGRAM.fits`` and ``zall-pix-SPECPROD.fits``.

Golden schemas transcribed from desidatamodel (see :data:`SOURCE`), a reader that reads
only the requested columns and rows (rows chosen by TARGETID and/or ``ZCAT_PRIMARY``),
and a writer that produces the exact column names, TFORMs, TUNITs and header keywords.

Both files hold one row per (TARGETID, SURVEY, PROGRAM) healpix coadd in HDU
``ZCATALOG``; ``zpix`` files may also carry the per-exposure ``EXP_FIBERMAP``.
``zall-pix`` adds ``SV_NSPEC``/``SV_PRIMARY`` and (from DR1) ``MAIN_NSPEC``/
``MAIN_PRIMARY``. Fluxes are *not* corrected for Galactic extinction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from desilab.errors import FormatError, InputError
from desilab.io.fits import (
    atomic_output,
    find_hdu,
    open_fits,
    read_table,
    require_hdu,
)
from desilab.io.products import conform_table
from desilab.io.schema import Column, ProductSchema, TableHDU, register

__all__ = [
    "EXP_FIBERMAP",
    "SOURCE",
    "ZALL",
    "ZPIX",
    "format_doc",
    "read_zcatalog",
    "write_zcatalog",
]

SOURCE = (
    "desihub/desidatamodel doc/DESI_SPECTRO_REDUX/SPECPROD/zcatalog/v1/zpix-SURVEY-PROGRAM.rst "
    "@ 1e879a316e139f0378fc141cd552f326082e8b46 and zall-pix-SPECPROD.rst @ "
    "a4d3e46188952b2597873408f377b79889444df6 (units: py/desidatamodel/data/column_descriptions.csv, "
    "which desispec's desi_zcatalog uses for TUNIT); desi-formats.md section 1"
)

ZCATVER = "v1"
SURVEYS = ("cmx", "main", "sv1", "sv2", "sv3", "special")
PROGRAMS = ("backup", "bright", "dark", "other")

_NMGY = "nanomaggy"
_IVAR = "nanomaggy^-2"


def _c(name: str, tform: str, unit: str | None = None, description: str = "", required: bool = True) -> Column:
    return Column(name, tform, unit, description, required)


def _targeting() -> list[Column]:
    cols = [_c("CMX_TARGET", "K", None, "Target selection bitmask for commissioning (CMX only)", False)]
    for sv in ("SV1", "SV2", "SV3"):
        for kind, what in (
            ("DESI", "DESI (dark time program)"),
            ("BGS", "BGS (bright time program)"),
            ("MWS", "MWS (bright time program)"),
            ("SCND", "Secondary"),
        ):
            cols.append(_c(f"{sv}_{kind}_TARGET", "K", None, f"{what} target selection bitmask for {sv}", False))
    cols += [
        _c("DESI_TARGET", "K", None, "DESI (dark time program) target selection bitmask (main survey only)"),
        _c("BGS_TARGET", "K", None, "BGS (bright time program) target selection bitmask (main survey only)"),
        _c("MWS_TARGET", "K", None, "MWS (bright time program) target selection bitmask (main survey only)"),
        _c("SCND_TARGET", "K", None, "Secondary target selection bitmask (main survey only)", False),
    ]
    return cols


def _tsnr2() -> list[Column]:
    kinds = ("GPBDARK", "ELG", "GPBBRIGHT", "LYA", "BGS", "GPBBACKUP", "QSO", "LRG")
    cols = [
        _c(f"TSNR2_{k}_{band}", "E", None, f"{k} template (S/N)^2 in camera {band}")
        for band in ("B", "R", "Z")
        for k in kinds
    ]
    cols += [_c(f"TSNR2_{k}", "E", None, f"{k} template (S/N)^2 summed over B,R,Z") for k in kinds]
    return cols


def _zcatalog_columns(kind: Literal["zpix", "zall"]) -> tuple[Column, ...]:
    cols = [
        _c("TARGETID", "K", None, "Unique DESI target ID"),
        _c("SURVEY", "7A", None, "Survey name (cmx, main, sv1, sv2, sv3, special)"),
        _c("PROGRAM", "6A", None, "DESI program type (backup, bright, dark, other)"),
        _c("HEALPIX", "J", None, "HEALPixel containing this location at NSIDE=64 in the NESTED scheme"),
        _c("SPGRPVAL", "J", None, "Value by which spectra are grouped for a coadd (the healpix number)"),
        _c("Z", "D", None, "Redshift measured by Redrock"),
        _c("ZERR", "D", None, "Redshift error from Redrock"),
        _c("ZWARN", "K", None, "Redshift warning bitmask from Redrock (0 = good)"),
        _c("CHI2", "D", None, "Best fit chi squared"),
        _c("COEFF", "10D", None, "Redrock template coefficients"),
        _c("NPIXELS", "K", None, "Number of unmasked pixels contributing to the Redrock fit"),
        _c("SPECTYPE", "6A", None, "Spectral type of Redrock best fit template (GALAXY, QSO, STAR)"),
        _c("SUBTYPE", "20A", None, "Spectral subtype"),
        _c("NCOEFF", "K", None, "Number of Redrock template coefficients"),
        _c("DELTACHI2", "D", None, "chi2 difference between first- and second-best Redrock template fits"),
        _c("COADD_FIBERSTATUS", "J", None, "bitwise-AND of input FIBERSTATUS"),
        _c("TARGET_RA", "D", "deg", "Barycentric Right Ascension in ICRS"),
        _c("TARGET_DEC", "D", "deg", "Barycentric Declination in ICRS"),
        _c("PMRA", "E", "mas yr^-1", "Reference catalog proper motion in the RA direction"),
        _c("PMDEC", "E", "mas yr^-1", "Reference catalog proper motion in the Dec direction"),
        _c("REF_EPOCH", "E", "yr", "Reference catalog reference epoch"),
        _c("FA_TARGET", "K", None, "Targeting bit internally used by fiberassign (linked with FA_TYPE)"),
        _c("FA_TYPE", "B", None, "Fiberassign internal target type (science, standard, sky, safe, suppsky)"),
        _c("OBJTYPE", "3A", None, "Object type: TGT, SKY, NON, BAD"),
        _c("SUBPRIORITY", "D", None, "Random subpriority [0-1] to break assignment ties"),
        _c("OBSCONDITIONS", "J", None, "Observing-conditions bitmask of the target"),
        _c("RELEASE", "I", None, "Legacy Surveys release"),
        _c("BRICKNAME", "8A", None, "Brick name from tractor input"),
        _c("BRICKID", "J", None, "Brick ID from tractor input"),
        _c("BRICK_OBJID", "J", None, "OBJID (unique to brick, but not to file)"),
        _c("MORPHTYPE", "4A", None, "Legacy Surveys morphological model type"),
        _c("EBV", "E", "mag", "Galactic extinction E(B-V) reddening from SFD98"),
    ]
    for band in ("G", "R", "Z", "W1", "W2"):
        cols.append(_c(f"FLUX_{band}", "E", _NMGY, f"Legacy Surveys flux in {band} (not extinction-corrected)"))
    for band in ("G", "R", "Z", "W1", "W2"):
        cols.append(_c(f"FLUX_IVAR_{band}", "E", _IVAR, f"Inverse variance of FLUX_{band}"))
    for band in ("G", "R", "Z"):
        cols.append(_c(f"FIBERFLUX_{band}", "E", _NMGY, f"Predicted {band}-band flux within a 1.5 arcsec fiber"))
    for band in ("G", "R", "Z"):
        cols.append(_c(f"FIBERTOTFLUX_{band}", "E", _NMGY, f"Predicted {band}-band flux in a fiber from all sources"))
    cols += [
        _c("MASKBITS", "I", None, "Legacy Surveys DR9 maskbits"),
        _c("SERSIC", "E", None, "Power-law index for the Sersic profile model"),
        _c("SHAPE_R", "E", "arcsec", "Half-light radius of galaxy model (>0)"),
        _c("SHAPE_E1", "E", None, "Ellipticity component 1 of galaxy model"),
        _c("SHAPE_E2", "E", None, "Ellipticity component 2 of galaxy model"),
        _c("REF_ID", "K", None, "Reference catalog ID (Tycho-2, Gaia source_id, SGA)"),
        _c("REF_CAT", "2A", None, "Reference catalog: T2, G2, L3 or empty"),
        _c("GAIA_PHOT_G_MEAN_MAG", "E", "mag", "Gaia G band magnitude"),
        _c("GAIA_PHOT_BP_MEAN_MAG", "E", "mag", "Gaia BP band magnitude"),
        _c("GAIA_PHOT_RP_MEAN_MAG", "E", "mag", "Gaia RP band magnitude"),
        _c("PARALLAX", "E", "mas", "Reference catalog parallax"),
        _c("PHOTSYS", "1A", None, "'N' for MzLS/BASS, 'S' for DECaLS"),
        _c("PRIORITY_INIT", "K", None, "Target initial priority"),
        _c("NUMOBS_INIT", "K", None, "Initial number of observations"),
        *_targeting(),
        _c("PLATE_RA", "D", "deg", "Barycentric Right Ascension in ICRS to be used by PlateMaker"),
        _c("PLATE_DEC", "D", "deg", "Barycentric Declination in ICRS to be used by PlateMaker"),
        _c("COADD_NUMEXP", "I", None, "Number of exposures in coadd"),
        _c("COADD_EXPTIME", "E", "s", "Summed exposure time for coadd"),
        _c("COADD_NUMNIGHT", "I", None, "Number of nights in coadd"),
        _c("COADD_NUMTILE", "I", None, "Number of tiles in coadd"),
        _c("MEAN_DELTA_X", "E", "mm", "Mean fiber difference requested - actual CS5 X location"),
        _c("RMS_DELTA_X", "E", "mm", "RMS fiber difference requested - actual CS5 X location"),
        _c("MEAN_DELTA_Y", "E", "mm", "Mean fiber difference requested - actual CS5 Y location"),
        _c("RMS_DELTA_Y", "E", "mm", "RMS fiber difference requested - actual CS5 Y location"),
        _c("MEAN_PSF_TO_FIBER_SPECFLUX", "E", None, "Mean fraction of a point source's light in the fiber"),
        _c("MEAN_FIBER_RA", "D", "deg", "Mean (over exposures) RA of actual fiber position"),
        _c("STD_FIBER_RA", "E", "arcsec", "Standard deviation (over exposures) of RA of fiber position"),
        _c("MEAN_FIBER_DEC", "D", "deg", "Mean (over exposures) DEC of actual fiber position"),
        _c("STD_FIBER_DEC", "E", "arcsec", "Standard deviation (over exposures) of DEC of fiber position"),
        _c("MIN_MJD", "D", "d", "Minimum MJD of the exposures in the coadd (zcatalog v1 only)", False),
        _c("MAX_MJD", "D", "d", "Maximum MJD of the exposures in the coadd (zcatalog v1 only)", False),
        _c("MEAN_MJD", "D", "d", "Mean MJD of the exposures in the coadd (zcatalog v1 only)", False),
        *_tsnr2(),
    ]
    if kind == "zall":
        cols += [
            _c("SV_NSPEC", "I", None, "Number of coadded spectra for this TARGETID in SV (SV1+2+3)"),
            _c("SV_PRIMARY", "L", None, "Primary coadded spectrum of this TARGETID in SV (SV1+2+3)"),
            _c("MAIN_NSPEC", "I", None, "Number of coadded spectra for this TARGETID in main (DR1+)", False),
            _c("MAIN_PRIMARY", "L", None, "Primary coadded spectrum of this TARGETID in main (DR1+)", False),
        ]
    cols += [
        _c("ZCAT_NSPEC", "I", None, "Number of times this TARGETID appears in this catalog"),
        _c("ZCAT_PRIMARY", "L", None, "Primary (best) coadded spectrum of this TARGETID in this catalog"),
        _c("DESINAME", "22A", None, "DESI JXXX.XXXX[+/-]YY.YYYY name from TARGET_RA/DEC (zcatalog v1 only)", False),
    ]
    return tuple(cols)


EXP_FIBERMAP = TableHDU(
    "EXP_FIBERMAP",
    (
        _c("TARGETID", "K", None, "Unique DESI target ID"),
        _c("PRIORITY", "J", None, "Target current priority"),
        _c("SUBPRIORITY", "D", None, "Random subpriority [0-1) to break assignment ties"),
        _c("NIGHT", "J", None, "Night of observation (YYYYMMDD)"),
        _c("EXPID", "J", None, "DESI exposure ID number"),
        _c("MJD", "D", None, "Modified Julian Date when the shutter was opened for this exposure"),
        _c("TILEID", "J", None, "Unique DESI tile ID"),
        _c("EXPTIME", "D", "s", "Length of time shutter was open"),
        _c("PETAL_LOC", "I", None, "Petal location [0-9]"),
        _c("DEVICE_LOC", "J", None, "Device location on focal plane [0-523]"),
        _c("LOCATION", "K", None, "PETAL_LOC*1000 + DEVICE_LOC"),
        _c("FIBER", "J", None, "Fiber ID on the CCDs [0-4999]"),
        _c("FIBERSTATUS", "J", None, "Fiber status mask, 0 = good"),
        _c("FIBERASSIGN_X", "E", "mm", "Fiberassign expected CS5 X location on focal plane"),
        _c("FIBERASSIGN_Y", "E", "mm", "Fiberassign expected CS5 Y location on focal plane"),
        _c("LAMBDA_REF", "E", "Angstrom", "Requested wavelength at which targets should be centered on fibers"),
        _c("PLATE_RA", "D", "deg", "Barycentric Right Ascension in ICRS to be used by PlateMaker"),
        _c("PLATE_DEC", "D", "deg", "Barycentric Declination in ICRS to be used by PlateMaker"),
        _c("NUM_ITER", "K", None, "Number of positioner iterations"),
        _c("FIBER_X", "D", "mm", "CS5 X location requested by PlateMaker"),
        _c("FIBER_Y", "D", "mm", "CS5 Y location requested by PlateMaker"),
        _c("DELTA_X", "D", "mm", "CS5 X requested minus actual position"),
        _c("DELTA_Y", "D", "mm", "CS5 Y requested minus actual position"),
        _c("FIBER_RA", "D", "deg", "RA of actual fiber position"),
        _c("FIBER_DEC", "D", "deg", "DEC of actual fiber position"),
        _c("PSF_TO_FIBER_SPECFLUX", "D", None, "Fraction of a point source's light captured by the fiber"),
        _c("IN_COADD_B", "L", None, "This exposure was used in the B-camera coadd (newer files)", False),
        _c("IN_COADD_R", "L", None, "This exposure was used in the R-camera coadd (newer files)", False),
        _c("IN_COADD_Z", "L", None, "This exposure was used in the Z-camera coadd (newer files)", False),
    ),
    required=False,
    description="Per-exposure fibermap rows (several per TARGETID); zpix files only",
)

_ZPIX_KEYWORDS = ("SPGRP", "HPXNSIDE", "HPXNEST", "SURVEY", "PROGRAM", "ZCATVER")
_ZALL_KEYWORDS = ("SPGRP", "HPXNSIDE", "HPXNEST", "ZCATVER")

_NOTES = (
    "Verified against desidatamodel v1 pages (names, types, units) and desispec's "
    "desi_zcatalog (units come from desidatamodel column_descriptions.csv, header copied "
    "from the first redrock file plus SURVEY/PROGRAM/ZCATVER). Not yet checked against a "
    "real zpix/zall file (none small enough is public). Optional (required=False): the "
    "CMX/SV targeting columns and SCND_TARGET (set only for their survey), MIN/MAX/MEAN_MJD "
    "and DESINAME (v1 additions), MAIN_NSPEC/MAIN_PRIMARY (DR1 additions), IN_COADD_* in "
    "EXP_FIBERMAP. MAIN_NSPEC is int16 (I) as on the v1 page (the later column_descriptions.csv says "
    "int32). Assumed: the zall ZCATALOG header carries the same SPGRP/HPXNSIDE/HPXNEST/"
    "ZCATVER keywords as zpix (the zall page only says 'see zpix HDU1'); MAIN_NSPEC/"
    "MAIN_PRIMARY live in zall only (the zpix page lists them as optional). String widths "
    "(SURVEY 7A, SUBTYPE 20A...) are those of the datamodel; other widths are reported as "
    "warnings, not errors. Files written without desidatamodel units (--do-not-add-units) "
    "carry no TUNIT keywords: that is a warning."
)


def _identify_zpix(extnames: list[str], primary: dict) -> bool:
    return "ZCATALOG" in extnames and "EXP_FIBERMAP" in extnames and "ZCATVER" in primary


def _identify_zall(extnames: list[str], primary: dict) -> bool:
    return "ZCATALOG" in extnames and "EXP_FIBERMAP" not in extnames and "ZCATVER" in primary


ZPIX = register(
    ProductSchema(
        name="zpix",
        title="Redshift catalog per SURVEY/PROGRAM (zcatalog v1 zpix-SURVEY-PROGRAM.fits)",
        filename=r"^zpix-(cmx|main|sv1|sv2|sv3|special)-(backup|bright|dark|other)\.fits(\.gz)?$",
        hdus=(
            TableHDU(
                "ZCATALOG",
                _zcatalog_columns("zpix"),
                description="Redrock redshifts joined with the coadded fibermap and TSNR2, one row per coadd",
                keywords=_ZPIX_KEYWORDS,
            ),
            EXP_FIBERMAP,
        ),
        source=SOURCE,
        primary_keywords=("ZCATVER",),
        identify=_identify_zpix,
        notes=_NOTES,
    )
)

ZALL = register(
    ProductSchema(
        name="zall-pix",
        title="Redshift catalog of all healpix coadds (zcatalog v1 zall-pix-SPECPROD.fits)",
        filename=r"^zall-pix-[a-z0-9_-]+\.fits(\.gz)?$",
        hdus=(
            TableHDU(
                "ZCATALOG",
                _zcatalog_columns("zall"),
                description="Concatenation of all zpix ZCATALOG tables plus SV_/MAIN_ NSPEC and PRIMARY",
                keywords=_ZALL_KEYWORDS,
            ),
        ),
        source=SOURCE,
        primary_keywords=("ZCATVER",),
        identify=_identify_zall,
        notes=_NOTES,
    )
)


def _schema_for(path: str | os.PathLike[str], fits: Any) -> ProductSchema:
    """zpix unless the file is named/looks like a zall file."""
    if ZALL.matches_name(path):
        return ZALL
    if ZPIX.matches_name(path) or find_hdu(fits, "EXP_FIBERMAP") is not None:
        return ZPIX
    colnames = {c.upper() for c in require_hdu(fits, "ZCATALOG").get_colnames()}
    return ZALL if "SV_PRIMARY" in colnames else ZPIX


def read_zcatalog(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    targetids: Sequence[int] | np.ndarray | None = None,
    primary_only: bool = False,
) -> pa.Table:
    """Read (part of) the ZCATALOG table of a zpix or zall-pix file.

    Only the requested columns are read; when *targetids* or *primary_only* select rows,
    the TARGETID / ZCAT_PRIMARY columns are read first and then only the matching rows.

    Parameters
    ----------
    path
        ``zpix-SURVEY-PROGRAM.fits`` or ``zall-pix-SPECPROD.fits``.
    columns
        Columns to return, in this order (default: all). Names are case-insensitive.
    targetids
        Keep only rows with these TARGETIDs (file order; unknown IDs are ignored; a
        TARGETID observed in several surveys/programs gives several rows).
    primary_only
        Keep only ``ZCAT_PRIMARY`` rows (one per TARGETID within the file).

    Returns
    -------
    pyarrow.Table
        Units in field metadata; schema metadata ``desilab.product`` and ``desilab.file``.

    Raises
    ------
    FormatError
        Not FITS, truncated, no ZCATALOG HDU, or a requested/required column missing
        (the message names file, HDU and column).

    Examples
    --------
    >>> t = read_zcatalog("zall-pix-iron.fits", ["TARGETID", "Z", "ZWARN"],
    ...                   targetids=[39633345008634465], primary_only=True)  # doctest: +SKIP
    """
    with open_fits(path) as fits:
        hdu = require_hdu(fits, "ZCATALOG")
        schema = _schema_for(path, fits)
        stored = {c.upper() for c in hdu.get_colnames()}
        if columns is None:
            for col in schema.hdu("ZCATALOG").columns:
                if col.required and col.name not in stored:
                    raise FormatError("missing required column", file=path, hdu="ZCATALOG", column=col.name)
        needed = (["TARGETID"] if targetids is not None else []) + (["ZCAT_PRIMARY"] if primary_only else [])
        for name in needed:
            if name not in stored:
                raise FormatError("missing column needed to select rows", file=path, hdu="ZCATALOG", column=name)
    rows = None
    if needed:
        sel = read_table(path, "ZCATALOG", needed)
        keep = np.ones(sel.num_rows, dtype=bool)
        if targetids is not None:
            tid = sel.column("TARGETID").to_numpy()
            keep &= np.isin(tid, np.asarray(targetids, dtype=np.int64))
        if primary_only:
            keep &= sel.column("ZCAT_PRIMARY").to_numpy(zero_copy_only=False).astype(bool)
        rows = np.flatnonzero(keep)
    table = read_table(path, "ZCATALOG", columns, rows)
    return table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"desilab.product": schema.name.encode(), b"desilab.file": str(path).encode()}
    )


def write_zcatalog(
    path: str | os.PathLike[str],
    table: pa.Table,
    *,
    kind: Literal["zpix", "zall"] = "zpix",
    survey: str | None = None,
    program: str | None = None,
    header: Mapping[str, Any] | None = None,
    exp_fibermap: pa.Table | None = None,
) -> Path:
    """Write a zcatalog v1 file with the exact layout of the DR1 files.

    Columns are written in golden-schema order with the schema's TFORM and TUNIT;
    schema columns missing from *table* are filled with neutral values (0, ``""``, NaN,
    False; ``SURVEY``/``PROGRAM`` with *survey*/*program* for zpix); columns of *table*
    not in the schema are kept after them. The output is byte-identical for identical
    input (no dates, no checksums).

    Parameters
    ----------
    path
        Output file; written atomically.
    table
        ZCATALOG rows.
    kind
        ``"zpix"`` (one SURVEY/PROGRAM, optional EXP_FIBERMAP) or ``"zall"``.
    survey, program
        zpix only: header ``SURVEY``/``PROGRAM``; default: the single value of the
        table's SURVEY/PROGRAM column.
    header
        Extra or overriding ZCATALOG keywords (e.g. ``RRVER``, ``TEMNAM00``...).
    exp_fibermap
        zpix only: per-exposure rows for the EXP_FIBERMAP HDU.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        Bad *kind*, survey/program missing or ambiguous, EXP_FIBERMAP with zall.
    SchemaError
        A column cannot be stored with the schema TFORM (e.g. strings in TARGETID).
    """
    if kind not in ("zpix", "zall"):
        raise InputError(f"kind must be 'zpix' or 'zall', not {kind!r}", parameter="kind")
    schema = ZPIX if kind == "zpix" else ZALL
    fill: dict[str, object] = {}
    keywords: dict[str, Any] = {"SPGRP": "healpix", "HPXNSIDE": 64, "HPXNEST": True}
    if kind == "zpix":
        survey = survey if survey is not None else _single_value(table, "SURVEY", "survey")
        program = program if program is not None else _single_value(table, "PROGRAM", "program")
        if survey not in SURVEYS:
            raise InputError(f"unknown survey {survey!r} (expected one of {', '.join(SURVEYS)})", parameter="survey")
        if program not in PROGRAMS:
            raise InputError(
                f"unknown program {program!r} (expected one of {', '.join(PROGRAMS)})", parameter="program"
            )
        fill = {"SURVEY": survey, "PROGRAM": program}
        keywords.update(SURVEY=survey, PROGRAM=program)
    else:
        if survey is not None or program is not None:
            raise InputError("zall files span all surveys and programs", parameter="survey/program")
        if exp_fibermap is not None:
            raise InputError("zall-pix files have no EXP_FIBERMAP HDU", parameter="exp_fibermap")
    keywords["ZCATVER"] = ZCATVER
    keywords.update(dict(header or {}))
    out = Path(path)
    data, units = conform_table(table, schema.hdu("ZCATALOG"), fill=fill, file=str(out))
    exp = None
    if exp_fibermap is not None:
        exp = conform_table(exp_fibermap, EXP_FIBERMAP, file=str(out))
    with atomic_output(out) as tmp:
        import fitsio

        with fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
            fits.write(None, header=[_card("ZCATVER", ZCATVER, "Version of zcatalog files")])
            fits.write(data, extname="ZCATALOG", units=units, header=[_card(k, v) for k, v in keywords.items()])
            if exp is not None:
                fits.write(exp[0], extname="EXP_FIBERMAP", units=exp[1])
    return out


_COMMENTS = {
    "SPGRP": "Spectral grouping method",
    "HPXNSIDE": "Healpix nside",
    "HPXNEST": "Nested healpix (not ring)",
    "SURVEY": "DESI sub-survey (e.g. sv1, sv3, main)",
    "PROGRAM": "DESI program (e.g. dark, bright)",
    "ZCATVER": "Version of zcatalog files",
    "RRVER": "Redrock version",
}


def _card(name: str, value: Any, comment: str | None = None) -> dict[str, Any]:
    return {"name": name.upper(), "value": value, "comment": comment or _COMMENTS.get(name.upper(), "")}


def _single_value(table: pa.Table, column: str, parameter: str) -> str:
    names = {n.upper(): n for n in table.column_names}
    if column not in names:
        raise InputError(f"give {parameter}= (the table has no {column} column)", parameter=parameter)
    values = set(table.column(names[column]).to_pylist())
    if len(values) != 1:
        raise InputError(
            f"a zpix file holds one {parameter}; the {column} column has {sorted(map(str, values))}",
            parameter=parameter,
        )
    return str(values.pop())


DOC_PREAMBLE = """\
# Redshift catalogs (zcatalog v1)

Files: `{SPECPROD}/zcatalog/v1/zpix-{SURVEY}-{PROGRAM}.fits` (one per survey/program,
HDUs `ZCATALOG` and `EXP_FIBERMAP`) and `zall-pix-{SPECPROD}.fits` (all surveys/programs,
HDU `ZCATALOG` only, ~2 GB for iron). Module: `desilab.io.zcatalog`
(`read_zcatalog`, `write_zcatalog`). This page is generated from the golden schemas
(`python -c "from desilab.io.validate import write_format_docs; write_format_docs('docs/formats')"`);
a test fails when it is out of date.

Reading: `read_zcatalog(path, columns, targetids=..., primary_only=...)` reads only the
requested columns; row selection reads TARGETID (and ZCAT_PRIMARY) first, then only the
matching rows. Writing: `write_zcatalog(path, table, kind="zpix"|"zall", survey=, program=,
header=, exp_fibermap=)` writes every golden-schema column in schema order (missing ones
filled with 0 / "" / NaN / False), extra columns after them, PRIMARY `ZCATVER='v1'` and
ZCATALOG keywords `SPGRP='healpix'`, `HPXNSIDE=64`, `HPXNEST=T`, `SURVEY`, `PROGRAM`
(zpix), `ZCATVER`. No CHECKSUM/DATASUM is written (fitsio would stamp them with the
date, breaking byte-determinism).

Conventions: `ZWARN==0` is a good redshift; `ZCAT_PRIMARY` picks one coadd per TARGETID
within a file (`SV_PRIMARY`/`MAIN_PRIMARY` across SV / main in zall); `DESI_TARGET`,
`BGS_TARGET`, `MWS_TARGET`, `SCND_TARGET` are set only for SURVEY=main and the SV/CMX
masks only for their survey. `FLUX_*` are **not** corrected for Galactic extinction.

What is verified and what is assumed is stated in each schema's notes below.
"""


def format_doc() -> str:
    """The content of ``docs/formats/zcatalog.md`` (generated from the schemas)."""
    from desilab.io.validate import schema_markdown

    parts = [DOC_PREAMBLE]
    parts += [schema_markdown(s) for s in (ZPIX, ZALL)]
    return "\n".join(parts)
