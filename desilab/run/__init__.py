"""`desilab run`: stages, the runner, the report. See :mod:`desilab.run.stage`."""

from desilab.run.runner import plan, run_stages
from desilab.run.stage import Check, RunContext, Stage, StageRecord, StageResult
from desilab.run.stages import STAGE_PATHS, default_stage_classes, resolve_stages

__all__ = [
    "STAGE_PATHS",
    "Check",
    "RunContext",
    "Stage",
    "StageRecord",
    "StageResult",
    "default_stage_classes",
    "plan",
    "resolve_stages",
    "run_stages",
]
