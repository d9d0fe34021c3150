"""`desilab run`: stages, the runner, the report. See :mod:`desilab.run.stage`."""

from desilab.run.runner import plan, run_stages
from desilab.run.stage import Check, RunContext, Stage, StageRecord, StageResult
from desilab.run.stages import DEFAULT_ORDER, resolve_stages

__all__ = [
    "DEFAULT_ORDER",
    "Check",
    "RunContext",
    "Stage",
    "StageRecord",
    "StageResult",
    "plan",
    "resolve_stages",
    "run_stages",
]
