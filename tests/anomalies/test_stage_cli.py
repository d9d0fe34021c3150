"""End to end on a small sample sky: the run stage, and `desilab anomalies train | score | similar`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from desilab.anomalies.catalog import COLUMN_DOCS
from desilab.cli import main


@pytest.fixture(scope="module")
def sky(tmp_path_factory) -> Path:
    """120 sample-sky quasars (2 pixels) with their truth tables (~20 s)."""
    from desilab.sample.quasars import QuasarConfig, generate_quasars

    out = tmp_path_factory.mktemp("sky")
    res = generate_quasars(QuasarConfig(n_quasars=120, anomaly_rate=0.15), 5, out)
    (out / "truth").mkdir()
    for name, t in res.truth.items():
        pq.write_table(t, out / "truth" / f"{name}.parquet")
    return out


def test_cli_train_score_similar(sky, tmp_path, capsys) -> None:
    model, out = tmp_path / "model", tmp_path / "out"
    assert (
        main(
            ["anomalies", "train", str(sky), "--model", str(model), "--epochs", "2", "--latent", "16", "--threads", "1"]
        )
        == 0
    )
    assert (model / "model.pt").exists() and (model / "config.json").exists() and (model / "checkpoint.pt").exists()
    assert main(["anomalies", "score", str(sky), "--model", str(model), "--out", str(out)]) == 0
    t = pq.read_table(out / "desilab-qso-anomalies.parquet")
    assert t.column_names == list(COLUMN_DOCS)
    assert t.num_rows >= 100
    p = t.column("P_ENSEMBLE").to_numpy()
    assert np.all((p > 0) & (p <= 1)) and np.all(np.diff(p) >= 0)  # ranked by p
    assert b"HIGHER = MORE ANOMALOUS" in t.schema.field("ENSEMBLE").metadata[b"description"]
    assert set(t.column("CALIB_ROLE").to_pylist()) == {"train", "calibration", "test"}
    assert all(r for r in t.column("REGIONS").to_pylist()[:5])
    from desilab.io.fits import open_fits

    with open_fits(out / "desilab-qso-anomalies.fits") as f:
        assert f["ANOMALIES"].get_nrows() == t.num_rows
    tid = int(t.column("TARGETID")[3].as_py())
    capsys.readouterr()
    assert main(["anomalies", "similar", str(tid), "--out", str(out), "-k", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and lines[0].split()[0] == str(tid)  # itself first, distance 0
    assert main(["anomalies", "similar", "1", "--out", str(out)]) != 0  # unknown TARGETID: a clear error


def test_stage_runs_with_checks(sky, settings, tmp_path) -> None:
    from desilab.anomalies.stage import SCALE_EPOCHS, AnomaliesStage
    from desilab.compute import SerialExecutor
    from desilab.run.stage import RunContext

    SCALE_EPOCHS["tiny"] = 2  # keep CI fast: the stage itself is what is tested here
    ctx = RunContext(
        settings=settings,
        out_dir=tmp_path / "run",
        scale="tiny",
        executor=SerialExecutor(),
        products={"sample_sky": sky},
    )
    stage = AnomaliesStage()
    res = stage.run(ctx)
    assert set(res.outputs) == {"anomaly_catalog", "anomaly_model"}
    assert res.outputs["anomaly_catalog"].exists()
    assert "truth_recall_per_class" in res.summary and res.summary["truth_n_anomalous"] > 5
    assert len(res.figures) == 3 and all(f.exists() for f in res.figures)
    checks = stage.checks(ctx, res)
    assert checks[0].passed and checks[2].passed


def test_cache_written_once_and_rebuilt_when_inputs_change(sky, tmp_path) -> None:
    import os

    from desilab.anomalies.data import build_cache, find_coadds

    files = find_coadds(sky)
    calls: list[tuple[int, int]] = []
    cache = build_cache(files, tmp_path / "c", progress=lambda d, n: calls.append((d, n)))
    n_rows, fp = len(cache), cache.inputs
    assert calls and n_rows >= 100 and fp
    calls.clear()
    again = build_cache(files, tmp_path / "c", progress=lambda d, n: calls.append((d, n)))
    assert not calls and len(again) == n_rows and again.inputs == fp  # reused: nothing preprocessed
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # an input changed
    try:
        rebuilt = build_cache(files, tmp_path / "c", progress=lambda d, n: calls.append((d, n)))
    finally:
        os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert calls[-1] == (len(files), len(files)) and rebuilt.inputs != fp and len(rebuilt) == n_rows
