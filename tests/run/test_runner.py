import json
from pathlib import Path

import pytest

from desilab.compute import SerialExecutor
from desilab.errors import StageError
from desilab.run import Check, RunContext, Stage, StageResult, plan, resolve_stages, run_stages


class Writer(Stage):
    name = "writer"
    description = "writes a text product"
    outputs = ("text",)

    def run(self, ctx):
        p = ctx.path("products", "a.txt")
        p.write_text("hello")
        return StageResult(outputs={"text": p}, summary={"n": 1})

    def checks(self, ctx, result):
        return [Check("text says hello", result.outputs["text"].read_text() == "hello")]


class Reader(Stage):
    name = "reader"
    description = "needs the text product"
    inputs = ("text",)
    outputs = ("upper",)

    def run(self, ctx):
        p = ctx.path("upper.txt")
        p.write_text(ctx.products["text"].read_text().upper())
        return StageResult(outputs={"upper": p})


class Liar(Stage):
    name = "liar"
    description = "claims an output it never writes"
    outputs = ("ghost",)

    def run(self, ctx):
        return StageResult(outputs={})


def _ctx(settings, tmp_path: Path) -> RunContext:
    return RunContext(settings=settings, out_dir=tmp_path / "run", scale="tiny", executor=SerialExecutor())


def test_chain_runs_and_manifest_records_everything(settings, tmp_path):
    ctx = _ctx(settings, tmp_path)
    records = run_stages([Writer(), Reader()], ctx, progress=False)
    assert [r.status for r in records] == ["ok", "ok"]
    manifest = json.loads((ctx.out_dir / "run.json").read_text())
    assert manifest["status"] == "ok"
    out = manifest["stages"][0]["outputs"]["text"]
    assert out["bytes"] == 5
    assert out["sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert (ctx.out_dir / "upper.txt").read_text() == "HELLO"


def test_plan_rejects_missing_inputs_and_duplicates():
    with pytest.raises(StageError, match=r"reader.*needs text"):
        plan([Reader()])
    plan([Reader()], available=["text"])
    with pytest.raises(StageError, match="twice"):
        plan([Writer(), Writer()])


def test_failed_check_stops_run_and_manifest_says_so(settings, tmp_path):
    ctx = _ctx(settings, tmp_path)
    with pytest.raises(StageError, match=r"liar.*output ghost written"):
        run_stages([Liar(), Writer()], ctx, progress=False)
    manifest = json.loads((ctx.out_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert [s["name"] for s in manifest["stages"]] == ["liar"]


def test_default_stages_write_report(settings, tmp_path):
    ctx = _ctx(settings, tmp_path)
    records = run_stages(resolve_stages(["environment", "report"]), ctx, progress=False)
    assert records[0].name == "environment"
    assert records[-1].name == "report"
    html = (ctx.out_dir / "report.html").read_text()
    assert "<code>environment</code>" in html
    with pytest.raises(StageError, match="unknown stage"):
        resolve_stages(["nope"])
