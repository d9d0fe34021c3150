"""Chain stages: verify the plan, run, check, hash outputs, write the run manifest.

The manifest ``run.json`` in the output folder is the run's provenance: desilab version,
settings (password redacted), every stage with its duration, outputs (size, sha256),
checks and summary. It is written after every stage, so a failed run still says how far
it got and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from desilab import __version__
from desilab.doctor import _redact
from desilab.errors import DesilabError, StageError
from desilab.run.stage import Check, RunContext, Stage, StageRecord, StageResult
from desilab.ui import progress_bar

__all__ = ["MANIFEST", "plan", "run_stages", "sha256_file"]

MANIFEST = "run.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def plan(stages: Sequence[Stage], available: Sequence[str] = ()) -> None:
    """Check that every stage's inputs are produced by an earlier stage (or available).

    Raises
    ------
    StageError
        Naming the stage and the missing product key.
    """
    have = set(available)
    names = set()
    for stage in stages:
        if stage.name in names:
            raise StageError(f"stage {stage.name!r} appears twice", parameter="--stages")
        names.add(stage.name)
        missing = [key for key in stage.inputs if key not in have]
        if missing:
            raise StageError(
                f"stage {stage.name!r} needs {', '.join(missing)}, which no earlier stage produces",
                parameter="--stages",
                hint="include the stages that produce them, or run them first into the same --out folder",
            )
        have.update(stage.outputs)


def _describe_output(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {"path": str(path), "kind": "dir", "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    return {"path": str(path), "kind": "file", "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _generic_checks(stage: Stage, result: StageResult) -> list[Check]:
    checks = []
    for key in stage.outputs:
        path = result.outputs.get(key)
        exists = path is not None and Path(path).exists()
        checks.append(Check(f"output {key} written", exists, str(path) if path else "not returned by the stage"))
    fits_outputs = [
        Path(p) for p in result.outputs.values() if Path(p).is_file() and Path(p).name.endswith((".fits", ".fits.gz"))
    ]
    if fits_outputs:
        from desilab.io.validate import identify, validate

        for path in fits_outputs:
            try:
                schema = identify(path)
            except DesilabError:
                continue  # our own VACs carry their datamodel elsewhere
            problems = [p for p in validate(path, schema) if p.severity == "error"]
            checks.append(
                Check(
                    f"{path.name} matches golden schema {schema.name}",
                    not problems,
                    "; ".join(str(p) for p in problems[:3]),
                )
            )
    return checks


def _manifest(ctx: RunContext, started: str, status: str) -> dict[str, Any]:
    s = ctx.settings
    return {
        "desilab_version": __version__,
        "python": platform.python_version(),
        "started_utc": started,
        "status": status,
        "scale": ctx.scale,
        "settings": {
            "store": _redact(s.store),
            "ray": s.ray,
            "workers": s.workers,
            "seed": s.seed,
            "data_dir": str(s.data_dir),
            "out_dir": str(s.out_dir),
        },
        "products": {k: str(v) for k, v in ctx.products.items()},
        "stages": [r.to_dict() for r in ctx.records],
    }


def _write_manifest(ctx: RunContext, started: str, status: str) -> Path:
    path = ctx.path(MANIFEST)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_manifest(ctx, started, status), indent=2, default=str))
    tmp.replace(path)
    return path


def run_stages(stages: Sequence[Stage], ctx: RunContext, *, progress: bool | None = None) -> list[StageRecord]:
    """Run *stages* in order after :func:`plan`; stop at the first failure.

    Parameters
    ----------
    stages
        Stage instances, in order.
    ctx
        The run context (its ``products`` may hold outputs of earlier runs).
    progress
        Show a progress bar over stages (default: when on a terminal).

    Returns
    -------
    list of StageRecord

    Raises
    ------
    StageError
        If a stage raised or one of its checks failed; ``run.json`` says which.
    """
    plan(stages, available=list(ctx.products))
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with progress_bar(progress) as bar:
        task = bar.add_task("desilab run", total=len(stages))
        for stage in stages:
            bar.update(task, description=f"stage {stage.name}")
            ctx.log.info("stage %s: %s", stage.name, stage.description)
            t0 = time.perf_counter()
            record = StageRecord(stage.name, stage.description, "running", 0.0)
            ctx.records.append(record)
            try:
                result = stage.run(ctx)
                record.seconds = time.perf_counter() - t0
                checks = _generic_checks(stage, result) + stage.checks(ctx, result)
            except DesilabError as exc:
                record.status, record.error = "failed", str(exc)
                record.seconds = time.perf_counter() - t0
                _write_manifest(ctx, started, "failed")
                raise StageError(f"stage {stage.name!r} failed: {exc}") from exc
            except Exception as exc:
                record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
                record.seconds = time.perf_counter() - t0
                _write_manifest(ctx, started, "failed")
                raise StageError(f"stage {stage.name!r} crashed: {type(exc).__name__}: {exc}") from exc
            record.checks = checks
            record.summary = result.summary
            record.figures = [str(p) for p in result.figures]
            record.outputs = {k: _describe_output(Path(p)) for k, p in result.outputs.items()}
            ctx.products.update({k: Path(p) for k, p in result.outputs.items()})
            failed = [c for c in checks if not c.passed]
            record.status = "failed" if failed else "ok"
            _write_manifest(ctx, started, "failed" if failed else "running")
            for c in checks:
                level = logging.INFO if c.passed else logging.ERROR
                ctx.log.log(level, "  check %-45s %s %s", c.name, "ok" if c.passed else "FAILED", c.detail)
            ctx.log.info("stage %s done in %.1f s", stage.name, record.seconds)
            if failed:
                raise StageError(
                    f"stage {stage.name!r}: {len(failed)} check(s) failed: "
                    + "; ".join(f"{c.name} ({c.detail})" for c in failed)
                )
            bar.advance(task)
    _write_manifest(ctx, started, "ok")
    return ctx.records
