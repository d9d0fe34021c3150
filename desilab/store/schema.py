"""The catalog store's tables, with every column's description, unit, UCD and utype.

This module is the single definition of the store layout. The backends create their
tables from it, ingest maps DR1 product columns onto it (``source``), ``desilab store
columns`` prints it, ``docs/store.md`` is generated from it (:func:`schema_markdown`)
and the data service will publish it as ``TAP_SCHEMA`` — which is why units and UCDs
are here from the start (adding them later would mean re-ingesting).

Conventions
-----------
* Column names are lower case (portable SQL: PostgreSQL folds unquoted names to lower
  case, DuckDB is case-insensitive). The DR1 name of a column is its upper-case
  spelling unless ``source`` says otherwise.
* Every sky table has ``hpx14``: the NESTED HEALPix index at order 14 (nside 16384,
  12.9″ pixels) of its (``ra``, ``dec``) columns, -1 where the position is undefined
  (see :mod:`desilab.sky.hpxrange`).
* Every ingested row has ``_file_id`` (the source file in ``ingested_files``) and
  ``_row`` (0-based row in the source HDU): rows are always traceable to a file, and a
  file's rows can be removed or replaced as one unit.
* Units are the DR1 ``TUNIT`` strings where DR1 has them; UCDs come from the IVOA UCD1+
  controlled vocabulary; utypes are given only where a standard data model defines one.
* Types are logical: ``int16``, ``int32``, ``int64``, ``float32``, ``float64``, ``bool``,
  ``string``, ``timestamp`` and lists ``list<float32>`` (fixed-length vectors in DR1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

import pyarrow as pa

__all__ = [
    "HPX_COLUMN",
    "SCHEMA_VERSION",
    "TABLES",
    "VIEWS",
    "StoreColumn",
    "StoreTable",
    "StoreView",
    "arrow_type",
    "logical_type_of",
    "schema_markdown",
    "table_def",
]

SCHEMA_VERSION = 1
"""Bumped whenever a table or column changes (recorded in ``store_meta`` and backups)."""

HPX_COLUMN = "hpx14"
"""Name of the HEALPix index column of sky tables."""

LOGICAL_TYPES = (
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
    "bool",
    "string",
    "timestamp",
    "list<float32>",
    "list<float64>",
    "list<int32>",
    "list<int64>",
)

_ARROW = {
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "list<float32>": pa.list_(pa.float32()),
    "list<float64>": pa.list_(pa.float64()),
    "list<int32>": pa.list_(pa.int32()),
    "list<int64>": pa.list_(pa.int64()),
}


def arrow_type(logical: str) -> pa.DataType:
    """Arrow type of a logical column type."""
    try:
        return _ARROW[logical]
    except KeyError:
        raise ValueError(f"unknown logical type {logical!r}; known: {', '.join(LOGICAL_TYPES)}") from None


def logical_type_of(dtype: pa.DataType) -> str:
    """Logical type for an Arrow type (used for result tables written from Arrow).

    Unsigned integers widen to the next signed type, float16 to float32, any string or
    dictionary-of-string to ``string``, fixed-size lists to lists.

    Raises
    ------
    ValueError
        For types the store cannot hold (structs, maps, binary, nested lists).
    """
    if pa.types.is_dictionary(dtype):
        return logical_type_of(dtype.value_type)
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype):
        width = dtype.bit_width + (1 if pa.types.is_unsigned_integer(dtype) else 0)
        return "int16" if width <= 16 else "int32" if width <= 32 else "int64"
    if pa.types.is_floating(dtype):
        return "float64" if dtype.bit_width == 64 else "float32"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "timestamp"
    if pa.types.is_list(dtype) or pa.types.is_fixed_size_list(dtype) or pa.types.is_large_list(dtype):
        inner = logical_type_of(dtype.value_type)
        if inner in ("int16",):
            inner = "int32"
        if inner not in ("float32", "float64", "int32", "int64"):
            raise ValueError(f"list of {dtype.value_type} is not supported in the store")
        return f"list<{inner}>"
    raise ValueError(f"Arrow type {dtype} is not supported in the store")


@dataclass(frozen=True)
class StoreColumn:
    """One column of a store table.

    Attributes
    ----------
    name
        Lower-case SQL name.
    type
        Logical type (see module docstring).
    unit
        Unit string (DR1 TUNIT spelling), None when dimensionless.
    ucd
        IVOA UCD1+ word(s).
    description
        One line.
    utype
        Data-model utype, where one exists.
    source
        Column name in the DR1 product (default: ``name.upper()``).
    """

    name: str
    type: str
    unit: str | None
    ucd: str | None
    description: str
    utype: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.type not in LOGICAL_TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r}")
        if self.name != self.name.lower():
            raise ValueError(f"column {self.name}: names are lower case")

    @property
    def source_name(self) -> str:
        """Column name in the source product."""
        return self.name.upper() if self.source is None else self.source

    @property
    def arrow(self) -> pa.DataType:
        """Arrow type."""
        return arrow_type(self.type)

    def to_dict(self) -> dict[str, str | None]:
        """JSON-ready dict (backup manifests, ``desilab store columns``)."""
        return {
            "name": self.name,
            "type": self.type,
            "unit": self.unit,
            "ucd": self.ucd,
            "utype": self.utype,
            "description": self.description,
        }


@dataclass(frozen=True)
class StoreTable:
    """One store table.

    Attributes
    ----------
    name
        SQL name.
    description
        What one row is.
    columns
        Columns in table order.
    kind
        ``catalog`` (ingested from DR1 products), ``system`` (bookkeeping) or ``result``.
    key
        Logical key (documented and checked by ``Store.check``, not enforced by an
        index: indexes would halve the ingest rate).
    ra, dec
        Position columns of a sky table (None otherwise).
    products
        Product names (``desilab.io.validate.identify``) whose files feed this table.
    order_by
        Total order used by backups and checksums.
    """

    name: str
    description: str
    columns: tuple[StoreColumn, ...]
    kind: Literal["catalog", "system", "result"] = "catalog"
    key: tuple[str, ...] = ()
    ra: str | None = None
    dec: str | None = None
    products: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name}: duplicate column names")
        for n in (*self.key, *(x for x in (self.ra, self.dec) if x), *self.order_by):
            if n not in names:
                raise ValueError(f"table {self.name}: {n} is not a column")

    @property
    def sky(self) -> bool:
        """True when the table has a position (and an ``hpx14`` column)."""
        return self.ra is not None

    @property
    def names(self) -> list[str]:
        """Column names in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> StoreColumn:
        """Look a column up by (case-insensitive) name."""
        low = name.lower()
        for c in self.columns:
            if c.name == low:
                return c
        raise KeyError(name)

    @property
    def arrow_schema(self) -> pa.Schema:
        """Arrow schema of the table (units, UCDs in field metadata)."""
        fields = []
        for c in self.columns:
            meta = {k: v for k, v in (("unit", c.unit), ("ucd", c.ucd), ("description", c.description)) if v}
            fields.append(pa.field(c.name, c.arrow, metadata=meta or None))
        return pa.schema(fields)


@dataclass(frozen=True)
class StoreView:
    """A view over store tables (same SQL on both backends)."""

    name: str
    description: str
    sql: str
    columns_from: tuple[str, ...]
    ra: str | None = None
    dec: str | None = None
    base: str | None = None
    exclude: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------
# Column helpers
# --------------------------------------------------------------------------------------

_RA_UTYPE = "stc:AstroCoords.Position2D.Value2.C1"
_DEC_UTYPE = "stc:AstroCoords.Position2D.Value2.C2"


def C(
    name: str,
    type_: str,
    unit: str | None,
    ucd: str | None,
    description: str,
    *,
    utype: str | None = None,
    source: str | None = None,
) -> StoreColumn:
    """Shorthand constructor used by the table definitions below."""
    return StoreColumn(name, type_, unit, ucd, description, utype, source)


def _provenance() -> list[StoreColumn]:
    return [
        C("_file_id", "int64", None, "meta.id;meta.file", "Source file: ingested_files.file_id"),
        C("_row", "int64", None, "meta.record", "0-based row of this entry in the source HDU"),
    ]


def _hpx(ra: str, dec: str) -> StoreColumn:
    return C(
        HPX_COLUMN,
        "int64",
        None,
        "pos.healpix",
        f"HEALPix index, NESTED, order 14 (nside 16384), of ({ra}, {dec}); -1 if undefined",
    )


def _targetid() -> StoreColumn:
    return C("targetid", "int64", None, "meta.id;meta.main", "Unique DESI target ID")


def _survey_program() -> list[StoreColumn]:
    return [
        C("survey", "string", None, "meta.dataset", "Survey: cmx, main, sv1, sv2, sv3, special"),
        C("program", "string", None, "meta.dataset;obs.field", "Program: backup, bright, dark, other"),
    ]


def _radec(ra: str = "target_ra", dec: str = "target_dec", what: str = "ICRS, barycentric") -> list[StoreColumn]:
    return [
        C(ra, "float64", "deg", "pos.eq.ra;meta.main", f"Right ascension ({what})", utype=_RA_UTYPE),
        C(dec, "float64", "deg", "pos.eq.dec;meta.main", f"Declination ({what})", utype=_DEC_UTYPE),
    ]


def _flux_cols(
    bands: Iterable[str], unit: str, ivar_unit: str, corrected: bool, prefix: str = "flux"
) -> list[StoreColumn]:
    note = "corrected" if corrected else "not corrected"
    out = []
    for b in bands:
        em = {"G": "em.opt.B", "R": "em.opt.R", "Z": "em.opt.I", "W1": "em.IR.3-4um", "W2": "em.IR.4-8um"}.get(
            b, "em.opt"
        )
        out.append(
            C(
                f"{prefix}_{b.lower()}",
                "float32",
                unit,
                f"phot.flux;{em}",
                f"Legacy Surveys {b} flux ({note} for MW extinction)",
            )
        )
    for b in bands:
        em = {"G": "em.opt.B", "R": "em.opt.R", "Z": "em.opt.I", "W1": "em.IR.3-4um", "W2": "em.IR.4-8um"}.get(
            b, "em.opt"
        )
        out.append(
            C(
                f"{prefix}_ivar_{b.lower()}",
                "float32",
                ivar_unit,
                f"stat.weight;phot.flux;{em}",
                f"Inverse variance of {prefix}_{b.lower()}",
            )
        )
    return out


def _tsnr2(kinds: Iterable[str]) -> list[StoreColumn]:
    return [C(f"tsnr2_{k.lower()}", "float32", None, "stat.snr", f"Template (S/N)^2 for {k} targets") for k in kinds]


def _targeting(names: Iterable[str]) -> list[StoreColumn]:
    return [C(n.lower(), "int64", None, "meta.code", f"Targeting bitmask {n} (desitarget)") for n in names]


# --------------------------------------------------------------------------------------
# Catalog tables
# --------------------------------------------------------------------------------------

_NMGY = "nanomaggy"
_NMGY_IVAR = "nanomaggy^-2"

ZCATALOG = StoreTable(
    name="zcatalog",
    description=(
        "Redshift catalog (zcatalog v1 ZCATALOG rows of zpix-SURVEY-PROGRAM or zall-pix files): one row per "
        "(targetid, survey, program) healpix coadd, all spectral types. zcat_primary is the best coadd of the "
        "target within its source file (DR1-wide for zall-pix)."
    ),
    kind="catalog",
    key=("targetid", "survey", "program"),
    ra="target_ra",
    dec="target_dec",
    products=("zpix", "zall-pix"),
    order_by=("_file_id", "_row"),
    columns=(
        _targetid(),
        *_survey_program(),
        C("healpix", "int32", None, "pos.healpix", "HEALPix pixel (nside 64, NESTED) of the coadd"),
        C("z", "float64", None, "src.redshift", "Redshift measured by Redrock", utype="ssa:Target.Redshift"),
        C("zerr", "float64", None, "stat.error;src.redshift", "Redshift error from Redrock"),
        C("zwarn", "int64", None, "meta.code.qual", "Redrock warning bitmask (0 = good)"),
        C("chi2", "float64", None, "stat.fit.chi2", "Best-fit chi-squared"),
        C("deltachi2", "float64", None, "stat.fit.chi2", "Chi-squared difference between best and second-best fit"),
        C("npixels", "int64", None, "meta.number", "Unmasked pixels in the Redrock fit"),
        C("spectype", "string", None, "src.class", "Redrock spectral type: GALAXY, QSO, STAR"),
        C("subtype", "string", None, "src.class", "Redrock spectral subtype"),
        C("coadd_fiberstatus", "int32", None, "meta.code.qual", "Bitwise AND of the input FIBERSTATUS"),
        *_radec(),
        C("pmra", "float32", "mas yr^-1", "pos.pm;pos.eq.ra", "Proper motion in RA (reference catalog)"),
        C("pmdec", "float32", "mas yr^-1", "pos.pm;pos.eq.dec", "Proper motion in Dec (reference catalog)"),
        C("objtype", "string", None, "src.class", "Fiber object type: TGT, SKY, NON, BAD"),
        C("photsys", "string", None, "instr.setup", "Imaging system: N (MzLS/BASS) or S (DECaLS)"),
        C("morphtype", "string", None, "src.morph.type", "Legacy Surveys morphological model"),
        C("ebv", "float32", "mag", "phys.absorption.gal", "Galactic E(B-V) (SFD98)"),
        *_flux_cols(("G", "R", "Z", "W1", "W2"), _NMGY, _NMGY_IVAR, corrected=False),
        *(
            C(f"fiberflux_{b}", "float32", _NMGY, f"phot.flux;{em}", f"Predicted {b.upper()} flux in a 1.5″ fiber")
            for b, em in (("g", "em.opt.B"), ("r", "em.opt.R"), ("z", "em.opt.I"))
        ),
        C("maskbits", "int16", None, "meta.code", "Legacy Surveys DR9 maskbits"),
        C("sersic", "float32", None, "src.morph.param", "Sersic index of the galaxy model"),
        C("shape_r", "float32", "arcsec", "phys.angSize;src", "Half-light radius of the galaxy model"),
        C("gaia_phot_g_mean_mag", "float32", "mag", "phot.mag;em.opt", "Gaia G magnitude"),
        C("parallax", "float32", "mas", "pos.parallax", "Reference-catalog parallax"),
        *_targeting(
            (
                "DESI_TARGET",
                "BGS_TARGET",
                "MWS_TARGET",
                "SCND_TARGET",
                "CMX_TARGET",
                "SV1_DESI_TARGET",
                "SV1_BGS_TARGET",
                "SV2_DESI_TARGET",
                "SV2_BGS_TARGET",
                "SV3_DESI_TARGET",
                "SV3_BGS_TARGET",
            )
        ),
        C("coadd_numexp", "int16", None, "meta.number;obs.exposure", "Exposures in the coadd"),
        C("coadd_exptime", "float32", "s", "time.duration;obs.exposure", "Summed exposure time of the coadd"),
        C("coadd_numnight", "int16", None, "meta.number", "Nights in the coadd"),
        C("coadd_numtile", "int16", None, "meta.number", "Tiles in the coadd"),
        C("mean_mjd", "float64", "d", "time.epoch;obs", "Mean MJD of the exposures in the coadd (v1)"),
        *_tsnr2(("BGS", "LRG", "ELG", "QSO", "LYA")),
        C("zcat_nspec", "int16", None, "meta.number", "Times this TARGETID appears in the source catalog"),
        C("zcat_primary", "bool", None, "meta.code", "Best coadd of this TARGETID in the source catalog"),
        C("sv_nspec", "int16", None, "meta.number", "Coadds of this TARGETID in SV (zall-pix only)"),
        C("sv_primary", "bool", None, "meta.code", "Primary SV coadd of this TARGETID (zall-pix only)"),
        C("main_nspec", "int16", None, "meta.number", "Coadds of this TARGETID in main (zall-pix, DR1)"),
        C("main_primary", "bool", None, "meta.code", "Primary main-survey coadd (zall-pix, DR1)"),
        C("desiname", "string", None, "meta.id", "DESI name JXXX.XXXX+YY.YYYY (v1)"),
        _hpx("target_ra", "target_dec"),
        *_provenance(),
    ),
)

_FS_LINES = (
    "LYALPHA", "NV_1240", "OI_1304", "SILIV_1396", "CIV_1549", "HEII_1640", "ALIII_1857", "SILIII_1892",
    "CIII_1908", "MGII_2796", "MGII_2803", "NEV_3346", "NEV_3426", "OII_3726", "OII_3729", "NEIII_3869",
    "H6", "H6_BROAD", "HEPSILON", "HEPSILON_BROAD", "HDELTA", "HDELTA_BROAD", "HGAMMA", "HGAMMA_BROAD",
    "OIII_4363", "HEI_4471", "HEI_BROAD_4471", "HEII_4686", "HEII_BROAD_4686", "HBETA", "HBETA_BROAD",
    "OIII_4959", "OIII_5007", "NII_5755", "HEI_5876", "HEI_BROAD_5876", "OI_6300", "SIII_6312", "NII_6548",
    "HALPHA", "HALPHA_BROAD", "NII_6584", "SII_6716", "SII_6731", "ARIII_7135", "OII_7320", "OII_7330",
    "SIII_9069", "SIII_9532",
)  # fmt: skip
"""Every emission line of FastSpecFit v2.1 and v3.0 (the ``line`` values of ``fastspec_lines``)."""

_FLAM = "1e-17 erg / (Angstrom cm2 s)"
_FLAM_IVAR = "1e+34 Angstrom2 cm4 s2 / erg2"
_LFLUX = "1e-17 erg / (cm2 s)"
_LFLUX_IVAR = "1e+34 cm4 s2 / erg2"

FASTSPEC = StoreTable(
    name="fastspec",
    description=(
        "FastSpecFit DR1 (iron v2.1 or v3.0) curated physical columns, one row per (targetid, survey, program); "
        "h = 1 (H0 = 100 km/s/Mpc) for masses, SFRs and absolute magnitudes. Emission lines are in "
        "fastspec_lines; the full 887-column FASTSPEC stays in the VAC files."
    ),
    key=("targetid", "survey", "program"),
    ra="ra",
    dec="dec",
    products=("fastspec-v2.1", "fastspec-v3.0"),
    order_by=("_file_id", "_row"),
    columns=(
        _targetid(),
        *_survey_program(),
        C("healpix", "int32", None, "pos.healpix", "HEALPix pixel (nside 64, NESTED)"),
        *_radec("ra", "dec", "target catalog"),
        C("z", "float64", None, "src.redshift", "Redshift used by the fit (Redrock, or QuasarNet for some QSOs)"),
        C("z_rr", "float64", None, "src.redshift", "Redrock redshift before any QuasarNet update"),
        C("zwarn", "int16", None, "meta.code.qual", "Redrock ZWARN"),
        C("fastspec_version", "string", None, "meta.version", "FastSpecFit VAC version (v2.1 or v3.0)", source=""),
        C("rchi2", "float32", None, "stat.fit.chi2", "Reduced chi-squared of the full fit"),
        C("rchi2_cont", "float32", None, "stat.fit.chi2", "Reduced chi-squared of the continuum fit"),
        C("rchi2_line", "float32", None, "stat.fit.chi2", "Reduced chi-squared of the line fit"),
        C("rchi2_phot", "float32", None, "stat.fit.chi2", "Reduced chi-squared of the photometric fit"),
        C("logmstar", "float32", "Msun", "phys.mass;src", "log10 stellar mass (h=1, Chabrier IMF)"),
        C("logmstar_ivar", "float32", "1 / Msun2", "stat.weight;phys.mass", "Inverse variance of logmstar (v3.0)"),
        C("sfr", "float32", "Msun / yr", "phys.SFR", "Instantaneous star-formation rate (h=1, Chabrier IMF)"),
        C("sfr_ivar", "float32", "yr2 / Msun2", "stat.weight;phys.SFR", "Inverse variance of sfr (v3.0)"),
        C("age", "float32", "Gyr", "time.age", "Light-weighted stellar age"),
        C("zzsun", "float32", None, "phys.abund.Z", "log stellar metallicity relative to solar"),
        C("av", "float32", "mag", "phys.absorption", "V-band attenuation (v2.1)"),
        C("tauv", "float32", None, "phys.absorption.opticalDepth", "V-band dust optical depth (v3.0)"),
        C("vdisp", "float32", "km / s", "phys.veloc.dispersion", "Stellar velocity dispersion"),
        C("vdisp_ivar", "float32", "s2 / km2", "stat.weight;phys.veloc.dispersion", "Inverse variance of vdisp"),
        C("dn4000", "float32", None, "spect.index", "Dn(4000) of the line-subtracted spectrum"),
        C("dn4000_ivar", "float32", None, "stat.weight;spect.index", "Inverse variance of dn4000"),
        C("dn4000_model", "float32", None, "spect.index;meta.modelled", "Dn(4000) of the best continuum model"),
        *(
            C(
                f"absmag01_sdss_{b}",
                "float32",
                "mag",
                f"phys.magAbs;{em}",
                f"Absolute magnitude, SDSS {b}, band-shifted to z=0.1 (h=1)",
            )
            for b, em in (("u", "em.opt.U"), ("g", "em.opt.B"), ("r", "em.opt.R"), ("i", "em.opt.I"), ("z", "em.opt.I"))
        ),
        C(
            "absmag01_ivar_sdss_r",
            "float32",
            "1 / mag2",
            "stat.weight;phys.magAbs",
            "Inverse variance of absmag01_sdss_r",
        ),
        C("kcorr01_sdss_r", "float32", "mag", "phot.mag;arith.diff", "K-correction used for absmag01_sdss_r"),
        *(
            C(
                f"absmag10_decam_{b}",
                "float32",
                "mag",
                f"phys.magAbs;{em}",
                f"Absolute magnitude, DECam {b}, band-shifted to z=1.0 (h=1)",
            )
            for b, em in (("g", "em.opt.B"), ("r", "em.opt.R"), ("z", "em.opt.I"))
        ),
        C("apercorr", "float32", None, "arith.factor", "Median aperture correction"),
        *(C(f"snr_{c}", "float32", None, "stat.snr", f"Median S/N per pixel, {c} camera") for c in "brz"),
        _hpx("ra", "dec"),
        *_provenance(),
    ),
)

_LINE_FIELDS = (
    ("amp", _FLAM, "spect.line.intensity", "Line amplitude"),
    ("amp_ivar", _FLAM_IVAR, "stat.weight;spect.line.intensity", "Inverse variance of amp"),
    ("flux", _LFLUX, "phot.flux;spect.line", "Gaussian-integrated line flux"),
    ("flux_ivar", _LFLUX_IVAR, "stat.weight;phot.flux;spect.line", "Inverse variance of flux"),
    ("boxflux", _LFLUX, "phot.flux;spect.line", "Boxcar-integrated line flux"),
    ("boxflux_ivar", _LFLUX_IVAR, "stat.weight;phot.flux;spect.line", "Inverse variance of boxflux"),
    ("vshift", "km / s", "spect.dopplerVeloc", "Velocity shift relative to z"),
    ("vshift_ivar", "s2 / km2", "stat.weight;spect.dopplerVeloc", "Inverse variance of vshift (v3.0)"),
    ("sigma", "km / s", "spect.line.width", "Gaussian line width"),
    ("sigma_ivar", "s2 / km2", "stat.weight;spect.line.width", "Inverse variance of sigma (v3.0)"),
    ("cont", _FLAM, "phot.flux.density;spect.continuum", "Continuum flux density at the line centre"),
    ("cont_ivar", _FLAM_IVAR, "stat.weight;phot.flux.density", "Inverse variance of cont"),
    ("ew", "Angstrom", "spect.line.eqWidth", "Rest-frame equivalent width"),
    ("ew_ivar", "1 / Angstrom2", "stat.weight;spect.line.eqWidth", "Inverse variance of ew"),
    ("flux_limit", "erg / (cm2 s)", "phot.flux;stat.max", "One-sigma upper limit on the flux (not 1e-17)"),
    ("ew_limit", "Angstrom", "spect.line.eqWidth;stat.max", "One-sigma upper limit on the equivalent width"),
    ("chi2", None, "stat.fit.chi2", "Chi-squared of the line fit"),
)

FASTSPEC_LINES = StoreTable(
    name="fastspec_lines",
    description=(
        "FastSpecFit emission-line measurements in long form: one row per (targetid, survey, program, line) "
        "for lines that were measured (amp_ivar > 0 or flux_ivar > 0 or boxflux_ivar > 0). Keeps the "
        "~800 line columns of FASTSPEC out of wide rows (PostgreSQL rows must fit in 8 kB)."
    ),
    key=("targetid", "survey", "program", "line"),
    products=("fastspec-v2.1", "fastspec-v3.0"),
    order_by=("_file_id", "_row", "line"),
    columns=(
        _targetid(),
        *_survey_program(),
        C(
            "line",
            "string",
            None,
            "meta.id;spect.line",
            "Line name as in FastSpecFit columns (e.g. HALPHA, OIII_5007)",
            source="",
        ),
        *(C(n, "float32", u, ucd, d, source="") for n, u, ucd, d in _LINE_FIELDS),
        C("npix", "int32", None, "meta.number", "Pixels attributed to the line", source=""),
        *_provenance(),
    ),
)

_BAL_ION = ("CIV", "SIIV")


def _bal_columns() -> list[StoreColumn]:
    out = [
        C("pca_chi2", "float32", None, "stat.fit.chi2", "Reduced chi-squared of the PCA continuum fit (baltools)"),
        C("bal_prob", "float32", None, "stat.probability", "CNN BAL probability; -1 not computed, -99 not filled"),
    ]
    for ion in _BAL_ION:
        i = ion.lower()
        out += [
            C(f"bi_{i}", "float32", "km / s", "spect.index", f"{ion} balnicity index"),
            C(f"err_bi_{i}", "float32", "km / s", "stat.error;spect.index", f"Uncertainty of bi_{i}"),
            C(f"n{i}_2000", "int32", None, "meta.number", f"Number of {ion} BI troughs (max 5)"),
            C(
                f"vmin_{i}_2000",
                "list<float32>",
                "km / s",
                "phys.veloc;stat.min",
                f"{ion} BI trough starts (positive outflow speeds; -1 unused)",
            ),
            C(
                f"vmax_{i}_2000",
                "list<float32>",
                "km / s",
                "phys.veloc;stat.max",
                f"{ion} BI trough ends (positive outflow speeds; -1 unused)",
            ),
            C(f"ai_{i}", "float32", "km / s", "spect.index", f"{ion} absorption index"),
            C(f"err_ai_{i}", "float32", "km / s", "stat.error;spect.index", f"Uncertainty of ai_{i}"),
            C(f"n{i}_450", "int32", None, "meta.number", f"Number of {ion} AI troughs (max 17)"),
            C(
                f"vmin_{i}_450",
                "list<float32>",
                "km / s",
                "phys.veloc;stat.min",
                f"{ion} AI trough starts (positive outflow speeds; -1 unused)",
            ),
            C(
                f"vmax_{i}_450",
                "list<float32>",
                "km / s",
                "phys.veloc;stat.max",
                f"{ion} AI trough ends (positive outflow speeds; -1 unused)",
            ),
        ]
    out += [
        C("snr_civ", "float32", None, "stat.snr", "Median S/N in the C IV search window (-1 n/a)"),
        C(
            "balmask",
            "int16",
            None,
            "meta.code",
            "BAL bookkeeping bits: 1 not in BAL table, 2 z out of range, 4 dz > 0.001",
        ),
    ]
    return out


QUASARS = StoreTable(
    name="quasars",
    description=(
        "DESI QSO catalog rows (QSO_CAT or a QSO catalog with baltools BAL columns appended): redshift, "
        "afterburner (MgII, QuasarNET) and BAL columns; BAL columns are NULL when the source has none."
    ),
    key=("targetid", "survey", "program"),
    ra="target_ra",
    dec="target_dec",
    products=("qso-cat", "qso-bal-appended"),
    order_by=("_file_id", "_row"),
    columns=(
        _targetid(),
        *_survey_program(),
        C(
            "z",
            "float64",
            None,
            "src.redshift",
            "Redshift (Redrock, possibly replaced by QuasarNET/MgII)",
            utype="ssa:Target.Redshift",
        ),
        C("zerr", "float64", None, "stat.error;src.redshift", "Redshift error"),
        C("zwarn", "int64", None, "meta.code.qual", "Redrock warning bitmask"),
        C("spectype", "string", None, "src.class", "Redrock spectral type"),
        *_radec(),
        C("coadd_fiberstatus", "int32", None, "meta.code.qual", "Bitwise AND of the input FIBERSTATUS"),
        C("morphtype", "string", None, "src.morph.type", "Tractor morphological type"),
        C("ebv", "float32", "mag", "phys.absorption.gal", "Galactic E(B-V) (SFD98)"),
        *_flux_cols(("G", "R", "Z", "W1", "W2"), _NMGY, _NMGY_IVAR, corrected=False),
        C("proba_rf", "float64", None, "stat.probability", "Random-forest QSO probability (targeting)"),
        C("maskbits", "int16", None, "meta.code", "Imaging mask bits"),
        *_targeting(("DESI_TARGET", "SCND_TARGET")),
        C("coadd_numexp", "int16", None, "meta.number;obs.exposure", "Exposures in the coadd"),
        C("coadd_exptime", "float32", "s", "time.duration;obs.exposure", "Summed exposure time"),
        *_tsnr2(("LYA", "QSO")),
        C("delta_chi2_mgii", "float32", None, "stat.fit.chi2", "MgII afterburner: chi2(Redrock) - chi2(MgII fit)"),
        C("a_mgii", "float32", None, "spect.line.intensity", "MgII fit amplitude"),
        C("sigma_mgii", "float32", "Angstrom", "spect.line.width", "MgII fit width"),
        C("z_rr", "float64", None, "src.redshift", "Redrock redshift"),
        C("z_qn", "float64", None, "src.redshift", "QuasarNET redshift (line of highest confidence)"),
        *(
            C(
                f"c_{ln.lower()}",
                "float32",
                None,
                "stat.probability",
                f"QuasarNET confidence for {ln}",
                source=f"C_{ln}",
            )
            for ln in ("LYA", "CIV", "CIII", "MgII", "Hbeta", "Halpha")
        ),
        C("qso_maskbits", "int32", None, "meta.code", "QSO selection bits"),
        C("lastnight", "int64", None, "time.epoch;obs", "Last night (YYYYMMDD) included in the coadd"),
        *_bal_columns(),
        _hpx("target_ra", "target_dec"),
        *_provenance(),
    ),
)

BAL = StoreTable(
    name="bal",
    description=(
        "Standalone baltools BAL table (BALCAT): one row per quasar searched for broad absorption lines. "
        "Join to quasars on targetid (never on coordinates: BALCAT stores float32 positions)."
    ),
    key=("targetid",),
    ra="target_ra",
    dec="target_dec",
    products=("qso-balcat",),
    order_by=("_file_id", "_row"),
    columns=(
        _targetid(),
        *_radec(what="float32 copy from the fibermap"),
        C("z", "float64", None, "src.redshift", "Redrock redshift (float32 copy)"),
        *(c for c in _bal_columns() if c.name != "balmask"),
        _hpx("target_ra", "target_dec"),
        *_provenance(),
    ),
)


def _void_ids(pruning: bool = False) -> list[StoreColumn]:
    out = [
        C("catalog", "string", None, "meta.id;meta.dataset", "Void catalog (file name without extension)", source=""),
        C("cap", "string", None, "obs.field", "Galactic cap: NGC, SGC, or empty if not in the file name", source=""),
    ]
    if pruning:
        out.append(
            C("pruning", "string", None, "meta.code;meta.dataset", "V² pruning: REVOLVER, VIDE or ZOBOV", source="")
        )
    return out


_MPCH = "Mpc h-1"


def _xyz(what: str) -> list[StoreColumn]:
    return [
        C(a, "float64", _MPCH, f"pos.cartesian.{a}", f"Comoving {a.upper()} of the {what} (h = 1)")
        for a in ("x", "y", "z")
    ]


def _derived_sky(what: str) -> list[StoreColumn]:
    return [
        C(
            "ra",
            "float64",
            "deg",
            "pos.eq.ra;meta.main",
            f"Right ascension of the {what}, from X/Y/Z (derived)",
            utype=_RA_UTYPE,
            source="",
        ),
        C(
            "dec",
            "float64",
            "deg",
            "pos.eq.dec;meta.main",
            f"Declination of the {what}, from X/Y/Z (derived)",
            utype=_DEC_UTYPE,
            source="",
        ),
        C("r", "float64", _MPCH, "pos.distance", f"Comoving distance of the {what}, from X/Y/Z (derived)", source=""),
    ]


VOID_CATALOGS = StoreTable(
    name="void_catalogs",
    description="One row per ingested DESIVAST/VAST void catalog file: algorithm, cap, cosmology and limits.",
    key=("catalog",),
    products=("desivast-voidfinder", "desivast-v2"),
    order_by=("_file_id",),
    columns=(
        *_void_ids(pruning=True),
        C("algorithm", "string", None, "meta.code", "VoidFinder or V2", source=""),
        C(
            "omega_m",
            "float64",
            None,
            "phys.density;cosmology",
            "Omega_m of the distance calculation (OMEGAM)",
            source="OMEGAM",
        ),
        C("h", "float64", None, "cosmology", "Hubble parameter h of the distances (HP; 1 means Mpc/h)", source="HP"),
        C("zlim_lo", "float64", None, "src.redshift;stat.min", "Lower redshift limit (ZLIML)", source="ZLIML"),
        C("zlim_hi", "float64", None, "src.redshift;stat.max", "Upper redshift limit (ZLIMU)", source="ZLIMU"),
        C(
            "maglim",
            "float64",
            "mag",
            "phot.mag;stat.max",
            "Absolute-magnitude limit of the tracers (MAGLIM)",
            source="MAGLIM",
        ),
        C("header", "string", None, "meta.note", "PRIMARY header keywords as JSON", source=""),
        *_provenance(),
    ),
)

VOIDFINDER_MAXIMALS = StoreTable(
    name="voidfinder_maximals",
    description="VoidFinder MAXIMALS: one row per void, its largest sphere. RA is wrapped to [0, 360).",
    key=("catalog", "void"),
    ra="ra",
    dec="dec",
    products=("desivast-voidfinder",),
    order_by=("_file_id", "_row"),
    columns=(
        *_void_ids(),
        C("void", "int64", None, "meta.id", "Void index (0..N-1 within the catalog)"),
        *_xyz("maximal sphere centre"),
        C("radius", "float64", _MPCH, "phys.size.radius", "Radius of the maximal sphere"),
        C(
            "edge",
            "int16",
            None,
            "meta.code",
            "0 interior; 1 a hole extends outside the survey; 2 a hole centre within 10 Mpc/h of the edge",
        ),
        C("r", "float64", _MPCH, "pos.distance", "Comoving distance of the centre"),
        C(
            "ra",
            "float64",
            "deg",
            "pos.eq.ra;meta.main",
            "Right ascension of the centre (wrapped to [0, 360))",
            utype=_RA_UTYPE,
        ),
        C("dec", "float64", "deg", "pos.eq.dec;meta.main", "Declination of the centre", utype=_DEC_UTYPE),
        C("r_eff", "float64", _MPCH, "phys.size.radius", "Effective radius (sphere with the void's volume)"),
        C("r_eff_uncert", "float64", _MPCH, "stat.error;phys.size.radius", "Uncertainty of r_eff"),
        _hpx("ra", "dec"),
        *_provenance(),
    ),
)

VOIDFINDER_HOLES = StoreTable(
    name="voidfinder_holes",
    description="VoidFinder HOLES: the spheres whose union is each void (maximals included); sky position derived.",
    key=("catalog", "hole"),
    ra="ra",
    dec="dec",
    products=("desivast-voidfinder",),
    order_by=("_file_id", "_row"),
    columns=(
        *_void_ids(),
        C("hole", "int64", None, "meta.id", "Hole index (its row in HOLES)", source=""),
        C("void", "int64", None, "meta.id.parent", "Void the hole belongs to (voidfinder_maximals.void)"),
        *_xyz("hole centre"),
        C("radius", "float64", _MPCH, "phys.size.radius", "Hole radius"),
        *_derived_sky("hole centre"),
        _hpx("ra", "dec"),
        *_provenance(),
    ),
)

V2_VOIDS = StoreTable(
    name="v2_voids",
    description="V² VOIDS (REVOLVER / VIDE / ZOBOV pruning): one row per void.",
    key=("catalog", "void"),
    ra="ra",
    dec="dec",
    products=("desivast-v2",),
    order_by=("_file_id", "_row"),
    columns=(
        *_void_ids(pruning=True),
        C("void", "int64", None, "meta.id", "Void index"),
        *_xyz("void centre"),
        C("redshift", "float64", None, "src.redshift", "Redshift of the void centre"),
        C("ra", "float64", "deg", "pos.eq.ra;meta.main", "Right ascension of the centre", utype=_RA_UTYPE),
        C("dec", "float64", "deg", "pos.eq.dec;meta.main", "Declination of the centre", utype=_DEC_UTYPE),
        C("radius", "float64", _MPCH, "phys.size.radius", "Effective radius from the summed Voronoi volume"),
        *(
            C(
                f"{a}{k}",
                "float64",
                _MPCH,
                f"pos.cartesian.{a};src.morph.param",
                f"{a.upper()} component of ellipsoid semi-axis {k}",
            )
            for k in (1, 2, 3)
            for a in ("x", "y", "z")
        ),
        C("tot_area", "float64", "(Mpc/h)^2", "phys.area", "Total surface area of the void"),
        C("edge_area", "float64", "(Mpc/h)^2", "phys.area", "Surface area on the survey boundary"),
        C("edge", "int16", None, "meta.code", "Edge flag when the file has one (not in DR1 files)"),
        _hpx("ra", "dec"),
        *_provenance(),
    ),
)

V2_ZONES = StoreTable(
    name="v2_zones",
    description="V² ZONEVOID: which voids contain each zone (-1: none).",
    key=("catalog", "zone"),
    products=("desivast-v2",),
    order_by=("_file_id", "_row"),
    columns=(
        *_void_ids(pruning=True),
        C("zone", "int64", None, "meta.id", "Zone index"),
        C("void0", "int64", None, "meta.id.parent", "Smallest void containing the zone (-1 none)"),
        C("void1", "int64", None, "meta.id.parent", "Largest void containing the zone (-1 none)"),
        *_provenance(),
    ),
)

V2_GALAXIES = StoreTable(
    name="v2_galaxies",
    description=(
        "V² GALZONE: one row per tracer galaxy of the tessellation (per pruning), with its zone; void "
        "membership = zone -> v2_zones.void0 >= 0 (see the v2_membership view). Sky position derived."
    ),
    key=("catalog", "gal"),
    ra="ra",
    dec="dec",
    products=("desivast-v2",),
    order_by=("_file_id", "_row"),
    columns=(
        *_void_ids(pruning=True),
        C("gal", "int64", None, "meta.id", "Galaxy running index"),
        C("targetid", "int64", None, "meta.id.cross", "DESI TARGETID (GALZONE.TARGET)", source="TARGET"),
        *_xyz("galaxy"),
        C("zone", "int64", None, "meta.id.parent", "Zone of the galaxy (-1 none)"),
        C("depth", "int64", None, "meta.number", "Depth of the galaxy in its zone"),
        C("edge", "int16", None, "meta.code", "1 if the galaxy's Voronoi cell touches the survey boundary"),
        C("out", "int16", None, "meta.code", "1 if the galaxy is outside the mask"),
        *_derived_sky("galaxy"),
        _hpx("ra", "dec"),
        *_provenance(),
    ),
)

SPECTRA_INDEX = StoreTable(
    name="spectra_index",
    description=(
        "Where each coadded spectrum is: one row per FIBERMAP row of an ingested coadd file. Pipelines "
        "find spectra through it and read the arrays from the file (spectra are never SQL rows)."
    ),
    key=("targetid", "survey", "program", "file"),
    ra="target_ra",
    dec="target_dec",
    products=("coadd",),
    order_by=("_file_id", "_row"),
    columns=(
        _targetid(),
        *_survey_program(),
        C("healpix", "int32", None, "pos.healpix", "HEALPix pixel (nside 64, NESTED) of the coadd file", source=""),
        *_radec(),
        C(
            "file",
            "string",
            None,
            "meta.ref.url;meta.file",
            "Absolute path of the coadd file",
            utype="ssa:Access.Reference",
            source="",
        ),
        C("row", "int32", None, "meta.record", "Row of the spectrum in the file's FIBERMAP and image HDUs", source=""),
        C("arms", "string", None, "instr.bandpass", "Arms present in the file, e.g. brz", source=""),
        C("nwave", "int32", None, "meta.number", "Total wavelength pixels over the arms", source=""),
        C("coadd_fiberstatus", "int32", None, "meta.code.qual", "Bitwise AND of the input FIBERSTATUS"),
        _hpx("target_ra", "target_dec"),
        *_provenance(),
    ),
)

# --------------------------------------------------------------------------------------
# System tables
# --------------------------------------------------------------------------------------

INGESTED_FILES = StoreTable(
    name="ingested_files",
    description=(
        "Every file ingested: checksum (idempotency), product, rows per table. Written in the same "
        "transaction as the rows."
    ),
    kind="system",
    key=("file_id",),
    order_by=("file_id",),
    columns=(
        C("file_id", "int64", None, "meta.id;meta.main", "File number (the _file_id of its rows)"),
        C("path", "string", None, "meta.ref.url;meta.file", "Absolute path when ingested"),
        C("name", "string", None, "meta.id;meta.file", "File name"),
        C("sha256", "string", None, "meta.checksum", "SHA-256 of the file content"),
        C("size", "int64", "byte", "phys.size;meta.file", "File size"),
        C("product", "string", None, "meta.code", "Product identified by desilab.io.validate.identify"),
        C("rows", "int64", None, "meta.number", "Rows written, all tables together"),
        C("table_rows", "string", None, "meta.note", "Rows written per table, JSON"),
        C("ingested_at", "timestamp", None, "time.processing", "When the transaction committed (UTC)"),
        C("seconds", "float64", "s", "time.duration", "Time spent reading and writing the file"),
        C("desilab_version", "string", None, "meta.version", "desilab version that ingested it"),
    ),
)

RUNS = StoreTable(
    name="runs",
    description="Provenance of runs that wrote to the store (desilab run, pipelines): what ran, with what, when.",
    kind="system",
    key=("run_id",),
    order_by=("run_id",),
    columns=(
        C("run_id", "string", None, "meta.id;meta.main", "Run identifier"),
        C("started_at", "timestamp", None, "time.start", "Start (UTC)"),
        C("finished_at", "timestamp", None, "time.end", "End (UTC), NULL while running"),
        C("status", "string", None, "meta.code.status", "running, ok, failed"),
        C("command", "string", None, "meta.note", "Command or pipeline"),
        C("desilab_version", "string", None, "meta.version", "desilab version"),
        C("settings", "string", None, "meta.note", "Resolved settings, JSON"),
        C("summary", "string", None, "meta.note", "Summary, JSON"),
    ),
)

RESULT_TABLES = StoreTable(
    name="result_tables",
    description="Tables written by pipelines with Store.write_table: description, run and column documentation.",
    kind="system",
    key=("name",),
    order_by=("name",),
    columns=(
        C("name", "string", None, "meta.id;meta.main", "Table name"),
        C("run_id", "string", None, "meta.id.cross", "runs.run_id that wrote it"),
        C("created_at", "timestamp", None, "time.processing", "When written (UTC)"),
        C("description", "string", None, "meta.note", "What one row is"),
        C("rows", "int64", None, "meta.number", "Rows"),
        C("ra_column", "string", None, "meta.code", "Position column (sky tables)"),
        C("dec_column", "string", None, "meta.code", "Position column (sky tables)"),
        C(
            "columns",
            "string",
            None,
            "meta.note",
            "Column documentation (name, type, unit, ucd, utype, description), JSON",
        ),
    ),
)

STORE_META = StoreTable(
    name="store_meta",
    description="Key/value facts about the store: schema version, HEALPix order, creation time.",
    kind="system",
    key=("key",),
    order_by=("key",),
    columns=(
        C("key", "string", None, "meta.id", "Key"),
        C("value", "string", None, "meta.note", "Value"),
    ),
)

TABLES: dict[str, StoreTable] = {
    t.name: t
    for t in (
        STORE_META,
        INGESTED_FILES,
        RUNS,
        RESULT_TABLES,
        ZCATALOG,
        FASTSPEC,
        FASTSPEC_LINES,
        QUASARS,
        BAL,
        VOID_CATALOGS,
        VOIDFINDER_MAXIMALS,
        VOIDFINDER_HOLES,
        V2_VOIDS,
        V2_ZONES,
        V2_GALAXIES,
        SPECTRA_INDEX,
    )
}
"""Every built-in table, system tables first (creation order)."""

_FS_PHYS = [c.name for c in FASTSPEC.columns if c.name not in set(ZCATALOG.names) | {"ra", "dec", "fastspec_version"}]

VIEWS: dict[str, StoreView] = {
    "galaxies": StoreView(
        name="galaxies",
        description=(
            "Redshift catalog joined with the curated FastSpecFit columns on (targetid, survey, program): "
            "every zcatalog row, fastspec columns NULL where FastSpecFit has no row."
        ),
        sql=(
            "SELECT z.*, f.fastspec_version, "
            + ", ".join(f"f.{n}" for n in _FS_PHYS)
            + " FROM zcatalog AS z LEFT JOIN fastspec AS f"
            " ON f.targetid = z.targetid AND f.survey = z.survey AND f.program = z.program"
        ),
        columns_from=("zcatalog", "fastspec"),
        ra="target_ra",
        dec="target_dec",
        base="zcatalog",
    ),
    "v2_membership": StoreView(
        name="v2_membership",
        description="V² galaxies with the voids of their zone: in_void = out = 0 and void0 >= 0.",
        sql=(
            "SELECT g.catalog, g.cap, g.pruning, g.gal, g.targetid, g.ra, g.dec, g.r, g.zone, g.edge, g.out, "
            "zv.void0, zv.void1, (g.out = 0 AND zv.void0 >= 0) AS in_void, g.hpx14 "
            "FROM v2_galaxies AS g LEFT JOIN v2_zones AS zv ON zv.catalog = g.catalog AND zv.zone = g.zone"
        ),
        columns_from=("v2_galaxies", "v2_zones"),
        ra="ra",
        dec="dec",
        base="v2_galaxies",
    ),
}
"""Views (created with the tables, identical SQL on both backends)."""


def view_columns(view: StoreView) -> list[StoreColumn]:
    """Documented columns of a view (looked up in the tables it reads)."""
    if view.name == "galaxies":
        cols = list(ZCATALOG.columns)
        cols.append(FASTSPEC.column("fastspec_version"))
        cols += [FASTSPEC.column(n) for n in _FS_PHYS]
        return cols
    if view.name == "v2_membership":
        g = V2_GALAXIES
        out = [
            g.column(n)
            for n in ("catalog", "cap", "pruning", "gal", "targetid", "ra", "dec", "r", "zone", "edge", "out")
        ]
        out += [V2_ZONES.column("void0"), V2_ZONES.column("void1")]
        out.append(C("in_void", "bool", None, "meta.code", "Galaxy inside the mask and its zone in a void"))
        out.append(g.column(HPX_COLUMN))
        return out
    raise KeyError(view.name)


def table_def(name: str) -> StoreTable | None:
    """The built-in table called *name* (case-insensitive), or None."""
    return TABLES.get(name.lower())


def columns_with_types(columns: Iterable[StoreColumn]) -> list[StoreColumn]:
    """Copy of *columns* (helper kept for symmetry with result tables)."""
    return [replace(c) for c in columns]


def schema_markdown() -> str:
    """Markdown description of every table and view (used for ``docs/store.md``)."""
    lines: list[str] = []
    for t in TABLES.values():
        lines.append(f"### `{t.name}` ({t.kind})\n")
        lines.append(t.description + "\n")
        extra = []
        if t.key:
            extra.append(f"key ({', '.join(t.key)})")
        if t.sky:
            extra.append(f"position ({t.ra}, {t.dec}), indexed by `{HPX_COLUMN}`")
        if t.products:
            extra.append("fed by products " + ", ".join(f"`{p}`" for p in t.products))
        if extra:
            lines.append("; ".join(extra).capitalize() + ".\n")
        lines.append("| column | type | unit | UCD | utype | description |")
        lines.append("|---|---|---|---|---|---|")
        for c in t.columns:
            lines.append(
                f"| `{c.name}` | {c.type} | {c.unit or ''} | {c.ucd or ''} | {c.utype or ''} | "
                f"{c.description.replace('|', '/')} |"
            )
        lines.append("")
    for v in VIEWS.values():
        lines.append(f"### `{v.name}` (view)\n")
        lines.append(v.description + "\n")
        lines.append("```sql\n" + v.sql + "\n```\n")
    return "\n".join(lines)
