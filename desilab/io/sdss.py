"""SDSS/BOSS single-spectrum files ``spec-PLATE-MJD-FIBER.fits`` ("lite" and full).

Golden schema ``sdss-spec`` and :func:`read_sdss_spec`, which returns a one-band
:class:`~desilab.io.spectra.Spectra` (band ``"sdss"``) so that the pipelines can treat
SDSS spectra like DESI ones.

Layout (SDSS data model ``BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec.html``, checked
on two real DR8+-reprocessed SDSS-I/II files): PRIMARY (plate/exposure keywords,
``BUNIT``), COADD (one row per pixel: ``flux``, ``loglam``, ``ivar``, ``and_mask``,
``or_mask``, ``wdisp``, ``sky``, ``model``), SPECOBJ (one row, the spectro pipeline's
redshift and metadata; named SPALL in BOSS/eBOSS files), SPZLINE (emission-line fits),
and in full files one HDU per exposure and camera (``B1-...``, ``R2-...``), never read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from desilab.errors import FormatError
from desilab.io._tables import header_dict, read_table_with_header
from desilab.io.fits import find_hdu, open_fits, require_columns, require_hdu
from desilab.io.schema import Column, ProductSchema, TableHDU, register
from desilab.io.spectra import Spectra

__all__ = ["SDSS_BAND", "SDSS_SPEC_SCHEMA", "read_sdss_spec", "wdisp_to_angstrom", "wdisp_to_kms"]

#: Band name used for SDSS spectra in :class:`~desilab.io.spectra.Spectra`.
SDSS_BAND = "sdss"
#: log10-wavelength pixel size of SDSS/BOSS coadds.
SDSS_DLOGLAM = 1e-4
_C_KMS = 299792.458

_COADD_COLUMNS = (
    Column("flux", "E", None, "Coadded flux; unit in PRIMARY BUNIT"),
    Column("loglam", "E", None, "log10(wavelength [Angstrom]), vacuum"),
    Column("ivar", "E", None, "Inverse variance of flux"),
    Column("and_mask", "J", None, "AND of the pixel masks of the input exposures"),
    Column("or_mask", "J", None, "OR of the pixel masks of the input exposures"),
    Column("wdisp", "E", None, "Wavelength dispersion (Gaussian sigma of the LSF) in pixels of dloglam=1e-4"),
    Column("sky", "E", None, "Subtracted sky flux"),
    Column("model", "E", None, "Pipeline best-fit model"),
)
_SPECOBJ_COLUMNS = (
    Column("PLATE", "J", None, "Plate number"),
    Column("MJD", "J", None, "MJD of observation"),
    Column("FIBERID", "J", None, "Fiber number"),
    Column("PLUG_RA", "D", None, "Right ascension of the fiber [deg]"),
    Column("PLUG_DEC", "D", None, "Declination of the fiber [deg]"),
    Column("CLASS", "6A", None, "Spectro-1D class: GALAXY, QSO, STAR"),
    Column("SUBCLASS", "21A", None, "Spectro-1D subclass"),
    Column("Z", "E", None, "Best redshift"),
    Column("Z_ERR", "E", None, "Redshift error"),
    Column("ZWARNING", "J", None, "Redshift warning flags; 0 = good"),
    Column("SPECOBJID", "22A", None, "Unique spectrum ID (as text)", False),
    Column("SPECPRIMARY", "B", None, "Best spectrum of this object", False),
    Column("VDISP", "E", None, "Velocity dispersion [km/s]", False),
    Column("VDISP_ERR", "E", None, "Velocity dispersion error [km/s]", False),
    Column("SN_MEDIAN_ALL", "E", None, "Median S/N per pixel", False),
    Column("RUN2D", "3A", None, "2D reduction version (width varies)", False),
)
_SPZLINE_COLUMNS = (
    Column("PLATE", "J", None, "Plate number"),
    Column("MJD", "J", None, "MJD"),
    Column("FIBERID", "J", None, "Fiber number"),
    Column("LINENAME", "13A", None, "Line name"),
    Column("LINEWAVE", "D", None, "Rest (vacuum) wavelength [Angstrom]"),
    Column("LINEZ", "E", None, "Line redshift"),
    Column("LINEZ_ERR", "E", None, "Line redshift error"),
    Column("LINESIGMA", "E", None, "Gaussian sigma [km/s]"),
    Column("LINESIGMA_ERR", "E", None, "Sigma error"),
    Column("LINEAREA", "E", None, "Line flux [1e-17 erg/s/cm2]"),
    Column("LINEAREA_ERR", "E", None, "Line flux error"),
    Column("LINEEW", "E", None, "Equivalent width [Angstrom]"),
    Column("LINEEW_ERR", "E", None, "EW error"),
    Column("LINECONTLEVEL", "E", None, "Continuum level at the line"),
    Column("LINECONTLEVEL_ERR", "E", None, "Continuum level error"),
    Column("LINENPIXLEFT", "J", None, "Pixels left of the line center"),
    Column("LINENPIXRIGHT", "J", None, "Pixels right of the line center"),
    Column("LINEDOF", "E", None, "Degrees of freedom of the fit"),
    Column("LINECHI2", "E", None, "chi2 of the fit"),
)


def _identify(extnames: list[str], header: dict) -> bool:
    names = set(extnames)
    return "COADD" in names and ("SPECOBJ" in names or "SPALL" in names)


SDSS_SPEC_SCHEMA = register(
    ProductSchema(
        name="sdss-spec",
        title="SDSS/BOSS spectrum (spec-PLATE-MJD-FIBER)",
        filename=r"^spec-\d{4,6}-\d{5}-\d{4,5}\.fits(\.gz)?$",
        hdus=(
            TableHDU("COADD", _COADD_COLUMNS, description="coadded spectrum, one row per pixel"),
            TableHDU("SPECOBJ", _SPECOBJ_COLUMNS, aliases=("SPALL",), description="spectro pipeline metadata, one row"),
            TableHDU("SPZLINE", _SPZLINE_COLUMNS, description="emission-line fits, one row per line"),
        ),
        source=(
            "SDSS data model BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec.html (HDU roles); columns "
            "transcribed from legolason/PyQSOFit@084df5a example/data/spec-0332-52367-0639.fits and "
            "spec-0266-51602-0107.fits"
        ),
        primary_keywords=("PLATEID", "MJD"),
        identify=_identify,
        notes=(
            "Verified on two SDSS-I/II spectra reprocessed for DR8+ (RUN2D 26): COADD column names are "
            "lower-case in the files (flux, loglam, ...; listed upper-case here by convention, matched "
            "case-insensitively), COADD/SPECOBJ carry no TUNITs (flux "
            "unit is PRIMARY BUNIT). Assumed from the SDSS documentation, not seen here: BOSS/eBOSS "
            "files name HDU2 SPALL (accepted alias) with more columns; SDSS-V files use other column "
            "names (e.g. WRESL) and are not supported. Only the listed SPECOBJ/SPZLINE columns are "
            "checked; the files have ~126 SPECOBJ columns."
        ),
    )
)


def wdisp_to_kms(wdisp: np.ndarray) -> np.ndarray:
    """SDSS ``wdisp`` (Gaussian LSF sigma in pixels of 1e-4 dex) to sigma in km/s.

    One pixel is ``c * ln(10) * 1e-4`` = 69.03 km/s.
    """
    return np.asarray(wdisp, dtype=np.float64) * (_C_KMS * math.log(10.0) * SDSS_DLOGLAM)


def wdisp_to_angstrom(wave: np.ndarray, wdisp: np.ndarray) -> np.ndarray:
    """SDSS ``wdisp`` to the LSF Gaussian sigma in Angstrom at each wavelength."""
    return np.asarray(wave, dtype=np.float64) * math.log(10.0) * SDSS_DLOGLAM * np.asarray(wdisp, dtype=np.float64)


def _redshifts_from_specobj(specobj: pa.Table) -> pa.Table | None:
    """DESI-style Z/ZERR/ZWARN/SPECTYPE/SUBTYPE view of SPECOBJ (None if columns lack)."""
    cols = {c.upper(): c for c in specobj.column_names}
    need = {"Z": "Z", "ZERR": "Z_ERR", "ZWARN": "ZWARNING", "SPECTYPE": "CLASS", "SUBTYPE": "SUBCLASS"}
    if not all(src in cols for src in need.values()):
        return None
    return pa.table(
        {
            "Z": pc.cast(specobj.column(cols["Z"]), pa.float64()),
            "ZERR": pc.cast(specobj.column(cols["Z_ERR"]), pa.float64()),
            "ZWARN": pc.cast(specobj.column(cols["ZWARNING"]), pa.int64()),
            "SPECTYPE": specobj.column(cols["CLASS"]),
            "SUBTYPE": specobj.column(cols["SUBCLASS"]),
        }
    )


def read_sdss_spec(path: str | os.PathLike[str]) -> Spectra:
    """Read an SDSS/BOSS ``spec-PLATE-MJD-FIBER.fits`` file as a one-band Spectra.

    Parameters
    ----------
    path
        A ``spec-`` (lite or full) file. Per-exposure HDUs of full files are not read.

    Returns
    -------
    Spectra
        Band ``"sdss"`` with one spectrum:

        * ``wave`` = ``10**loglam`` (float64, vacuum Angstrom; SDSS spectra are
          vacuum, see PRIMARY ``VACUUM``), ``flux``/``ivar`` float32 (flux in
          1e-17 erg/s/cm2/Angstrom), ``mask`` = ``and_mask`` (SDSS SPPIXMASK bits, not
          DESI SPECMASK bits; 0 = good);
        * ``fibermap`` = the SPECOBJ (or SPALL) row, with CLASS, Z, Z_ERR, ZWARNING...;
        * ``redshifts`` = that row in DESI names: Z (float64), ZERR, ZWARN (int64),
          SPECTYPE (= CLASS), SUBTYPE (= SUBCLASS);
        * ``extra["wdisp"]`` (1, nwave) float32: the line-spread function's Gaussian
          sigma in pixels of 1e-4 dex, needed for instrumental broadening (see
          :func:`wdisp_to_kms`, :func:`wdisp_to_angstrom`);
        * ``extra["or_mask"]``, ``extra["sky"]`` (1, nwave) and ``extra["model"]``
          (``{"sdss": (1, nwave)}``, the SDSS pipeline's best-fit model) when present;
        * ``extra["spzline"]``: the SPZLINE table (or None);
        * ``meta`` = PRIMARY header; ``resolution`` = None.

    Raises
    ------
    FormatError
        Missing COADD HDU or its loglam/flux/ivar/and_mask/wdisp columns.
    """
    path = Path(path)
    with open_fits(path) as fits:
        coadd = require_hdu(fits, "COADD")
        stored = require_columns(coadd, ["LOGLAM", "FLUX", "IVAR", "AND_MASK", "WDISP"], file=path)
        optional = [c for c in coadd.get_colnames() if c.upper() in ("OR_MASK", "SKY", "MODEL")]
        data = coadd.read(columns=stored + optional)
        so_hdu = find_hdu(fits, "SPECOBJ", "SPALL")
        specobj = read_table_with_header(so_hdu, file=path) if so_hdu is not None else None
        zl_hdu = find_hdu(fits, "SPZLINE")
        spzline = read_table_with_header(zl_hdu, file=path) if zl_hdu is not None else None
        meta = header_dict(fits[0].read_header())
    if specobj is not None and specobj.num_rows != 1:
        raise FormatError(f"expected one row, found {specobj.num_rows}", file=path, hdu=so_hdu.get_extname())
    col = {c.upper(): c for c in data.dtype.names}
    loglam = np.asarray(data[col["LOGLAM"]], dtype=np.float64)
    if loglam.size and not np.all(np.diff(loglam) > 0):
        raise FormatError("loglam is not increasing", file=path, hdu="COADD", column=col["LOGLAM"])

    def row(name: str, dtype: str) -> np.ndarray:
        return np.asarray(data[col[name]], dtype=dtype)[np.newaxis, :]

    extra: dict[str, object] = {"wdisp": row("WDISP", "f4"), "spzline": spzline}
    for name in ("OR_MASK", "SKY"):
        if name in col:
            extra[name.lower()] = row(name, "i4" if name == "OR_MASK" else "f4")
    if "MODEL" in col:
        extra["model"] = {SDSS_BAND: row("MODEL", "f4")}
    return Spectra(
        bands=[SDSS_BAND],
        wave={SDSS_BAND: 10.0**loglam},
        flux={SDSS_BAND: row("FLUX", "f4")},
        ivar={SDSS_BAND: row("IVAR", "f4")},
        mask={SDSS_BAND: row("AND_MASK", "i4")},
        resolution=None,
        fibermap=specobj,
        redshifts=_redshifts_from_specobj(specobj) if specobj is not None else None,
        meta=meta,
        extra=extra,
    )
