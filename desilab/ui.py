"""Console output shared by the CLI and long-running library calls: logging and progress.

Library code takes a ``progress`` argument (a :class:`Progress` or ``None``) instead of
printing. :func:`progress_bar` gives a rich progress bar on a terminal and stays silent
when output is redirected or ``DESILAB_PROGRESS=0``-style settings turned it off.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["console", "err_console", "progress_bar", "setup_logging"]

console = Console()
err_console = Console(stderr=True)


def setup_logging(level: str = "INFO") -> None:
    """Route desilab's logs to stderr through rich (idempotent)."""
    logger = logging.getLogger("desilab")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


@contextlib.contextmanager
def progress_bar(enabled: bool | None = None, transient: bool = False) -> Iterator[Progress]:
    """A rich Progress for multi-step work; disabled (no output) when not on a terminal.

    Parameters
    ----------
    enabled
        Force on/off; default: on when stderr is a terminal.
    transient
        Remove the bars when done.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=transient,
    )
    with progress:
        yield progress
