"""`desilab run` (the main job) and `desilab validate` (the heavier science validations)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from desilab.compute import get_executor
from desilab.errors import ConfigError
from desilab.run import RunContext, resolve_stages, run_stages
from desilab.run.stage import SCALES
from desilab.run.stages import default_stage_classes
from desilab.ui import console


def _split(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def run(
    ctx: typer.Context,
    scale: str = typer.Option("tiny", "--scale", help=f"Sample-sky scale: {', '.join(SCALES)}."),
    stages: str | None = typer.Option(None, "--stages", help="Comma-separated subset of stages to run."),
    skip: str | None = typer.Option(None, "--skip", help="Comma-separated stages to leave out."),
    list_only: bool = typer.Option(False, "--list", help="List the stages and exit."),
) -> None:
    """Run the main job on the configured store: every stage in order, writing all
    products, a manifest (run.json) and a report (report.md, report.html) to the
    output folder (--out, default ./desilab-out).

    Each stage's outputs are checked after it runs (files exist, FITS products match
    their DR1 golden schema, stage-specific science checks); the run stops at the first
    failure and run.json says where.

    Examples:

      desilab run                          # embedded DuckDB store, tiny sample sky

      desilab --out /tmp/r run --skip report

      DESILAB_STORE=postgresql://postgres@127.0.0.1:5432/desilab desilab run
    """
    if list_only:
        for cls in default_stage_classes():
            console.print(f"[bold]{cls.name:<12}[/] {cls.description}")
        return
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}", parameter="--scale")
    settings = ctx.obj.settings
    chosen = resolve_stages(_split(stages), _split(skip))
    executor = get_executor(settings.workers, settings.ray)
    try:
        rctx = RunContext(settings=settings, out_dir=settings.out_dir, scale=scale, executor=executor)
        records = run_stages(chosen, rctx)
    finally:
        executor.close()
    total = sum(r.seconds for r in records)
    checks = sum(len(r.checks) for r in records)
    console.print(
        f"[green]done[/]: {len(records)} stage(s), {checks} check(s) passed in {total:.1f} s; "
        f"report: {settings.out_dir / 'report.html'}"
    )


def validate(
    ctx: typer.Context,
    scale: str = typer.Option("small", "--scale", help=f"Sample-sky scale for the validations: {', '.join(SCALES)}."),
    out: Path = typer.Option(Path("docs/validation"), "--out", help="Where the JSON figures are written."),
    select: str | None = typer.Option(None, "-k", help="Only validations whose name matches (pytest -k)."),
) -> None:
    """Run the science validations (tests marked `validation`: injection-recovery grids,
    null-realisation false-positive rates, ...) at the given scale, and write their
    figures to docs/validation/*.json. These are too heavy for CI, which runs the rest.

    Needs a source checkout (the validations live in tests/).

    Example: desilab validate --scale small
    """
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}", parameter="--scale")
    tests = Path(__file__).resolve().parents[2] / "tests"
    if not tests.is_dir():
        raise ConfigError("no tests/ folder next to the package: run from a source checkout", parameter="validate")
    env = dict(os.environ)
    env["DESILAB_VALIDATION_SCALE"] = scale
    env["DESILAB_VALIDATION_DIR"] = str(out.resolve())
    env["DESILAB_SEED"] = str(ctx.obj.settings.seed)
    cmd = [sys.executable, "-m", "pytest", str(tests), "-m", "validation", "-p", "no:cacheprovider", "-q"]
    if select:
        cmd += ["-k", select]
    console.print(f"running {' '.join(cmd)} (scale {scale})")
    rc = subprocess.call(cmd, env=env)
    if rc == 5:
        console.print("[yellow]no validation tests are defined yet[/]")
        return
    if rc != 0:
        raise typer.Exit(rc)
    console.print(f"[green]validations passed[/]; figures in {out}")


def register(app: typer.Typer) -> None:
    """Add `run` and `validate` to *app*."""
    app.command("run")(run)
    app.command("validate")(validate)
