"""zcatalog v1 (zpix / zall-pix): golden schema, writer, reader, errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits

from desilab.errors import FormatError, InputError, SchemaError
from desilab.io.fits import read_table
from desilab.io.schema import TableHDU
from desilab.io.validate import identify, validate
from desilab.io.zcatalog import EXP_FIBERMAP, ZALL, ZPIX, read_zcatalog, write_zcatalog

NROWS = 12


def synth_table(hdu: TableHDU, nrows: int = NROWS, seed: int = 1, skip: tuple[str, ...] = ()) -> pa.Table:
    """A seeded table with every column of *hdu* (values exactly representable in its TFORM)."""
    rng = np.random.default_rng(seed)
    arrays, names = [], []
    for col in hdu.columns:
        if col.name in skip:
            continue
        dt = col.dtype
        n = nrows * (col.shape[0] if col.shape else 1)
        if dt.kind == "U":
            width = dt.itemsize // 4
            values = ["".join(rng.choice(list("ABCXYZ"), size=rng.integers(0, width + 1))) for _ in range(n)]
            arr = pa.array(values, pa.string())
        elif dt.kind == "b":
            arr = pa.array(rng.random(n) > 0.5)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            arr = pa.array(rng.integers(max(info.min, -1000), min(info.max, 1000), size=n).astype(dt))
        else:
            arr = pa.array(rng.normal(size=n).astype(dt))
        if col.shape:
            arr = pa.FixedSizeListArray.from_arrays(arr, col.shape[0])
        arrays.append(arr)
        names.append(col.name)
    table = pa.Table.from_arrays(arrays, names=names)
    if "TARGETID" in names:
        table = table.set_column(names.index("TARGETID"), "TARGETID", pa.array(np.arange(nrows, dtype=np.int64) + 1000))
    return table


def retype_column(src, dst, extname: str, column: str, fmt: str, dtype) -> None:
    """Copy *src* to *dst* with one table column stored as another FITS type (astropy)."""
    with afits.open(src) as hdul:
        idx = hdul.index_of(extname)
        hdu = hdul[idx]
        cols = []
        for c in hdu.columns:
            arr = hdu.data[c.name]
            if c.name == column:
                cols.append(afits.Column(name=c.name, format=fmt, array=np.asarray(arr, dtype=dtype)))
            else:
                cols.append(afits.Column(name=c.name, format=c.format, unit=c.unit, dim=c.dim, array=arr))
        new = afits.BinTableHDU.from_columns(cols, name=extname)
        for card in hdu.header.cards:
            if card.keyword not in new.header and not card.keyword.startswith(("T", "NAXIS")):
                new.header.append(card)
        hdul[idx] = new
        hdul.writeto(dst)


def zpix_table(nrows: int = NROWS) -> pa.Table:
    t = synth_table(ZPIX.hdu("ZCATALOG"), nrows)
    t = t.set_column(t.column_names.index("SURVEY"), "SURVEY", pa.array(["main"] * nrows))
    t = t.set_column(t.column_names.index("PROGRAM"), "PROGRAM", pa.array(["dark"] * nrows))
    return t


@pytest.fixture
def zpix_file(tmp_path):
    table = zpix_table()
    extra = pa.array(np.arange(NROWS, dtype=np.float32))
    table = table.append_column(pa.field("MY_EXTRA", pa.float32(), metadata={"unit": "km / s"}), extra)
    exp = synth_table(EXP_FIBERMAP, nrows=3 * NROWS, seed=2)
    path = write_zcatalog(tmp_path / "zpix-main-dark.fits", table, exp_fibermap=exp, header={"RRVER": "0.17.0"})
    return path, table, exp


def test_zpix_round_trip_values_dtypes_units(zpix_file):
    path, table, exp = zpix_file
    got = read_zcatalog(path)
    assert got.column_names == [c.name for c in ZPIX.hdu("ZCATALOG").columns] + ["MY_EXTRA"]
    for name in table.column_names:
        assert got.column(name).equals(table.column(name)), name
    assert got.schema.field("TARGETID").type == pa.int64()
    assert got.schema.field("FLUX_G").type == pa.float32()
    assert got.schema.field("ZCAT_PRIMARY").type == pa.bool_()
    assert got.schema.field("COEFF").type == pa.list_(pa.float64(), 10)
    assert got.schema.field("FA_TYPE").type == pa.uint8()
    assert got.schema.field("TARGET_RA").metadata[b"unit"] == b"deg"
    assert got.schema.field("FLUX_IVAR_W1").metadata[b"unit"] == b"nanomaggy^-2"
    assert got.schema.field("MY_EXTRA").metadata[b"unit"] == b"km / s"
    assert got.schema.metadata[b"desilab.product"] == b"zpix"
    exp_got = read_table(path, "EXP_FIBERMAP")
    for name in exp.column_names:
        assert exp_got.column(name).equals(exp.column(name)), name


def test_zall_round_trip(tmp_path):
    table = synth_table(ZALL.hdu("ZCATALOG"))
    path = write_zcatalog(tmp_path / "zall-pix-iron.fits", table, kind="zall")
    got = read_zcatalog(path)
    assert got.schema.metadata[b"desilab.product"] == b"zall-pix"
    for name in table.column_names:
        assert got.column(name).equals(table.column(name)), name
    assert identify(path) is ZALL
    assert validate(path) == []
    hdr = afits.getheader(path, "ZCATALOG")
    assert "SURVEY" not in hdr and hdr["ZCATVER"] == "v1"


def test_written_header_equals_golden_schema(zpix_file):
    path, _, _ = zpix_file
    assert validate(path) == []
    with afits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "ZCATALOG", "EXP_FIBERMAP"]
        assert hdul[0].header["ZCATVER"] == "v1"
        hdr = hdul["ZCATALOG"].header
        for key, value in {"SPGRP": "healpix", "HPXNSIDE": 64, "HPXNEST": True, "SURVEY": "main",
                           "PROGRAM": "dark", "ZCATVER": "v1", "RRVER": "0.17.0"}.items():  # fmt: skip
            assert hdr[key] == value, key
        for i, col in enumerate(ZPIX.hdu("ZCATALOG").columns, start=1):
            assert hdr[f"TTYPE{i}"] == col.name
            assert hdr[f"TFORM{i}"] == col.tform, col.name
            assert hdr.get(f"TUNIT{i}") == col.unit, col.name
        exp_hdr = hdul["EXP_FIBERMAP"].header
        for i, col in enumerate(EXP_FIBERMAP.columns, start=1):
            assert (exp_hdr[f"TTYPE{i}"], exp_hdr[f"TFORM{i}"]) == (col.name, col.tform)


def test_missing_columns_filled_with_neutral_values(tmp_path):
    table = pa.table({"TARGETID": np.array([5, 6], dtype=np.int64), "Z": [0.1, 0.2]})
    path = write_zcatalog(tmp_path / "zpix-sv1-bright.fits", table, survey="sv1", program="bright")
    got = read_zcatalog(path)
    assert got.num_columns == len(ZPIX.hdu("ZCATALOG").columns)
    assert got.column("SURVEY").to_pylist() == ["sv1", "sv1"]
    assert got.column("SPECTYPE").to_pylist() == ["", ""]
    assert got.column("ZWARN").to_pylist() == [0, 0]
    assert got.column("ZCAT_PRIMARY").to_pylist() == [False, False]
    assert np.isnan(got.column("FLUX_G").to_numpy()).all()
    assert got.column("Z").to_pylist() == [0.1, 0.2]
    assert validate(path) == []


def test_writer_is_byte_deterministic(tmp_path):
    table = zpix_table()
    a = write_zcatalog(tmp_path / "a" / "zpix-main-dark.fits", table)
    b = write_zcatalog(tmp_path / "b" / "zpix-main-dark.fits", table)
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob("**/.*tmp-*"))  # atomic_output left nothing behind


def test_reader_selects_rows_by_targetid_and_primary(zpix_file):
    path, _, _ = zpix_file
    full = read_zcatalog(path, ["TARGETID", "Z", "ZCAT_PRIMARY", "SPECTYPE"])
    assert full.column_names == ["TARGETID", "Z", "ZCAT_PRIMARY", "SPECTYPE"]
    want = [1011, 1003, 1005, 99999]  # order of the request does not matter; unknown IDs ignored
    got = read_zcatalog(path, ["Z", "SPECTYPE"], targetids=want)
    rows = np.flatnonzero(np.isin(full.column("TARGETID").to_numpy(), want))
    assert got.column_names == ["Z", "SPECTYPE"]
    assert got.to_pydict() == full.select(["Z", "SPECTYPE"]).take(rows).to_pydict()
    prim = read_zcatalog(path, ["TARGETID"], primary_only=True)
    expect = full.filter(full.column("ZCAT_PRIMARY")).column("TARGETID")
    assert prim.column("TARGETID").equals(expect)
    both = read_zcatalog(path, ["TARGETID"], targetids=want, primary_only=True)
    mask = np.isin(expect.to_numpy(), want)
    assert both.column("TARGETID").to_pylist() == expect.to_numpy()[mask].tolist()
    empty = read_zcatalog(path, ["TARGETID", "SPECTYPE"], targetids=[1])
    assert empty.num_rows == 0 and empty.column_names == ["TARGETID", "SPECTYPE"]


def test_missing_requested_column_names_file_hdu_column(zpix_file):
    path, _, _ = zpix_file
    with pytest.raises(FormatError) as err:
        read_zcatalog(path, ["TARGETID", "NOT_A_COLUMN"])
    assert (err.value.file, err.value.hdu, err.value.column) == (str(path), "ZCATALOG", "NOT_A_COLUMN")
    assert "zpix-main-dark.fits[ZCATALOG].NOT_A_COLUMN" in str(err.value)


def test_renamed_required_column_is_reported(zpix_file, tmp_path):
    path, _, _ = zpix_file
    broken = tmp_path / "zpix-main-bright.fits"
    with afits.open(path) as hdul:
        hdul["ZCATALOG"].columns.change_name("TARGETID", "TARGET_ID")
        hdul.writeto(broken)
    with pytest.raises(FormatError) as err:
        read_zcatalog(broken)
    assert (err.value.hdu, err.value.column) == ("ZCATALOG", "TARGETID")
    with pytest.raises(FormatError) as err:
        read_zcatalog(broken, ["Z"], targetids=[1000])
    assert err.value.column == "TARGETID"
    problems = validate(broken)
    assert any(p.severity == "error" and p.column == "TARGETID" and p.hdu == "ZCATALOG" for p in problems)


def test_missing_hdu_and_wrong_dtype(tmp_path, zpix_file):
    path, _, _ = zpix_file
    no_hdu = tmp_path / "zpix-main-backup.fits"
    with afits.open(path) as hdul:
        afits.HDUList([hdul[0].copy(), hdul["EXP_FIBERMAP"].copy()]).writeto(no_hdu)
    with pytest.raises(FormatError) as err:
        read_zcatalog(no_hdu)
    assert err.value.hdu == "ZCATALOG" and "zpix-main-backup.fits" in str(err.value)
    assert any(p.hdu == "ZCATALOG" and "missing required HDU" in p.message for p in validate(no_hdu))

    float_tid = tmp_path / "zpix-main-other.fits"
    retype_column(path, float_tid, "ZCATALOG", "TARGETID", "D", np.float64)
    errors = [p for p in validate(float_tid) if p.severity == "error"]
    assert [(p.hdu, p.column) for p in errors] == [("ZCATALOG", "TARGETID")]
    assert "TFORM is D, expected K" in errors[0].message


def test_string_width_difference_is_only_a_warning(tmp_path):
    table = pa.table({"TARGETID": np.array([1], dtype=np.int64), "SUBTYPE": ["X" * 25]})
    path = write_zcatalog(tmp_path / "zpix-main-dark.fits", table, survey="main", program="dark")
    assert read_zcatalog(path, ["SUBTYPE"]).column("SUBTYPE").to_pylist() == ["X" * 25]  # widened, not cut
    problems = validate(path)
    assert [(p.severity, p.column) for p in problems] == [("warning", "SUBTYPE")]


def test_writer_refuses_lossy_or_ambiguous_input(tmp_path):
    out = tmp_path / "zpix-main-dark.fits"
    with pytest.raises(SchemaError) as err:
        write_zcatalog(out, pa.table({"TARGETID": [1.5]}), survey="main", program="dark")
    assert err.value.column == "TARGETID"
    with pytest.raises(SchemaError):
        write_zcatalog(out, pa.table({"TARGETID": ["abc"]}), survey="main", program="dark")
    with pytest.raises(SchemaError):
        write_zcatalog(out, pa.table({"FA_TYPE": [300]}), survey="main", program="dark")  # uint8 range
    with pytest.raises(InputError):
        write_zcatalog(out, pa.table({"TARGETID": [1, 2], "SURVEY": ["main", "sv1"]}), program="dark")
    with pytest.raises(InputError):
        write_zcatalog(out, pa.table({"TARGETID": [1]}), kind="zall", exp_fibermap=pa.table({"TARGETID": [1]}))
    assert not out.exists()
    ok = write_zcatalog(out, pa.table({"TARGETID": [1.0, 2.0]}), survey="main", program="dark")  # integral floats
    assert read_zcatalog(ok, ["TARGETID"]).column("TARGETID").to_pylist() == [1, 2]


def test_identify_by_content_when_renamed(zpix_file, tmp_path):
    path, _, _ = zpix_file
    renamed = tmp_path / "catalog.fits"
    renamed.write_bytes(path.read_bytes())
    assert identify(renamed) is ZPIX
    assert identify(path) is ZPIX
