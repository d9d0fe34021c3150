"""The stages `desilab run` knows, in their default order.

Pipelines register their stage class in :data:`STAGE_PATHS` (between ``environment``
and ``report``): ``sample`` → ``ingest`` → ``voids`` → ``outflows`` → ``anomalies``.
Classes are imported only when a run needs them, so ``desilab --help`` stays fast
(the anomaly stage pulls in PyTorch).
"""

from __future__ import annotations

import importlib
import json

from desilab.doctor import run_checks
from desilab.run.report import write_report
from desilab.run.stage import Check, RunContext, Stage, StageResult

__all__ = ["STAGE_PATHS", "EnvironmentStage", "ReportStage", "default_stage_classes", "resolve_stages"]


class EnvironmentStage(Stage):
    """Record what this run ran on (versions, store, compute) as environment.json."""

    name = "environment"
    description = "record package versions, store and compute back-ends (provenance)"
    outputs = ("environment",)

    def run(self, ctx: RunContext) -> StageResult:
        """Run the doctor's checks and write them to ``environment.json``."""
        findings = run_checks(ctx.settings, postgres_timeout_s=2.0)
        path = ctx.path("environment.json")
        path.write_text(json.dumps([f.to_dict() for f in findings], indent=2))
        missing = [f"{f.name}" for f in findings if f.required and f.status == "missing"]
        return StageResult(
            outputs={"environment": path},
            summary={"required_missing": missing, "components": len(findings)},
        )

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Every required component must be present."""
        missing = result.summary["required_missing"]
        return [Check("required components present", not missing, ", ".join(missing) or "all present")]


class ReportStage(Stage):
    """Summarise the run: stages, checks, products and figures, as Markdown and HTML."""

    name = "report"
    description = "write report.md and report.html summarising every stage, check and product"
    outputs = ("report_md", "report_html")

    def run(self, ctx: RunContext) -> StageResult:
        """Write the report from the records of the stages run so far."""
        md, html = write_report(ctx)
        return StageResult(outputs={"report_md": md, "report_html": html}, summary={"stages": len(ctx.records) - 1})

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """The report names every stage that ran before it."""
        text = result.outputs["report_md"].read_text()
        absent = [r.name for r in ctx.records[:-1] if f"`{r.name}`" not in text]
        return [Check("report covers every stage", not absent, ", ".join(absent) or f"{len(ctx.records) - 1} stages")]


STAGE_PATHS: list[str] = [
    "desilab.run.stages:EnvironmentStage",
    "desilab.sample.stage:SampleStage",
    "desilab.store.stage:IngestStage",
    "desilab.voids.stage:VoidsStage",
    "desilab.outflows.stage:OutflowsStage",
    "desilab.anomalies.stage:AnomaliesStage",
    "desilab.run.stages:ReportStage",
]
"""``module:Class`` of every default stage, in run order."""


def default_stage_classes() -> list[type[Stage]]:
    """Import and return the default stage classes, in run order."""
    classes = []
    for path in STAGE_PATHS:
        module, _, name = path.partition(":")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


def resolve_stages(only: list[str] | None = None, skip: list[str] | None = None) -> list[Stage]:
    """Instances of the default stages, optionally restricted (``only``) or reduced (``skip``).

    Raises
    ------
    StageError
        For an unknown stage name.
    """
    from desilab.errors import StageError

    order = default_stage_classes()
    known = {cls.name: cls for cls in order}
    for name in (only or []) + (skip or []):
        if name not in known:
            raise StageError(f"unknown stage {name!r}; known: {', '.join(known)}", parameter="--stages/--skip")
    chosen = [cls for cls in order if (not only or cls.name in only) and cls.name not in (skip or [])]
    return [cls() for cls in chosen]
