"""Range extraction of selected TARGETIDs (desilab.io.remote_fits) against a real HTTP server.

Fixtures: a synthetic 20-target healpix coadd with the real DESI layout (3 arms on the
2751/2326/2881-pixel grids, RESOLUTION (n, 11, nwave), EXP_FIBERMAP with several rows per
target, SCORES) and a matching redrock file, both written by astropy with CHECKSUM/DATASUM;
plus the real single-target coadd/redrock files from shared/data/real when present.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from desilab.cli import main
from desilab.errors import FetchError, FormatError, InputError
from desilab.io.fetch import HttpClient, file_url
from desilab.io.remote_fits import (
    RemoteFits,
    datasum,
    encode_checksum,
    extract_targets,
    output_name,
)
from tests import httpserver
from tests.httpserver import TreeServer

tree_server = httpserver.tree_server  # the fixture: a TreeServer over tmp_path / "tree"

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "desi_coadd"
HPX_DIR = "spectro/redux/iron/healpix/main/dark/100/10016"
COADD = f"{HPX_DIR}/coadd-main-dark-10016.fits"
REDROCK = f"{HPX_DIR}/redrock-main-dark-10016.fits"
ARMS = {"B": (3600.0, 5800.0, 2751), "R": (5760.0, 7620.0, 2326), "Z": (7520.0, 9824.0, 2881)}
NTARGET = 20
TARGETIDS = 39627835576420141 + 1009 * np.arange(NTARGET, dtype=np.int64)
WANTED = [int(TARGETIDS[2]), int(TARGETIDS[9]), int(TARGETIDS[17])]


# ----------------------------------------------------------------------------------------
# synthetic DESI files
# ----------------------------------------------------------------------------------------


def _fibermap(rng: np.random.Generator) -> fits.BinTableHDU:
    n = NTARGET
    cols = [
        fits.Column("TARGETID", "K", array=TARGETIDS),
        fits.Column("COADD_FIBERSTATUS", "J", array=np.zeros(n, np.int32)),
        fits.Column("TARGET_RA", "D", unit="deg", array=150 + rng.uniform(0, 0.9, n)),
        fits.Column("TARGET_DEC", "D", unit="deg", array=2 + rng.uniform(0, 0.9, n)),
        fits.Column("OBJTYPE", "3A", array=np.array(["TGT"] * n)),
        fits.Column("DESI_TARGET", "K", array=rng.integers(0, 2**40, n)),
        fits.Column("FLUX_G", "E", unit="nanomaggy", array=rng.lognormal(1, 1, n).astype(np.float32)),
        fits.Column("PHOTSYS", "1A", array=np.array(["S", "N"] * (n // 2))),
        fits.Column("COADD_NUMEXP", "I", array=rng.integers(1, 5, n).astype(np.int16)),
        fits.Column("DESINAME", "22A", array=np.array([f"DESI J150.{i:04d}+02.0000" for i in range(n)])),
    ]
    return fits.BinTableHDU.from_columns(cols, name="FIBERMAP")


def _exp_fibermap(rng: np.random.Generator) -> fits.BinTableHDU:
    nexp = rng.integers(1, 5, NTARGET)  # several rows per target, interleaved by exposure
    tid = np.repeat(TARGETIDS, nexp)
    expid = np.concatenate([rng.choice(np.arange(100000, 100020), k, replace=False) for k in nexp])
    order = np.argsort(expid, kind="stable")
    tid, expid = tid[order], expid[order]
    m = tid.size
    cols = [
        fits.Column("TARGETID", "K", array=tid),
        fits.Column("NIGHT", "J", array=(20210500 + expid % 28).astype(np.int32)),
        fits.Column("EXPID", "J", array=expid.astype(np.int32)),
        fits.Column("TILEID", "J", array=rng.integers(1000, 2000, m).astype(np.int32)),
        fits.Column("FIBER", "J", array=rng.integers(0, 5000, m).astype(np.int32)),
        fits.Column("MJD", "D", array=59300 + rng.uniform(0, 30, m)),
        fits.Column("EXPTIME", "E", unit="s", array=rng.uniform(300, 1200, m).astype(np.float32)),
        fits.Column("IN_COADD_B", "L", array=rng.integers(0, 2, m).astype(bool)),
    ]
    return fits.BinTableHDU.from_columns(cols, name="EXP_FIBERMAP")


def _scores(rng: np.random.Generator) -> fits.BinTableHDU:
    cols = [fits.Column("TARGETID", "K", array=TARGETIDS)]
    for arm in "BRZ":
        cols.append(fits.Column(f"MEDIAN_COADD_SNR_{arm}", "E", array=rng.uniform(0, 9, NTARGET).astype("f4")))
    cols.append(fits.Column("TSNR2_LRG", "E", array=rng.uniform(0, 99, NTARGET).astype("f4")))
    return fits.BinTableHDU.from_columns(cols, name="SCORES")


def write_coadd(path: Path, seed: int = 1) -> Path:
    """A 20-target healpix coadd in the DESI layout (astropy, with CHECKSUM/DATASUM)."""
    rng = np.random.default_rng(seed)
    primary = fits.PrimaryHDU()
    for key, value in [("SPGRP", "healpix"), ("SPGRPVAL", 10016), ("HPXPIXEL", 10016), ("HPXNSIDE", 64),
                       ("HPXNEST", True), ("SURVEY", "main"), ("PROGRAM", "dark")]:
        primary.header[key] = value
    hdus = [primary, _fibermap(rng), _exp_fibermap(rng)]
    for arm, (w0, w1, nwave) in ARMS.items():
        wave = fits.ImageHDU(np.linspace(w0, w1, nwave), name=f"{arm}_WAVELENGTH")
        wave.header["BUNIT"] = "Angstrom"
        flux = fits.ImageHDU(rng.normal(1, 0.5, (NTARGET, nwave)).astype(np.float32), name=f"{arm}_FLUX")
        flux.header["BUNIT"] = "10**-17 erg/(s cm2 Angstrom)"
        ivar = fits.ImageHDU(rng.uniform(0, 4, (NTARGET, nwave)).astype(np.float32), name=f"{arm}_IVAR")
        mask = fits.ImageHDU((rng.random((NTARGET, nwave)) < 0.01).astype(np.int32) * 4, name=f"{arm}_MASK")
        res = fits.ImageHDU(rng.random((NTARGET, 11, nwave)).astype(np.float32), name=f"{arm}_RESOLUTION")
        hdus += [wave, flux, ivar, mask, res]
    hdus.append(_scores(rng))
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, checksum=True)
    return path


def write_redrock(path: Path, seed: int = 2) -> Path:
    """The matching redrock file: REDSHIFTS, FIBERMAP, EXP_FIBERMAP, TSNR2 (no checksums)."""
    rng = np.random.default_rng(seed)
    n = NTARGET
    primary = fits.PrimaryHDU()
    primary.header["RRVER"] = "0.17.9"
    redshifts = fits.BinTableHDU.from_columns([
        fits.Column("TARGETID", "K", array=TARGETIDS),
        fits.Column("CHI2", "D", array=rng.uniform(1e3, 1e4, n)),
        fits.Column("COEFF", "10D", array=rng.normal(0, 1, (n, 10))),
        fits.Column("Z", "D", array=rng.uniform(0, 1.5, n)),
        fits.Column("ZERR", "D", array=rng.uniform(0, 1e-4, n)),
        fits.Column("ZWARN", "K", array=np.zeros(n, np.int64)),
        fits.Column("SPECTYPE", "6A", array=np.array(["GALAXY", "QSO", "STAR", "GALAXY"] * (n // 4))),
        fits.Column("SUBTYPE", "20A", array=np.array([""] * n)),
        fits.Column("DELTACHI2", "D", array=rng.uniform(0, 1e3, n)),
    ], name="REDSHIFTS")
    tsnr2 = fits.BinTableHDU.from_columns([
        fits.Column("TARGETID", "K", array=TARGETIDS),
        fits.Column("TSNR2_ELG", "E", array=rng.uniform(0, 9, n).astype("f4")),
    ], name="TSNR2")
    fits.HDUList([primary, redshifts, _fibermap(rng), _exp_fibermap(rng), tsnr2]).writeto(path)
    return path


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Written once per module (about 9 MB), copied into each test's tree."""
    d = tmp_path_factory.mktemp("synthetic")
    return {COADD: write_coadd(d / "coadd.fits"), REDROCK: write_redrock(d / "redrock.fits")}


@pytest.fixture
def hpx_tree(tree_server: TreeServer, synthetic_files: dict[str, Path]) -> TreeServer:
    """The synthetic coadd + redrock in their DR1 directory, with the published checksum file."""
    for rel, src in synthetic_files.items():
        (tree_server.root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tree_server.root / rel)
    httpserver.write_sha256sum(tree_server.root / HPX_DIR, "redux_iron_healpix_main_dark_100_10016.sha256sum")
    return tree_server


def _client() -> HttpClient:
    return HttpClient(backoff=0.0)


# ----------------------------------------------------------------------------------------
# the reference cut: astropy on the full file
# ----------------------------------------------------------------------------------------


def _card_images(header: fits.Header) -> list[str]:
    skip = ("NAXIS", "CHECKSUM", "DATASUM")
    return [c.image for c in header.cards if not c.keyword.startswith(skip)]


def assert_same_as_cut(full_path: Path, cut_path: Path, wanted: list[int]) -> None:
    """The cut equals the wanted targets cut from the full file, HDU by HDU."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bad CHECKSUM/DATASUM is an astropy warning
        full = fits.open(full_path)
        cut = fits.open(cut_path, checksum=True)
        cut.verify("exception")
    with full, cut:
        assert [h.name for h in cut] == [h.name for h in full]
        tid = full["FIBERMAP"].data["TARGETID"]
        rows = np.isin(tid, wanted)
        assert rows.sum() == len(set(wanted) & set(tid.tolist()))
        for a, b in zip(full, cut, strict=True):
            assert _card_images(b.header) == _card_images(a.header), a.name
            assert ("CHECKSUM" in b.header) == ("CHECKSUM" in a.header)
            if a.data is None:
                assert b.data is None
                continue
            if isinstance(a, fits.BinTableHDU):
                names = a.columns.names
                if "TARGETID" in names:
                    expected = a.data[np.isin(a.data["TARGETID"], wanted)]
                else:
                    expected = a.data[rows] if len(a.data) == len(tid) else a.data
                assert len(b.data) == len(expected), a.name
                for name in names:
                    np.testing.assert_array_equal(b.data[name], expected[name], err_msg=f"{a.name}.{name}")
            else:
                per_spectrum = a.data.ndim >= 2 and a.data.shape[0] == len(tid)
                expected = a.data[rows] if per_spectrum else a.data
                np.testing.assert_array_equal(b.data, expected, err_msg=a.name)
    with fitsio.FITS(str(cut_path)) as f:  # the other reader agrees
        assert len(f) == len(fits.open(full_path))
        np.testing.assert_array_equal(np.sort(f["FIBERMAP"]["TARGETID"][:]), np.sort(tid[rows]))
        if "B_RESOLUTION" in [h.get_extname() for h in f]:
            assert f["B_RESOLUTION"].read().shape == (rows.sum(), 11, 2751)


# ----------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------


def test_structure_matches_fitsio_offsets(hpx_tree: TreeServer):
    src = hpx_tree.root / COADD
    remote = RemoteFits(file_url(hpx_tree.url, COADD), _client())
    layout = remote.hdus()
    with fitsio.FITS(str(src)) as f:
        assert len(layout) == len(f) == 19
        for hdu, ref in zip(layout, f, strict=True):
            off = ref.get_offsets()
            assert (hdu.header_start, hdu.data_start) == (off["header_start"], off["data_start"])
            assert hdu.end == off["data_end"]
            assert hdu.extname == (ref.get_extname() or "PRIMARY")
    assert layout[-1].end == src.stat().st_size
    assert layout[7].axes == [2751, 11, NTARGET]  # B_RESOLUTION: NAXIS3 = nspec


def test_extract_3_of_20_targets_equals_the_cut(hpx_tree: TreeServer, tmp_path: Path):
    src = hpx_tree.root / COADD
    out = tmp_path / "cut.fits"
    client = _client()
    res = extract_targets(file_url(hpx_tree.url, COADD), out, WANTED[::-1], client=client)
    assert res.path == out and res.found == WANTED and res.missing == [] and res.nspec == NTARGET
    assert_same_as_cut(src, out, WANTED)
    size = src.stat().st_size
    assert res.file_size == size
    assert res.bytes_fetched == hpx_tree.bytes_served() == client.bytes_received
    # 3 of 20 spectra is 15% of the file; headers, FIBERMAP, EXP_FIBERMAP and WAVELENGTH add ~1%
    assert res.bytes_fetched < 0.17 * size, (res.bytes_fetched, size)
    assert all(r.status == 206 for r in hpx_tree.log if r.method == "GET")
    print(f"\ncoadd: fetched {res.bytes_fetched} of {size} bytes ({100 * res.fraction:.1f}%) "
          f"in {res.requests} requests")


def test_desispec_reads_the_cut(hpx_tree: TreeServer, tmp_path: Path):
    dio = pytest.importorskip("desispec.io", reason="desispec (dev extra) not installed")
    out = tmp_path / "cut.fits"
    extract_targets(file_url(hpx_tree.url, COADD), out, WANTED, client=_client())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spectra = dio.read_spectra(str(out))
    assert spectra.num_spectra() == 3 and list(spectra.fibermap["TARGETID"]) == WANTED
    assert spectra.resolution_data["b"].shape == (3, 11, 2751) and spectra.flux["z"].shape == (3, 2881)


def test_extract_from_redrock(hpx_tree: TreeServer, tmp_path: Path):
    out = tmp_path / "rr.fits"
    res = extract_targets(file_url(hpx_tree.url, REDROCK), out, WANTED, client=_client())
    assert res.found == WANTED
    assert_same_as_cut(hpx_tree.root / REDROCK, out, WANTED)


def test_adjacent_spectra_are_read_in_one_request(hpx_tree: TreeServer, tmp_path: Path):
    wanted = [int(t) for t in TARGETIDS[5:8]]
    client = _client()
    res = extract_targets(file_url(hpx_tree.url, COADD), tmp_path / "a.fits", wanted, client=client,
                          merge_gap=0)
    assert_same_as_cut(hpx_tree.root / COADD, tmp_path / "a.fits", wanted)
    layout = RemoteFits(file_url(hpx_tree.url, COADD), _client()).hdus()
    res_hdus = [h for h in layout if h.axes and h.axes[-1] == NTARGET and h.xtension == "IMAGE"]
    flux = next(h for h in res_hdus if h.extname == "B_FLUX")
    row = 2751 * 4
    ranges = [r.range for r in hpx_tree.log if r.method == "GET"]
    assert f"bytes={flux.data_start + 5 * row}-{flux.data_start + 8 * row - 1}" in ranges
    assert res.requests < 40


def test_real_single_target_files_cut_back_to_themselves(tree_server: TreeServer, tmp_path: Path):
    names = ["coadd-special-dark-27247.fits", "redrock-special-dark-27247.fits",
             "coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"]
    if not all((REAL / n).exists() for n in names):
        pytest.skip(f"real DESI test files not found in {REAL} (see shared/data/real/README.md)")
    for name in names:
        shutil.copy(REAL / name, tree_server.root / name)
        with fits.open(REAL / name) as h:
            tid = int(h["FIBERMAP"].data["TARGETID"][0])
        out = tmp_path / name
        res = extract_targets(file_url(tree_server.url, name), out, [tid, 123], client=_client())
        assert res.found == [tid] and res.missing == [123]
        # all targets kept -> identical bytes, CHECKSUM/DATASUM recomputed to the same values
        assert out.read_bytes() == (REAL / name).read_bytes(), name
        assert res.bytes_fetched <= res.file_size


def test_checksum_encoding_matches_astropy(hpx_tree: TreeServer):
    raw = (hpx_tree.root / COADD).read_bytes()
    with fits.open(hpx_tree.root / COADD) as h:
        for hdu in h[:4]:
            start = hdu._data_offset
            data = raw[start : start + -(-hdu._data_size // 2880) * 2880]
            assert str(datasum(data)) == hdu.header["DATASUM"]
            # CHECKSUM: the header summed with CHECKSUM = '0000000000000000', plus DATASUM
            header = bytearray(raw[hdu._header_offset : start])
            at = header.index(b"CHECKSUM= '") + 11
            header[at : at + 16] = b"0" * 16
            total = datasum(bytes(header)) + datasum(data)
            total = (total & 0xFFFFFFFF) + (total >> 32)
            assert encode_checksum(total) == hdu.header["CHECKSUM"], hdu.name
    assert encode_checksum(0) == "orrrrooooooooooo"  # ~0: every byte 255 -> 'o' * 4 + 3 on the first


def test_missing_targets_and_none_found(hpx_tree: TreeServer, tmp_path: Path):
    url = file_url(hpx_tree.url, COADD)
    res = extract_targets(url, tmp_path / "x.fits", [WANTED[0], 1, 2], client=_client())
    assert res.found == [WANTED[0]] and res.missing == [1, 2]
    assert_same_as_cut(hpx_tree.root / COADD, tmp_path / "x.fits", [WANTED[0]])
    res = extract_targets(url, tmp_path / "none.fits", [1, 2], client=_client())
    assert res.path is None and res.found == [] and not (tmp_path / "none.fits").exists()
    with pytest.raises(InputError):
        extract_targets(url, tmp_path / "y.fits", [], client=_client())


def test_rerun_fetches_nothing(hpx_tree: TreeServer, tmp_path: Path):
    url = file_url(hpx_tree.url, COADD)
    out = tmp_path / "c.fits"
    extract_targets(url, out, WANTED, client=_client())
    hpx_tree.reset()
    res = extract_targets(url, out, WANTED, client=_client())
    assert res.skipped and res.found == WANTED and hpx_tree.log == []


def test_heap_tables_are_refused(tree_server: TreeServer, tmp_path: Path):
    fm = fits.BinTableHDU.from_columns([fits.Column("TARGETID", "K", array=np.arange(3))], name="FIBERMAP")
    vla = fits.BinTableHDU.from_columns(
        [fits.Column("V", "PJ()", array=np.array([np.arange(2), np.arange(5), np.arange(1)], dtype=object))],
        name="VARIABLE",
    )
    fits.HDUList([fits.PrimaryHDU(), fm, vla]).writeto(tree_server.root / "heap.fits")
    with pytest.raises(FormatError, match="heap") as info:
        extract_targets(file_url(tree_server.url, "heap.fits"), tmp_path / "h.fits", [1], client=_client())
    assert info.value.hdu == "VARIABLE"
    assert not (tmp_path / "h.fits").exists()


def test_no_fibermap_and_not_fits(tree_server: TreeServer, tmp_path: Path):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 4)), name="FLUX")]).writeto(
        tree_server.root / "nofm.fits")
    with pytest.raises(FormatError, match="no FIBERMAP"):
        extract_targets(file_url(tree_server.url, "nofm.fits"), tmp_path / "a.fits", [1], client=_client())
    (tree_server.root / "text.fits").write_bytes(b"hello" * 1000)
    with pytest.raises(FormatError, match="not a FITS file"):
        extract_targets(file_url(tree_server.url, "text.fits"), tmp_path / "b.fits", [1], client=_client())


def test_trailing_padding_and_truncation(hpx_tree: TreeServer, tmp_path: Path):
    raw = (hpx_tree.root / COADD).read_bytes()
    (hpx_tree.root / "padded.fits").write_bytes(raw + b"\0" * 2 * 2880)
    extract_targets(file_url(hpx_tree.url, "padded.fits"), tmp_path / "p.fits", WANTED, client=_client())
    assert_same_as_cut(hpx_tree.root / COADD, tmp_path / "p.fits", WANTED)
    (hpx_tree.root / "short.fits").write_bytes(raw[: len(raw) - 2880])  # SCORES loses its data
    with pytest.raises(FormatError, match="truncated") as info:
        extract_targets(file_url(hpx_tree.url, "short.fits"), tmp_path / "s.fits", WANTED, client=_client())
    assert info.value.hdu == "SCORES"


def test_server_ignoring_range_is_an_error(hpx_tree: TreeServer, tmp_path: Path):
    hpx_tree.ignore_range = True
    client = _client()
    with pytest.raises(FetchError, match="Range") as info:
        extract_targets(file_url(hpx_tree.url, COADD), tmp_path / "a.fits", WANTED, client=client)
    assert "omit --targets" in str(info.value)
    assert client.bytes_received == 0  # it did not read the whole file to find out
    assert not (tmp_path / "a.fits").exists()


def test_dropped_range_request_is_retried(hpx_tree: TreeServer, tmp_path: Path):
    hpx_tree.drop_after(f"/{COADD}", 3000, times=2)  # the first two GETs are cut short
    res = extract_targets(file_url(hpx_tree.url, COADD), tmp_path / "a.fits", WANTED, client=_client())
    assert_same_as_cut(hpx_tree.root / COADD, tmp_path / "a.fits", WANTED)
    assert res.found == WANTED


def test_output_name_is_stable():
    a = output_name("coadd-main-dark-10016.fits", [3, 1, 2, 2])
    assert a == output_name("coadd-main-dark-10016.fits", [1, 2, 3])
    assert a.startswith("coadd-main-dark-10016-targets-") and a.endswith(".fits")
    assert a != output_name("coadd-main-dark-10016.fits", [1, 2])


def test_cli_targets(hpx_tree: TreeServer, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "mirror"
    ids = ",".join(map(str, WANTED))
    rc = main(["fetch", "coadd", "redrock", "--healpix", "10016", "--targets", ids,
               "--base-url", hpx_tree.url, "--dest", str(dest)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "3 of 20 targets; fetched" in out and "total: fetched" in out
    for rel in (COADD, REDROCK):
        name = Path(rel).name
        cut = dest / HPX_DIR / output_name(name, WANTED)
        assert_same_as_cut(hpx_tree.root / rel, cut, WANTED)
        assert not (dest / rel).exists()  # the full file was not downloaded

    (tmp_path / "ids.txt").write_text("# nothing here\n1\n2\n")
    rc = main(["fetch", "coadd", "--healpix", "10016", "--targets-file", "ids.txt",
               "--base-url", hpx_tree.url, "--dest", str(dest)])
    assert rc == 1
    assert "parameter --targets" in capsys.readouterr().err
