"""The `ingest` stage of `desilab run` on a small DR1-format tree."""

from __future__ import annotations

import json
from pathlib import Path

from desilab.compute import SerialExecutor
from desilab.run.stage import RunContext
from desilab.store import connect
from desilab.store.stage import IngestStage, run_store_url


def test_ingest_stage(settings, product_dir: Path):
    settings = settings.model_copy(update={"workers": 1})
    ctx = RunContext(settings=settings, out_dir=settings.out_dir, scale="tiny", executor=SerialExecutor())
    ctx.products["sample_sky"] = product_dir
    stage = IngestStage()
    result = stage.run(ctx)
    checks = stage.checks(ctx, result)
    assert all(c.passed for c in checks), [c.to_dict() for c in checks]
    doc = json.loads(result.outputs["store"].read_text())
    assert doc["table_rows"]["zcatalog"] == 700 and doc["backend"] == "duckdb"
    url = run_store_url(ctx)
    assert url.endswith("store/desilab.duckdb") and str(settings.out_dir.resolve()) in url
    with connect(url, create=False) as store:
        assert store.check() == []
