"""`desilab inspect` in-process on valid products, the real DESI files, and broken files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits

from desilab.cli import main
from desilab.io.fastspecfit import write_fastspec
from desilab.io.products import load_all
from desilab.io.validate import format_docs, scan_hdus
from desilab.io.zcatalog import EXP_FIBERMAP, ZALL, write_zcatalog
from tests.io.test_fastspecfit import full_table, models
from tests.io.test_zcatalog import retype_column, synth_table, zpix_table

REPO = Path(__file__).resolve().parents[2]
REAL = REPO.parent / "shared" / "data" / "real"
DESI = REAL / "desi_coadd"
REAL_FILES = {
    "coadd-special-dark-27247.fits": "coadd",
    "coadd-4-80613-thru20210324.fits": "coadd",
    "redrock-special-dark-27247.fits": "redrock",
    "redrock-4-80613-thru20210324.fits": "redrock",
}
COADD = DESI / "coadd-special-dark-27247.fits"


def run(capsys, *args) -> tuple[int, str]:
    rc = main(["inspect", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def need_real() -> None:
    if not all((DESI / name).exists() for name in REAL_FILES):
        pytest.skip(f"real DESI files not found in {DESI} (see shared/data/real/README.md)")


def need_spectra_schemas() -> None:
    if not {"coadd", "redrock"} <= set(load_all()):
        pytest.skip("coadd/redrock golden schemas not registered yet (desilab/io/spectra.py, spectra engineer)")


@pytest.fixture(scope="module")
def products(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("products")
    exp = synth_table(EXP_FIBERMAP, nrows=20, seed=4)
    return {
        "zpix": write_zcatalog(d / "zpix-main-dark.fits", zpix_table(), exp_fibermap=exp),
        "zall-pix": write_zcatalog(d / "zall-pix-iron.fits", synth_table(ZALL.hdu("ZCATALOG")), kind="zall"),
        "fastspec-v2.1": write_fastspec(
            d / "fastspec-main-bright-10016.fits.gz", full_table("v2.1", 3), version="v2.1", models=models(3)
        ),
        "fastspec-v3.0": write_fastspec(d / "fastspec-iron-main-bright-nside1-hp00.fits", full_table("v3.0", 3)),
    }


def test_every_written_product_is_valid(capsys, products):
    rc, out = run(capsys, *products.values())
    assert rc == 0, out
    for name, path in products.items():
        assert f"{path}: {name} - valid" in out
    assert "ERROR" not in out and "4 of 4 file(s) valid" in out
    assert "ZCATALOG" in out and "EXP_FIBERMAP" in out and "SPECPHOT" in out and "3x3x7781" in out


def test_json_output(capsys, products):
    rc, out = run(capsys, products["fastspec-v2.1"], "--json")
    assert rc == 0
    doc = json.loads(out)
    (report,) = doc["files"]
    assert doc["valid"] and report["product"] == "fastspec-v2.1" and report["problems"] == []
    hdus = {h["extname"]: h for h in report["hdus"]}
    assert hdus["MODELS"]["shape"] == [3, 3, 7781] and hdus["MODELS"]["dtype"] == "float32"
    assert hdus["METADATA"]["rows"] == 3 and hdus["METADATA"]["type"] == "table"


def test_product_override_and_unknown_files(capsys, products, tmp_path):
    renamed = tmp_path / "my-catalog.fits"
    shutil.copy(products["zpix"], renamed)
    rc, out = run(capsys, "--product", "zpix", renamed)
    assert rc == 0 and "zpix - valid" in out
    rc, out = run(capsys, "--product", "no-such-product", renamed)
    assert rc != 0 and "no-such-product" in out
    other = tmp_path / "other.fits"
    foo = afits.BinTableHDU.from_columns([afits.Column("A", "E", array=[1.0])], name="FOO")
    afits.HDUList([afits.PrimaryHDU(), foo]).writeto(other)
    rc, out = run(capsys, other)
    assert rc != 0 and "other.fits" in out and "HDUs found: PRIMARY, FOO" in out


def test_real_desi_files_identified_and_valid(capsys):
    need_real()
    need_spectra_schemas()
    rc, out = run(capsys, "--json", *(DESI / name for name in REAL_FILES))
    doc = json.loads(out)
    assert rc == 0, [p["text"] for r in doc["files"] for p in r["problems"]]
    assert {Path(r["file"]).name: r["product"] for r in doc["files"]} == REAL_FILES
    coadd = next(r for r in doc["files"] if r["file"].endswith("coadd-special-dark-27247.fits"))
    hdus = {h["extname"]: h for h in coadd["hdus"]}
    assert hdus["B_RESOLUTION"]["shape"] == [1, 11, 2751] and hdus["B_MASK"]["dtype"] == "int32"


# --- broken files -------------------------------------------------------------------------


def _copy(tmp_path: Path, name: str = COADD.name) -> Path:
    need_real()
    dst = tmp_path / name
    shutil.copy(COADD, dst)
    return dst


def _hdu(path: Path, extname: str):
    return next(h for h in scan_hdus(path) if h.extname == extname)


@pytest.mark.parametrize(
    ("extname", "offset"),
    [("B_IVAR", 1234), ("B_RESOLUTION", 10 * 2880)],
    ids=["non-block-boundary", "block-boundary-mid-data"],
)
def test_truncated_coadd(capsys, tmp_path, extname, offset):
    need_real()
    src = _hdu(COADD, extname)
    cut = src.data_start + offset
    assert cut < src.data_end
    path = tmp_path / COADD.name
    path.write_bytes(COADD.read_bytes()[:cut])
    rc, out = run(capsys, path)
    assert rc != 0
    assert f"{path}[{extname}]" in out and "truncated" in out


def test_truncated_inside_a_header(capsys, tmp_path):
    need_real()
    path = tmp_path / COADD.name
    fibermap = _hdu(COADD, "FIBERMAP")
    path.write_bytes(COADD.read_bytes()[: fibermap.header_start + 100])
    rc, out = run(capsys, path)
    assert rc != 0 and str(path) in out and "truncated" in out


def test_text_file_named_fits(capsys, tmp_path):
    path = tmp_path / "zpix-main-dark.fits"
    path.write_text("TARGETID,Z\n1,0.5\n")
    rc, out = run(capsys, path)
    assert rc != 0 and f"{path}: not a FITS file" in out


def test_coadd_missing_hdu(capsys, tmp_path):
    need_spectra_schemas()
    path = _copy(tmp_path)
    with afits.open(path) as hdul:
        del hdul["B_FLUX"]
        hdul.writeto(path, overwrite=True)
    rc, out = run(capsys, path)
    assert rc != 0 and f"{path}[B_FLUX]: missing required HDU" in out


def test_coadd_renamed_column(capsys, tmp_path):
    need_spectra_schemas()
    path = _copy(tmp_path)
    with afits.open(path) as hdul:
        hdul["FIBERMAP"].columns.change_name("TARGETID", "TARGET_IDX")
        hdul.writeto(path, overwrite=True)
    rc, out = run(capsys, path)
    assert rc != 0 and f"{path}[FIBERMAP].TARGETID" in out and "missing required column" in out


def test_coadd_targetid_written_as_float(capsys, tmp_path):
    need_spectra_schemas()
    src = _copy(tmp_path, "src.fits")
    path = tmp_path / COADD.name
    retype_column(src, path, "FIBERMAP", "TARGETID", "D", np.float64)
    rc, out = run(capsys, path)
    assert rc != 0 and f"ERROR: {path}[FIBERMAP].TARGETID: TFORM is D, expected K" in out


def test_coadd_flux_rows_differ_from_fibermap(capsys, tmp_path):
    need_spectra_schemas()
    path = _copy(tmp_path)
    with afits.open(path) as hdul:
        hdul["B_FLUX"].data = np.vstack([hdul["B_FLUX"].data, hdul["B_FLUX"].data])
        hdul.writeto(path, overwrite=True)
    rc, out = run(capsys, path)
    assert rc != 0 and f"ERROR: {path}" in out and "B_FLUX" in out


def test_coadd_all_nan_flux(capsys, tmp_path):
    need_spectra_schemas()
    path = _copy(tmp_path)
    with afits.open(path) as hdul:
        hdul["B_FLUX"].data[:] = np.nan
        hdul.writeto(path, overwrite=True)
    rc, out = run(capsys, path)
    assert rc != 0 and f"ERROR: {path}" in out and "B_FLUX" in out and "NaN" in out


@pytest.mark.parametrize(
    ("dtype", "bzero", "expect"),
    [
        (np.int32, None, "int32"),
        (np.uint32, 2**31, "uint32"),
        (np.uint16, 2**15, "uint16"),
        (np.float32, None, "float32"),
    ],
)
def test_image_dtype_from_bitpix_and_bzero(tmp_path, dtype, bzero, expect):
    path = tmp_path / "img.fits"
    afits.HDUList([afits.PrimaryHDU(), afits.ImageHDU(np.zeros((2, 5), dtype=dtype), name="X")]).writeto(path)
    (info,) = [h for h in scan_hdus(path) if h.extname == "X"]
    assert info.header.get("BZERO") == bzero
    assert (info.dtype, info.shape, info.kind) == (expect, [2, 5], "image")


def test_old_style_uint32_mask_is_accepted_float_mask_is_not(capsys, tmp_path):
    need_spectra_schemas()
    old = _copy(tmp_path)
    with afits.open(old) as hdul:
        for band in "BRZ":
            hdul[f"{band}_MASK"] = afits.ImageHDU(
                hdul[f"{band}_MASK"].data.astype(np.uint32), header=hdul[f"{band}_MASK"].header, name=f"{band}_MASK"
            )
        hdul.writeto(old, overwrite=True, output_verify="silentfix")
    assert _hdu(old, "B_MASK").header["BZERO"] == 2**31
    rc, out = run(capsys, old)
    assert rc == 0, out
    bad = tmp_path / "bad" / COADD.name
    bad.parent.mkdir()
    shutil.copy(COADD, bad)
    with afits.open(bad) as hdul:
        hdul["R_MASK"].data = hdul["R_MASK"].data.astype(np.float32)
        hdul.writeto(bad, overwrite=True)
    rc, out = run(capsys, bad)
    assert rc != 0 and f"ERROR: {bad}[R_MASK]: image dtype is float32" in out


def test_broken_products_of_ours(capsys, products, tmp_path):
    wrong = tmp_path / "zpix-main-dark.fits"
    retype_column(products["zpix"], wrong, "ZCATALOG", "TARGETID", "D", np.float64)
    no_specphot = tmp_path / "fastspec-iron-main-dark-nside1-hp04.fits"
    with afits.open(products["fastspec-v3.0"]) as hdul:
        del hdul["SPECPHOT"]
        hdul.writeto(no_specphot)
    bad_models = tmp_path / "fastspec-sv1-dark-5.fits"
    write_fastspec(bad_models, pa.table({"TARGETID": np.arange(3, dtype=np.int64)}), models=models(3))
    with afits.open(bad_models, mode="update") as hdul:
        hdul["MODELS"].data = hdul["MODELS"].data[:2].astype(np.float64)
    rc, out = run(capsys, wrong, no_specphot, bad_models)
    assert rc != 0
    assert f"ERROR: {wrong}[ZCATALOG].TARGETID: TFORM is D, expected K" in out
    assert f"ERROR: {no_specphot}[SPECPHOT]: missing required HDU" in out
    assert f"ERROR: {bad_models}[MODELS]: MODELS shape [2, 3, 7781], expected (3, 3, npix)" in out
    assert "0 of 3 file(s) valid" in out


def test_format_docs_are_up_to_date():
    """docs/formats/{zcatalog,fastspecfit}.md are generated from the golden schemas."""
    stale = []
    for name, text in format_docs().items():
        path = REPO / "docs" / "formats" / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    assert not stale, (
        f"docs/formats/{', '.join(stale)} out of date: run "
        "python -c \"from desilab.io.validate import write_format_docs; write_format_docs('docs/formats')\""
    )
