"""FastSpecFit v2.1 / v3.0: golden schemas, split writer, cross-HDU reader, MODELS, .fits.gz."""

from __future__ import annotations

import gzip

import fitsio
import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits

from desilab.errors import FormatError, InputError
from desilab.io.fastspecfit import (
    LINE_SUFFIXES,
    LINES,
    MODELS_NPIX,
    SCHEMAS,
    V21,
    V30,
    detect_version,
    read_fastspec,
    read_fastspec_models,
    write_fastspec,
)
from desilab.io.schema import TableHDU
from desilab.io.validate import identify, scan_hdus, validate
from tests.io.test_zcatalog import synth_table

NROWS = 6
TILE_AND_SV = {"TILEID", "NIGHT", "FIBER", "EXPID", "CMX_TARGET"} | {
    f"{sv}_{k}_TARGET" for sv in ("SV1", "SV2", "SV3") for k in ("DESI", "BGS", "MWS", "SCND")
}


def full_table(version: str, nrows: int = NROWS) -> pa.Table:
    """Every column a healpix main-survey file of *version* has, seeded values."""
    columns: dict[str, pa.ChunkedArray] = {}
    for i, hdu in enumerate(h for h in SCHEMAS[version].hdus if isinstance(h, TableHDU)):
        t = synth_table(hdu, nrows, seed=10 + i, skip=tuple(TILE_AND_SV))
        for name in t.column_names:
            columns.setdefault(name, t.column(name))
    table = pa.table(columns)
    zwarn = pa.array(np.array([0, 4, -1, 5, 0, 2][:nrows], dtype=np.int8))  # int8, TFORM B + TZERO=-128
    for name in ("ZWARN", "ZWARN_RR"):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, zwarn)
    return table


def rewrite_hdus(src, dst, *, drop: str | None = None, cut: tuple[str, int] | None = None) -> None:
    """Byte-level copy of *src* without HDU *drop*, or with table *cut[0]* cut to *cut[1]* rows.

    (astropy needs seconds to rebuild a 900-column table; this edits the raw blocks.)
    """
    raw = src.read_bytes()
    out = bytearray()
    with afits.open(src) as hdul:
        for i, hdu in enumerate(hdul):
            info = hdul.fileinfo(i)
            header = raw[info["hdrLoc"] : info["datLoc"]]
            data = raw[info["datLoc"] : info["datLoc"] + info["datSpan"]]
            if hdu.name == drop:
                continue
            if cut is not None and hdu.name == cut[0]:
                card = f"NAXIS2  = {hdu.header['NAXIS2']:>20}".encode()
                assert card in header
                header = header.replace(card, f"NAXIS2  = {cut[1]:>20}".encode())
                data = data[: cut[1] * hdu.header["NAXIS1"]]
                data += b"\0" * (-len(data) % 2880)
            out += header + data
    dst.write_bytes(bytes(out))


def models(nrows: int = NROWS) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(nrows, 3, MODELS_NPIX)).astype(np.float32)


@pytest.fixture(scope="module", params=["v2.1", "v3.0"])
def written(request, tmp_path_factory):
    version = request.param
    table = full_table(version).append_column("MY_EXTRA", pa.array(np.arange(NROWS, dtype=np.int32)))
    path = tmp_path_factory.mktemp(version) / "fastspec-main-bright-10016.fits.gz"
    write_fastspec(path, table, version=version, models=models())
    return version, path, table


def test_round_trip_all_columns_incl_gz(written):
    version, path, table = written
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    got = read_fastspec(path)
    assert got.schema.metadata[b"desilab.fastspecfit_version"] == version.encode()
    assert got.schema.metadata[b"desilab.product"] == SCHEMAS[version].name.encode()
    assert sorted(got.column_names) == sorted(table.column_names)
    for name in table.column_names:
        assert got.column(name).equals(table.column(name)), name
    assert got.schema.field("ZWARN").type == pa.int8()
    assert got.schema.field("HALPHA_FLUX").metadata[b"unit"] == b"1e-17 erg / (cm2 s)"
    assert got.schema.field("LOGMSTAR").metadata[b"unit"] == b"Msun"


def test_models_round_trip_and_wavelengths(written):
    _, path, table = written
    tid, wave, got = read_fastspec_models(path)
    assert np.array_equal(got, models()) and got.dtype == np.float32
    assert np.array_equal(tid, table.column("TARGETID").to_numpy())
    assert wave[0] == 3600.0 and wave[1] == pytest.approx(3600.8) and wave[-1] == pytest.approx(9824.0)
    sel_tid, _, sel = read_fastspec_models(path, targetids=[1005, 1001, 1002])
    assert sel_tid.tolist() == [1001, 1002, 1005]
    assert np.array_equal(sel, models()[[1, 2, 5]])
    hdr = fitsio.read_header(str(path), "MODELS")
    assert (hdr["CRVAL1"], hdr["CDELT1"], hdr["CRPIX1"], hdr["AIRORVAC"]) == (3600.0, 0.8, 0, "vac")
    assert hdr["BUNIT"] == "10**-17 erg/(s cm2 Angstrom)"


def test_layout_matches_version_and_golden_schema(written):
    version, path, _ = written
    assert validate(path) == []
    assert identify(path) is SCHEMAS[version]
    with afits.open(path) as hdul:
        names = [h.name for h in hdul]
        if version == "v3.0":
            assert names == ["PRIMARY", "METADATA", "SPECPHOT", "FASTSPEC", "MODELS"]
            assert "LOGMSTAR" in hdul["SPECPHOT"].columns.names and "LOGMSTAR" not in hdul["FASTSPEC"].columns.names
            # column counts of the real v3.0 main-survey files (third-party dump of the VAC)
            assert len(hdul["METADATA"].columns) == 54
            assert len(hdul["SPECPHOT"].columns) == 127
            assert len(hdul["FASTSPEC"].columns) == 887 + 1  # + MY_EXTRA
            assert hdul[0].header["NMONTE"] == 50
        else:
            assert names == ["PRIMARY", "FASTSPEC", "METADATA", "MODELS"]
            assert "LOGMSTAR" in hdul["FASTSPEC"].columns.names and "AV" in hdul["FASTSPEC"].columns.names
        assert hdul[0].header["SPECPROD"] == "iron"
        for extname in ("METADATA", "FASTSPEC"):
            assert "TARGETID" in hdul[extname].columns.names
        for h in SCHEMAS[version].hdus:
            if not isinstance(h, TableHDU) or not h.columns:
                continue
            hdr = hdul[h.extname].header
            written_cols = {hdr[f"TTYPE{i}"]: i for i in range(1, hdr["TFIELDS"] + 1)}
            for col in h.columns:
                if col.name in TILE_AND_SV:
                    assert col.name not in written_cols
                    continue
                i = written_cols[col.name]
                assert hdr[f"TFORM{i}"] == col.tform, col.name
                assert hdr.get(f"TUNIT{i}") == col.unit, col.name
        assert hdul["METADATA"].header["TZERO" + str(list(hdul["METADATA"].columns.names).index("ZWARN") + 1)] == -128


def test_generated_line_block():
    assert len(LINES["v3.0"]) == 46 and len(LINE_SUFFIXES["v3.0"]) == 18
    assert len(LINES["v2.1"]) == 47 and len(LINE_SUFFIXES["v2.1"]) == 17
    v3 = {c.name: c for c in V30.hdu("FASTSPEC").columns}
    v2 = {c.name: c for c in V21.hdu("FASTSPEC").columns}
    assert "HBETA_VSHIFT_IVAR" in v3 and "HBETA_VSHIFT_IVAR" not in v2
    assert "HALPHA_EW_LIMIT" in v2 and "HALPHA_EW_LIMIT" not in v3
    assert "NV_1240_FLUX" in v3 and "NV_1240_FLUX" not in v2
    assert "HEI_BROAD_4471_FLUX" in v2 and "HEI_BROAD_4471_FLUX" not in v3
    assert v3["OIII_5007_FLUX_LIMIT"].unit == "erg / (cm2 s)"
    assert v3["HALPHA_NPIX"].tform == "J"
    assert v3["MGII_2800_MOMENT2_IVAR"].unit == "1 / Angstrom4"
    assert V30.hdu("SPECPHOT").column("COEFF").tform == "5E"


def test_reader_columns_across_hdus_and_rows(written):
    _, path, table = written
    got = read_fastspec(path, ["LOGMSTAR", "TARGETID", "halpha_flux", "Z", "MY_EXTRA"], targetids=[1004, 1001, 7])
    assert got.column_names == ["LOGMSTAR", "TARGETID", "HALPHA_FLUX", "Z", "MY_EXTRA"]
    assert got.column("TARGETID").to_pylist() == [1001, 1004]
    rows = [1, 4]
    for name in ("LOGMSTAR", "HALPHA_FLUX", "Z", "MY_EXTRA"):
        assert got.column(name).to_pylist() == table.column(name).take(rows).to_pylist()
    qualified = read_fastspec(path, ["FASTSPEC.TARGETID", "METADATA.RA"])
    assert qualified.column_names == ["FASTSPEC.TARGETID", "METADATA.RA"]
    assert qualified.num_rows == NROWS
    none = read_fastspec(path, ["TARGETID", "HBETA_FLUX"], targetids=[1])
    assert none.num_rows == 0 and none.column_names == ["TARGETID", "HBETA_FLUX"]


def test_plain_fits_merged_catalog_without_models(tmp_path):
    table = full_table("v3.0")
    path = write_fastspec(tmp_path / "fastspec-iron-main-bright-nside1-hp02.fits", table)
    assert [h.extname for h in scan_hdus(path)] == ["PRIMARY", "METADATA", "SPECPHOT", "FASTSPEC"]
    assert validate(path) == []
    assert read_fastspec(path, ["SFR_IVAR"]).column("SFR_IVAR").equals(table.column("SFR_IVAR"))
    with pytest.raises(FormatError) as err:
        read_fastspec_models(path)
    assert err.value.hdu == "MODELS"


def test_deterministic_gz_bytes(tmp_path):
    table = full_table("v2.1", 3)
    a = write_fastspec(tmp_path / "a" / "fastspec-sv3-dark-7.fits.gz", table, version="v2.1", models=models(3))
    b = write_fastspec(tmp_path / "b" / "fastspec-sv3-dark-7.fits.gz", table, version="v2.1", models=models(3))
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes())[:9] == b"SIMPLE  ="


def test_missing_column_names_file_hdus_and_column(written):
    _, path, _ = written
    with pytest.raises(FormatError) as err:
        read_fastspec(path, ["TARGETID", "NOPE"])
    assert err.value.column == "NOPE" and err.value.file == str(path)
    assert "METADATA" in str(err.value.hdu) and "FASTSPEC" in str(err.value.hdu)
    with pytest.raises(FormatError) as err:
        read_fastspec(path, ["METADATA.LOGMSTAR"])
    assert (err.value.hdu, err.value.column) == ("METADATA", "LOGMSTAR")


def test_version_detection_and_broken_files(tmp_path):
    assert detect_version(["PRIMARY", "METADATA", "SPECPHOT", "FASTSPEC"], {}) == "v3.0"
    assert detect_version(["PRIMARY", "FASTSPEC", "METADATA"], {}) == "v2.1"
    dep = {"DEPNAM03": "fastspecfit", "DEPVER03": "3.1.5"}
    assert detect_version(["PRIMARY", "FASTSPEC", "METADATA"], dep) == "v3.0"
    assert detect_version(["PRIMARY", "ZCATALOG"], {}) is None

    src = write_fastspec(tmp_path / "fastspec-main-dark-5.fits", full_table("v3.0", 3))
    no_specphot = tmp_path / "fastspec-main-dark-6.fits"
    rewrite_hdus(src, no_specphot, drop="SPECPHOT")
    assert identify(no_specphot) is V30  # NMONTE in PRIMARY still says v3
    errors = [p for p in validate(no_specphot) if p.severity == "error"]
    assert [(p.hdu, p.message.split(" (")[0]) for p in errors] == [("SPECPHOT", "missing required HDU")]
    with pytest.raises(FormatError):
        read_fastspec(no_specphot, ["LOGMSTAR"])

    mismatch = tmp_path / "fastspec-main-dark-8.fits"
    rewrite_hdus(src, mismatch, cut=("FASTSPEC", 2))
    errors = [p for p in validate(mismatch) if p.severity == "error"]
    assert errors and errors[0].hdu == "FASTSPEC" and "row-matched" in errors[0].message
    with pytest.raises(FormatError, match="row-matched"):
        read_fastspec(mismatch, ["TARGETID"])

    with pytest.raises(InputError):
        write_fastspec(tmp_path / "x.fits", full_table("v3.0", 3), models=np.zeros((2, 3, MODELS_NPIX)))
    with pytest.raises(InputError):
        write_fastspec(tmp_path / "x.fits", full_table("v3.0", 3), version="v2.0")  # type: ignore[arg-type]
