"""QSO catalogs (QSO_CAT) and baltools BAL tables (BALCAT, BAL columns appended)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits

from desilab.errors import FormatError, SchemaError
from desilab.io import qso
from desilab.io.schema import PRODUCTS, parse_tform

N = 6


def _qso_input(seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "targetid": 39627000000000000 + np.arange(N, dtype=np.int64) * 11,  # any case is accepted
            "Z": np.array([0.8, 1.6, 2.1, 3.3, 5.2, 1.57]),
            "ZERR": rng.uniform(1e-4, 1e-3, N),
            "ZWARN": np.zeros(N, dtype=np.int64),
            "SPECTYPE": ["QSO"] * N,
            "TARGET_RA": rng.uniform(0, 360, N),
            "TARGET_DEC": rng.uniform(-10, 70, N),
            "C_MGII": rng.uniform(0, 1, N).astype(np.float32),
            "SURVEY": ["main"] * N,
            "PROGRAM": ["dark"] * N,
        }
    )


def _bal_values(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vmin = -np.ones((N, qso.NAI), dtype=np.float32)
    vmin[1, :2] = [3100.0, 9000.0]
    return {
        "PCA_COEFFS": rng.normal(size=(N, qso.NPCA)).astype(np.float32),
        "BI_CIV": np.array([0, 1200.0, 0, 3400.5, 0, 0], dtype=np.float32),
        "NCIV_450": np.array([0, 2, 0, 1, 0, 0], dtype=np.int32),
        "VMIN_CIV_450": vmin,
        "SNR_CIV": rng.uniform(1, 20, N).astype(np.float32),
    }


def _with(table: pa.Table, values: dict[str, np.ndarray]) -> pa.Table:
    for name, arr in values.items():
        if arr.ndim == 2:
            col = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
        else:
            col = pa.array(arr)
        table = table.append_column(name, col)
    return table


def _assert_golden(path: Path, spec, extname: str) -> dict[str, str]:
    """Every written TFORM/TUNIT equals the schema; returns {UPPER: stored TTYPE}."""
    hdr = afits.getheader(path, extname)
    spelled = {}
    for i in range(1, hdr["TFIELDS"] + 1):
        ttype = hdr[f"TTYPE{i}"]
        col = spec.column(ttype)
        assert parse_tform(hdr[f"TFORM{i}"]) == parse_tform(col.tform), ttype
        assert hdr.get(f"TUNIT{i}") == col.unit, ttype
        spelled[ttype.upper()] = ttype
    return spelled


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- QSO_CAT


def test_qso_cat_round_trip_fills_datamodel_columns(tmp_path: Path) -> None:
    path = tmp_path / "QSO_cat_iron_cumulative_v0.fits"
    src = _qso_input()
    qso.write_qso_catalog(path, src)

    spelled = _assert_golden(path, qso.QSO_CAT_SCHEMA.hdus[0], "QSO_CAT")
    assert list(spelled) == [c.name for c in qso.QSO_COLUMNS]  # every column, datamodel order
    assert spelled["C_MGII"] == "C_MgII" and spelled["Z_HALPHA"] == "Z_Halpha"  # file spelling
    hdr = afits.getheader(path, "QSO_CAT")
    assert hdr["DESIDR"] == "dr1"
    assert hdr["TUNIT" + str(list(spelled).index("FLUX_G") + 1)] == "nanomaggy"

    table = qso.read_qso_catalog(path)
    np.testing.assert_array_equal(table.column("TARGETID").to_numpy(), src.column("targetid").to_numpy())
    np.testing.assert_array_equal(table.column("Z").to_numpy(), src.column("Z").to_numpy())
    np.testing.assert_array_equal(table.column("C_MgII").to_numpy(), src.column("C_MGII").to_numpy())
    assert table.column("SPECTYPE").to_pylist() == ["QSO"] * N
    assert np.isnan(table.column("EBV").to_numpy()).all()  # float fill
    assert (table.column("TILEID").to_numpy() == 0).all()  # int fill
    assert table.column("MORPHTYPE").to_pylist() == [""] * N
    assert table.schema.field("TARGET_RA").metadata[b"unit"] == b"deg"


def test_qso_cat_rows_by_targetid_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "QSO_cat_iron_cumulative_v0.fits"
    src = _qso_input()
    qso.write_qso_catalog(path, src)
    tids = src.column("targetid").to_numpy()
    table = qso.read_qso_catalog(path, ["z", "TargetID", "c_mgii"], targetids=[tids[4], 1, tids[1]])
    assert table.column_names == ["Z", "TARGETID", "C_MgII"]
    np.testing.assert_array_equal(table.column("TARGETID").to_numpy(), tids[[1, 4]])  # file order
    np.testing.assert_array_equal(table.column("Z").to_numpy(), [1.6, 5.2])
    empty = qso.read_qso_catalog(path, ["TARGETID"], targetids=[5])
    assert empty.num_rows == 0 and empty.column_names == ["TARGETID"]


def test_qso_cat_bytes_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.fits", tmp_path / "b.fits"
    qso.write_qso_catalog(a, _qso_input())
    qso.write_qso_catalog(b, _qso_input())
    assert _md5(a) == _md5(b)
    qso.write_qso_catalog(b, _qso_input(seed=5))
    assert _md5(a) != _md5(b)


# ----------------------------------------------------------------------------- BALCAT


def test_balcat_round_trip_baltools_layout(tmp_path: Path) -> None:
    path = tmp_path / "baltable-main-dark-9876.fits"
    src = _with(_qso_input(), _bal_values())
    with pytest.raises(SchemaError, match="C_MGII"):  # QSO extras do not belong in BALCAT
        qso.write_qso_catalog(path, src, layout="balcat")
    src = src.drop(["C_MGII", "SPECTYPE", "SURVEY", "PROGRAM"])
    qso.write_qso_catalog(path, src, layout="balcat")

    spelled = _assert_golden(path, qso.BALCAT_SCHEMA.hdus[0], "BALCAT")
    assert list(spelled) == [c.name for c in qso.BALCAT_COLUMNS]
    hdr = afits.getheader(path, "BALCAT")
    tforms = {hdr[f"TTYPE{i}"]: hdr[f"TFORM{i}"] for i in range(1, hdr["TFIELDS"] + 1)}
    assert tforms["TARGETID"] == "K" and tforms["Z"] == "E" and tforms["ZWARN"] == "E"
    assert tforms["PCA_COEFFS"] == "5E" and tforms["VMIN_CIV_2000"] == "5E" and tforms["FMIN_SIIV_450"] == "17E"
    assert tforms["NCIV_2000"] == "J"

    t = qso.read_qso_catalog(path)
    np.testing.assert_array_equal(t.column("Z").to_numpy(), src.column("Z").to_numpy().astype(np.float32))
    vmin = np.stack(t.column("VMIN_CIV_450").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vmin, _bal_values()["VMIN_CIV_450"])
    filled = np.stack(t.column("VMAX_SIIV_2000").to_numpy(zero_copy_only=False))
    assert filled.shape == (N, qso.NBI) and (filled == -1).all()  # unused trough slots
    assert (t.column("BAL_PROB").to_numpy() == -1).all()
    assert (t.column("AI_CIV").to_numpy() == 0).all()
    assert (t.column("SNR_REDSIDE").to_numpy() == -1).all()
    assert "BALMASK" not in t.column_names


def test_balcat_from_baltools_style_astropy_file(tmp_path: Path) -> None:
    """A BALCAT written the way baltools initbaltab_desi does (astropy fits.Column)."""
    path = tmp_path / "baltable-sv3-dark-123.fits"
    n = 3
    cols = [
        afits.Column(name="TARGETID", format="K", array=np.arange(n) + 10),
        afits.Column(name="TARGET_RA", format="E", array=np.ones(n)),
        afits.Column(name="TARGET_DEC", format="E", array=np.ones(n)),
        afits.Column(name="Z", format="E", array=[2.0, 2.5, 3.0]),
        afits.Column(name="ZERR", format="E", array=np.zeros(n)),
        afits.Column(name="ZWARN", format="E", array=np.zeros(n)),
    ]
    for c in qso.BAL_COLUMNS:
        repeat, _ = parse_tform(c.tform)
        shape = (n, repeat) if repeat > 1 else (n,)
        cols.append(afits.Column(name=c.name, format=c.tform, array=np.full(shape, 7.0)))
    hdu = afits.BinTableHDU.from_columns(cols)
    hdu.header["EXTNAME"] = "BALCAT"
    hdu.writeto(path)
    t = qso.read_qso_catalog(path, targetids=[12])
    assert t.num_rows == 1 and t.column("Z").to_pylist() == [3.0]
    assert t.column("NSIIV_450").to_pylist() == [7]


# ----------------------------------------------------------------------------- appended


def test_appended_layout_and_balmask(tmp_path: Path) -> None:
    path = tmp_path / "QSO_cat_iron_main_dark_healpix_v1-bal.fits"
    src = _with(_qso_input(), _bal_values()).append_column("MY_FLAG", pa.array(np.arange(N, dtype=np.int16)))
    qso.write_qso_catalog(path, src, layout="appended")

    with fitsio.FITS(str(path)) as f:
        assert [h.get_extname() for h in f] == ["", "ZCATALOG"]
    spelled = list(_assert_golden_appended(path))
    # input QSO columns (datamodel order), extras, then the BAL block, BALMASK, SNR_*
    assert spelled[: spelled.index("PCA_COEFFS")] == [
        "TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "TARGET_RA", "TARGET_DEC", "C_MGII", "SURVEY", "PROGRAM",
        "MY_FLAG",
    ]  # fmt: skip
    assert spelled[spelled.index("PCA_COEFFS") :] == [c.name for c in qso.BAL_COLUMNS] + [
        "BALMASK", "SNR_CIV", "SNR_REDSIDE", "SNR_FOREST",
    ]  # fmt: skip

    t = qso.read_qso_catalog(path)
    # Z = 0.8 and 5.2 are outside [1.57, 5.0] -> bit value 2; BAL columns given -> bit 1 clear
    assert t.column("BALMASK").to_pylist() == [2, 0, 0, 0, 2, 0]
    assert t.column("MY_FLAG").to_pylist() == list(range(N))
    np.testing.assert_array_equal(t.column("BI_CIV").to_numpy(), _bal_values()["BI_CIV"])

    # a QSO catalog without any BAL measurement: bit 1 set everywhere
    bare = tmp_path / "qso-balcat.fits"
    qso.write_qso_catalog(bare, _qso_input(), layout="appended")
    assert qso.read_qso_catalog(bare, ["BALMASK"]).column("BALMASK").to_pylist() == [3, 1, 1, 1, 3, 1]
    assert qso.BAL_APPENDED_SCHEMA.identify(["PRIMARY", "ZCATALOG"], {})


def _assert_golden_appended(path: Path):
    hdr = afits.getheader(path, "ZCATALOG")
    spec = qso.BAL_APPENDED_SCHEMA.hdus[0]
    for i in range(1, hdr["TFIELDS"] + 1):
        ttype = hdr[f"TTYPE{i}"]
        if ttype == "MY_FLAG":
            assert hdr[f"TFORM{i}"] == "I"
            yield ttype
            continue
        col = spec.column(ttype)
        assert parse_tform(hdr[f"TFORM{i}"]) == parse_tform(col.tform), ttype
        assert hdr.get(f"TUNIT{i}") == col.unit, ttype
        yield ttype.upper()


def test_qso_cat_with_bal_flag(tmp_path: Path) -> None:
    path = tmp_path / "q.fits"
    qso.write_qso_catalog(path, _with(_qso_input(), _bal_values()), with_bal=True)
    t = qso.read_qso_catalog(path, ["EBV", "BI_CIV", "BALMASK"])
    assert t.column("BALMASK").to_pylist() == [2, 0, 0, 0, 2, 0]
    assert afits.getheader(path, 1)["EXTNAME"] == "QSO_CAT"


# ----------------------------------------------------------------------------- old spelling, errors


def test_old_siv_spelling_read_as_siiv(tmp_path: Path) -> None:
    path = tmp_path / "old_bal.fits"
    old = {name: canon for name, canon in qso.SIV_TO_SIIV.items()}
    dtype = [("TARGETID", "i8"), ("Z", "f4"), ("BI_CIV", "f4"), ("BI_SIV", "f4"), ("NSIV_2000", "i4"),
             ("VMIN_SIV_450", "f4", (17,))]  # fmt: skip
    data = np.zeros(2, dtype=dtype)
    data["BI_SIV"] = [10.0, 20.0]
    data["NSIV_2000"] = [1, 2]
    fitsio.write(str(path), data, extname="BALCAT")
    t = qso.read_qso_catalog(path, ["BI_SIIV", "nsiiv_2000", "vmin_siv_450"])
    assert t.column_names == ["BI_SIIV", "NSIIV_2000", "VMIN_SIIV_450"]
    assert t.column("BI_SIIV").to_pylist() == [10.0, 20.0]
    assert old["NSIV_2000"] == "NSIIV_2000" and old["ERR_AI_SIV"] == "ERR_AI_SIIV"
    with pytest.raises(FormatError) as err:  # whole-table read: this file lacks required BALCAT columns
        qso.read_qso_catalog(path)
    assert (err.value.file, err.value.hdu, err.value.column) == (str(path), "BALCAT", "TARGET_RA")


def test_missing_column_and_hdu_named(tmp_path: Path) -> None:
    path = tmp_path / "QSO_cat_broken.fits"
    data = np.zeros(3, dtype=[("TARGETID", "i8"), ("Z", "f8"), ("ZERR", "f8"), ("ZWARN", "i8"),
                              ("SPECTYPE", "S6"), ("TARGET_RA", "f8")])  # fmt: skip
    fitsio.write(str(path), data, extname="QSO_CAT")
    with pytest.raises(FormatError) as err:
        qso.read_qso_catalog(path)
    assert (err.value.file, err.value.hdu, err.value.column) == (str(path), "QSO_CAT", "TARGET_DEC")
    with pytest.raises(FormatError) as err:
        qso.read_qso_catalog(path, ["Z", "BI_CIV"])
    assert (err.value.hdu, err.value.column) == ("QSO_CAT", "BI_CIV")
    assert qso.read_qso_catalog(path, ["Z"]).num_rows == 3

    other = tmp_path / "other.fits"
    fitsio.write(str(other), data, extname="FIBERMAP")
    with pytest.raises(FormatError, match="FIBERMAP"):
        qso.read_qso_catalog(other)


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "x.fits"
    with pytest.raises(SchemaError) as err:
        qso.write_qso_catalog(out, _qso_input().drop(["targetid"]))
    assert err.value.column == "TARGETID"
    with pytest.raises(SchemaError) as err:
        qso.write_qso_catalog(out, _qso_input().drop(["Z"]), layout="balcat")
    assert err.value.column == "Z"
    long_type = _qso_input().set_column(4, "SPECTYPE", pa.array(["QSOQSOQSO"] * N))
    with pytest.raises(SchemaError) as err:
        qso.write_qso_catalog(out, long_type)
    assert err.value.column == "SPECTYPE"
    bad_vec = _with(_qso_input(), {"VMIN_CIV_2000": np.zeros((N, 4), dtype=np.float32)})
    with pytest.raises(SchemaError) as err:
        qso.write_qso_catalog(out, bad_vec, layout="appended")
    assert err.value.column == "VMIN_CIV_2000"
    with pytest.raises(SchemaError, match="layout"):
        qso.write_qso_catalog(out, _qso_input(), layout="bal")
    assert not out.exists()
    # 4 PCA coefficients (alternate templates) are written as 4E
    alt = _with(_qso_input(), {"PCA_COEFFS": np.ones((N, 4), dtype=np.float32)})
    qso.write_qso_catalog(out, alt, layout="appended")
    assert qso.read_qso_catalog(out, ["PCA_COEFFS"]).schema.field(0).type.list_size == 4


# ----------------------------------------------------------------------------- registry, constants


def test_schemas_registered_and_identify() -> None:
    cat, bal, app = PRODUCTS["qso-cat"], PRODUCTS["qso-balcat"], PRODUCTS["qso-bal-appended"]
    assert cat.matches_name("QSO_cat_iron_cumulative_v0.fits")
    assert cat.matches_name("QSO_cat_iron_main_dark_healpix_v1.fits")
    assert not cat.matches_name("QSO_cat_fuji_sv1_dark-bal-mask-priors-SNR-v1.0.fits")
    assert bal.matches_name("baltable-main-dark-27247.fits") and not app.matches_name("baltable-main-dark-1.fits")
    assert app.matches_name("qso-balcat.fits")
    assert cat.identify(["PRIMARY", "QSO_CAT"], {}) and not cat.identify(["PRIMARY", "ZCATALOG"], {})
    assert bal.identify(["PRIMARY", "BALCAT"], {})
    assert not app.identify(["PRIMARY", "ZCATALOG"], {"ZCATVER": "v1"})  # a redshift catalog
    assert "paulmartini/baltools @ d47c815" in bal.source and "desidatamodel" in cat.source
    assert len(qso.QSO_COLUMNS) == 68


def test_bal_constants() -> None:
    assert (qso.LAMBDA_CIV, qso.LAMBDA_SIIV) == (1549.0, 1398.0)
    assert (qso.NPCA, qso.NBI, qso.NAI) == (5, 5, 17)
    assert (qso.BAL_ZMIN, qso.BAL_ZMAX) == (1.57, 5.0)
    assert (qso.VMIN_BAL, qso.BI_VMAX, qso.AI_VMAX) == (-25000.0, -3000.0, 0.0)
    assert (qso.BI_MIN_WIDTH, qso.AI_MIN_WIDTH) == (2000.0, 450.0)
    assert (qso.BALMASK_NOT_IN_BALCAT, qso.BALMASK_Z_RANGE, qso.BALMASK_DZ) == (1, 2, 4)


def test_format_doc_is_up_to_date() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "formats" / "qso.md"
    assert doc.read_text(encoding="utf-8") == qso.format_doc(), (
        "regenerate: python -c \"from desilab.io import qso; open('docs/formats/qso.md', 'w').write(qso.format_doc())\""
    )
