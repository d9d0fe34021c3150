"""Tests of the DESI coadd/redrock readers and writers and the Spectra container.

Real files are read from ``<repo>/../shared/data/real`` (never copied into the repo);
tests that need them skip when they are absent.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits

from desilab.errors import FormatError, InputError, SchemaError
from desilab.io import fits as dfits
from desilab.io.coadd import (
    COADD_SCHEMA,
    _row_runs,
    check_coadd,
    healpix_header,
    read_coadd,
    redrock_path_for,
    write_coadd,
)
from desilab.io.redrock import REDROCK_SCHEMA, check_redrock, read_redrock, write_redrock
from desilab.io.schema import PRODUCTS, parse_tform
from desilab.io.spectra import (
    COMBINED_NWAVE,
    DESI_WAVE_GRIDS,
    FLUX_UNIT,
    IVAR_UNIT,
    SPECMASK,
    Spectra,
    combined_wave,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
COADDS = {
    "healpix": REAL / "desi_coadd" / "coadd-special-dark-27247.fits",
    "tile": REAL / "desi_coadd" / "coadd-4-80613-thru20210324.fits",
}
QNP = REAL / "desi_qnp" / "test_coadd.fits"
KNOWN_Z = {"healpix": (39089837499744649, 0.00727), "tile": (39633345008634465, 0.36874)}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test file {path} is not available (shared/data/real not checked out)")
    return path


# --- synthetic data ------------------------------------------------------------------


def desi_wave(band: str) -> np.ndarray:
    lo, hi, n = DESI_WAVE_GRIDS[band]
    return np.linspace(lo, hi, n)


def make_fibermap(tids: np.ndarray, rng: np.random.Generator) -> pa.Table:
    n = len(tids)
    return pa.table(
        {
            "TARGETID": pa.array(tids, pa.int64()),
            "COADD_FIBERSTATUS": pa.array(rng.integers(0, 3, n), pa.int32()),
            "TARGET_RA": pa.array(rng.uniform(0, 360, n)),
            "TARGET_DEC": pa.array(rng.uniform(-10, 80, n)),
            "OBJTYPE": pa.array(rng.choice(["TGT", "SKY"], n)),
            "BRICKNAME": pa.array([f"{i:04d}p{i:03d}" for i in range(n)]),
            "DESINAME": pa.array([f"DESI J{i:03d}.0000+00.0000" for i in range(n)]),
            "FLUX_G": pa.array(rng.normal(10, 2, n).astype(np.float32)),
            "PHOTSYS": pa.array(rng.choice(["N", "S", ""], n)),
            "DESI_TARGET": pa.array(rng.integers(0, 2**40, n), pa.int64()),
            "COADD_NUMEXP": pa.array(rng.integers(1, 9, n).astype(np.int16)),
            "FA_TYPE": pa.array(rng.integers(0, 4, n).astype(np.uint8)),
        }
    )


def make_spectra(nspec: int = 7, seed: int = 1, resolution: bool = True, ndiag: int = 11) -> Spectra:
    """Seeded synthetic healpix coadd content with all the tables."""
    rng = np.random.default_rng(seed)
    tids = rng.choice(np.arange(39627000000000000, 39627000000100000), nspec, replace=False)
    bands = ["b", "r", "z"]
    wave = {b: desi_wave(b) for b in bands}
    flux = {b: rng.normal(1, 0.3, (nspec, wave[b].size)).astype(np.float32) for b in bands}
    ivar = {b: rng.uniform(0, 4, (nspec, wave[b].size)).astype(np.float32) for b in bands}
    mask = {b: (rng.random((nspec, wave[b].size)) < 0.02).astype(np.int32) * 4 for b in bands}
    mask["b"][0, :3] = [-(2**31), 2**30, 7]  # high bits survive the round trip
    res = None
    if resolution:
        res = {b: rng.random((nspec, ndiag, wave[b].size)).astype(np.float32) for b in bands}
    exp = pa.table(
        {
            "TARGETID": pa.array(np.repeat(tids, 2), pa.int64()),
            "NIGHT": pa.array(np.tile([20210501, 20210502], nspec), pa.int32()),
            "EXPID": pa.array(np.arange(2 * nspec), pa.int32()),
            "MJD": pa.array(rng.uniform(59300, 59400, 2 * nspec)),
            "IN_COADD_B": pa.array(rng.random(2 * nspec) > 0.2),
        }
    )
    scores = pa.table(
        {
            "TARGETID": pa.array(tids, pa.int64()),
            "TSNR2_BGS": pa.array(rng.uniform(0, 3000, nspec).astype(np.float32)),
            "MEDIAN_COADD_SNR_B": pa.array(rng.uniform(0, 10, nspec).astype(np.float32)),
        }
    )
    meta = {**healpix_header("main", "bright", 9876), "INFIL000": "spectra-main-bright-9876.fits"}
    return Spectra(
        bands=bands,
        wave=wave,
        flux=flux,
        ivar=ivar,
        mask=mask,
        resolution=res,
        fibermap=make_fibermap(tids, rng),
        exp_fibermap=exp,
        scores=scores,
        meta=meta,
    )


def make_redshifts(tids: np.ndarray, seed: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(tids)
    coeff = rng.normal(size=(n, 10))
    return pa.table(
        {
            "TARGETID": pa.array(tids, pa.int64()),
            "Z": pa.array(rng.uniform(0, 2, n)),
            "ZERR": pa.array(rng.uniform(0, 1e-3, n)),
            "ZWARN": pa.array(rng.integers(0, 5, n), pa.int64()),
            "CHI2": pa.array(rng.uniform(1000, 9000, n)),
            "COEFF": pa.FixedSizeListArray.from_arrays(pa.array(coeff.ravel()), 10),
            "NPIXELS": pa.array(rng.integers(7000, 7900, n), pa.int64()),
            "SPECTYPE": pa.array(rng.choice(["GALAXY", "QSO", "STAR"], n)),
            "SUBTYPE": pa.array(rng.choice(["", "CV", "WD"], n)),
            "NCOEFF": pa.array(np.full(n, 10), pa.int64()),
            "DELTACHI2": pa.array(rng.uniform(0, 100, n)),
        }
    )


def assert_spectra_equal(a: Spectra, b: Spectra, *, resolution: bool = True) -> None:
    assert a.bands == b.bands
    for band in a.bands:
        np.testing.assert_array_equal(a.wave[band], b.wave[band])
        for name in ("flux", "ivar", "mask"):
            x, y = getattr(a, name)[band], getattr(b, name)[band]
            assert x.dtype == y.dtype, (name, band)
            np.testing.assert_array_equal(x, y, err_msg=f"{name}[{band}]")
        if resolution:
            np.testing.assert_array_equal(a.resolution[band], b.resolution[band])
    for name in ("fibermap", "scores", "redshifts"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert (ta is None) == (tb is None), name
        if ta is not None:
            if tb.num_columns < ta.num_columns:  # the written side may have filled-in columns
                ta, tb = tb, ta
            assert [c for c in tb.column_names if c in ta.column_names] == ta.column_names  # order kept
            for c in ta.column_names:
                x, y = ta.column(c), tb.column(c)
                if pa.types.is_floating(x.type):  # NaN == NaN here
                    np.testing.assert_array_equal(x.to_numpy(), y.to_numpy(), err_msg=f"{name}.{c}")
                else:
                    assert x.to_pylist() == y.to_pylist(), (name, c)


# --- real files vs astropy -----------------------------------------------------------


def _astropy_table_equal(table: pa.Table, data: afits.FITS_rec) -> None:
    assert table.num_rows == len(data)
    assert table.column_names == list(data.columns.names)
    for name in data.columns.names:
        ref = np.asarray(data[name])
        got = table.column(name)
        if ref.dtype.kind in "SU":
            assert got.to_pylist() == [str(v).rstrip() for v in ref.astype(str)], name
            continue
        arr = got.to_numpy(zero_copy_only=False)
        if ref.ndim > 1:
            arr = np.stack(arr)
        assert arr.dtype == ref.dtype.newbyteorder("="), (name, arr.dtype, ref.dtype)
        np.testing.assert_array_equal(arr, ref, err_msg=name)


@pytest.mark.parametrize("kind", ["healpix", "tile"])
def test_real_coadd_equals_astropy(kind: str) -> None:
    path = need(COADDS[kind])
    spec = read_coadd(path, exp_fibermap=True, redrock=False)
    with afits.open(path) as hdul:
        assert spec.bands == ["b", "r", "z"]
        for b in spec.bands:
            B = b.upper()
            for name, ext, dtype in (
                ("wave", "WAVELENGTH", np.float64),
                ("flux", "FLUX", np.float32),
                ("ivar", "IVAR", np.float32),
                ("mask", "MASK", np.int32),
                ("resolution", "RESOLUTION", np.float32),
            ):
                got = getattr(spec, name)[b]
                ref = hdul[f"{B}_{ext}"].data
                assert got.dtype == dtype and ref.dtype.newbyteorder("=") == dtype
                np.testing.assert_array_equal(got, ref)
        _astropy_table_equal(spec.fibermap, hdul["FIBERMAP"].data)
        _astropy_table_equal(spec.exp_fibermap, hdul["EXP_FIBERMAP"].data)
        _astropy_table_equal(spec.scores, hdul["SCORES"].data)
        for key in ("SPGRP", "SPGRPVAL"):
            assert spec.meta[key] == hdul[0].header[key]
        fm_units = {c.name: c.unit for c in hdul["FIBERMAP"].columns if c.unit}
    got_units = {f.name: f.metadata[b"unit"].decode() for f in spec.fibermap.schema if f.metadata}
    assert got_units == fm_units
    assert spec.resolution["b"].shape == (1, 11, 2751)
    np.testing.assert_allclose(spec.wave["b"][[0, -1]], [3600.0, 5800.0], rtol=0, atol=1e-6)


def test_real_qnp_coadd_equals_astropy() -> None:
    path = need(QNP)
    spec = read_coadd(path)
    assert len(spec) == 25 and spec.fibermap is None and spec.targetid is None
    assert spec.resolution is None and spec.redshifts is None
    with afits.open(path) as hdul:
        for b in "brz":
            for name, ext in (("wave", "WAVELENGTH"), ("flux", "FLUX"), ("ivar", "IVAR")):
                ref = hdul[f"{b.upper()}_{ext}"].data
                got = getattr(spec, name)[b]
                assert got.dtype == ref.dtype.newbyteorder("=")
                np.testing.assert_array_equal(got, ref)
            assert spec.mask[b].dtype == np.int32 and not spec.mask[b].any()  # no MASK HDU: zeros
    comb = spec.combined()
    assert comb.flux["brz"].shape == (25, COMBINED_NWAVE)
    sub = read_coadd(path, rows=[24, 3, 4], bands=["r"])
    np.testing.assert_array_equal(sub.flux["r"], spec.flux["r"][[24, 3, 4]])
    with pytest.raises(FormatError, match="FIBERMAP"):
        read_coadd(path, targetids=[1])


@pytest.mark.parametrize("kind", ["healpix", "tile"])
def test_real_redrock_beside_coadd(kind: str) -> None:
    path = need(COADDS[kind])
    spec = read_coadd(path)  # redrock="auto"
    tid, z = KNOWN_Z[kind]
    assert spec.targetid.tolist() == [tid]
    assert spec.redshifts.column("TARGETID").to_pylist() == [tid]
    assert spec.redshifts.column("Z")[0].as_py() == pytest.approx(z, abs=5e-6)
    assert spec.redshifts.column("SPECTYPE").to_pylist() == ["GALAXY"]
    rr_path = redrock_path_for(path)
    rr = read_redrock(rr_path)
    with afits.open(rr_path) as hdul:
        _astropy_table_equal(rr, hdul["REDSHIFTS"].data)
    assert rr.schema.field("COEFF").type == pa.list_(pa.float64(), 10)
    assert read_coadd(path, redrock=False).redshifts is None


def test_real_files_match_golden_schemas() -> None:
    for path in (need(COADDS["healpix"]), need(COADDS["tile"])):
        for product, file in ((COADD_SCHEMA, path), (REDROCK_SCHEMA, redrock_path_for(path))):
            assert product.matches_name(file)
            with afits.open(file) as hdul:
                names = [h.name for h in hdul]
                assert product.identify(names, dict(hdul[0].header))
                for key in product.primary_keywords:
                    assert key in hdul[0].header, (file.name, key)
                for hdu in product.hdus:
                    if hdu.required:
                        assert hdu.extname in names, (file.name, hdu.extname)
                    if hdu.extname not in names:
                        continue
                    h = hdul[hdu.extname]
                    if hdu.kind == "image":
                        assert h.data.dtype.newbyteorder("=").name in hdu.dtypes
                        assert h.data.ndim == hdu.ndim
                        assert h.header.get("BUNIT") == hdu.bunit, hdu.extname
                        continue
                    cols = {c.name: c for c in h.columns}
                    for col in hdu.columns:
                        if col.required:
                            assert col.name in cols, (file.name, hdu.extname, col.name)
                        if col.name in cols:
                            assert parse_tform(cols[col.name].format) == parse_tform(col.tform), col.name
                            if cols[col.name].unit:
                                assert cols[col.name].unit == col.unit, (hdu.extname, col.name)
    assert {"coadd", "redrock"} <= set(PRODUCTS)
    assert not COADD_SCHEMA.matches_name("redrock-main-dark-100.fits")


@pytest.mark.parametrize("kind", ["healpix", "tile"])
def test_real_coadd_content_checks_pass(kind: str) -> None:
    path = need(COADDS[kind])
    with fitsio.FITS(str(path)) as f:
        assert check_coadd(path, f) == []
    with fitsio.FITS(str(redrock_path_for(path))) as f:
        assert check_redrock(path, f) == []


# --- round trips and selection ---------------------------------------------------------


def test_write_read_round_trip_and_layout(tmp_path: Path) -> None:
    spec = make_spectra(nspec=7)
    path = write_coadd(tmp_path / "coadd-main-bright-9876.fits", spec)
    back = read_coadd(path, exp_fibermap=True, redrock=False)
    assert_spectra_equal(spec, back)
    assert back.exp_fibermap.column("EXPID").to_pylist() == spec.exp_fibermap.column("EXPID").to_pylist()
    for key, value in healpix_header("main", "bright", 9876).items():
        assert back.meta[key] == value
    with afits.open(path) as hdul:
        expected = ["PRIMARY", "FIBERMAP", "EXP_FIBERMAP"]
        expected += [f"{B}_{k}" for B in "BRZ" for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")]
        assert [h.name for h in hdul] == [*expected, "SCORES"]
        assert hdul["B_FLUX"].header["BUNIT"] == FLUX_UNIT
        assert hdul["R_IVAR"].header["BUNIT"] == IVAR_UNIT
        assert hdul["Z_WAVELENGTH"].header["BUNIT"] == "Angstrom"
        assert hdul["B_MASK"].header["BITPIX"] == 32 and "BZERO" not in hdul["B_MASK"].header
        assert hdul["B_RESOLUTION"].data.shape == (7, 11, 2751)
        assert hdul[0].header["HPXNEST"] is True and hdul[0].header["SPGRP"] == "healpix"
        fm = {c.name: c for c in hdul["FIBERMAP"].columns}
        schema = COADD_SCHEMA.hdu("FIBERMAP")
        for name, col in fm.items():  # schema TFORMs and TUNITs, e.g. 3A, 22A, 1A, B, I
            ref = schema.column(name)
            assert parse_tform(col.format) == parse_tform(ref.tform), name
            assert col.unit == ref.unit, name
        assert fm["PHOTSYS"].format == "1A" and fm["TARGET_RA"].unit == "deg"
        # required columns the input lacked are added with neutral values, in schema position
        names = list(fm)
        assert names.index("EBV") == names.index("MORPHTYPE") + 1
        assert np.all(np.isnan(hdul["FIBERMAP"].data["EBV"])) and set(hdul["FIBERMAP"].data["MORPHTYPE"]) == {""}
        assert np.all(hdul["FIBERMAP"].data["RELEASE"] == 0) and fm["RELEASE"].format == "I"
        assert len(hdul["SCORES"].columns) == len(COADD_SCHEMA.hdu("SCORES").columns)
        assert hdul["EXP_FIBERMAP"].columns["IN_COADD_B"].format == "L"
    assert len(read_coadd(path)) == 7  # no redrock file beside it: redshifts None


def test_write_is_byte_deterministic(tmp_path: Path) -> None:
    spec = make_spectra(nspec=3, seed=5)
    a = write_coadd(tmp_path / "a" / "coadd-main-bright-1.fits", spec)
    b = write_coadd(tmp_path / "b" / "coadd-main-bright-1.fits", spec)
    assert a.read_bytes() == b.read_bytes()
    c = write_coadd(tmp_path / "c" / "coadd-main-bright-1.fits", read_coadd(a, exp_fibermap=True))
    assert c.read_bytes() == a.read_bytes()
    assert not list(tmp_path.glob("**/.*tmp*"))
    spec.meta["BADVALUE"] = [1, 2]
    with pytest.raises(InputError) as info:
        write_coadd(tmp_path / "d" / "coadd-main-bright-1.fits", spec)
    assert "BADVALUE" in info.value.parameter
    assert not (tmp_path / "d" / "coadd-main-bright-1.fits").exists()


def test_real_coadd_rewrite_keeps_layout(tmp_path: Path) -> None:
    path = need(COADDS["healpix"])
    out = write_coadd(tmp_path / path.name, read_coadd(path, exp_fibermap=True))
    with afits.open(path) as ref, afits.open(out) as got:
        assert [h.name for h in got] == [h.name for h in ref]
        skip = {"CHECKSUM", "DATASUM", "COMMENT"}
        for hr, hg in zip(ref, got, strict=True):
            assert {k for k in hr.header if k not in skip} <= set(hg.header), hr.name
            if hr.data is None:
                continue
            if hasattr(hr, "columns"):
                assert [(c.name, c.format, c.unit) for c in hr.columns] == [
                    (c.name, c.format, c.unit) for c in hg.columns
                ]
                for c in hr.columns.names:
                    np.testing.assert_array_equal(hr.data[c], hg.data[c])
            else:
                assert hr.header.get("BUNIT") == hg.header.get("BUNIT")
                assert hr.data.dtype == hg.data.dtype
                np.testing.assert_array_equal(hr.data, hg.data)


def test_targetid_selection_equals_slicing_full_read(tmp_path: Path) -> None:
    spec = make_spectra(nspec=12, seed=3)
    path = write_coadd(tmp_path / "coadd-main-bright-9876.fits", spec)
    tids = spec.targetid
    rr = make_redshifts(tids)
    write_redrock(
        redrock_path_for(path),
        rr,
        spec.fibermap,
        spec.scores.select(["TARGETID", "TSNR2_BGS"]),
        {"RRVER": "0.20.2", **healpix_header("main", "bright", 9876)},
        exp_fibermap=spec.exp_fibermap,
    )
    full = read_coadd(path, exp_fibermap=True)
    want = tids[[9, 0, 4, 5, 6, 11]]  # unordered, with a contiguous run
    part = read_coadd(path, targetids=want, exp_fibermap=True)
    assert part.targetid.tolist() == want.tolist()
    assert_spectra_equal(part, full.select(targetids=want))
    rows = [9, 0, 4, 5, 6, 11]
    for b in "brz":
        np.testing.assert_array_equal(part.flux[b], full.flux[b][rows])
        np.testing.assert_array_equal(part.resolution[b], full.resolution[b][rows])
    assert part.redshifts.column("Z").to_pylist() == [rr.column("Z")[i].as_py() for i in rows]
    exp_tids = part.exp_fibermap.column("TARGETID").to_numpy()
    assert sorted(exp_tids.tolist()) == sorted(np.repeat(want, 2).tolist())
    by_rows = read_coadd(path, rows=rows, bands="r", resolution=False)
    assert by_rows.bands == ["r"] and by_rows.resolution is None
    np.testing.assert_array_equal(by_rows.ivar["r"], full.ivar["r"][rows])
    assert by_rows.redshifts.column("TARGETID").to_pylist() == want.tolist()
    with pytest.raises(InputError, match="not in the file"):
        read_coadd(path, targetids=[want[0], 12345])
    skipped = read_coadd(path, targetids=[12345, want[1]], on_missing="skip")
    assert skipped.targetid.tolist() == [want[1]]
    with pytest.raises(InputError):
        read_coadd(path, targetids=[want[0]], rows=[0])
    empty = read_coadd(path, rows=[])
    assert len(empty) == 0 and empty.flux["b"].shape == (0, 2751)


def test_row_runs_merge_small_gaps() -> None:
    assert _row_runs(np.array([0, 1, 2, 5, 6, 20])) == [(0, 7), (20, 21)]
    assert _row_runs(np.array([3])) == [(3, 4)]
    assert _row_runs(np.array([0, 10, 20]), max_gap=0) == [(0, 1), (10, 11), (20, 21)]
    assert _row_runs(np.array([], dtype=int)) == []


def test_redrock_round_trip_and_mismatch(tmp_path: Path) -> None:
    spec = make_spectra(nspec=5, seed=8, resolution=False)
    tids = spec.targetid
    rr = make_redshifts(tids).append_column("FITMETHOD", pa.array(["PCA"] * 5))
    tsnr2 = spec.scores.select(["TARGETID", "TSNR2_BGS"])
    path = tmp_path / "redrock-main-bright-9876.fits"
    write_redrock(path, rr, spec.fibermap, tsnr2, {"RRVER": "0.20.2", "TEMNAM00": "GALAXY"})
    back = read_redrock(path)
    for c in rr.column_names:
        assert back.column(c).to_pylist() == rr.column(c).to_pylist(), c
    with afits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "REDSHIFTS", "FIBERMAP", "TSNR2"]
        cols = hdul["REDSHIFTS"].columns
        assert cols["SPECTYPE"].format == "6A" and cols["SUBTYPE"].format == "20A"
        assert cols["COEFF"].format == "10D" and cols["FITMETHOD"].format == "4A"
        assert not any(c.unit for h in hdul[1:] for c in h.columns)
        assert hdul[0].header["RRVER"] == "0.20.2"
    assert read_redrock(path, targetids=tids[[3, 1]], columns=["Z"]).column("Z").to_pylist() == [
        rr.column("Z")[3].as_py(),
        rr.column("Z")[1].as_py(),
    ]
    again = tmp_path / "again.fits"
    write_redrock(again, back, spec.fibermap, tsnr2, {"RRVER": "0.20.2", "TEMNAM00": "GALAXY"})
    assert again.read_bytes() == path.read_bytes()
    with pytest.raises(SchemaError, match="row-matched"):
        write_redrock(tmp_path / "x.fits", rr, spec.fibermap.take([1, 0, 2, 3, 4]), tsnr2, {})
    with pytest.raises(SchemaError, match="6A"):
        bad = rr.set_column(rr.column_names.index("SPECTYPE"), "SPECTYPE", pa.array(["GALAXYX"] * 5))
        write_redrock(tmp_path / "x.fits", bad, spec.fibermap, tsnr2, {})
    # a coadd next to a redrock file with other TARGETIDs
    coadd = write_coadd(tmp_path / "coadd-main-bright-9876.fits", spec)
    other = make_redshifts(tids + 1)
    fm_other = spec.fibermap.set_column(0, "TARGETID", pa.array(tids + 1, pa.int64()))
    ts_other = tsnr2.set_column(0, "TARGETID", pa.array(tids + 1, pa.int64()))
    write_redrock(redrock_path_for(coadd), other, fm_other, ts_other, {"RRVER": "x"})
    with pytest.raises(FormatError) as info:
        read_coadd(coadd)
    assert info.value.hdu == "REDSHIFTS" and info.value.column == "TARGETID"
    assert read_coadd(coadd, redrock=None).redshifts is None


def test_old_style_uint32_bzero_mask(tmp_path: Path) -> None:
    spec = make_spectra(nspec=4, seed=11, resolution=False)
    new = write_coadd(tmp_path / "coadd-main-bright-1.fits", spec)
    old = tmp_path / "old" / "coadd-main-bright-1.fits"
    old.parent.mkdir()
    bits = {b: spec.mask[b].view(np.uint32).copy() for b in spec.bands}
    bits["r"][1, 5] = 2**31 + 2**8 + 1
    bits["z"][2, :4] = [2**32 - 1, 2**31, 1, 0]
    with afits.open(new) as hdul:
        for b in spec.bands:
            hdul[f"{b.upper()}_MASK"] = afits.ImageHDU(bits[b], name=f"{b.upper()}_MASK")
        hdul.writeto(old)
    with afits.open(old) as hdul:
        assert hdul["B_MASK"].header["BZERO"] == 2**31  # really the old convention
    back = read_coadd(old)
    for b in spec.bands:
        assert back.mask[b].dtype == np.int32
        np.testing.assert_array_equal(back.mask[b].view(np.uint32), bits[b])
    assert back.mask["z"][2, 0] == -1 and back.mask["r"][1, 5] == np.int32(-(2**31) + 257)
    sel = read_coadd(old, rows=[2])
    np.testing.assert_array_equal(sel.mask["z"].view(np.uint32), bits["z"][[2]])


# --- the container -----------------------------------------------------------------------


def _arms(values: dict[str, float], ivars: dict[str, float], nspec: int = 2) -> Spectra:
    bands = list(values)
    return Spectra(
        bands=bands,
        wave={b: desi_wave(b) for b in bands},
        flux={b: np.full((nspec, desi_wave(b).size), values[b], np.float32) for b in bands},
        ivar={b: np.full((nspec, desi_wave(b).size), ivars[b], np.float32) for b in bands},
    )


def test_combined_known_answer() -> None:
    spec = _arms({"b": 1.0, "r": 3.0, "z": 5.0}, {"b": 1.0, "r": 3.0, "z": 0.5})
    grid = combined_wave()
    assert grid.size == 7781 and grid[0] == 3600.0 and grid[-1] == pytest.approx(9824.0)
    br = (grid >= 5760 - 1e-6) & (grid <= 5800 + 1e-6)
    rz = (grid >= 7520 - 1e-6) & (grid <= 7620 + 1e-6)
    assert br.sum() == 51 and rz.sum() == 126
    # masks: r pixel 0 (5760 A) bad in spectrum 0; both arms bad at 5800 A in spectrum 1
    spec.mask["r"][0, 0] = 1 << SPECMASK["COSMIC"]
    spec.mask["r"][1, 50] = 1 << SPECMASK["BADSKY"]
    spec.mask["b"][1, -1] = 1 << SPECMASK["BRIGHTSKY"]
    spec.ivar["z"][1, 20] = 0.0  # one unusable z pixel inside the r/z overlap (7536 A)
    spec.flux["b"][0, 10] = np.nan  # NaN flux with ivar > 0: never weighted
    out = spec.combined()
    assert out.bands == ["brz"] and out.resolution is None
    f, iv, m = out.flux["brz"], out.ivar["brz"], out.mask["brz"]
    assert f.shape == (2, 7781) and f.dtype == np.float32 and m.dtype == np.int32
    only_b = grid < 5760 - 1e-6
    np.testing.assert_array_equal(f[1, only_b], 1.0)
    np.testing.assert_array_equal(iv[1, only_b], 1.0)
    np.testing.assert_allclose(f[1, br][:-1], (1 * 1 + 3 * 3) / 4)
    np.testing.assert_allclose(iv[1, br][:-1], 4.0)
    rz_ok = rz & (np.arange(7781) != 4920)
    np.testing.assert_allclose(f[1, rz_ok], (3 * 3 + 5 * 0.5) / 3.5)
    np.testing.assert_allclose(iv[1, rz_ok], 3.5)
    j = np.flatnonzero(br)[0]
    assert (f[0, j], iv[0, j], m[0, j]) == (1.0, 1.0, 0)  # masked r ignored: b alone
    k = np.flatnonzero(br)[-1]
    assert m[1, k] == (1 << SPECMASK["BADSKY"]) | (1 << SPECMASK["BRIGHTSKY"])
    assert iv[1, k] == pytest.approx(4.0) and f[1, k] == pytest.approx(2.5)  # none good: all ivar>0
    z20 = 4900 + 20  # z starts at combined pixel (7520 - 3600) / 0.8
    assert (f[1, z20], iv[1, z20], m[1, z20]) == (3.0, 3.0, 0)
    assert f[1, z20 + 1] == pytest.approx((3 * 3 + 5 * 0.5) / 3.5)
    assert np.isnan(f[0, 10]) and iv[0, 10] == 0
    np.testing.assert_array_equal(m[:, ~br & ~rz & (np.arange(7781) != 10)], 0)
    # non-overlap pixels are exact copies, also for arbitrary values
    rng = np.random.default_rng(4)
    rnd = make_spectra(nspec=3, seed=4, resolution=False)
    rnd.mask = {b: np.zeros_like(rnd.mask[b]) for b in rnd.bands}
    rnd.ivar["b"] = rng.uniform(0.1, 5, rnd.ivar["b"].shape).astype(np.float32)
    c = rnd.combined()
    np.testing.assert_array_equal(c.flux["brz"][:, :2700], rnd.flux["b"][:, :2700])
    np.testing.assert_array_equal(c.ivar["brz"][:, :2700], rnd.ivar["b"][:, :2700])


def test_combined_partial_bands_and_misaligned_grid() -> None:
    spec = _arms({"b": 2.0, "r": 4.0}, {"b": 1.0, "r": 1.0}, nspec=1)
    out = spec.combined()
    grid = combined_wave()
    nodata = grid > 7620 + 1e-6
    assert out.bands == ["br"]
    assert np.all(out.mask["br"][0, nodata] == 1 << SPECMASK["NODATA"])
    assert np.all(out.ivar["br"][0, nodata] == 0) and np.all(out.flux["br"][0, nodata] == 0)
    bad = Spectra(
        bands=["b"], wave={"b": desi_wave("b") + 0.3}, flux={"b": np.ones((1, 2751))}, ivar={"b": np.ones((1, 2751))}
    )
    with pytest.raises(InputError, match="not on the combined"):
        bad.combined()
    many = make_spectra(nspec=300, seed=16, resolution=False)  # more than one internal block
    whole = many.combined()
    halves = [many.select(rows=np.arange(0, 150)).combined(), many.select(rows=np.arange(150, 300)).combined()]
    for name in ("flux", "ivar", "mask"):
        np.testing.assert_array_equal(
            getattr(whole, name)["brz"], np.concatenate([getattr(h, name)["brz"] for h in halves])
        )


def test_container_validation_and_select() -> None:
    spec = make_spectra(nspec=6, seed=9)
    assert len(spec) == 6 and "nspec=6" in repr(spec)
    with pytest.raises(InputError):
        Spectra(bands=["b"], wave={"b": np.arange(3.0)}, flux={"b": np.ones((2, 4))}, ivar={"b": np.ones((2, 4))})
    with pytest.raises(InputError):
        Spectra(
            bands=["b"],
            wave={"b": np.arange(3.0)},
            flux={"b": np.ones((2, 3))},
            ivar={"b": np.ones((2, 3))},
            fibermap=pa.table({"TARGETID": [1]}),
        )
    m = Spectra(
        bands=["b"],
        wave={"b": np.arange(3.0)},
        flux={"b": np.ones((1, 3))},
        ivar={"b": np.ones((1, 3))},
        mask={"b": np.array([[2**31, 1, 2**32 - 1]], dtype=np.uint32)},
    )
    assert m.mask["b"].dtype == np.int32 and m.mask["b"].view(np.uint32).tolist() == [[2**31, 1, 2**32 - 1]]
    spec.extra = {"model": {b: spec.flux[b] * 2 for b in spec.bands}, "note": "kept"}
    sub = spec.select(rows=np.array([False, True, False, False, True, False]))
    assert sub.targetid.tolist() == spec.targetid[[1, 4]].tolist()
    np.testing.assert_array_equal(sub.extra["model"]["z"], spec.flux["z"][[1, 4]] * 2)
    assert sub.extra["note"] == "kept"
    assert set(sub.exp_fibermap.column("TARGETID").to_pylist()) == set(sub.targetid.tolist())
    with pytest.raises(InputError):
        spec.select(rows=[6])
    with pytest.raises(InputError):
        spec.select()


def test_resolution_matrix_convention() -> None:
    spec = make_spectra(nspec=2, seed=6, ndiag=5)
    R = spec.resolution_matrix("r", 1)
    data = spec.resolution["r"][1]
    assert R.shape == (2326, 2326) and list(R.offsets) == [2, 1, 0, -1, -2]
    dense = R.toarray()
    for k, off in enumerate([2, 1, 0, -1, -2]):
        for j in (10, 500, 2000):
            assert dense[j - off, j] == data[k, j]
    with pytest.raises(InputError):
        make_spectra(nspec=1, resolution=False).resolution_matrix("b", 0)


# --- damaged files ---------------------------------------------------------------------


def test_bad_files_raise_format_errors(tmp_path: Path) -> None:
    spec = make_spectra(nspec=3, seed=12, resolution=False)
    good = write_coadd(tmp_path / "coadd-main-bright-1.fits", spec)
    trunc = tmp_path / "trunc.fits"
    for cut in (5000, 200_000):  # inside the last HDU's header; inside image data
        trunc.write_bytes(good.read_bytes()[:-cut])
        with pytest.raises(FormatError, match="truncated"):
            read_coadd(trunc)
    with pytest.raises(FormatError) as info:
        read_coadd(good, bands=["b", "x"])
    assert info.value.hdu == "X_WAVELENGTH"
    broken = tmp_path / "broken.fits"
    with afits.open(good) as hdul:
        hdul["R_IVAR"] = afits.ImageHDU(np.ones((2, 2326), np.float32), name="R_IVAR")
        del hdul["Z_MASK"]
        hdul.writeto(broken)
    with pytest.raises(FormatError) as info:
        read_coadd(broken)
    assert info.value.hdu == "R_IVAR" and str(broken) in str(info.value)
    with fitsio.FITS(str(broken)) as f:
        problems = check_coadd(broken, f)
    assert any(p.hdu == "R_IVAR" and p.severity == "error" for p in problems)
    nofm = tmp_path / "nofm.fits"
    with afits.open(good) as hdul:
        fm = hdul["FIBERMAP"]
        hdul["FIBERMAP"] = afits.BinTableHDU.from_columns([fm.columns["COADD_FIBERSTATUS"]], name="FIBERMAP")
        hdul.writeto(nofm)
    with pytest.raises(FormatError) as info:
        read_coadd(nofm)
    assert info.value.column == "TARGETID" and info.value.hdu == "FIBERMAP"


def test_content_checks_find_nan_and_zero_ivar(tmp_path: Path) -> None:
    spec = make_spectra(nspec=4, seed=13)
    spec.flux["b"][2] = np.nan
    spec.ivar["z"][1] = 0
    path = write_coadd(tmp_path / "coadd-main-bright-1.fits", spec)
    with fitsio.FITS(str(path)) as f:
        problems = check_coadd(path, f)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    assert len(errors) == 1 and errors[0].hdu == "B_FLUX" and "rows 2" in errors[0].message
    assert len(warnings) == 1 and warnings[0].hdu == "Z_IVAR" and "rows 1" in warnings[0].message


# --- read_table streaming path (desilab.io.fits) ----------------------------------------


def test_read_table_streaming_equals_fitsio_path(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 257
    data = np.zeros(
        n,
        dtype=[
            ("U1", "u1"), ("I2", "i2"), ("U2", "u2"), ("I4", "i4"), ("U4", "u4"), ("I8", "i8"), ("U8", "u8"),
            ("F4", "f4"), ("F8", "f8"), ("B", "?"), ("BV", "?", (3,)), ("S", "U7"), ("V", "f8", (10,)),
            ("M", "f4", (2, 3)),
        ],
    )  # fmt: skip
    for name in data.dtype.names:
        col = data[name]
        if col.dtype.kind in "iuf":
            info = np.iinfo(col.dtype) if col.dtype.kind in "iu" else None
            lo, hi = (info.min, info.max) if info else (-1e30, 1e30)
            data[name] = (
                rng.uniform(lo / 2, hi / 2, col.shape).astype(col.dtype)
                if info is None
                else (rng.integers(lo, hi, col.shape, dtype=col.dtype, endpoint=True))
            )
        elif col.dtype.kind == "b":
            data[name] = rng.random(col.shape) > 0.5
    data["S"] = rng.choice(["", "A", "BB  ", " C x", "GALAXY"], n)
    path = tmp_path / "t.fits"
    fitsio.write(str(path), data, extname="CAT", units=["", "", "", "", "", "", "", "", "deg"] + [""] * 5)
    with fitsio.FITS(str(path)) as f:
        hdu = f["CAT"]
        hdr = hdu.read_header()
        ref = dfits.numpy_to_arrow(hdu.read(), dfits._units(hdu))
        assert dfits._read_columns_raw(hdu, hdr, hdu.get_colnames(), path) is None  # 2-D cell M
        raw = dfits._read_columns_raw(hdu, hdr, [c for c in hdu.get_colnames() if c != "M"], path)
    assert raw is not None
    got = dfits._columns_to_arrow(raw, {"F8": "deg"})
    for name in got.column_names:
        assert got.schema.field(name) == ref.schema.field(name), name
        assert got.column(name).equals(ref.column(name)), name
    full = dfits.read_table(path, "CAT")
    assert full.equals(ref)
    assert dfits.read_table(path, "CAT", columns=["S", "U8"], rows=[5, 1]).column("S").to_pylist() == [
        ref.column("S")[5].as_py(),
        ref.column("S")[1].as_py(),
    ]
    assert dfits.read_table(path, "CAT", rows=[]).num_rows == 0
    gz = tmp_path / "t.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert dfits.read_table(gz, "CAT").equals(ref)


def test_read_table_streaming_on_real_tables() -> None:
    path = need(COADDS["tile"])
    with fitsio.FITS(str(path)) as f:
        for ext in ("FIBERMAP", "EXP_FIBERMAP", "SCORES"):
            hdu = f[ext]
            raw = dfits._read_columns_raw(hdu, hdu.read_header(), hdu.get_colnames(), path)
            assert raw is not None
            assert dfits._columns_to_arrow(raw).equals(dfits.numpy_to_arrow(hdu.read()))


def test_gzipped_and_tile_compressed_files_use_fitsio_path(tmp_path: Path) -> None:
    spec = make_spectra(nspec=5, seed=14)
    plain = write_coadd(tmp_path / "coadd-main-bright-2.fits", spec)
    gz = tmp_path / "coadd-main-bright-2.fits.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert_spectra_equal(read_coadd(gz), spec)
    assert_spectra_equal(read_coadd(gz, rows=[4, 1, 2]), spec.select(rows=[4, 1, 2]))
    comp = tmp_path / "comp" / "coadd-main-bright-2.fits"
    comp.parent.mkdir()
    bits = spec.mask["r"].view(np.uint32)
    with afits.open(plain) as hdul:
        hdul["R_MASK"] = afits.CompImageHDU(bits, name="R_MASK")  # uint32 via BZERO, tile-compressed
        hdul.writeto(comp)
    back = read_coadd(comp, rows=[3, 0])
    np.testing.assert_array_equal(back.mask["r"].view(np.uint32), bits[[3, 0]])
    np.testing.assert_array_equal(back.flux["z"], spec.flux["z"][[3, 0]])


def test_written_files_pass_the_validator(tmp_path: Path) -> None:
    from desilab.io import validate as v

    spec = make_spectra(nspec=4, seed=15)
    coadd = write_coadd(tmp_path / "coadd-main-bright-9876.fits", spec)
    rr = write_redrock(
        redrock_path_for(coadd),
        make_redshifts(spec.targetid),
        spec.fibermap,
        spec.scores.select(["TARGETID", "TSNR2_BGS"]),
        {"RRVER": "0.20.2", **healpix_header("main", "bright", 9876)},
        exp_fibermap=spec.exp_fibermap,
    )
    assert v.identify(coadd).name == "coadd" and v.identify(rr).name == "redrock"
    assert v.validate(coadd) == [] and v.validate(rr) == []
    spec.flux["r"][1] = np.nan  # the registered content check reports it
    bad = write_coadd(tmp_path / "bad" / "coadd-main-bright-9876.fits", spec)
    assert [(p.hdu, p.severity) for p in v.validate(bad)] == [("R_FLUX", "error")]


def test_format_doc_is_up_to_date() -> None:
    from desilab.io import spectra

    doc = Path(__file__).resolve().parents[2] / "docs" / "formats" / "spectra.md"
    assert doc.read_text(encoding="utf-8") == spectra.format_doc(), (
        'regenerate: python -c "from desilab.io import spectra; '
        "open('docs/formats/spectra.md', 'w').write(spectra.format_doc())\""
    )


def test_bench_script_runs_and_ends_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import json

    bench = Path(__file__).resolve().parents[2] / "bench" / "io.py"
    spec = importlib.util.spec_from_file_location("desilab_bench_io", bench)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--rows", "3000", "--spectra", "10", "--repeat", "1", "--tmpdir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("catalog_read_per_s", "coadd_read_per_s", "coadd_select10_per_s", "peak_rss_mb"):
        assert result[key] > 0, key
    assert {"ratio_vs_astropy_table", "ratio_vs_astropy_fits"} <= set(result)
    assert not list(tmp_path.iterdir())  # temporary files removed
