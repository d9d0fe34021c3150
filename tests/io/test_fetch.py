"""`desilab fetch` downloads against a real HTTP server on 127.0.0.1 (tests/httpserver.py).

The served tree mirrors the public DR1 layout (release root = server root) with a
``sha256sum`` file per directory, named as DESI names them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from desilab.cli import main
from desilab.errors import ChecksumError, FetchError, InputError
from desilab.io.fetch import (
    HttpClient,
    Selection,
    checksum_file_name,
    download,
    parse_checksums,
    parse_int_list,
    plan,
    probe_sizes,
)
from tests import httpserver
from tests.httpserver import TreeServer, write_sha256sum

tree_server = httpserver.tree_server  # the fixture: a TreeServer over tmp_path / "tree"

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "desi_coadd"
ZCAT_DIR = "spectro/redux/iron/zcatalog/v1"
HPX_DIR = "spectro/redux/iron/healpix/special/dark/272/27247"
VAST_DIR = "vac/dr1/desivast/v1.0"
ZCAT_SIZE = 3_000_017  # not a multiple of any chunk size


def _fast_client(retries: int = 4) -> HttpClient:
    return HttpClient(retries=retries, backoff=0.0)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def zcat_tree(tree_server: TreeServer) -> TreeServer:
    """A zcatalog/v1 directory holding one 3 MB file and its published checksum file."""
    d = tree_server.root / ZCAT_DIR
    d.mkdir(parents=True)
    rng = np.random.default_rng(7)
    (d / "zpix-main-dark.fits").write_bytes(rng.integers(0, 256, ZCAT_SIZE, dtype=np.uint8).tobytes())
    (d / "zpix-main-bright.fits").write_bytes(b"x" * 5000)
    write_sha256sum(d, "redux_iron_zcatalog_v1.sha256sum")
    return tree_server


@pytest.fixture
def real_tree(tree_server: TreeServer) -> TreeServer:
    """The real single-target healpix coadd + redrock in their DR1 directory."""
    names = ["coadd-special-dark-27247.fits", "redrock-special-dark-27247.fits"]
    if not all((REAL / n).exists() for n in names):
        pytest.skip(f"real DESI test files not found in {REAL} (see shared/data/real/README.md)")
    d = tree_server.root / HPX_DIR
    d.mkdir(parents=True)
    for n in names:
        shutil.copy(REAL / n, d / n)
    write_sha256sum(d, "redux_iron_healpix_special_dark_272_27247.sha256sum")
    return tree_server


def _zcat_files() -> list:
    return plan(Selection(("zcatalog",), survey="main", program="dark"))


# ----------------------------------------------------------------------------------------
# selection -> paths (no network)
# ----------------------------------------------------------------------------------------


def test_plan_paths_follow_the_dr1_tree():
    sel = Selection(("zcatalog", "coadd", "redrock"), survey="main", program="dark", healpix=(10016, 9))
    paths = [f.relpath for f in plan(sel)]
    assert paths == [
        "spectro/redux/iron/zcatalog/v1/zpix-main-dark.fits",
        "spectro/redux/iron/healpix/main/dark/100/10016/coadd-main-dark-10016.fits",
        "spectro/redux/iron/healpix/main/dark/0/9/coadd-main-dark-9.fits",
        "spectro/redux/iron/healpix/main/dark/100/10016/redrock-main-dark-10016.fits",
        "spectro/redux/iron/healpix/main/dark/0/9/redrock-main-dark-9.fits",
    ]
    assert plan(sel)[1].checksum_file.endswith("/10016/redux_iron_healpix_main_dark_100_10016.sha256sum")
    zall = plan(Selection(("zcatalog",), survey="all"))[0]
    assert zall.relpath == "spectro/redux/iron/zcatalog/v1/zall-pix-iron.fits"
    assert zall.checksum_file == "spectro/redux/iron/zcatalog/v1/redux_iron_zcatalog_v1.sha256sum"


def test_plan_vacs_and_qso():
    fsf = plan(Selection(("fastspecfit",), survey="main", program="bright"))
    assert len(fsf) == 12
    assert fsf[0].relpath == "vac/dr1/fastspecfit/iron/v3.0/catalogs/fastspec-iron-main-bright-nside1-hp00.fits"
    assert fsf[0].checksum_file.endswith("/dr1_vac_dr1_fastspecfit_iron_v3.0_catalogs.sha256sum")
    # nested nside=64 -> nside=1 is pixel >> 12: 10016 -> 2, 49151 -> 11
    fsf = plan(Selection(("fastspecfit",), program="bright", healpix=(10016, 10017, 49151)))
    assert [f.name for f in fsf] == [
        "fastspec-iron-main-bright-nside1-hp02.fits",
        "fastspec-iron-main-bright-nside1-hp11.fits",
    ]
    old = plan(Selection(("fastspecfit",), program="dark", version="v2.1"))
    assert [f.relpath for f in old] == ["vac/dr1/fastspecfit/iron/v2.1/catalogs/fastspec-iron-main-dark.fits"]
    sv = plan(Selection(("fastspecfit",), survey="sv3", program="dark"))
    assert [f.name for f in sv] == ["fastspec-iron-sv3-dark.fits"]
    vast = plan(Selection(("desivast",)))
    assert len(vast) == 8
    assert {f.checksum_file for f in vast} == {f"{VAST_DIR}/dr1_vac_dr1_desivast_v1.0.sha256sum"}
    assert "DESIVAST_BGS_VOLLIM_V2_ZOBOV_SGC.fits" in [f.name for f in vast]
    qso = plan(Selection(("qso",)))[0]
    assert qso.relpath == "survey/catalogs/dr1/QSO/iron/QSO_cat_iron_cumulative_v0.fits"
    assert qso.checksum_file.endswith("/dr1_survey_catalogs_dr1_QSO_iron.sha256sum")


def test_checksum_file_names_match_published_ones():
    assert checksum_file_name("spectro/redux/iron/healpix") == "redux_iron_healpix.sha256sum"
    assert checksum_file_name("survey/catalogs/dr1/LSS/iron/LSScats/v1.5") == (
        "dr1_survey_catalogs_dr1_LSS_iron_LSScats_v1.5.sha256sum"
    )
    assert checksum_file_name("vac/dr1/mws/iron/v1.0/") == "dr1_vac_dr1_mws_iron_v1.0.sha256sum"


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"products": ("spectra",)}, "PRODUCT"),
        ({"products": ()}, "PRODUCT"),
        ({"products": ("zcatalog",), "survey": "main2"}, "survey"),
        ({"products": ("coadd",), "survey": "all", "healpix": (1,)}, "survey"),
        ({"products": ("zcatalog",), "program": "grey"}, "program"),
        ({"products": ("coadd",)}, "healpix"),
        ({"products": ("coadd",), "healpix": (49152,)}, "healpix"),
        ({"products": ("coadd",), "healpix": (-1,)}, "healpix"),
        ({"products": ("fastspecfit",), "version": "v2.0"}, "version"),
        ({"products": ("fastspecfit", "desivast"), "version": "v3.0"}, "version"),
        ({"products": ("qso",), "version": "latest"}, "version"),
    ],
)
def test_bad_selection_names_the_parameter(kwargs, parameter):
    with pytest.raises(InputError) as info:
        Selection(**kwargs)
    assert info.value.parameter == parameter


def test_parse_helpers():
    assert parse_int_list("1, 2\n3 # comment\n\n4,5", parameter="x") == [1, 2, 3, 4, 5]
    with pytest.raises(InputError, match="not an integer: '3a'"):
        parse_int_list("1,3a", parameter="--targets")
    text = f"{'a' * 64}  f1.fits\n{'B' * 64} *f2.fits\n{'c' * 64}  ./logs/x.log\n# comment\nnot a line\n"
    assert parse_checksums(text) == {"f1.fits": "a" * 64, "f2.fits": "b" * 64, "logs/x.log": "c" * 64}


# ----------------------------------------------------------------------------------------
# downloads
# ----------------------------------------------------------------------------------------


def test_download_and_verify_real_files(real_tree: TreeServer, tmp_path: Path):
    files = plan(Selection(("coadd", "redrock"), survey="special", program="dark", healpix=(27247,)))
    dest = tmp_path / "mirror"
    results = download(files, base_url=real_tree.url, dest=dest, jobs=2, client=_fast_client())
    assert [r.status for r in results] == ["downloaded", "downloaded"]
    for r in results:
        src = real_tree.root / r.remote.relpath
        assert r.path == dest / r.remote.relpath
        assert r.path.read_bytes() == src.read_bytes()
        assert r.sha256 == _sha(src)
        assert r.size == r.bytes_transferred == src.stat().st_size
        assert not r.path.with_name(r.path.name + ".part").exists()
    # the checksum file is part of the public tree, so it is mirrored too
    assert (dest / HPX_DIR / "redux_iron_healpix_special_dark_272_27247.sha256sum").exists()


def test_resume_after_interrupted_transfer(zcat_tree: TreeServer, tmp_path: Path):
    server = zcat_tree
    path = f"/{ZCAT_DIR}/zpix-main-dark.fits"
    dest = tmp_path / "mirror"
    final = dest / ZCAT_DIR / "zpix-main-dark.fits"
    part = final.with_name(final.name + ".part")
    server.drop_after(path, 1_200_000, times=1)
    with pytest.raises(FetchError, match="failed after 1 attempt"):
        download(_zcat_files(), base_url=server.url, dest=dest, client=_fast_client(retries=0))
    assert not final.exists()
    assert part.exists() and 0 < part.stat().st_size < ZCAT_SIZE
    have = part.stat().st_size

    server.reset()
    results = download(_zcat_files(), base_url=server.url, dest=dest, client=_fast_client())
    gets = server.requests_for(path, "GET")
    assert len(gets) == 1
    assert gets[0].range == f"bytes={have}-" and gets[0].status == 206
    assert server.bytes_served(path) == ZCAT_SIZE - have < ZCAT_SIZE
    assert results[0].status == "resumed"
    assert results[0].bytes_transferred == ZCAT_SIZE - have
    assert _sha(final) == _sha(server.root / ZCAT_DIR / "zpix-main-dark.fits")
    assert not part.exists()


def test_dropped_connection_is_retried_within_one_run(zcat_tree: TreeServer, tmp_path: Path):
    path = f"/{ZCAT_DIR}/zpix-main-dark.fits"
    zcat_tree.drop_after(path, 700_000, times=2)
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "m", client=_fast_client())
    gets = zcat_tree.requests_for(path, "GET")
    assert len(gets) == 3
    assert gets[0].range is None and gets[1].range.startswith("bytes=") and gets[2].range.startswith("bytes=")
    assert results[0].status == "resumed" and results[0].size == ZCAT_SIZE
    # at most one unfinished network read (64 KiB) per dropped connection is sent twice
    assert ZCAT_SIZE <= zcat_tree.bytes_served(path) <= ZCAT_SIZE + 2 * 65536


def test_server_ignoring_range_gets_a_full_download(zcat_tree: TreeServer, tmp_path: Path):
    dest = tmp_path / "mirror"
    src = zcat_tree.root / ZCAT_DIR / "zpix-main-dark.fits"
    part = dest / ZCAT_DIR / "zpix-main-dark.fits.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[:100_000])
    zcat_tree.ignore_range = True
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    get = zcat_tree.requests_for(f"/{ZCAT_DIR}/zpix-main-dark.fits", "GET")[0]
    assert get.range == "bytes=100000-" and get.status == 200
    assert results[0].status == "downloaded"
    assert (dest / ZCAT_DIR / "zpix-main-dark.fits").read_bytes() == src.read_bytes()


def test_corrupt_partial_file_is_replaced(zcat_tree: TreeServer, tmp_path: Path):
    dest = tmp_path / "mirror"
    part = dest / ZCAT_DIR / "zpix-main-dark.fits.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 50_000)  # wrong bytes: resuming yields a checksum mismatch
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    gets = zcat_tree.requests_for(f"/{ZCAT_DIR}/zpix-main-dark.fits", "GET")
    assert [g.range for g in gets] == ["bytes=50000-", None]
    assert results[0].status == "downloaded"
    assert _sha(results[0].path) == _sha(zcat_tree.root / ZCAT_DIR / "zpix-main-dark.fits")


def test_checksum_mismatch_leaves_nothing(zcat_tree: TreeServer, tmp_path: Path, monkeypatch, capsys):
    sums = zcat_tree.root / ZCAT_DIR / "redux_iron_zcatalog_v1.sha256sum"
    good = _sha(zcat_tree.root / ZCAT_DIR / "zpix-main-dark.fits")
    sums.write_text(sums.read_text().replace(good, "0" * 64))
    dest = tmp_path / "mirror"
    final = dest / ZCAT_DIR / "zpix-main-dark.fits"
    with pytest.raises(ChecksumError) as info:
        download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    msg = str(info.value)
    assert "zpix-main-dark.fits" in msg and "0" * 64 in msg and good in msg
    assert not final.exists() and not final.with_name(final.name + ".part").exists()

    monkeypatch.chdir(tmp_path)
    rc = main(["fetch", "zcatalog", "--base-url", zcat_tree.url, "--dest", str(tmp_path / "cli")])
    assert rc != 0
    assert "sha256 mismatch" in capsys.readouterr().err
    cli_final = tmp_path / "cli" / ZCAT_DIR / "zpix-main-dark.fits"
    assert not cli_final.exists() and not cli_final.with_name(cli_final.name + ".part").exists()


def test_rerun_downloads_nothing(zcat_tree: TreeServer, tmp_path: Path):
    dest = tmp_path / "mirror"
    download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    zcat_tree.reset()
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    assert [r.status for r in results] == ["skipped"]
    assert zcat_tree.log == []  # verified against the mirrored checksum file: no request at all


def test_present_but_corrupt_file_is_downloaded_again(zcat_tree: TreeServer, tmp_path: Path):
    dest = tmp_path / "mirror"
    download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    final = dest / ZCAT_DIR / "zpix-main-dark.fits"
    final.write_bytes(b"garbage")
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=dest, client=_fast_client())
    assert results[0].status == "downloaded"
    assert _sha(final) == _sha(zcat_tree.root / ZCAT_DIR / "zpix-main-dark.fits")


def test_5xx_is_retried_then_gives_up(zcat_tree: TreeServer, tmp_path: Path):
    path = f"/{ZCAT_DIR}/zpix-main-dark.fits"
    zcat_tree.fail(path, 503, times=2)
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "a", client=_fast_client(3))
    assert results[0].status == "downloaded"
    assert [r.status for r in zcat_tree.requests_for(path, "GET")] == [503, 503, 200]

    zcat_tree.fail(path, 500, times=10)
    with pytest.raises(FetchError, match=r"after 3 attempt\(s\): TransientError: HTTP 500"):
        download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "b", client=_fast_client(2))


def test_missing_file_is_a_clear_error(zcat_tree: TreeServer, tmp_path: Path):
    files = plan(Selection(("zcatalog",), survey="sv1", program="dark"))  # not served
    with pytest.raises(FetchError, match="not listed in the published checksum file"):
        download(files, base_url=zcat_tree.url, dest=tmp_path / "m", client=_fast_client())
    with pytest.raises(FetchError, match="HTTP 404"):
        download(files, base_url=zcat_tree.url, dest=tmp_path / "m", verify=False, client=_fast_client())


def test_checksum_file_found_through_the_listing(zcat_tree: TreeServer, tmp_path: Path):
    d = zcat_tree.root / ZCAT_DIR
    (d / "redux_iron_zcatalog_v1.sha256sum").rename(d / "other-name.sha256sum")
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "m", client=_fast_client())
    assert results[0].sha256 == _sha(d / "zpix-main-dark.fits")
    (d / "other-name.sha256sum").unlink()
    with pytest.raises(FetchError, match="no published checksum file") as info:
        download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "n", client=_fast_client())
    assert "--no-verify" in str(info.value)
    results = download(_zcat_files(), base_url=zcat_tree.url, dest=tmp_path / "n", verify=False,
                       client=_fast_client())
    assert results[0].status == "downloaded" and results[0].sha256 is None


def test_parallel_download_of_a_vac_directory(tree_server: TreeServer, tmp_path: Path):
    d = tree_server.root / VAST_DIR
    d.mkdir(parents=True)
    files = plan(Selection(("desivast",)))
    for i, rf in enumerate(files):
        (d / rf.name).write_bytes(bytes([i]) * (20_000 + 997 * i))
    write_sha256sum(d, "dr1_vac_dr1_desivast_v1.0.sha256sum")
    results = download(files, base_url=tree_server.url, dest=tmp_path / "m", jobs=4, client=_fast_client())
    assert all(r.status == "downloaded" for r in results)
    assert [r.remote for r in results] == files
    assert len(tree_server.requests_for(f"/{VAST_DIR}/dr1_vac_dr1_desivast_v1.0.sha256sum")) == 1
    sizes = dict((rf.name, s) for rf, s in probe_sizes(files, base_url=tree_server.url, jobs=3))
    assert sizes["DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits"] == 20_000
    # a server refusing HEAD: the size comes from a one-byte range request
    path = f"/{VAST_DIR}/DESIVAST_BGS_VOLLIM_VoidFinder_SGC.fits"
    tree_server.fail(path, 405)
    assert probe_sizes(files[1:2], base_url=tree_server.url)[0][1] == 20_997
    assert [(r.method, r.status) for r in tree_server.requests_for(path)][-2:] == [("HEAD", 405), ("GET", 206)]


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------


def test_cli_download_then_rerun(zcat_tree: TreeServer, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "mirror"
    args = ["fetch", "zcatalog", "--program", "bright", "--base-url", zcat_tree.url, "--dest", str(dest)]
    assert main([*args, "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 downloaded" in out and "sha256 verified" in out
    assert (dest / ZCAT_DIR / "zpix-main-bright.fits").read_bytes() == b"x" * 5000
    zcat_tree.reset()
    assert main(args) == 0
    assert "1 already present" in capsys.readouterr().out
    assert zcat_tree.log == []


def test_cli_dry_run_lists_sizes_and_downloads_nothing(real_tree: TreeServer, tmp_path: Path, monkeypatch,
                                                       capsys):
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "mirror"
    rc = main(["fetch", "coadd", "redrock", "--survey", "special", "--healpix", "27247", "--dry-run",
               "--base-url", real_tree.url + "/", "--dest", str(dest)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "coadd-special-dark-27247.fits" in out and "redrock-special-dark-27247.fits" in out
    assert "642.2 kB" in out and "54.7 kB" in out
    assert f"total 697.0 kB ({642240 + 54720} bytes)" in out
    assert {r.method for r in real_tree.log} == {"HEAD"}
    assert not dest.exists()


@pytest.mark.parametrize(
    ("argv", "parameter"),
    [
        (["fetch", "coadd"], "--healpix"),
        (["fetch", "coadd", "--healpix", "10016,abc"], "--healpix"),
        (["fetch", "zcatalog", "--survey", "mian"], "--survey"),
        (["fetch", "zcatalog", "--jobs", "0"], "--jobs"),
        (["fetch", "zcatalog", "--base-url", "ftp://x"], "--base-url"),
        (["fetch", "zcatalog", "--targets", "1"], "--targets"),
        (["fetch", "coadd", "--healpix", "1", "--targets", "1", "--targets-file", "t.txt"], "--targets"),
        (["fetch", "coadd", "--healpix-file", "missing.txt"], "--healpix-file"),
        (["fetch", "fastspecfit", "--version", "v9"], "--version"),
    ],
)
def test_cli_bad_parameters(argv, parameter, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert f"parameter {parameter}" in capsys.readouterr().err


def test_cli_help_teaches_with_examples(capsys):
    assert main(["fetch", "--help"]) == 0
    out = capsys.readouterr().out
    assert "desilab fetch coadd --healpix 10016 --targets" in out
    assert "--dry-run" in out and "sha256sum" in out
