"""Spectra by TARGETID through a real DuckDB store's spectra_index, and straight from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.data import build_cache, find_coadds, preprocess_coadd
from desilab.anomalies.lookup import locate_in_files, locate_in_store, spectra_by_targetid
from desilab.errors import InputError


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    """80 sample-sky quasars in 2 HEALPix coadds (+ redrock files)."""
    from desilab.sample.quasars import QuasarConfig, generate_quasars

    out = tmp_path_factory.mktemp("sky")
    generate_quasars(QuasarConfig(n_quasars=80, per_pixel=40), 3, out)
    return out


@pytest.fixture(scope="module")
def store_url(sky, tmp_path_factory) -> str:
    """A DuckDB store with the sky's coadds ingested (spectra_index)."""
    from desilab.store import connect

    url = f"duckdb:///{tmp_path_factory.mktemp('store') / 'lab.duckdb'}"
    with connect(url) as s:
        s.ingest([sky])
        assert s.query("SELECT count(*) AS n FROM spectra_index").column("n")[0].as_py() >= 50
    return url


def _all(sky):
    files = find_coadds(sky)
    ref = [preprocess_coadd(f) for f in files]
    return files, ref


def test_store_lookup_matches_reading_the_files(sky, store_url) -> None:
    from desilab.store import connect

    files, ref = _all(sky)
    tid_all = np.concatenate([r.targetid for r in ref])
    rng = np.random.default_rng(0)
    want = rng.choice(tid_all, size=12, replace=False)
    with connect(store_url, create=False, read_only=True) as s:
        loc = locate_in_store(s, want)
        got = spectra_by_targetid(want, store=s)
    assert len(loc) == 12 and set(loc.file) <= {str(f) for f in files}
    assert np.array_equal(got.targetid, np.sort(want))
    # the same rows, byte for byte, as preprocessing the whole files
    for t in want.tolist():
        part = next(r for r in ref if t in set(r.targetid.tolist()))
        i = int(np.nonzero(part.targetid == t)[0][0])
        j = int(np.nonzero(got.targetid == t)[0][0])
        np.testing.assert_array_equal(got.flux[j], part.flux[i])
        np.testing.assert_array_equal(got.ivar[j], part.ivar[i])
        assert got.z[j] == part.z[i] and got.snr[j] == part.snr[i]
    # and the file-scanning path finds the same (file, row)s
    loc_f = locate_in_files(files, want)
    assert np.array_equal(loc_f.targetid, loc.targetid) and loc_f.file == loc.file
    assert np.array_equal(loc_f.row, loc.row)


def test_unknown_targetids_are_named(sky, store_url) -> None:
    from desilab.store import connect

    with connect(store_url, create=False, read_only=True) as s:
        with pytest.raises(InputError, match=r"1 TARGETID.*123"):
            spectra_by_targetid([123], store=s)
        first = int(s.query("SELECT min(targetid) AS t FROM spectra_index").column("t")[0].as_py())
        got = spectra_by_targetid([first, 123], store=s, missing="skip")
    assert got.targetid.tolist() == [first]
    with pytest.raises(InputError, match="store or coadd files"):
        spectra_by_targetid([first])


def test_build_cache_resumes_and_dedups(sky, tmp_path) -> None:
    files = find_coadds(sky)
    assert len(files) >= 2
    whole = build_cache(files, tmp_path / "whole")
    # an interrupted build: only the first file cached; re-running adds the rest only
    build_cache(files[:1], tmp_path / "part")
    resumed = build_cache(files, tmp_path / "part")
    assert resumed.sources == [str(f) for f in files]
    np.testing.assert_array_equal(resumed.column("targetid"), whole.column("targetid"))
    np.testing.assert_array_equal(SpectrumCache(tmp_path / "part").load().flux, whole.load().flux)
    # the same objects in a second file (a copy elsewhere) are not added twice
    import shutil

    copy = tmp_path / "copy"
    copy.mkdir()
    for f in files[0].parent.iterdir():
        shutil.copy(f, copy / f.name)
    dup = build_cache([files[0], files[0], *find_coadds(copy)], tmp_path / "dup")
    assert dup.n_shards == 2 and dup.manifest["shards"][1]["rows"] == 0
    assert len(dup) == len(np.unique(dup.column("targetid"))) == len(build_cache(files[:1], tmp_path / "one"))


def test_cli_train_score_similar_through_the_store(sky, store_url, tmp_path, capsys) -> None:
    """`--from-store` on train/score (with --where) and `similar --from-store` for an unscored TARGETID."""
    import pyarrow.parquet as pq

    from desilab.cli import main
    from desilab.store import connect

    with connect(store_url, create=False, read_only=True) as s:
        hp = s.query("SELECT healpix, count(*) AS n FROM spectra_index GROUP BY healpix ORDER BY healpix")
        first_pix, other_pix = (int(x) for x in hp.column("healpix").to_pylist()[:2])
        other = s.query(f"SELECT targetid FROM spectra_index WHERE healpix = {other_pix} ORDER BY targetid")
    unscored = int(other.column("targetid")[0].as_py())
    model, out = tmp_path / "model", tmp_path / "out"
    base = ["--store", store_url, "anomalies"]
    opts = ["--epochs", "1", "--latent", "8", "--threads", "1"]
    assert main([*base, "train", "--from-store", "--model", str(model), *opts]) == 0
    where = f"s.healpix = {first_pix}"
    assert main([*base, "score", "--from-store", "--where", where, "--model", str(model), "--out", str(out)]) == 0
    scored = pq.read_table(out / "desilab-qso-anomalies.parquet").column("TARGETID").to_numpy()
    assert unscored not in set(scored.tolist()) and scored.size > 0
    capsys.readouterr()
    assert main([*base, "similar", str(unscored), "--out", str(out), "-k", "3"]) != 0  # not scored, no --from-store
    assert "was not scored" in capsys.readouterr().err
    args = [*base, "similar", str(unscored), "--from-store", "--model", str(model), "--out", str(out), "-k", "3"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(int(ln.split()[0]) in set(scored.tolist()) for ln in lines)
    # the same neighbours as encoding the spectrum read straight from its file
    f = next(p for p in find_coadds(sky) if p.name.endswith(f"-{other_pix}.fits"))
    assert (
        main(
            [*base, "similar", str(unscored), "--spectrum", str(f), "--model", str(model), "--out", str(out), "-k", "3"]
        )
        == 0
    )
    assert capsys.readouterr().out.strip().splitlines() == lines
