"""FastSpecFit DR1 (iron) value-added catalog: both public versions, v2.1 and v3.0.

The data model changed between the versions (desi-formats.md section 3):

======== ================================================ ====================
version  HDUs (per-healpix ``.fits.gz`` / merged catalogs)  physical columns in
======== ================================================ ====================
v2.1     PRIMARY, FASTSPEC, METADATA [, MODELS]            FASTSPEC
v3.0     PRIMARY, METADATA, SPECPHOT, FASTSPEC [, MODELS]  SPECPHOT
======== ================================================ ====================

All table HDUs are row-matched (same rows, same TARGETID order). :func:`read_fastspec`
detects the version, takes each requested column from whichever HDU has it (METADATA
first, so ``Z`` is the Redrock/QuasarNet redshift) and records the version in the Arrow
schema metadata. :func:`write_fastspec` splits one table into the version's HDUs and
writes the MODELS image when given. Cosmology is h = 1: LOGMSTAR/SFR/ABSMAG are for
H0 = 100 km/s/Mpc; METADATA fluxes are corrected for Galactic extinction.

The golden schemas transcribe METADATA and the non-line columns of FASTSPEC/SPECPHOT
from the fastspecfit data-model pages; the emission-line block is generated from each
version's line list times its suffix set (see :data:`LINES` and :data:`LINE_SUFFIXES`).
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import fitsio
import numpy as np
import pyarrow as pa

from desilab.errors import FormatError, InputError
from desilab.io.fits import atomic_output, hdu_names, numpy_to_arrow, open_fits, read_table_hdu
from desilab.io.products import conform_table
from desilab.io.schema import Column, ImageHDU, Problem, ProductSchema, TableHDU, parse_tform, register
from desilab.io.validate import HDUInfo, allow_variable_repeat, fast_header, register_check, scan_hdus

__all__ = [
    "LINES",
    "LINE_SUFFIXES",
    "MODELS_CDELT1",
    "MODELS_CRVAL1",
    "MODELS_NPIX",
    "SCHEMAS",
    "V21",
    "V30",
    "detect_version",
    "format_doc",
    "models_wavelength",
    "read_fastspec",
    "read_fastspec_models",
    "write_fastspec",
]

Version = Literal["v2.1", "v3.0"]

SOURCE_V21 = (
    "desihub/fastspecfit doc/fastspec.rst @ 015482c4d8e4e8840145edc6ba8b8b63cad1c96b (v2.x data model) "
    "and doc/iron.rst @ 90bccedc9f60d0c2024c7fa83fd1faabaccd7818 (iron v2.1 page, fastspecfit 2.5.0/2.5.1); "
    "desi-formats.md section 3"
)
SOURCE_V30 = (
    "desihub/fastspecfit doc/fastspec.rst @ f1289c11498a0cc3e4320724f22679cd9bbc24f8 (v3 data model) "
    "and doc/iron.rst @ 11b1516c69a3160c87b035df103a34abd6563c8b (iron v3.0 page, fastspecfit 3.1.5); "
    "column counts of the real v3.0 main files from a third-party dump (desi-formats.md section 3)"
)

#: MODELS image wavelength grid: CRVAL1 at 0-indexed pixel CRPIX1=0, CDELT1 steps, vacuum.
MODELS_CRVAL1 = 3600.0
MODELS_CDELT1 = 0.8
MODELS_NPIX = 7781
MODELS_BUNIT = "10**-17 erg/(s cm2 Angstrom)"

_NMGY = "nmgy"
_FLAM = "1e-17 erg / (Angstrom cm2 s)"
_FLAM_IVAR = "1e+34 Angstrom2 cm4 s2 / erg2"
_FLUX = "1e-17 erg / (cm2 s)"
_FLUX_IVAR = "1e+34 cm4 s2 / erg2"
_KMS = "km / s"
_KMS_IVAR = "s2 / km2"


def _c(name: str, tform: str, unit: str | None = None, description: str = "", required: bool = True) -> Column:
    return Column(name, tform, unit, description, required)


# --------------------------------------------------------------------------------------
# Emission lines: names per version (rest-frame vacuum; see emlines.ecsv). Lines marked
# optional are those where the sources disagree (see the notes).

_COMMON_LINES = (
    "OI_1304", "SILIV_1396", "CIV_1549", "HEII_1640", "ALIII_1857", "SILIII_1892", "CIII_1908",
    "MGII_2796", "MGII_2803", "NEV_3346", "NEV_3426", "OII_3726", "OII_3729", "NEIII_3869",
    "H6", "H6_BROAD", "HEPSILON", "HEPSILON_BROAD", "HDELTA", "HDELTA_BROAD", "HGAMMA",
    "HGAMMA_BROAD", "OIII_4363", "HEI_4471",
)  # fmt: skip

#: Line names per version, in file order, with ``required`` flags.
LINES: dict[str, tuple[tuple[str, bool], ...]] = {
    "v2.1": (
        ("LYALPHA", True),
        *((n, True) for n in _COMMON_LINES),
        ("HEI_BROAD_4471", False),
        ("HEII_4686", True),
        ("HEII_BROAD_4686", False),
        ("HBETA", True), ("HBETA_BROAD", True), ("OIII_4959", True), ("OIII_5007", True),
        ("NII_5755", True), ("HEI_5876", True),
        ("HEI_BROAD_5876", False),
        ("OI_6300", True),
        ("SIII_6312", False),
        ("NII_6548", True), ("HALPHA", True), ("HALPHA_BROAD", True), ("NII_6584", True),
        ("SII_6716", True), ("SII_6731", True), ("OII_7320", True), ("OII_7330", True),
        ("SIII_9069", True), ("SIII_9532", True),
    ),
    "v3.0": (
        ("LYALPHA", False),
        ("NV_1240", True),
        *((n, True) for n in _COMMON_LINES),
        ("HEII_4686", True),
        ("HBETA", True), ("HBETA_BROAD", True), ("OIII_4959", True), ("OIII_5007", True),
        ("NII_5755", True), ("HEI_5876", True), ("OI_6300", True), ("SIII_6312", True),
        ("NII_6548", True), ("HALPHA", True), ("HALPHA_BROAD", True), ("NII_6584", True),
        ("SII_6716", True), ("SII_6731", True), ("ARIII_7135", True), ("OII_7320", True),
        ("OII_7330", True), ("SIII_9069", True), ("SIII_9532", True),
    ),
}  # fmt: skip

#: Per-line column suffixes: (suffix, TFORM, TUNIT, description).
LINE_SUFFIXES: dict[str, tuple[tuple[str, str, str | None, str], ...]] = {
    "v2.1": (
        ("MODELAMP", "E", _FLAM, "Model emission-line amplitude"),
        ("AMP", "E", _FLAM, "Emission-line amplitude"),
        ("AMP_IVAR", "E", _FLAM_IVAR, "Inverse variance of the line amplitude"),
        ("FLUX", "E", _FLUX, "Gaussian-integrated emission-line flux"),
        ("FLUX_IVAR", "E", _FLUX_IVAR, "Inverse variance of the integrated flux"),
        ("BOXFLUX", "E", _FLUX, "Boxcar-integrated emission-line flux"),
        ("BOXFLUX_IVAR", "E", _FLUX_IVAR, "Inverse variance of the boxcar-integrated flux"),
        ("VSHIFT", "E", _KMS, "Velocity shift relative to Z"),
        ("SIGMA", "E", _KMS, "Gaussian emission-line width"),
        ("CONT", "E", _FLAM, "Continuum flux at line center"),
        ("CONT_IVAR", "E", _FLAM_IVAR, "Inverse variance of the continuum flux"),
        ("EW", "E", "Angstrom", "Rest-frame emission-line equivalent width"),
        ("EW_IVAR", "E", "1 / Angstrom2", "Inverse variance of the equivalent width"),
        ("FLUX_LIMIT", "E", "erg / (cm2 s)", "One-sigma upper limit on the line flux (not 1e-17)"),
        ("EW_LIMIT", "E", "Angstrom", "One-sigma upper limit on the equivalent width"),
        ("CHI2", "E", None, "Chi-squared of the line fit"),
        ("NPIX", "J", None, "Number of pixels attributed to the emission line"),
    ),
    "v3.0": (
        ("MODELAMP", "E", _FLAM, "Model emission-line amplitude (before resolution convolution)"),
        ("AMP", "E", _FLAM, "Emission-line amplitude"),
        ("AMP_IVAR", "E", _FLAM_IVAR, "Inverse variance of the line amplitude"),
        ("FLUX", "E", _FLUX, "Gaussian-integrated emission-line flux"),
        ("FLUX_IVAR", "E", _FLUX_IVAR, "Inverse variance of the integrated flux"),
        ("BOXFLUX", "E", _FLUX, "Boxcar-integrated emission-line flux"),
        ("BOXFLUX_IVAR", "E", _FLUX_IVAR, "Inverse variance of the boxcar-integrated flux"),
        ("VSHIFT", "E", _KMS, "Velocity shift relative to Z"),
        ("VSHIFT_IVAR", "E", _KMS_IVAR, "Inverse variance of VSHIFT"),
        ("SIGMA", "E", _KMS, "Gaussian emission-line width (before resolution convolution)"),
        ("SIGMA_IVAR", "E", _KMS_IVAR, "Inverse variance of SIGMA"),
        ("CONT", "E", _FLAM, "Continuum flux at line center"),
        ("CONT_IVAR", "E", _FLAM_IVAR, "Inverse variance of the continuum flux"),
        ("EW", "E", "Angstrom", "Rest-frame emission-line equivalent width"),
        ("EW_IVAR", "E", "1 / Angstrom2", "Inverse variance of the equivalent width"),
        ("FLUX_LIMIT", "E", "erg / (cm2 s)", "One-sigma upper limit on the line flux (not 1e-17)"),
        ("CHI2", "E", None, "Chi-squared of the line fit"),
        ("NPIX", "J", None, "Number of pixels attributed to the emission line"),
    ),
}

_MOMENT_LINES = ("CIV_1549", "MGII_2800", "HBETA", "OIII_5007")


def _line_block(version: str) -> list[Column]:
    return [
        _c(f"{line}_{suffix}", tform, unit, f"{desc} [generated: {line}]", required)
        for line, required in LINES[version]
        for suffix, tform, unit, desc in LINE_SUFFIXES[version]
    ]


def _moments() -> list[Column]:
    cols = []
    for line in _MOMENT_LINES:
        for k, unit, ivar in (
            (1, "Angstrom", "1 / Angstrom2"),
            (2, "Angstrom2", "1 / Angstrom4"),
            (3, "Angstrom3", "1 / Angstrom6"),
        ):
            cols.append(
                _c(f"{line}_MOMENT{k}", "E", unit, f"Moment {k} of the continuum-subtracted line profile [generated]")
            )
            cols.append(_c(f"{line}_MOMENT{k}_IVAR", "E", ivar, f"Inverse variance of {line}_MOMENT{k} [generated]"))
    return cols


# --------------------------------------------------------------------------------------
# Transcribed columns

_TILE_ONLY = ("TILEID", "NIGHT", "FIBER", "EXPID")


def _ids(tile_order: tuple[str, ...] = ("TILEID", "NIGHT", "FIBER", "EXPID")) -> list[Column]:
    desc = {
        "TILEID": "Tile ID number",
        "NIGHT": "Night of observation",
        "FIBER": "Fiber number",
        "EXPID": "Exposure ID",
    }
    return [
        _c("TARGETID", "K", None, "Unique target ID"),
        _c("SURVEY", "7A", None, "Survey name (healpix coadds)"),
        _c("PROGRAM", "6A", None, "Program name (healpix coadds)"),
        _c("HEALPIX", "J", None, "Healpixel number (nside=64, nested)"),
        *(_c(n, "J", None, f"{desc[n]} (tile-based coadds only)", False) for n in tile_order),
    ]


def _metadata(version: str) -> tuple[Column, ...]:
    cols = [
        *_ids(("TILEID", "FIBER", "NIGHT", "EXPID")),
        _c("TILEID_LIST", "5A", None, "List of tile IDs that went into the healpix coadd (width varies)"),
        _c("RA", "D", "deg", "Right ascension from target catalog"),
        _c("DEC", "D", "deg", "Declination from target catalog"),
        _c("COADD_FIBERSTATUS", "K", None, "Fiber status bit"),
        _c("CMX_TARGET", "K", None, "Commissioning (CMX) targeting bit (CMX/SV files only)", False),
        _c("DESI_TARGET", "K", None, "DESI targeting bit"),
        _c("BGS_TARGET", "K", None, "BGS targeting bit"),
        _c("MWS_TARGET", "K", None, "MWS targeting bit"),
        _c("SCND_TARGET", "K", None, "Secondary target targeting bit"),
    ]
    for sv in ("SV1", "SV2", "SV3"):
        for kind in ("DESI", "BGS", "MWS"):
            cols.append(_c(f"{sv}_{kind}_TARGET", "K", None, f"{sv} {kind} targeting bit (CMX/SV files only)", False))
    for sv in ("SV1", "SV2", "SV3"):
        cols.append(_c(f"{sv}_SCND_TARGET", "K", None, f"{sv} secondary targeting bit (CMX/SV files only)", False))
    cols += [
        _c("Z", "D", None, "Redshift from Redrock, or QuasarNet for some QSO targets"),
        _c("ZWARN", "B", None, "Redrock ZWARN (int8: TFORM B with TZERO=-128)"),
        _c("DELTACHI2", "D", None, "Redrock delta-chi-squared"),
        _c("SPECTYPE", "6A", None, "Redrock spectral classification"),
    ]
    if version == "v3.0":
        cols.append(_c("SUBTYPE", "20A", None, "Redrock spectral subtype"))
    cols.append(_c("Z_RR", "D", None, "Redrock redshift (before any QuasarNet update)"))
    if version == "v3.0":
        cols.append(_c("ZWARN_RR", "B", None, "Redrock ZWARN before any QuasarNet update (v3; assumed int8)", False))
    cols += [
        _c(f"TSNR2_{k}", "E", None, f"Template (S/N)^2 for {k} targets") for k in ("BGS", "LRG", "ELG", "QSO", "LYA")
    ]
    cols += [
        _c("PHOTSYS", "1A", None, "Photometric system (N or S)"),
        _c("LS_ID", "K", None, "Unique Legacy Surveys identification number"),
    ]
    cols += [_c(f"FIBERFLUX_{b}", "E", _NMGY, f"Fiber {b}-band flux corrected for Galactic extinction") for b in "GRZ"]
    cols += [
        _c(f"FIBERTOTFLUX_{b}", "E", _NMGY, f"Fibertot {b}-band flux corrected for Galactic extinction") for b in "GRZ"
    ]
    bands = ("G", "R", "Z", "W1", "W2", "W3", "W4")
    cols += [_c(f"FLUX_{b}", "E", _NMGY, f"Total {b}-band flux corrected for Galactic extinction") for b in bands]
    cols += [_c(f"FLUX_IVAR_{b}", "E", "1 / nmgy2", f"Inverse variance of FLUX_{b}") for b in bands]
    cols.append(_c("EBV", "E", "mag", "Milky Way foreground color excess E(B-V)"))
    cols += [_c(f"MW_TRANSMISSION_{b}", "E", None, f"Milky Way dust transmission [0-1] in {b}") for b in bands]
    return tuple(cols)


def _synth_fluxes() -> list[Column]:
    cols = [_c(f"FLUX_SYNTH_{b}", "E", _NMGY, f"{b}-band flux synthesized from the data") for b in "GRZ"]
    cols += [
        _c(f"FLUX_SYNTH_SPECMODEL_{b}", "E", _NMGY, f"{b}-band flux synthesized from the spectroscopic model")
        for b in "GRZ"
    ]
    cols += [
        _c(f"FLUX_SYNTH_PHOTMODEL_{b}", "E", _NMGY, f"{b}-band flux synthesized from the photometric model")
        for b in ("G", "R", "Z", "W1", "W2", "W3", "W4")
    ]
    return cols


_ABSMAG_BANDS_V21 = (
    ("10", "DECAM_G"), ("10", "DECAM_R"), ("10", "DECAM_Z"), ("00", "U"), ("00", "B"), ("00", "V"),
    ("01", "SDSS_U"), ("01", "SDSS_G"), ("01", "SDSS_R"), ("01", "SDSS_I"), ("01", "SDSS_Z"), ("01", "W1"),
)  # fmt: skip
_ABSMAG_BANDS_V30 = (*_ABSMAG_BANDS_V21[:6], ("00", "TWOMASS_J"), *_ABSMAG_BANDS_V21[6:])

_CONTINUA = (
    ("FLYA_1215_CONT", "1215.67"), ("FOII_3727_CONT", "3728.483"), ("FHBETA_CONT", "4862.683"),
    ("FOIII_5007_CONT", "5008.239"), ("FHALPHA_CONT", "6564.613"),
)  # fmt: skip


def _fastspec_v21() -> tuple[Column, ...]:
    cols = [
        *_ids(),
        _c("Z", "D", None, "Stellar continuum redshift"),
        _c("COEFF", "168E", None, "Continuum template coefficients (length depends on the template set)"),
        _c("RCHI2", "E", None, "Reduced chi-squared of the full-spectrum fit"),
        _c("RCHI2_CONT", "E", None, "Reduced chi-squared of the stellar-continuum fit"),
        _c("RCHI2_PHOT", "E", None, "Reduced chi-squared of the fit to the broadband photometry"),
        *(_c(f"SNR_{c}", "E", None, f"Median S/N per pixel in the {c.lower()} camera") for c in "BRZ"),
        *(
            _c(f"SMOOTHCORR_{c}", "E", "percent", f"Mean smooth continuum correction in the {c.lower()} camera")
            for c in "BRZ"
        ),
        _c("VDISP", "E", _KMS, "Stellar velocity dispersion"),
        _c("VDISP_IVAR", "E", _KMS_IVAR, "Inverse variance of VDISP"),
        _c("AV", "E", "mag", "Attenuation of the integrated stellar population"),
        _c("AGE", "E", "Gyr", "Light-weighted age"),
        _c("ZZSUN", "E", None, "Logarithmic stellar metallicity relative to solar"),
        _c("LOGMSTAR", "E", "Msun", "log10 stellar mass (h=1, Chabrier IMF)"),
        _c("SFR", "E", "Msun / yr", "Instantaneous star formation rate (h=1, Chabrier IMF)"),
        _c("DN4000", "E", None, "Narrow 4000-A break index of the emission-line subtracted data"),
        _c("DN4000_OBS", "E", None, "Narrow 4000-A break index of the observed data"),
        _c("DN4000_IVAR", "E", None, "Inverse variance of DN4000_OBS or DN4000"),
        _c("DN4000_MODEL", "E", None, "Narrow 4000-A break index of the best-fitting continuum model"),
        *_synth_fluxes(),
    ]
    for z, band in _ABSMAG_BANDS_V21:
        cols += [
            _c(f"ABSMAG{z}_{band}", "E", "mag", f"Absolute magnitude in {band} band-shifted to z=0.{z[-1]} (h=1)"),
            _c(f"ABSMAG{z}_IVAR_{band}", "E", "1 / mag2", f"Inverse variance of ABSMAG{z}_{band}"),
            _c(f"KCORR{z}_{band}", "E", "mag", f"K-correction used to derive ABSMAG{z}_{band}"),
        ]
    cols += [
        _c(f"LOGLNU_{w}", "E", "1e+28 erg / (s Hz)", f"Monochromatic luminosity at {w} A (rest)") for w in (1500, 2800)
    ]
    cols += [
        _c(f"LOGL_{w}", "E", "1e+10 Lsun", f"Integrated luminosity at {w} A (rest)") for w in (1450, 1700, 3000, 5100)
    ]
    cols += [_c(name, "E", _FLAM, f"Continuum flux at {w} A rest-frame") for name, w in _CONTINUA]
    cols += [
        _c("RCHI2_LINE", "E", None, "Reduced chi-squared of the emission-line model fit"),
        _c("DELTA_LINECHI2", "E", None, "Chi2 difference between line models without and with broad lines"),
        _c("DELTA_LINENDOF", "J", None, "Degrees-of-freedom difference between those two models"),
        _c("APERCORR", "E", None, "Median aperture correction factor"),
        *(_c(f"APERCORR_{b}", "E", None, f"Aperture correction factor in the {b.lower()}-band") for b in "GRZ"),
        _c("NARROW_Z", "E", None, "Mean redshift of narrow optical emission lines"),
        _c("NARROW_ZRMS", "E", None, "RMS scatter in NARROW_Z"),
        _c("BROAD_Z", "E", None, "Mean redshift of broad optical emission lines"),
        _c("BROAD_ZRMS", "E", None, "RMS scatter in BROAD_Z"),
        _c("UV_Z", "E", None, "Mean redshift of rest-frame UV emission lines"),
        _c("UV_ZRMS", "E", None, "RMS scatter in UV_Z"),
        _c("NARROW_SIGMA", "E", _KMS, "Mean width of narrow optical emission lines"),
        _c("NARROW_SIGMARMS", "E", _KMS, "RMS scatter in NARROW_SIGMA"),
        _c("BROAD_SIGMA", "E", _KMS, "Mean width of broad optical emission lines"),
        _c("BROAD_SIGMARMS", "E", _KMS, "RMS scatter in BROAD_SIGMA"),
        _c("UV_SIGMA", "E", _KMS, "Mean width of rest-frame UV emission lines"),
        _c("UV_SIGMARMS", "E", _KMS, "RMS scatter in UV_SIGMA"),
        _c("MGII_DOUBLET_RATIO", "E", None, "MgII 2796/2803 doublet ratio"),
        _c("OII_DOUBLET_RATIO", "E", None, "[OII] 3726/3729 doublet ratio"),
        _c("SII_DOUBLET_RATIO", "E", None, "[SII] 6731/6716 doublet ratio"),
        *_line_block("v2.1"),
    ]
    return tuple(cols)


def _specphot_v30() -> tuple[Column, ...]:
    cols = [
        *_ids(),
        _c("SEED", "K", None, "Random seed used for the Monte Carlo realizations"),
        _c("COEFF", "5E", _FLAM, "Stellar continuum coefficients"),
        _c("RCHI2", "E", None, "Reduced chi-squared of the full spectrophotometric fit"),
        _c("RCHI2_LINE", "E", None, "Reduced chi-squared of the emission-line model fit"),
        _c("RCHI2_CONT", "E", None, "Reduced chi-squared of the stellar-continuum fit"),
        _c("RCHI2_PHOT", "E", None, "Reduced chi-squared of the fit to the broadband photometry"),
        _c("VDISP", "E", _KMS, "Stellar velocity dispersion"),
        _c("VDISP_IVAR", "E", _KMS_IVAR, "Inverse variance of VDISP"),
        _c("TAUV", "E", None, "V-band dust optical depth of the integrated stellar population"),
        _c("TAUV_IVAR", "E", None, "Inverse variance of TAUV"),
        _c("AGE", "E", "Gyr", "Light-weighted age"),
        _c("AGE_IVAR", "E", "1 / Gyr2", "Inverse variance of AGE"),
        _c("ZZSUN", "E", None, "Logarithmic stellar metallicity relative to solar"),
        _c("ZZSUN_IVAR", "E", None, "Inverse variance of ZZSUN"),
        _c("LOGMSTAR", "E", "Msun", "log10 stellar mass (h=1, Chabrier IMF)"),
        _c("LOGMSTAR_IVAR", "E", "1 / Msun2", "Inverse variance of LOGMSTAR"),
        _c("SFR", "E", "Msun / yr", "Instantaneous star formation rate (h=1, Chabrier IMF)"),
        _c("SFR_IVAR", "E", "yr2 / Msun2", "Inverse variance of SFR"),
        _c("DN4000", "E", None, "Narrow 4000-A break index of the emission-line subtracted spectrum"),
        _c("DN4000_OBS", "E", None, "Narrow 4000-A break index of the observed spectrum"),
        _c("DN4000_IVAR", "E", None, "Inverse variance of DN4000_OBS and of DN4000"),
        _c("DN4000_MODEL", "E", None, "Narrow 4000-A break index of the best-fitting continuum model"),
        _c("DN4000_MODEL_IVAR", "E", None, "Inverse variance of DN4000_MODEL"),
        *_synth_fluxes(),
    ]
    for z, band in _ABSMAG_BANDS_V30:
        cols += [
            _c(f"ABSMAG{z}_{band}", "E", "mag", f"Absolute magnitude in {band} band-shifted to z=0.{z[-1]} (h=1)"),
            _c(f"ABSMAG{z}_IVAR_{band}", "E", "1 / mag2", f"Inverse variance of ABSMAG{z}_{band}"),
            _c(f"ABSMAG{z}_SYNTH_{band}", "E", "mag", f"Synthesized absolute magnitude in {band}"),
            _c(f"ABSMAG{z}_SYNTH_IVAR_{band}", "E", "1 / mag2", f"Inverse variance of ABSMAG{z}_SYNTH_{band}"),
        ]
    for z, band in _ABSMAG_BANDS_V30:
        required = band != "TWOMASS_J"
        cols.append(_c(f"KCORR{z}_{band}", "E", "mag", f"K-correction used to derive ABSMAG{z}_{band}", required))
    for w in (1500, 2800):
        cols += [
            _c(f"LOGLNU_{w}", "E", "1e-28 erg / (Hz s)", f"Monochromatic luminosity at {w} A (rest)"),
            _c(f"LOGLNU_{w}_IVAR", "E", "1e+56 Hz2 s2 / erg2", f"Inverse variance of LOGLNU_{w}"),
        ]
    for w in (1450, 1700, 3000, 5100):
        cols += [
            _c(f"LOGL_{w}", "E", "1e-10 Lsun", f"Integrated luminosity at {w} A (rest)"),
            _c(f"LOGL_{w}_IVAR", "E", "1e+20 / Lsun2", f"Inverse variance of LOGL_{w}"),
        ]
    for name, w in _CONTINUA:
        cols += [
            _c(name, "E", _FLAM, f"Continuum flux at {w} A rest-frame"),
            _c(f"{name}_IVAR", "E", "1e+34 cm4 Angstrom2 s2 / erg2", f"Inverse variance of {name}"),
        ]
    return tuple(cols)


def _fastspec_v30() -> tuple[Column, ...]:
    cols = [
        *_ids(),
        *(_c(f"SNR_{c}", "E", None, f"Median S/N per pixel in the {c.lower()} camera") for c in "BRZ"),
        *(
            _c(f"SMOOTHCORR_{c}", "E", "percent", f"Median smooth continuum correction in the {c.lower()} camera")
            for c in "BRZ"
        ),
        _c("APERCORR", "E", None, "Median aperture correction factor"),
        *(_c(f"APERCORR_{b}", "E", None, f"Aperture correction factor in the {b.lower()}-band") for b in "GRZ"),
        _c("INIT_SIGMA_UV", "E", _KMS, "Initial line width of the rest-frame UV lines"),
        _c("INIT_SIGMA_NARROW", "E", _KMS, "Initial line width of the forbidden and narrow Balmer lines"),
        _c("INIT_SIGMA_BALMER", "E", _KMS, "Initial line width of the broad Balmer lines"),
        _c("INIT_VSHIFT_UV", "E", _KMS, "Initial velocity shift of the UV lines"),
        _c("INIT_VSHIFT_NARROW", "E", _KMS, "Initial velocity shift of the narrow lines"),
        _c("INIT_VSHIFT_BALMER", "E", _KMS, "Initial velocity shift of the broad Balmer lines"),
        _c("INIT_BALMER_BROAD", "L", None, "A broad Balmer line was initially identified"),
        _c("DELTA_LINECHI2", "E", None, "Chi2 difference between line models without and with broad lines"),
        _c("DELTA_LINENDOF", "J", None, "Degrees-of-freedom difference between those two models"),
    ]
    for name, what in (
        ("MGII", "MgII 2796/2803"), ("OII", "[OII] 3726/3729"), ("OIII", "[OIII] 5007/4959"),
        ("SII", "[SII] 6731/6716"), ("NII", "[NII] 6584/6548"), ("OIIRED", "[OII] 7320/7330"),
    ):  # fmt: skip
        cols += [
            _c(f"{name}_DOUBLET_RATIO", "E", None, f"{what} doublet ratio"),
            _c(f"{name}_DOUBLET_RATIO_IVAR", "E", None, f"Inverse variance of {name}_DOUBLET_RATIO"),
        ]
    cols += [*_line_block("v3.0"), *_moments()]
    return tuple(cols)


def _models_hdu() -> ImageHDU:
    return ImageHDU(
        "MODELS",
        dtypes=("float32", "float64", "int32"),
        ndim=3,
        bunit=MODELS_BUNIT,
        required=False,
        description=(
            "Model spectra (nobj, 3, 7781) = [continuum, smooth continuum correction, emission lines] on "
            "3600 + 0.8*i Angstrom (vacuum), corrected for Galactic extinction; per-healpix files only"
        ),
        keywords=("CRVAL1", "CDELT1", "CRPIX1", "AIRORVAC", "CUNIT1", "CTYPE1", "DC-FLAG"),
    )


_PRIMARY_V21 = ("SPECPROD", "COADDTYP")
_PRIMARY_V30 = (
    "SPECPROD", "COADDTYP", "INPUTZ", "USEQNET", "NMONTE", "SEED", "NOSCORR", "NOPHOTO", "BRDLFIT",
    "UFLOOR", "SNRBBALM",
)  # fmt: skip

#: Documented example values of the v3 PRIMARY keywords, written unless overridden.
_PRIMARY_DEFAULTS: dict[str, dict[str, Any]] = {
    "v2.1": {"SPECPROD": "iron", "COADDTYP": "healpix"},
    "v3.0": {
        "SPECPROD": "iron", "COADDTYP": "healpix", "INPUTZ": False, "USEQNET": True, "NMONTE": 50,
        "SEED": 1, "NOSCORR": False, "NOPHOTO": False, "BRDLFIT": True, "UFLOOR": 0.01, "SNRBBALM": 2.5,
    },
}  # fmt: skip


def _fastspecfit_depver(primary: Mapping[str, Any]) -> str | None:
    for key, value in primary.items():
        if key.startswith("DEPNAM") and str(value).strip().lower() == "fastspecfit":
            return str(primary.get("DEPVER" + key[6:], "")).strip() or None
    return None


def detect_version(extnames: Sequence[str], primary: Mapping[str, Any]) -> Version | None:
    """FastSpecFit data-model version from the HDU names and PRIMARY header.

    ``SPECPROD``+... : a SPECPHOT HDU, the v3 PRIMARY keyword ``NMONTE`` or a
    ``fastspecfit`` dependency version 3.x means v3.0; FASTSPEC + METADATA otherwise
    means v2.1. Returns None when the file is not a FastSpecFit file.
    """
    names = {n.upper() for n in extnames}
    if "SPECPHOT" in names:
        return "v3.0"
    if {"FASTSPEC", "METADATA"} <= names:
        depver = _fastspecfit_depver(primary)
        if "NMONTE" in primary or (depver and depver.split(".")[0].isdigit() and int(depver.split(".")[0]) >= 3):
            return "v3.0"
        return "v2.1"
    return None


_NOTES_COMMON = (
    "Generated vs transcribed: METADATA and every non-line column of FASTSPEC/SPECPHOT are "
    "transcribed from the fastspecfit data-model pages (names, types, units); the emission-line "
    "block (columns marked [generated]) is generated as line list x suffix set, because the pages "
    "document it only once per line or as LINENAME_*. String widths (SURVEY, TILEID_LIST...) depend "
    "on the file content: other widths are warnings. Per-healpix files are gzipped "
    "(fastspec-SURVEY-PROGRAM-HEALPIX.fits.gz) and carry MODELS; merged catalogs do not. "
    "All table HDUs are row-matched (checked). No small public FastSpecFit file exists, so nothing "
    "here is verified against a real file."
)

_NOTES_V21 = (
    _NOTES_COMMON + " v2.1 specifics: line list and 17 suffixes from the v2.x page @015482c; the broad He lines "
    "HEI_BROAD_4471, HEII_BROAD_4686, HEI_BROAD_5876 (in the 2.5.0 line list per desi-formats.md; "
    "the iron v3.0 notes say broad He I lines were removed in v3) and SIII_6312 (not on the v2.x "
    "page) are optional. COEFF is 168E on the v2.x page but v2.1 changed the template set (5 ages, "
    "solar metallicity), so its length is allowed to vary (warning). The page shows 'AlIII_1857' "
    "in mixed case; we use ALIII_1857 (names are matched case-insensitively). ZWARN is int8 "
    "(TFORM B, TZERO=-128)."
)

_NOTES_V30 = (
    _NOTES_COMMON + " v3.0 specifics: line list and 18 suffixes from the v3 page (@f1289c1, fastspecfit 3.x); "
    "that page omits LYALPHA but the real v3.0 FASTSPEC has 887 columns = 35 + 46 lines x 18 + 24 "
    "moment columns, which needs LYALPHA (kept optional). SPECPHOT is 127 columns in the real files; "
    "the page lists 126, the missing one is assumed to be KCORR00_TWOMASS_J (optional). METADATA is "
    "54 columns in the real main files: the page lists 53 for a main file, the 54th is assumed to be "
    "ZWARN_RR (desi-formats.md; optional, assumed int8). PRIMARY keyword values written by default "
    "are the page's example values (NMONTE=50, SEED=1...). The per-HDU MORELINES table of later "
    "fastspecfit versions is accepted and read but not part of DR1."
)

V21 = register(
    ProductSchema(
        name="fastspec-v2.1",
        title="FastSpecFit iron VAC v2.1 (fastspecfit 2.5)",
        filename=r"^fastspec-[A-Za-z0-9_-]+\.fits(\.gz)?$",
        hdus=(
            TableHDU(
                "FASTSPEC", _fastspec_v21(), description="Spectral fitting results, incl. stellar-population columns"
            ),
            TableHDU("METADATA", _metadata("v2.1"), description="Targeting, redshift and photometry metadata"),
            _models_hdu(),
        ),
        source=SOURCE_V21,
        primary_keywords=_PRIMARY_V21,
        identify=lambda ext, hdr: detect_version(ext, hdr) == "v2.1",
        notes=_NOTES_V21,
    )
)

V30 = register(
    ProductSchema(
        name="fastspec-v3.0",
        title="FastSpecFit iron VAC v3.0 (fastspecfit 3.1.5)",
        filename=r"^fastspec-[A-Za-z0-9_-]+\.fits(\.gz)?$",
        hdus=(
            TableHDU("METADATA", _metadata("v3.0"), description="Targeting, redshift and photometry metadata"),
            TableHDU("SPECPHOT", _specphot_v30(), description="Spectrophotometric (stellar-population) quantities"),
            TableHDU("FASTSPEC", _fastspec_v30(), description="Emission-line fitting results"),
            TableHDU("MORELINES", (), required=False, description="Overflow line columns (post-DR1 fastspecfit only)"),
            _models_hdu(),
        ),
        source=SOURCE_V30,
        primary_keywords=_PRIMARY_V30,
        identify=lambda ext, hdr: detect_version(ext, hdr) == "v3.0",
        notes=_NOTES_V30,
    )
)

#: Version -> golden schema.
SCHEMAS: dict[str, ProductSchema] = {"v2.1": V21, "v3.0": V30}

#: Table HDUs per version in the order columns are looked up (METADATA first).
_LOOKUP_ORDER = {"v2.1": ("METADATA", "FASTSPEC"), "v3.0": ("METADATA", "SPECPHOT", "FASTSPEC", "MORELINES")}

allow_variable_repeat(V21.name, "FASTSPEC", "COEFF")


# --------------------------------------------------------------------------------------
# Reading


def models_wavelength(
    crval1: float = MODELS_CRVAL1, cdelt1: float = MODELS_CDELT1, npix: int = MODELS_NPIX, crpix1: float = 0
) -> np.ndarray:
    """Vacuum wavelengths [Angstrom] of the MODELS pixels (CRPIX1 is 0-indexed)."""
    return crval1 + cdelt1 * (np.arange(npix, dtype=np.float64) - crpix1)


def _table_hdus(fits: fitsio.FITS, version: str) -> list[tuple[str, Any]]:
    names = hdu_names(fits)
    order = list(_LOOKUP_ORDER[version])
    ordered = [n for n in order if n in names] + [
        n for n in names if n not in order and fits[names.index(n)].get_exttype() == "BINARY_TBL"
    ]
    return [(n, fits[names.index(n)]) for n in ordered]


def _units(hdu: Any) -> dict[str, str]:
    header = fast_header(hdu)
    out = {}
    for i, name in enumerate(hdu.get_colnames(), start=1):
        unit = header.get(f"TUNIT{i}")
        if unit:
            out[name] = str(unit).strip()
    return out


def read_fastspec(
    path: str | os.PathLike[str],
    columns: Sequence[str] | None = None,
    *,
    targetids: Sequence[int] | np.ndarray | None = None,
) -> pa.Table:
    """Read FastSpecFit columns from any HDU of a v2.1 or v3.0 file (``.fits`` or ``.fits.gz``).

    Parameters
    ----------
    path
        Per-healpix ``fastspec-SURVEY-PROGRAM-HEALPIX.fits.gz`` or a merged catalog.
    columns
        Columns to return, in order; each is taken from the first table HDU that has it,
        looking in METADATA, then SPECPHOT (v3.0), FASTSPEC, then any other table. Use
        ``"HDU.COLUMN"`` (e.g. ``"FASTSPEC.Z"``) to pick a specific HDU. Default: every
        column once (TARGETID, SURVEY... once, from METADATA).
    targetids
        Keep only these TARGETIDs (file order): TARGETID is read first, then only
        the matching rows of each HDU.

    Returns
    -------
    pyarrow.Table
        Units in field metadata; schema metadata ``desilab.product`` (``fastspec-v2.1``
        or ``fastspec-v3.0``), ``desilab.fastspecfit_version`` and ``desilab.file``.

    Raises
    ------
    FormatError
        Not a FastSpecFit file, table HDUs not row-matched, or a requested column absent
        from every HDU (the message names file, the HDUs searched and the column).
    """
    file = str(path)
    with open_fits(path) as fits:
        names = hdu_names(fits)
        primary = {r["name"]: r["value"] for r in fits[0].read_header().records() if r["name"]}
        version = detect_version(names, primary)
        if version is None:
            raise FormatError(
                f"not a FastSpecFit file: no FASTSPEC/METADATA HDUs (file has {', '.join(names)})", file=file
            )
        tables = _table_hdus(fits, version)
        nrows = {name: int(hdu.get_nrows()) for name, hdu in tables}
        if len(set(nrows.values())) > 1:
            raise FormatError(f"table HDUs are not row-matched: {nrows}", file=file)
        plan = _plan(file, tables, columns)
        rows = None
        if targetids is not None:
            holder = next((hdu for _, hdu in tables if "TARGETID" in hdu.get_colnames()), None)
            if holder is None:
                raise FormatError(
                    "no HDU has TARGETID", file=file, hdu="/".join(n for n, _ in tables), column="TARGETID"
                )
            tid = np.asarray(holder.read_column("TARGETID")).astype(np.int64)
            rows = np.flatnonzero(np.isin(tid, np.asarray(targetids, dtype=np.int64)))
        pieces: dict[str, pa.Array] = {}
        fields: dict[str, pa.Field] = {}
        for extname, hdu in tables:
            wanted = [(stored, out) for ext, stored, out in plan if ext == extname]
            if not wanted:
                continue
            stored_cols = [s for s, _ in wanted]
            if rows is None and not file.endswith(".gz"):
                # whole columns of a plain file: fits.read_table_hdu streams the rows once;
                # the header is parsed from its bytes (fitsio's read_header takes ~0.4 s
                # per wide HDU, several seconds per file)
                part = read_table_hdu(hdu, stored_cols, file=file, header=fast_header(hdu))
            else:
                part = numpy_to_arrow(_read_rows(hdu, stored_cols, rows), _units(hdu))
            for stored, out in wanted:
                pieces[out] = part.column(stored)
                fields[out] = part.schema.field(stored).with_name(out)
    order = [out for _, _, out in plan]
    table = pa.Table.from_arrays([pieces[o] for o in order], schema=pa.schema([fields[o] for o in order]))
    meta = {
        b"desilab.product": SCHEMAS[version].name.encode(),
        b"desilab.fastspecfit_version": version.encode(),
        b"desilab.file": file.encode(),
    }
    return table.replace_schema_metadata(meta)


def _plan(file: str, tables: list[tuple[str, Any]], columns: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """(extname, stored column name, output name) for every column to read."""
    stored = {name: {c.upper(): c for c in hdu.get_colnames()} for name, hdu in tables}
    plan: list[tuple[str, str, str]] = []
    if columns is None:
        seen: set[str] = set()
        for name, _ in tables:
            for upper, col in stored[name].items():
                if upper not in seen:
                    seen.add(upper)
                    plan.append((name, col, col))
        return plan
    for request in columns:
        ext, _, colname = request.rpartition(".")
        if ext and ext.upper() in stored:
            ext = ext.upper()
            if colname.upper() not in stored[ext]:
                raise FormatError("missing column", file=file, hdu=ext, column=colname)
            plan.append((ext, stored[ext][colname.upper()], request))
            continue
        for name, _ in tables:
            if request.upper() in stored[name]:
                plan.append((name, stored[name][request.upper()], stored[name][request.upper()]))
                break
        else:
            raise FormatError(
                "missing column (looked in every table HDU)",
                file=file,
                hdu="/".join(n for n, _ in tables),
                column=request,
            )
    return plan


def _read_rows(hdu: Any, columns: list[str], rows: np.ndarray | None) -> np.ndarray:
    if rows is None:
        data = hdu.read(columns=columns)
    elif len(rows) == 0:
        full = hdu.get_rec_dtype()[0]
        data = np.zeros(0, dtype=np.dtype([(c, full[c]) for c in columns]))
    else:
        data = hdu.read(columns=columns, rows=rows)
    return np.atleast_1d(data)


def read_fastspec_models(
    path: str | os.PathLike[str], *, targetids: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the MODELS image of a per-healpix FastSpecFit file.

    Parameters
    ----------
    path
        ``fastspec-SURVEY-PROGRAM-HEALPIX.fits(.gz)`` with a MODELS HDU.
    targetids
        Keep only these TARGETIDs (file order); only their model rows are read.

    Returns
    -------
    (targetid, wave, models)
        TARGETIDs of the rows, wavelengths [Angstrom, vacuum] from CRVAL1/CDELT1/CRPIX1,
        and the models (nsel, 3, npix) = [continuum, smooth correction, emission lines].

    Raises
    ------
    FormatError
        No MODELS HDU, or its first axis does not match the tables.
    """
    file = str(path)
    with open_fits(path) as fits:
        names = hdu_names(fits)
        if "MODELS" not in names:
            raise FormatError(
                f"no MODELS HDU (merged catalogs have none; file has {', '.join(names)})", file=file, hdu="MODELS"
            )
        primary = {r["name"]: r["value"] for r in fits[0].read_header().records() if r["name"]}
        version = detect_version(names, primary) or "v3.0"
        holder = next((hdu for _, hdu in _table_hdus(fits, version) if "TARGETID" in hdu.get_colnames()), None)
        if holder is None:
            raise FormatError("no table HDU with TARGETID", file=file, column="TARGETID")
        tid = np.asarray(holder.read_column("TARGETID")).astype(np.int64)
        hdu = fits[names.index("MODELS")]
        dims = hdu.get_info()["dims"]
        if len(dims) != 3 or dims[0] != len(tid):
            raise FormatError(f"MODELS shape {dims} does not match {len(tid)} table rows", file=file, hdu="MODELS")
        header = hdu.read_header()
        wave = models_wavelength(
            float(header.get("CRVAL1", MODELS_CRVAL1)),
            float(header.get("CDELT1", MODELS_CDELT1)),
            int(dims[2]),
            float(header.get("CRPIX1", 0)),
        )
        rows = (
            np.arange(len(tid)) if targetids is None else np.flatnonzero(np.isin(tid, np.asarray(targetids, np.int64)))
        )
        models = np.empty((len(rows), dims[1], dims[2]), dtype=np.float32)
        for start, stop, at in _runs(rows):
            models[at : at + stop - start] = hdu[start:stop, :, :]
    return tid[rows], wave, models


def _runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Contiguous runs of sorted row indices as (start, stop, output offset)."""
    out = []
    if len(rows) == 0:
        return out
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    for chunk_start, chunk in zip(np.r_[0, breaks], np.split(rows, breaks), strict=True):
        out.append((int(chunk[0]), int(chunk[-1]) + 1, int(chunk_start)))
    return out


# --------------------------------------------------------------------------------------
# Writing

_OMIT_UNLESS_GIVEN = (
    *_TILE_ONLY,
    "CMX_TARGET",
    *(f"{sv}_{k}_TARGET" for sv in ("SV1", "SV2", "SV3") for k in ("DESI", "BGS", "MWS", "SCND")),
)
_INT8 = {"ZWARN": "i1", "ZWARN_RR": "i1"}


def write_fastspec(
    path: str | os.PathLike[str],
    table: pa.Table,
    *,
    version: Version = "v3.0",
    models: np.ndarray | None = None,
    header: Mapping[str, Any] | None = None,
) -> Path:
    """Write a FastSpecFit file of the given data-model version.

    The columns of *table* are split into the version's HDUs (v2.1: FASTSPEC,
    METADATA; v3.0: METADATA, SPECPHOT, FASTSPEC), each in golden-schema order with the
    schema TFORM/TUNIT; TARGETID, SURVEY, PROGRAM, HEALPIX go to every table. Missing
    schema columns are filled with 0 / "" / NaN / False, except tile-only and CMX/SV
    targeting columns, written only when given. Columns of *table* in no schema go to
    FASTSPEC. A ``.fits.gz`` path is gzip-compressed deterministically (mtime 0, no name).

    Parameters
    ----------
    path
        Output ``.fits`` or ``.fits.gz`` file, written atomically.
    table
        One row per object.
    version
        ``"v3.0"`` (default) or ``"v2.1"``.
    models
        Optional (nobj, 3, 7781) model spectra, written as float32 MODELS with
        ``CRVAL1=3600.0``, ``CDELT1=0.8``, ``CRPIX1=0`` (0-indexed), ``AIRORVAC='vac'``.
    header
        PRIMARY keywords overriding the defaults (``SPECPROD='iron'``,
        ``COADDTYP='healpix'``; for v3.0 also the documented NMONTE, SEED...).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    InputError
        Unknown version or a *models* array of the wrong shape.
    SchemaError
        A column cannot be stored with the schema TFORM.
    """
    if version not in SCHEMAS:
        raise InputError(f"version must be one of {', '.join(SCHEMAS)}, not {version!r}", parameter="version")
    schema = SCHEMAS[version]
    out = Path(path)
    if models is not None:
        models = np.asarray(models)
        if models.ndim != 3 or models.shape[0] != table.num_rows or models.shape[1] != 3:
            raise InputError(
                f"models must have shape ({table.num_rows}, 3, {MODELS_NPIX}), got {models.shape}", parameter="models"
            )
        models = models.astype(np.float32, copy=False)
    tables = [h for h in schema.hdus if isinstance(h, TableHDU) and h.columns]
    known = {c.name for h in tables for c in h.columns}
    extras = [n for n in table.column_names if n.upper() not in known]
    hdus = []
    for h in tables:
        in_hdu = {c.name for c in h.columns}
        names = [n for n in table.column_names if n.upper() in in_hdu]
        if h.extname == "FASTSPEC":
            names += extras
        data, units = conform_table(
            table.select(names), h, omit_unless_given=_OMIT_UNLESS_GIVEN, dtypes=_INT8, file=str(out)
        )
        hdus.append((h.extname, data, units))
    primary = {**_PRIMARY_DEFAULTS[version], **dict(header or {})}
    with atomic_output(out) as tmp:
        if out.name.endswith(".gz"):
            raw = tmp.with_name(tmp.name + ".fits")
            try:
                _write_fits(raw, primary, hdus, models)
                with (
                    open(raw, "rb") as src,
                    open(tmp, "wb") as dst,
                    gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0) as gz,
                ):
                    shutil.copyfileobj(src, gz, 1 << 20)
            finally:
                raw.unlink(missing_ok=True)
        else:
            _write_fits(tmp, primary, hdus, models)
    return out


def _write_fits(path: Path, primary: Mapping[str, Any], hdus: list, models: np.ndarray | None) -> None:
    with fitsio.FITS(str(path), "rw", clobber=True) as fits:
        fits.write(None, header=[{"name": k, "value": v, "comment": ""} for k, v in primary.items()])
        for extname, data, units in hdus:
            fits.write(data, extname=extname, units=units)
        if models is not None:
            fits.write(
                models,
                extname="MODELS",
                header=[
                    {"name": "BUNIT", "value": MODELS_BUNIT, "comment": "flux unit"},
                    {"name": "CUNIT1", "value": "Angstrom", "comment": "wavelength unit"},
                    {"name": "CTYPE1", "value": "WAVE", "comment": "type of axis"},
                    {"name": "CRVAL1", "value": MODELS_CRVAL1, "comment": "wavelength of pixel CRPIX1 (Angstrom)"},
                    {"name": "CRPIX1", "value": 0, "comment": "0-indexed pixel number corresponding to CRVAL1"},
                    {"name": "CDELT1", "value": MODELS_CDELT1, "comment": "pixel size (Angstrom)"},
                    {"name": "DC-FLAG", "value": 0, "comment": "0 = linear wavelength vector"},
                    {"name": "AIRORVAC", "value": "vac", "comment": "wavelengths in vacuum (vac)"},
                ],
            )


# --------------------------------------------------------------------------------------
# Content check: row-matched tables and MODELS shape

_MAX_TARGETID_BYTES = 256 << 20
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}


def _raw_targetid(path: str, info: HDUInfo) -> np.ndarray | None:
    """TARGETID of an uncompressed table straight from the file (None if not a plain K column)."""
    header = info.header
    offset = 0
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        repeat, code = parse_tform(str(header.get(f"TFORM{i}", "")))
        if str(header.get(f"TTYPE{i}", "")).strip().upper() == "TARGETID":
            if (repeat, code) != (1, "K") or header.get(f"TZERO{i}"):
                return None
            row = np.dtype({"names": ["t"], "formats": [">i8"], "offsets": [offset], "itemsize": int(header["NAXIS1"])})
            data = np.memmap(path, dtype=row, mode="r", offset=info.data_start, shape=(int(header["NAXIS2"]),))
            return np.array(data["t"])
        offset += (repeat + 7) // 8 if code == "X" else repeat * _TFORM_BYTES.get(code, 0)
    return None


def _check_row_matched(path: str, fits: Any) -> list[Problem]:
    """Table HDUs row-matched (same NAXIS2, same TARGETID order) and MODELS (nrows, 3, npix).

    Works from the headers; TARGETIDs are compared for uncompressed files whose tables
    hold at most 256 MB (the column is read directly from the file).
    """
    hdus = scan_hdus(path)
    names = [h.extname for h in hdus]
    version = detect_version(names, hdus[0].header)
    if version is None:
        return []
    tables = [h for h in hdus if h.extname in _LOOKUP_ORDER[version] and h.is_table]
    if not tables:
        return []
    problems = []
    ref = tables[0]
    for t in tables[1:]:
        if t.nrows != ref.nrows:
            problems.append(
                Problem(
                    path,
                    f"{t.nrows} rows but {ref.extname} has {ref.nrows} (tables must be row-matched)",
                    hdu=t.extname,
                )
            )
    small = sum(t.data_size for t in tables) <= _MAX_TARGETID_BYTES
    if not problems and small and not path.endswith(".gz"):
        ids = [(t.extname, _raw_targetid(path, t)) for t in tables]
        ids = [(n, tid) for n, tid in ids if tid is not None]
        for name, tid in ids[1:]:
            if not np.array_equal(tid, ids[0][1]):
                problems.append(Problem(path, f"TARGETID order differs from {ids[0][0]}", hdu=name, column="TARGETID"))
    models = next((h for h in hdus if h.extname == "MODELS"), None)
    shape = models.shape if models is not None else None
    if shape and len(shape) == 3 and (shape[0] != ref.nrows or shape[1] != 3):
        problems.append(Problem(path, f"MODELS shape {shape}, expected ({ref.nrows}, 3, npix)", hdu="MODELS"))
    return problems


for _schema in SCHEMAS.values():
    register_check(_schema.name, _check_row_matched)


DOC_PREAMBLE = """\
# FastSpecFit DR1 (iron) VAC: v2.1 and v3.0

Public versions: `dr1/vac/dr1/fastspecfit/iron/v2.1` (January 2024, fastspecfit 2.5) and
`.../v3.0` (June 2025, fastspecfit 3.1.5). **The data model changed between them**:

| version | HDUs | stellar-population columns | uncertainties |
|---|---|---|---|
| v2.1 | PRIMARY, FASTSPEC, METADATA [, MODELS] | FASTSPEC (`AV` dust) | none on LOGMSTAR/SFR/AGE |
| v3.0 | PRIMARY, METADATA, SPECPHOT, FASTSPEC [, MODELS] | SPECPHOT (`TAUV` dust) | `*_IVAR` (50 Monte Carlo runs) |

Per-healpix files `healpix/SURVEY/PROGRAM/HPIXGROUP/HEALPIX/fastspec-SURVEY-PROGRAM-HEALPIX.fits.gz`
carry MODELS (nobj, 3, 7781) on 3600 + 0.8 i Angstrom (CRPIX1 = 0 is 0-indexed, vacuum);
merged catalogs (`fastspec-iron-main-bright.fits` in v2.1, `fastspec-iron-main-bright-nside1-hp00..11.fits`
in v3.0) have no MODELS. All table HDUs are row-matched. Module: `desilab.io.fastspecfit`
(`read_fastspec`, `read_fastspec_models`, `write_fastspec`, `detect_version`). This page is
generated from the golden schemas
(`python -c "from desilab.io.validate import write_format_docs; write_format_docs('docs/formats')"`);
a test fails when it is out of date.

Reading: `read_fastspec(path, columns, targetids=...)` detects the version (SPECPHOT HDU, the
v3 PRIMARY keyword NMONTE, or a fastspecfit 3.x DEPVER mean v3.0), takes each column from the
first HDU that has it (METADATA, SPECPHOT, FASTSPEC, then any other table; `"FASTSPEC.Z"`
picks an HDU explicitly - in v2.1 FASTSPEC.Z is the continuum redshift, METADATA.Z the Redrock
or QuasarNet one), reads TARGETID first and then only the matching rows, and records the
version in the Arrow schema metadata (`desilab.fastspecfit_version`). `.fits.gz` is read
directly. Writing: `write_fastspec(path, table, version=, models=, header=)` splits the
columns into the version's HDUs; missing schema columns are filled with 0 / "" / NaN / False
except tile-only (TILEID, NIGHT, FIBER, EXPID) and CMX/SV targeting columns, written only when
given. `.fits.gz` output is gzip with mtime 0, so bytes are deterministic. No CHECKSUM/DATASUM
is written.

Science caveats: h = 1 (LOGMSTAR and SFR scale as h^-2: add -2 log10(0.7) = +0.31 dex for h = 0.7);
METADATA fluxes are corrected for Galactic extinction (unlike ZCATALOG); failed fits are kept
(apply cuts such as 6 < LOGMSTAR < 13 and, in v3.0, positive `*_IVAR`); `*_FLUX_LIMIT` is in
erg/s/cm2, not 1e-17.

What is verified and what is assumed is stated in each version's notes below.
"""


def format_doc() -> str:
    """The content of ``docs/formats/fastspecfit.md`` (generated from the schemas)."""
    from desilab.io.validate import schema_markdown

    return "\n".join([DOC_PREAMBLE, schema_markdown(V21), schema_markdown(V30)])
