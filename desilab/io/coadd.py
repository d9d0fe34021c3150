"""DESI coadded spectra: ``coadd-SURVEY-PROGRAM-HPX.fits`` (healpix) and tile coadds.

Golden schema ``coadd``, :func:`read_coadd` (returns a :class:`~desilab.io.spectra.Spectra`),
:func:`write_coadd`, and content checks for ``desilab inspect`` / validation.

Layout (desispec ``write_spectra``; verified on the real files in
``shared/data/real/desi_coadd``): PRIMARY (keywords only), FIBERMAP, EXP_FIBERMAP, then
per band ``{B}_WAVELENGTH``, ``{B}_FLUX``, ``{B}_IVAR``, ``{B}_MASK``, ``{B}_RESOLUTION``
(and ``{B}_MODEL`` when present), SCORES, optional EXTRA_CATALOG and REDSHIFTS. HDUs are
always looked up by EXTNAME.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from desilab.errors import FormatError, InputError, SchemaError
from desilab.io._tables import header_dict, read_table_with_header, user_keywords, write_table
from desilab.io.fits import atomic_output, find_hdu, hdu_names, open_fits, require_columns
from desilab.io.schema import Column, ImageHDU, Problem, ProductSchema, TableHDU, register
from desilab.io.spectra import (
    FLUX_UNIT,
    IVAR_UNIT,
    WAVE_UNIT,
    Spectra,
    _as_rows,
    rows_for_targetids_ordered,
)
from desilab.io.validate import register_check

__all__ = [
    "COADD_SCHEMA",
    "EXP_FIBERMAP_COLUMNS",
    "FIBERMAP_COLUMNS",
    "SCORES_COLUMNS",
    "check_coadd",
    "healpix_header",
    "read_coadd",
    "redrock_path_for",
    "write_coadd",
]

# --- golden schema -------------------------------------------------------------------
# (name, TFORM, TUNIT, description, required). Types/units: desispec 0.70
# ``io/fibermap.py::fibermap_columns`` and the real files; "required" = present in both
# the iron tile coadd and the loa healpix coadd and documented by desidatamodel.
_C = Column
_NMGY, _IVAR_NMGY = "nanomaggy", "nanomaggy^-2"

FIBERMAP_COLUMNS: tuple[Column, ...] = (
    _C("TARGETID", "K", None, "Unique DESI target ID"),
    _C("PETAL_LOC", "I", None, "Petal location [0-9] (tile coadds)", False),
    _C("DEVICE_LOC", "J", None, "Device location on focal plane [0-523] (tile coadds)", False),
    _C("LOCATION", "K", None, "FP location PETAL_LOC*1000 + DEVICE_LOC (tile coadds)", False),
    _C("FIBER", "J", None, "Fiber ID on the CCDs [0-4999] (tile coadds)", False),
    _C("COADD_FIBERSTATUS", "J", None, "Bitwise-AND of input FIBERSTATUS"),
    _C("TARGET_RA", "D", "deg", "Barycentric right ascension in ICRS"),
    _C("TARGET_DEC", "D", "deg", "Barycentric declination in ICRS"),
    _C("DESINAME", "22A", None, "Human readable identifier of a sky location (newer productions)", False),
    _C("PMRA", "E", "mas yr-1", "Proper motion in the +RA direction"),
    _C("PMDEC", "E", "mas yr-1", "Proper motion in the +Dec direction"),
    _C("REF_EPOCH", "E", "yr", "Reference epoch for Gaia/Tycho astrometry"),
    _C("LAMBDA_REF", "E", "Angstrom", "Wavelength at which fiber was centered (tile coadds)", False),
    _C("FA_TARGET", "K", None, "Fiberassign internal target bitmask"),
    _C("FA_TYPE", "B", None, "Fiberassign internal target type"),
    _C("OBJTYPE", "3A", None, "Object type: TGT, SKY, NON, BAD"),
    _C("FIBERASSIGN_X", "E", "mm", "Expected CS5 X location on focal plane (tile coadds)", False),
    _C("FIBERASSIGN_Y", "E", "mm", "Expected CS5 Y location on focal plane (tile coadds)", False),
    _C("PRIORITY", "J", None, "Target current priority (tile coadds)", False),
    _C("SUBPRIORITY", "D", None, "Assignment subpriority [0-1)"),
    _C("OBSCONDITIONS", "J", None, "Bitmask of allowed observing conditions"),
    _C("RELEASE", "I", None, "Imaging surveys release ID"),
    _C("BRICKNAME", "8A", None, "Brick name from tractor input"),
    _C("BRICKID", "J", None, "Brick ID from tractor input"),
    _C("BRICK_OBJID", "J", None, "Imaging Surveys OBJID on that brick"),
    _C("MORPHTYPE", "4A", None, "Imaging Surveys morphological type"),
    _C("EBV", "E", "mag", "Galactic extinction E(B-V) reddening"),
    *(_C(f"FLUX_{b}", "E", _NMGY, f"Flux in {b} (not extinction corrected)") for b in ("G", "R", "Z", "W1", "W2")),
    *(_C(f"FLUX_IVAR_{b}", "E", _IVAR_NMGY, f"Inverse variance of FLUX_{b}") for b in ("G", "R", "Z", "W1", "W2")),
    *(_C(f"FIBERFLUX_{b}", "E", _NMGY, f'Predicted {b.lower()}-band flux in 1.5" fiber') for b in "GRZ"),
    *(_C(f"FIBERTOTFLUX_{b}", "E", _NMGY, f'{b.lower()}-band flux in 1.5" fiber from all sources') for b in "GRZ"),
    _C("MASKBITS", "I", None, "Bitmask for photometry issues"),
    _C("SERSIC", "E", None, "Power-law index for the Sersic profile model"),
    _C("SHAPE_R", "E", "arcsec", "Half-light radius of galaxy model (>0)"),
    _C("SHAPE_E1", "E", None, "Ellipticity component 1 of galaxy model"),
    _C("SHAPE_E2", "E", None, "Ellipticity component 2 of galaxy model"),
    _C("REF_ID", "K", None, "Astrometric cat refID (Gaia SOURCE_ID)"),
    _C("REF_CAT", "2A", None, "Reference catalog source for star"),
    _C("GAIA_PHOT_G_MEAN_MAG", "E", "mag", "Gaia G band magnitude"),
    _C("GAIA_PHOT_BP_MEAN_MAG", "E", "mag", "Gaia BP band magnitude"),
    _C("GAIA_PHOT_RP_MEAN_MAG", "E", "mag", "Gaia RP band magnitude"),
    _C("PARALLAX", "E", "mas", "Reference catalog parallax"),
    _C("PHOTSYS", "1A", None, "N for BASS/MzLS, S for DECam"),
    _C("PRIORITY_INIT", "K", None, "Target initial priority"),
    _C("NUMOBS_INIT", "K", None, "Initial number of observations for target"),
    _C("CMX_TARGET", "K", None, "Target selection bitmask for commissioning (cmx only)", False),
    *(
        _C(f"SV{n}_{kind}_TARGET", "K", None, f"{kind} target selection bitmask for SV{n} (sv{n} only)", False)
        for n in (1, 2, 3)
        for kind in ("DESI", "BGS", "MWS", "SCND")
    ),
    _C("DESI_TARGET", "K", None, "DESI target selection bitmask (set for SURVEY=main)", False),
    _C("BGS_TARGET", "K", None, "BGS target selection bitmask", False),
    _C("MWS_TARGET", "K", None, "Milky Way Survey targeting bits", False),
    _C("SCND_TARGET", "K", None, "Secondary target selection bitmask", False),
    _C("PLATE_RA", "D", "deg", "Right Ascension to be used by PlateMaker"),
    _C("PLATE_DEC", "D", "deg", "Declination to be used by PlateMaker"),
    _C("TILEID", "J", None, "Unique DESI tile ID (tile coadds)", False),
    _C("COADD_NUMEXP", "I", None, "Number of exposures in coadd"),
    _C("COADD_EXPTIME", "E", "s", "Summed exposure time for coadd"),
    _C("COADD_NUMNIGHT", "I", None, "Number of nights in coadd"),
    _C("COADD_NUMTILE", "I", None, "Number of tiles in coadd"),
    _C("MEAN_DELTA_X", "E", "mm", "Mean (over exposures) fiber difference in X"),
    _C("RMS_DELTA_X", "E", "mm", "RMS (over exposures) fiber difference in X"),
    _C("MEAN_DELTA_Y", "E", "mm", "Mean (over exposures) fiber difference in Y"),
    _C("RMS_DELTA_Y", "E", "mm", "RMS (over exposures) difference in Y"),
    _C("MEAN_PSF_TO_FIBER_SPECFLUX", "E", None, "Mean of PSF_TO_FIBER_SPECFLUX"),
    _C("MEAN_FIBER_RA", "D", "deg", "Mean (over exposures) RA of fiber position"),
    _C("STD_FIBER_RA", "E", "deg", "Std (over exposures) of RA; values are arcsec despite TUNIT"),
    _C("MEAN_FIBER_DEC", "D", "deg", "Mean (over exposures) DEC of fiber position"),
    _C("STD_FIBER_DEC", "E", "deg", "Std (over exposures) of DEC; values are arcsec despite TUNIT"),
    _C("MEAN_FIBER_X", "E", "mm", "Mean (over exposures) fiber CS5 X location (tile coadds)", False),
    _C("MEAN_FIBER_Y", "E", "mm", "Mean (over exposures) fiber CS5 Y location (tile coadds)", False),
    _C("FIRSTNIGHT", "J", None, "First night tile was observed (YYYYMMDD)", False),
    _C("LASTNIGHT", "J", None, "Last night tile was observed (YYYYMMDD)", False),
    _C("MIN_MJD", "D", "d", "Minimum MJD contributing to fiber coadd (newer productions)", False),
    _C("MAX_MJD", "D", "d", "Maximum MJD contributing to fiber coadd (newer productions)", False),
    _C("MEAN_MJD", "D", "d", "Mean MJD across fibers contributing to coadd (newer productions)", False),
)

EXP_FIBERMAP_COLUMNS: tuple[Column, ...] = (
    _C("TARGETID", "K", None, "Unique DESI target ID"),
    _C("PRIORITY", "J", None, "Target current priority"),
    _C("SUBPRIORITY", "D", None, "Assignment subpriority [0-1)"),
    _C("NIGHT", "J", None, "Night of observation (YYYYMMDD)"),
    _C("EXPID", "J", None, "DESI Exposure ID number"),
    _C("MJD", "D", "d", "Modified Julian Date when shutter was opened"),
    _C("TILEID", "J", None, "Unique DESI tile ID"),
    _C("EXPTIME", "D", "s", "Length of time shutter was open"),
    _C("PETAL_LOC", "I", None, "Petal location [0-9]"),
    _C("DEVICE_LOC", "J", None, "Device location on focal plane [0-523]"),
    _C("LOCATION", "K", None, "FP location PETAL_LOC*1000 + DEVICE_LOC"),
    _C("FIBER", "J", None, "Fiber ID on the CCDs [0-4999]"),
    _C("FIBERSTATUS", "J", None, "Fiber status mask. 0=good"),
    _C("FIBERASSIGN_X", "E", "mm", "Expected CS5 X location on focal plane"),
    _C("FIBERASSIGN_Y", "E", "mm", "Expected CS5 Y location on focal plane"),
    _C("LAMBDA_REF", "E", "Angstrom", "Wavelength at which fiber was centered"),
    _C("PLATE_RA", "D", "deg", "Right Ascension to be used by PlateMaker"),
    _C("PLATE_DEC", "D", "deg", "Declination to be used by PlateMaker"),
    _C("NUM_ITER", "K", None, "Number of positioner iterations"),
    _C("FIBER_X", "D", "mm", "CS5 X location requested by PlateMaker"),
    _C("FIBER_Y", "D", "mm", "CS5 Y location requested by PlateMaker"),
    _C("DELTA_X", "D", "mm", "CS5 X requested minus actual position"),
    _C("DELTA_Y", "D", "mm", "CS5 Y requested minus actual position"),
    _C("FIBER_RA", "D", "deg", "RA of actual fiber position"),
    _C("FIBER_DEC", "D", "deg", "DEC of actual fiber position"),
    _C("PSF_TO_FIBER_SPECFLUX", "D", None, "Fraction of light captured by a fiber"),
    *(_C(f"IN_COADD_{b}", "L", None, f"Was this exposure included in {b} coadd (newer)", False) for b in "BRZ"),
)

_TSNR2_TEMPLATES = ("BGS", "ELG", "GPBBACKUP", "GPBBRIGHT", "GPBDARK", "LRG", "LYA", "QSO")
TSNR2_COLUMNS: tuple[Column, ...] = tuple(
    _C(f"TSNR2_{t}{suffix}", "E", None, f"Template S/N^2 for {t}{' in ' + suffix[1:] if suffix else ''}")
    for suffix in ("_B", "_R", "_Z", "")
    for t in _TSNR2_TEMPLATES
)
SCORES_COLUMNS: tuple[Column, ...] = (
    _C("TARGETID", "K", None, "Unique DESI target ID"),
    *(
        col
        for b in "BRZ"
        for col in (
            _C(f"INTEG_COADD_FLUX_{b}", "E", None, f"Integrated coadded flux in {b}"),
            _C(f"MEDIAN_COADD_FLUX_{b}", "E", None, f"Median coadded flux in {b}"),
            _C(f"MEDIAN_COADD_SNR_{b}", "E", None, f"Median coadded S/N per pixel in {b}"),
        )
    ),
    *TSNR2_COLUMNS,
)

_BANDS = ("B", "R", "Z")


def _band_hdus(band: str) -> tuple[ImageHDU, ...]:
    return (
        ImageHDU(f"{band}_WAVELENGTH", ("float64",), 1, WAVE_UNIT, description=f"{band} wavelength grid, vacuum"),
        ImageHDU(f"{band}_FLUX", ("float32",), 2, FLUX_UNIT, description="(nspec, nwave) flux"),
        ImageHDU(f"{band}_IVAR", ("float32",), 2, IVAR_UNIT, description="(nspec, nwave) inverse variance"),
        ImageHDU(
            f"{band}_MASK",
            ("int32", "uint32"),
            2,
            None,
            description="(nspec, nwave) SPECMASK bits; int32, or uint32 via BZERO=2**31 in older files",
        ),
        ImageHDU(f"{band}_RESOLUTION", ("float32",), 3, None, description="(nspec, ndiag, nwave) resolution diagonals"),
        ImageHDU(f"{band}_MODEL", ("float32",), 2, FLUX_UNIT, required=False, description="best-fit model"),
    )


_FILENAME = (
    r"^coadd-((cmx|main|special|sv1|sv2|sv3)-(backup|bright|dark|other)-\d+"
    r"|\d-\d+-(thru\d{8}|\d{8}|exp\d{8}|all))\.fits(\.gz)?$"
)


def _identify(extnames: list[str], header: dict) -> bool:
    names = set(extnames)
    return any(f"{b}_FLUX" in names and f"{b}_WAVELENGTH" in names for b in _BANDS) and "TSNR2" not in names


COADD_SCHEMA = register(
    ProductSchema(
        name="coadd",
        title="DESI coadded spectra (healpix or tile)",
        filename=_FILENAME,
        hdus=(
            TableHDU("FIBERMAP", FIBERMAP_COLUMNS, description="one row per target, row-matched to the images"),
            TableHDU(
                "EXP_FIBERMAP",
                EXP_FIBERMAP_COLUMNS,
                required=False,
                description="one row per target and exposure",
            ),
            *(h for b in _BANDS for h in _band_hdus(b)),
            TableHDU("SCORES", SCORES_COLUMNS, description="per-target coadd statistics and TSNR2"),
            TableHDU("EXTRA_CATALOG", (), required=False, description="free-form catalog (rare)"),
            TableHDU("REDSHIFTS", (), required=False, description="written by desispec only if present"),
        ),
        source=(
            "desihub/desispec 0.70.0 py/desispec/io/spectra.py::write_spectra and io/fibermap.py "
            "(column types/units); desihub/desidatamodel@035102b "
            "doc/DESI_SPECTRO_REDUX/SPECPROD/healpix/.../coadd-SURVEY-PROGRAM-PIXNUM.rst; "
            "checked on desihub/fastspecfit@d7b28da py/fastspecfit/test/data/coadd-*.fits"
        ),
        primary_keywords=("SPGRP", "SPGRPVAL"),
        identify=_identify,
        notes=(
            "Verified: HDU names/order, image dtypes, shapes and BUNITs, FIBERMAP/EXP_FIBERMAP/SCORES "
            "columns on an iron tile coadd (SV1) and a loa healpix coadd. Healpix files also carry "
            "HPXPIXEL, HPXNSIDE, HPXNEST, SURVEY, PROGRAM in PRIMARY; tile coadds TILEID, PETAL, NIGHT. "
            "Iron files write no TUNITs in FIBERMAP; newer ones do (the units listed); our writer "
            "writes them. STD_FIBER_RA/DEC carry TUNIT deg but desispec computes them in arcsec. "
            "MASK is int32 in current files and uint32 (BZERO=2**31) in the iron datamodel; both are "
            "read as int32 with the same bits. Targeting-bit columns depend on SURVEY "
            "(SV1_*/SV2_*/SV3_*/CMX_TARGET vs DESI/BGS/MWS/SCND_TARGET), hence optional. "
            "Assumed, not seen: REDSHIFTS/EXTRA_CATALOG/MODEL HDUs inside a coadd."
        ),
    )
)

_HEALPIX_KEYS = ("SPGRP", "SPGRPVAL", "HPXPIXEL", "HPXNSIDE", "HPXNEST", "SURVEY", "PROGRAM")


def healpix_header(survey: str, program: str, healpix: int, nside: int = 64) -> dict[str, Any]:
    """PRIMARY keywords of a healpix coadd (merge into ``Spectra.meta`` before writing).

    Parameters
    ----------
    survey, program
        E.g. ``"main"``, ``"bright"``.
    healpix
        Nested HEALPix pixel number at *nside*.
    nside
        64 for DR1.

    Returns
    -------
    dict
        ``SPGRP``, ``SPGRPVAL``, ``HPXPIXEL``, ``HPXNSIDE``, ``HPXNEST``, ``SURVEY``, ``PROGRAM``.
    """
    return {
        "SPGRP": "healpix",
        "SPGRPVAL": int(healpix),
        "HPXPIXEL": int(healpix),
        "HPXNSIDE": int(nside),
        "HPXNEST": True,
        "SURVEY": str(survey),
        "PROGRAM": str(program),
    }


def redrock_path_for(coadd_path: str | os.PathLike[str]) -> Path:
    """The ``redrock-*`` file that sits beside a ``coadd-*`` (or ``spectra-*``) file."""
    p = Path(coadd_path)
    name = re.sub(r"^(coadd|spectra)-", "redrock-", p.name)
    if name == p.name:
        raise InputError("not a coadd-* or spectra-* file name", file=p, parameter="redrock")
    return p.with_name(name)


# --- reading -------------------------------------------------------------------------


def _row_runs(sorted_rows: np.ndarray, max_gap: int = 2) -> list[tuple[int, int]]:
    """Half-open [start, stop) row ranges covering *sorted_rows*, merging small gaps."""
    if len(sorted_rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_rows) > max_gap + 1)
    starts = np.concatenate([[sorted_rows[0]], sorted_rows[breaks + 1]])
    stops = np.concatenate([sorted_rows[breaks], [sorted_rows[-1]]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


_RAW_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
# (BITPIX, BZERO) pairs that encode unsigned (or signed-byte) integers, and the result dtype
_UNSIGNED_BZERO = {(8, -128): "i1", (16, 2**15): "u2", (32, 2**31): "u4", (64, 2**63): "u8"}
_CHUNK_BYTES = 4 << 20  # staging buffer: stays in cache while it is byte-swapped into place
_READ_THREADS = min(4, os.cpu_count() or 1)  # image HDUs read in parallel (IO and copies drop the GIL)


def _scaling(path: Path, header_start: int, data_start: int) -> tuple[float, int] | None:
    """(BSCALE, BZERO) from the raw header cards (cheaper than parsing the header)."""
    with path.open("rb") as fh:
        fh.seek(header_start)
        raw = fh.read(data_start - header_start)
    bscale, bzero = 1.0, 0
    for i in range(0, len(raw) - 79, 80):
        key = raw[i : i + 8]
        if key in (b"BSCALE  ", b"BZERO   ") and raw[i + 8 : i + 10] == b"= ":
            text = raw[i + 10 : i + 80].split(b"/")[0].strip().decode("ascii", "replace")
            try:
                if key == b"BSCALE  ":
                    bscale = float(text)
                else:
                    bzero = int(text) if text.lstrip("+-").isdigit() else float(text)  # type: ignore[assignment]
            except ValueError:
                return None
        elif key == b"END     ":
            break
    return bscale, bzero


def _image_layout(hdu: fitsio.hdu.ImageHDU, path: Path) -> tuple[np.dtype, np.dtype, list[int], int] | None:
    """(stored dtype, result dtype, dims, data offset) for plain images, else None.

    None (read through fitsio) for compressed images, gzipped files, scaled data.
    """
    if path.suffix.lower() in (".gz", ".fz", ".bz2", ".z") or not path.is_file():
        return None
    info = hdu.get_info()
    if info.get("is_compressed_image") or info.get("hdutype") != 0:
        return None
    bitpix = int(info["img_type"])
    dims = [int(d) for d in info.get("dims") or []]
    raw = _RAW_BITPIX.get(bitpix)
    if raw is None or not dims or 0 in dims:
        return None
    scaling = _scaling(path, int(info["header_start"]), int(info["data_start"]))
    if scaling is None or scaling[0] != 1:
        return None
    bzero = scaling[1]
    if bzero:
        if (bitpix, bzero) not in _UNSIGNED_BZERO:
            return None
        out = np.dtype(_UNSIGNED_BZERO[(bitpix, bzero)])
    else:
        out = np.dtype(raw).newbyteorder("=")
    return np.dtype(raw), out, dims, int(info["data_start"])


def _stream_rows(
    path: Path, layout: tuple[np.dtype, np.dtype, list[int], int], sel: np.ndarray | None, extname: str
) -> np.ndarray:
    """Rows *sel* (all if None) of a plain image, straight from the file (thread-safe).

    One pass, or one seek per run of neighbouring rows, through a small staging buffer
    that is byte-swapped into a native array; rows are returned in the order of *sel*.
    """
    raw, out_dtype, dims, start = layout
    row_elems = int(np.prod(dims[1:])) if len(dims) > 1 else 1
    runs = [(0, dims[0])] if sel is None else _row_runs(np.unique(sel))
    nrows = sum(b - a for a, b in runs)
    out = np.empty((nrows, *dims[1:]), dtype=out_dtype)
    flat = out.reshape(-1)
    unsigned = out_dtype.kind != raw.kind
    work = flat.view(raw.newbyteorder("=")) if unsigned else flat
    sign = np.array(1 << (8 * raw.itemsize - 1), dtype=f"u{raw.itemsize}")
    chunk = max(1, _CHUNK_BYTES // raw.itemsize)
    buf = np.empty(min(chunk, max(1, flat.size)), dtype=raw)
    view = memoryview(buf.view(np.uint8))
    at = 0
    try:
        with path.open("rb", buffering=0) as fh:
            for a, b in runs:
                fh.seek(start + a * row_elems * raw.itemsize)
                left = (b - a) * row_elems
                while left:
                    k = min(chunk, left)
                    if fh.readinto(view[: k * raw.itemsize]) != k * raw.itemsize:
                        raise FormatError("truncated image data", file=path, hdu=extname)
                    np.copyto(work[at : at + k], buf[:k])
                    if unsigned:
                        bits = work[at : at + k].view(sign.dtype)
                        bits ^= sign
                    at += k
                    left -= k
    except OSError as exc:
        raise FormatError(f"cannot read image: {exc}", file=path, hdu=extname) from exc
    if sel is None:
        return out
    covered = np.concatenate([np.arange(a, b) for a, b in runs]) if runs else np.zeros(0, dtype=np.int64)
    pos = np.searchsorted(covered, sel)
    if len(pos) == len(covered) and np.array_equal(pos, np.arange(len(pos))):
        return out
    return out[pos]


def _read_images(fits: fitsio.FITS, extnames: list[str], sel: np.ndarray | None, path: Path) -> list[np.ndarray]:
    """Rows *sel* of several images of one file; plain ones are read in parallel threads.

    A 1-D image (one spectrum stored without its row axis) is read whole and returned
    as ``(1, nwave)`` before the selection is applied. Compressed or scaled images and
    gzipped files go through fitsio (in this thread).
    """
    hdus = [fits[e] for e in extnames]
    layouts = [_image_layout(h, path) for h in hdus]
    one_d = [len(h.get_dims()) == 1 for h in hdus]
    results: list[np.ndarray | None] = [None] * len(hdus)
    threaded = [i for i, lay in enumerate(layouts) if lay is not None]
    workers = min(_READ_THREADS, len(threaded))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {
            i: pool.submit(_stream_rows, path, layouts[i], None if one_d[i] else sel, extnames[i]) for i in threaded
        }
        for i, hdu in enumerate(hdus):
            if layouts[i] is None:
                try:
                    results[i] = _read_image_rows_fitsio(hdu, None if one_d[i] else sel)
                except OSError as exc:
                    raise FormatError(f"cannot read image: {exc}", file=path, hdu=extnames[i]) from exc
        for i, fut in futures.items():
            results[i] = fut.result()
    out = []
    for data, flat in zip(results, one_d, strict=True):
        if flat:
            data = data.reshape(1, -1)
            data = data if sel is None else data[sel]
        out.append(data)
    return out


def _read_image_rows_fitsio(hdu: fitsio.hdu.ImageHDU, sel: np.ndarray | None) -> np.ndarray:
    if sel is None:
        return hdu.read()
    dims = hdu.get_dims()
    tail = (slice(None),) * (len(dims) - 1)
    runs = _row_runs(np.unique(sel))
    if not runs:
        return np.zeros((0, *dims[1:]), dtype=_image_dtype(hdu))
    blocks = [hdu[(slice(a, b), *tail)] for a, b in runs]
    block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    covered = np.concatenate([np.arange(a, b) for a, b in runs])
    return block[np.searchsorted(covered, sel)]


def _image_dtype(hdu: fitsio.hdu.ImageHDU) -> np.dtype:
    hdr = hdu.read_header()
    bitpix = int(hdr["BITPIX"])
    bzero = int(float(str(hdr.get("BZERO", 0)))) if str(hdr.get("BZERO", 0)).strip() else 0
    if (bitpix, bzero) in _UNSIGNED_BZERO:
        return np.dtype(_UNSIGNED_BZERO[(bitpix, bzero)])
    return np.dtype(_RAW_BITPIX[bitpix]).newbyteorder("=")


def _dims(fits: fitsio.FITS, extname: str) -> list[int]:
    hdu = fits[extname]
    if hdu.get_exttype() != "IMAGE_HDU":
        raise FormatError("expected an IMAGE HDU", file=fits._filename, hdu=extname)
    return list(hdu.get_dims())


def _band_layout(fits: fitsio.FITS, path: Path, band: str, want_res: bool) -> dict[str, Any]:
    """Check the dims of one band's HDUs (from headers only); return what exists."""
    B = band.upper()
    names = set(hdu_names(fits))
    wdims = _dims(fits, f"{B}_WAVELENGTH")
    if len(wdims) != 1:
        raise FormatError(f"wavelength must be 1-D, has dims {wdims}", file=path, hdu=f"{B}_WAVELENGTH")
    nwave = wdims[0]
    out: dict[str, Any] = {"nwave": nwave, "mask": f"{B}_MASK" in names, "model": f"{B}_MODEL" in names}
    nspec = None
    for kind in ("FLUX", "IVAR", "MASK", "MODEL"):
        ext = f"{B}_{kind}"
        if ext not in names:
            if kind in ("FLUX", "IVAR"):
                raise FormatError("missing HDU", file=path, hdu=ext)
            continue
        d = _dims(fits, ext)
        if len(d) == 1 and nwave and d[0] == nwave:  # a single spectrum stored 1-D
            d = [1, nwave]
        if len(d) != 2 or d[1] != nwave:
            raise FormatError(f"dims {d} do not match (nspec, {nwave})", file=path, hdu=ext)
        if nspec is None:
            nspec = d[0]
        elif d[0] != nspec:
            raise FormatError(f"has {d[0]} spectra, {B}_FLUX has {nspec}", file=path, hdu=ext)
    out["nspec"] = nspec
    res = f"{B}_RESOLUTION"
    out["resolution"] = want_res and res in names
    if out["resolution"]:
        d = _dims(fits, res)
        if len(d) != 3 or d[0] != nspec or d[2] != nwave or d[1] % 2 == 0:
            raise FormatError(f"dims {d} do not match ({nspec}, odd ndiag, {nwave})", file=path, hdu=res)
    return out


def _normalise_bands(bands: str | Sequence[str] | None, file_bands: list[str], path: Path) -> list[str]:
    if bands is None:
        return list(file_bands)
    wanted = [bands] if isinstance(bands, str) else list(bands)
    out = []
    for b in wanted:
        b = str(b).lower()
        if b not in file_bands:
            raise FormatError(
                f"no band {b!r} (file has {file_bands or 'none'})", file=path, hdu=f"{b.upper()}_WAVELENGTH"
            )
        if b not in out:
            out.append(b)
    return out


def read_coadd(
    path: str | os.PathLike[str],
    *,
    targetids: Sequence[int] | np.ndarray | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
    bands: str | Sequence[str] | None = None,
    resolution: bool = True,
    exp_fibermap: bool = False,
    redrock: str | os.PathLike[str] | bool | None = "auto",
    scores: bool = True,
    models: bool = False,
    on_missing: Literal["raise", "skip"] = "raise",
) -> Spectra:
    """Read a DESI coadd (or spectra) file, only the parts asked for.

    Parameters
    ----------
    path
        ``coadd-*.fits`` file (healpix or tile; QuasarNP-style files without FIBERMAP are
        accepted too).
    targetids
        Read only these targets, in this order (FIBERMAP TARGETID is read first, then
        only the matching image rows, as contiguous slices).
    rows
        Alternatively, row indices (in the order given).
    bands
        Subset of the file's bands, e.g. ``["b", "r"]`` (default: all, file order).
    resolution
        Read ``{B}_RESOLUTION`` (the largest HDUs; skip when not needed).
    exp_fibermap
        Also read EXP_FIBERMAP rows of the selected targets.
    redrock
        ``"auto"``: use a REDSHIFTS HDU in the file, else the ``redrock-*`` file beside
        it if it exists; a path: that Redrock file; ``True``: like ``"auto"`` but the
        Redrock data must exist; ``False``/``None``: no redshifts. Rows are matched by
        TARGETID; a TARGETID missing from the Redrock file is a FormatError.
    scores
        Read the SCORES table.
    models
        Read ``{B}_MODEL`` HDUs into ``extra["model"]`` when present.
    on_missing
        Requested TARGETIDs absent from the file: ``"raise"`` or ``"skip"``.

    Returns
    -------
    Spectra

    Raises
    ------
    FormatError
        Not FITS, truncated, missing HDUs/columns, inconsistent dimensions, or a Redrock
        file whose TARGETIDs disagree with the FIBERMAP.
    InputError
        Both *targetids* and *rows*, bad rows, or unknown TARGETIDs.
    """
    path = Path(path)
    if targetids is not None and rows is not None:
        raise InputError("give targetids or rows, not both", parameter="targetids/rows")
    with open_fits(path) as fits:
        names = hdu_names(fits)
        file_bands = [n[: -len("_WAVELENGTH")].lower() for n in names if n.endswith("_WAVELENGTH")]
        use_bands = _normalise_bands(bands, file_bands, path)
        if not use_bands:
            raise FormatError("no <band>_WAVELENGTH HDU: not a DESI spectra file", file=path)
        layout = {b: _band_layout(fits, path, b, resolution) for b in use_bands}
        nspec = layout[use_bands[0]]["nspec"]
        for b in use_bands[1:]:
            if layout[b]["nspec"] != nspec:
                raise FormatError(
                    f"{layout[b]['nspec']} spectra but {use_bands[0].upper()}_FLUX has {nspec}",
                    file=path,
                    hdu=f"{b.upper()}_FLUX",
                )
        fm_hdu = find_hdu(fits, "FIBERMAP")
        file_tids = None
        if fm_hdu is not None:
            require_columns(fm_hdu, ["TARGETID"], file=path)
            if fm_hdu.get_nrows() != nspec:
                raise FormatError(
                    f"{fm_hdu.get_nrows()} rows but the images have {nspec} spectra", file=path, hdu="FIBERMAP"
                )
        sel: np.ndarray | None = None
        if targetids is not None:
            if fm_hdu is None:
                raise FormatError("no FIBERMAP HDU: cannot select by TARGETID", file=path, hdu="FIBERMAP")
            file_tids = fm_hdu.read_column("TARGETID")
            sel = rows_for_targetids_ordered(file_tids, targetids, on_missing=on_missing, what=f"file {path}")
        elif rows is not None:
            sel = _as_rows(rows, nspec)
        fibermap = read_table_with_header(fm_hdu, rows=sel, file=path) if fm_hdu is not None else None
        wave, flux, ivar, mask, res, model = {}, {}, {}, {}, {}, {}
        jobs: list[tuple[dict[str, np.ndarray], str, str]] = []
        for b in use_bands:
            B = b.upper()
            wave[b] = np.asarray(fits[f"{B}_WAVELENGTH"].read(), dtype=np.float64)
            jobs += [(flux, b, f"{B}_FLUX"), (ivar, b, f"{B}_IVAR")]
            if layout[b]["mask"]:
                jobs.append((mask, b, f"{B}_MASK"))
            if layout[b]["resolution"]:
                jobs.append((res, b, f"{B}_RESOLUTION"))
            if models and layout[b]["model"]:
                jobs.append((model, b, f"{B}_MODEL"))
        for (store, b, _), data in zip(jobs, _read_images(fits, [j[2] for j in jobs], sel, path), strict=True):
            store[b] = data
        if resolution and res and len(res) != len(use_bands):
            missing = [b for b in use_bands if b not in res]
            raise FormatError("missing HDU", file=path, hdu=f"{missing[0].upper()}_RESOLUTION")
        scores_table = None
        if scores and find_hdu(fits, "SCORES") is not None:
            scores_table = _read_matched_table(fits, "SCORES", sel, nspec, path)
        exp_table = None
        if exp_fibermap and find_hdu(fits, "EXP_FIBERMAP") is not None:
            exp_hdu = find_hdu(fits, "EXP_FIBERMAP")
            exp_rows = None
            if sel is not None and fibermap is not None:
                require_columns(exp_hdu, ["TARGETID"], file=path)
                exp_tids = exp_hdu.read_column("TARGETID")
                wanted = fibermap.column("TARGETID").to_numpy()
                exp_rows = np.flatnonzero(np.isin(exp_tids, wanted))
            exp_table = read_table_with_header(exp_hdu, rows=exp_rows, file=path)
        extra: dict[str, Any] = {}
        if model:
            extra["model"] = model
        if find_hdu(fits, "EXTRA_CATALOG") is not None:
            extra["extra_catalog"] = _read_matched_table(fits, "EXTRA_CATALOG", sel, nspec, path)
        inner_redshifts = None
        if isinstance(redrock, (str, bool)) and redrock in ("auto", True) and "REDSHIFTS" in names:
            inner_redshifts = _read_matched_table(fits, "REDSHIFTS", sel, nspec, path)
        meta = header_dict(fits[0].read_header())

    redshifts = inner_redshifts
    tids = None if fibermap is None else fibermap.column("TARGETID").to_numpy()
    if (
        inner_redshifts is not None
        and tids is not None
        and "TARGETID" in inner_redshifts.column_names
        and not np.array_equal(inner_redshifts.column("TARGETID").to_numpy(), tids)
    ):
        raise FormatError("REDSHIFTS TARGETIDs are not row-matched to FIBERMAP", file=path, hdu="REDSHIFTS")
    if redshifts is None and redrock not in (None, False):
        rr_path: Path | None
        if redrock in ("auto", True):
            rr_path = redrock_path_for(path) if re.match(r"^(coadd|spectra)-", path.name) else None
            if rr_path is not None and not rr_path.exists():
                rr_path = None
            if redrock is True and (rr_path is None or tids is None):
                raise FormatError("no REDSHIFTS HDU and no redrock-* file beside it", file=path, hdu="REDSHIFTS")
        else:
            rr_path = Path(redrock)
        if rr_path is not None:
            if tids is None:
                raise FormatError(
                    "no FIBERMAP TARGETIDs to match Redrock rows with", file=path, hdu="FIBERMAP", column="TARGETID"
                )
            redshifts = _matched_redshifts(rr_path, tids, full=sel is None)

    return Spectra(
        bands=use_bands,
        wave=wave,
        flux=flux,
        ivar=ivar,
        mask=mask or None,
        resolution=res if resolution and res else None,
        fibermap=fibermap,
        exp_fibermap=exp_table,
        scores=scores_table,
        redshifts=redshifts,
        meta=meta,
        extra=extra,
    )


def _read_matched_table(fits: fitsio.FITS, extname: str, sel: np.ndarray | None, nspec: int, path: Path) -> pa.Table:
    hdu = fits[extname]
    if hdu.get_nrows() != nspec:
        raise FormatError(f"{hdu.get_nrows()} rows but there are {nspec} spectra", file=path, hdu=extname)
    return read_table_with_header(hdu, rows=sel, file=path)


def _matched_redshifts(rr_path: Path, tids: np.ndarray, *, full: bool) -> pa.Table:
    """REDSHIFTS rows of *rr_path* in the order of *tids* (every TARGETID exactly once)."""
    with open_fits(rr_path) as rr:
        hdu = find_hdu(rr, "REDSHIFTS", "ZBEST")
        if hdu is None:
            raise FormatError("missing HDU", file=rr_path, hdu="REDSHIFTS")
        require_columns(hdu, ["TARGETID"], file=rr_path)
        rr_tids = np.asarray(hdu.read_column("TARGETID"), dtype=np.int64)
        order = np.argsort(rr_tids, kind="stable")
        srt = rr_tids[order]
        lo = np.searchsorted(srt, tids, "left")
        hi = np.searchsorted(srt, tids, "right")
        bad = (hi - lo) != 1
        n_unique = len(np.unique(tids))
        if np.any(bad) or (full and len(rr_tids) != n_unique):
            n_missing = int(np.sum(hi - lo == 0))
            n_dup = int(np.sum(hi - lo > 1))
            extra = len(rr_tids) - n_unique if full else 0
            raise FormatError(
                f"Redrock TARGETIDs disagree with the coadd FIBERMAP ({n_missing} missing, "
                f"{n_dup} repeated, {max(extra, 0)} extra)",
                file=rr_path,
                hdu=hdu.get_extname(),
                column="TARGETID",
            )
        rows = order[lo]
        if len(rows) == len(rr_tids) and np.array_equal(rows, np.arange(len(rows))):
            return read_table_with_header(hdu, file=rr_path)
        return read_table_with_header(hdu, rows=rows, file=rr_path)


# --- writing -------------------------------------------------------------------------

_TABLES = {h.extname: h for h in COADD_SCHEMA.hdus if isinstance(h, TableHDU)}


def _primary_header(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """PRIMARY header records from ``Spectra.meta`` (structural keywords dropped)."""
    keys = user_keywords(meta)
    keys.setdefault("LONGSTRN", "OGIP 1.0")
    records = []
    for k, v in keys.items():
        if v is None:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if not isinstance(v, (str, bool, int, float)):
            raise InputError(f"cannot store a {type(v).__name__} in a FITS header", parameter=f"meta[{k!r}]")
        records.append({"name": k, "value": v})
    return records


def write_coadd(
    path: str | os.PathLike[str],
    spectra: Spectra,
    *,
    include_redshifts: bool = False,
) -> Path:
    """Write *spectra* as a DESI coadd file, byte-deterministically.

    HDUs in desispec order: PRIMARY (``spectra.meta``; add :func:`healpix_header` for a
    healpix coadd), FIBERMAP, EXP_FIBERMAP (if any), per band WAVELENGTH (f8), FLUX,
    IVAR (f4, with desispec's BUNITs), MASK (int32), RESOLUTION (f4, if any), MODEL (if
    ``extra["model"]``), SCORES (if any), EXTRA_CATALOG (if ``extra["extra_catalog"]``)
    and REDSHIFTS (only with *include_redshifts*: real healpix coadds keep redshifts in
    the separate ``redrock-*`` file, see :func:`desilab.io.redrock.write_redrock`).
    Table columns get the golden-schema TFORMs and TUNITs; keywords read with the tables
    are written back. No CHECKSUM/DATASUM (they would carry a timestamp).

    Parameters
    ----------
    path
        Output file (written under a temporary name, renamed when complete).
    spectra
        What to write. A FIBERMAP with TARGETID is required unless there is no
        fibermap at all (then the file has none, like QuasarNP's test file, and does not
        validate as a coadd).
    include_redshifts
        Also write ``spectra.redshifts`` as a REDSHIFTS HDU.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    SchemaError
        A table lacks TARGETID or a value does not fit the schema's TFORM.
    """
    path = Path(path)
    tables = _TABLES
    if spectra.scores is not None and spectra.fibermap is not None:
        _check_row_matched(spectra.fibermap, spectra.scores, "SCORES")
    with atomic_output(path) as tmp, fitsio.FITS(str(tmp), "rw", clobber=True) as fits:
        fits.write(None, header=_primary_header(spectra.meta))
        if spectra.fibermap is not None:
            write_table(fits, spectra.fibermap, "FIBERMAP", tables["FIBERMAP"], units=True)
        if spectra.exp_fibermap is not None:
            write_table(fits, spectra.exp_fibermap, "EXP_FIBERMAP", tables["EXP_FIBERMAP"], units=True)
        models = spectra.extra.get("model") or {}
        for b in spectra.bands:
            B = b.upper()
            fits.write(spectra.wave[b].astype(np.float64), extname=f"{B}_WAVELENGTH", header=_bunit(WAVE_UNIT))
            fits.write(spectra.flux[b], extname=f"{B}_FLUX", header=_bunit(FLUX_UNIT))
            fits.write(spectra.ivar[b], extname=f"{B}_IVAR", header=_bunit(IVAR_UNIT))
            fits.write(spectra.mask[b].astype(np.int32, copy=False), extname=f"{B}_MASK")
            if spectra.resolution is not None:
                fits.write(spectra.resolution[b], extname=f"{B}_RESOLUTION")
            if b in models:
                fits.write(np.asarray(models[b], dtype=np.float32), extname=f"{B}_MODEL", header=_bunit(FLUX_UNIT))
        if spectra.scores is not None:
            write_table(fits, spectra.scores, "SCORES", tables["SCORES"], units=False)
        extra_cat = spectra.extra.get("extra_catalog")
        if isinstance(extra_cat, pa.Table):
            write_table(fits, extra_cat, "EXTRA_CATALOG", None, units=True, required=())
        if include_redshifts and spectra.redshifts is not None:
            from desilab.io.redrock import REDSHIFTS_HDU

            write_table(fits, spectra.redshifts, "REDSHIFTS", REDSHIFTS_HDU, units=False)
    return path


def _bunit(unit: str) -> list[dict[str, str]]:
    return [{"name": "BUNIT", "value": unit}]


def _check_row_matched(fibermap: pa.Table, other: pa.Table, extname: str) -> None:
    if "TARGETID" not in other.column_names:
        raise SchemaError("missing required column", hdu=extname, column="TARGETID")
    if not pc.all(pc.equal(fibermap.column("TARGETID"), other.column("TARGETID"))).as_py():
        raise SchemaError("TARGETID is not row-matched to FIBERMAP", hdu=extname, column="TARGETID")


# --- content checks (desilab inspect / validate) ---------------------------------------


def check_coadd(path: str | os.PathLike[str], fits: fitsio.FITS) -> list[Problem]:
    """Content checks of a coadd beyond the golden schema's HDU/column lists.

    Every per-band image has nspec rows (= FIBERMAP rows) and nwave columns
    (= WAVELENGTH length); RESOLUTION is (nspec, odd ndiag, nwave); MASK is 32-bit
    integer; SCORES/EXTRA_CATALOG are row-matched; EXP_FIBERMAP TARGETIDs are in
    FIBERMAP. Spectra whose FLUX is NaN everywhere in a band are errors; spectra with
    ``IVAR == 0`` everywhere in a band are warnings (unobserved or fully masked).

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
    names = hdu_names(fits)

    def err(msg: str, hdu: str | None = None, column: str | None = None, severity: str = "error") -> None:
        problems.append(Problem(f, msg, hdu=hdu, column=column, severity=severity))  # type: ignore[arg-type]

    fm = find_hdu(fits, "FIBERMAP")
    nspec = fm.get_nrows() if fm is not None else None
    tids = None
    if fm is not None and "TARGETID" in fm.get_colnames():
        tids = fm.read_column("TARGETID")
        if len(np.unique(tids)) != len(tids):
            err("TARGETID values are not unique", "FIBERMAP", "TARGETID", "warning")
    bands = [n[: -len("_WAVELENGTH")] for n in names if n.endswith("_WAVELENGTH")]
    for B in bands:
        wd = list(fits[f"{B}_WAVELENGTH"].get_dims())
        if len(wd) != 1:
            err(f"wavelength must be 1-D, dims {wd}", f"{B}_WAVELENGTH")
            continue
        nwave = wd[0]
        for kind in ("FLUX", "IVAR", "MASK", "MODEL", "RESOLUTION"):
            ext = f"{B}_{kind}"
            if ext not in names:
                continue
            hdu = fits[ext]
            if hdu.get_exttype() != "IMAGE_HDU":
                err("expected an IMAGE HDU", ext)
                continue
            d = list(hdu.get_dims())
            want_nd = 3 if kind == "RESOLUTION" else 2
            if nspec is None and len(d) == want_nd:
                nspec = d[0]
            ok = len(d) == want_nd and d[0] == nspec and d[-1] == nwave
            if kind == "RESOLUTION" and ok and d[1] % 2 == 0:
                err(f"even number of diagonals ({d[1]})", ext)
            if not ok:
                shape = f"({nspec}, ndiag, {nwave})" if kind == "RESOLUTION" else f"({nspec}, {nwave})"
                err(f"dims {tuple(d)} but expected {shape} (FIBERMAP rows, {B}_WAVELENGTH length)", ext)
            if kind == "MASK" and _image_dtype(hdu) not in (np.dtype("i4"), np.dtype("u4")):
                err(f"MASK must be int32 (or uint32 via BZERO), is {_image_dtype(hdu)}", ext)
        if f"{B}_FLUX" in names and fits[f"{B}_FLUX"].get_exttype() == "IMAGE_HDU":
            flux = fits[f"{B}_FLUX"].read()
            if flux is not None and flux.ndim == 2:
                allnan = np.flatnonzero(np.all(np.isnan(flux), axis=1))
                if len(allnan):
                    err(f"{len(allnan)} spectra have all-NaN flux (rows {_rows_text(allnan)})", f"{B}_FLUX")
        if f"{B}_IVAR" in names and fits[f"{B}_IVAR"].get_exttype() == "IMAGE_HDU":
            ivar = fits[f"{B}_IVAR"].read()
            if ivar is not None and ivar.ndim == 2:
                zero = np.flatnonzero(np.all(ivar == 0, axis=1))
                if len(zero):
                    err(
                        f"{len(zero)} spectra have ivar = 0 everywhere (rows {_rows_text(zero)})",
                        f"{B}_IVAR",
                        severity="warning",
                    )
    for ext in ("SCORES", "EXTRA_CATALOG", "REDSHIFTS"):
        hdu = find_hdu(fits, ext)
        if hdu is None or nspec is None:
            continue
        if hdu.get_nrows() != nspec:
            err(f"{hdu.get_nrows()} rows but {nspec} spectra", ext)
        elif (
            tids is not None
            and "TARGETID" in hdu.get_colnames()
            and not np.array_equal(hdu.read_column("TARGETID"), tids)
        ):
            err("TARGETID not row-matched to FIBERMAP", ext, "TARGETID")
    exp = find_hdu(fits, "EXP_FIBERMAP")
    if exp is not None and tids is not None and "TARGETID" in exp.get_colnames():
        stray = ~np.isin(exp.read_column("TARGETID"), tids)
        if np.any(stray):
            err(f"{int(stray.sum())} rows have a TARGETID not in FIBERMAP", "EXP_FIBERMAP", "TARGETID")
    return problems


def _rows_text(rows: np.ndarray) -> str:
    return ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")


register_check("coadd", check_coadd)
