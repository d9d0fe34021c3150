"""The stage interface that `desilab run` chains.

A pipeline plugs into ``desilab run`` by subclassing :class:`Stage`: a name, the product
keys it consumes (``inputs``) and produces (``outputs``), a ``run`` that returns the
paths of what it wrote, and ``checks`` that verify the result after the run (each a
:class:`Check` that can fail). The runner (:mod:`desilab.run.runner`) verifies the chain
before starting, times each stage, hashes every output, validates FITS outputs against
their golden schemas, and writes a manifest and a report.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from desilab.compute import Executor
from desilab.config import Settings

__all__ = ["Check", "RunContext", "Stage", "StageRecord", "StageResult"]

SCALES = ("tiny", "small", "full")


@dataclass(frozen=True)
class Check:
    """One post-run check: a name, whether it passed, and what was measured."""

    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class StageResult:
    """What a stage returns: its outputs by product key, and a JSON-able summary."""

    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


@dataclass
class StageRecord:
    """What the runner recorded about one stage (goes into run.json and the report)."""

    name: str
    description: str
    status: str
    seconds: float
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "checks": [c.to_dict() for c in self.checks],
            "summary": self.summary,
            "figures": self.figures,
            "error": self.error,
        }


@dataclass
class RunContext:
    """Everything a stage may use. Stages never read the environment themselves.

    Attributes
    ----------
    settings
        Resolved settings.
    out_dir
        The run's output folder (every product goes under it).
    scale
        Sample-sky scale: ``tiny``, ``small`` or ``full``.
    executor
        Where heavy work runs (:mod:`desilab.compute`).
    products
        Product key -> path, filled as stages complete (inputs of later stages).
    records
        Records of the stages already run (the report stage reads them).
    """

    settings: Settings
    out_dir: Path
    scale: str
    executor: Executor
    products: dict[str, Path] = field(default_factory=dict)
    records: list[StageRecord] = field(default_factory=list)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("desilab.run"))

    def path(self, *parts: str) -> Path:
        """A path under the output folder (parents created)."""
        p = self.out_dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


class Stage(ABC):
    """A step of `desilab run`.

    Subclasses set the class attributes and implement :meth:`run`; override
    :meth:`checks` to verify the result (the runner adds generic checks: declared
    outputs exist, FITS outputs match their golden schema).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, ctx: RunContext) -> StageResult:
        """Do the work; return the outputs written (every key of ``outputs``)."""

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Post-run checks specific to this stage (default: none)."""
        return []
