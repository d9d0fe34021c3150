"""The ``desilab`` command line: thin commands over the library.

Each sub-module in :data:`COMMAND_MODULES` defines ``register(app)`` and adds its
commands. Commands read the resolved :class:`~desilab.config.Settings` from the Typer
context (``ctx.obj.settings``), call library functions, and print results. Errors
derived from :class:`~desilab.errors.DesilabError` are printed on one line and the
process exits non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from desilab import __version__
from desilab.config import Settings, load_settings
from desilab.errors import DesilabError
from desilab.ui import err_console, setup_logging

__all__ = ["COMMAND_MODULES", "State", "app", "main"]

log = logging.getLogger("desilab")

COMMAND_MODULES = ["doctor", "run", "inspect", "fetch", "store", "voids", "outflows", "anomalies", "sample"]

app = typer.Typer(
    name="desilab",
    help=(
        "desilab: DESI DR1 research on modest hardware.\n\n"
        "Typical session:\n\n"
        "  desilab doctor                 check what is installed and reachable\n\n"
        "  desilab run                    sample sky -> store -> all pipelines -> report\n\n"
        "  desilab inspect FILE...        name a DR1 product and validate it\n\n"
        "  desilab fetch --help           download DR1 files (or just some targets)\n\n"
        "Settings come from options, DESILAB_* environment variables, or ./desilab.toml "
        "(e.g. DESILAB_STORE=postgresql://postgres@127.0.0.1:5432/desilab)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@dataclass
class State:
    """What every command receives in ``ctx.obj``."""

    settings: Settings
    debug: bool = False


def _version(value: bool) -> None:
    if value:
        typer.echo(f"desilab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    store: str | None = typer.Option(
        None, "--store", help="Store URL: duckdb:///path.duckdb or postgresql://user@host/db [env DESILAB_STORE]."
    ),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Local worker processes [env DESILAB_WORKERS]."),
    ray: str | None = typer.Option(
        None, "--ray", help="Run heavy work on Ray: 'local', 'auto' or ray://host:10001 [env DESILAB_RAY]."
    ),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Input data folder [env DESILAB_DATA_DIR]."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Output folder [env DESILAB_OUT_DIR]."),
    seed: int | None = typer.Option(None, "--seed", help="Root random seed [env DESILAB_SEED]."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print version."),
) -> None:
    """Resolve settings once, at the edge, and hand them to the command."""
    overrides = {
        "store": store,
        "workers": workers,
        "ray": ray,
        "data_dir": data_dir,
        "out_dir": out_dir,
        "seed": seed,
        "log_level": "DEBUG" if debug else None,
    }
    settings = load_settings(overrides)
    setup_logging(settings.log_level)
    ctx.obj = State(settings=settings, debug=debug)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"desilab.cli.{name}")
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``desilab`` script; returns the exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # with standalone_mode=False click *returns* the code of a typer.Exit raised by a command
        rc = app(args=argv, standalone_mode=False)
    except DesilabError as exc:
        if debug:
            err_console.print_exception()
        err_console.print(f"[bold red]error[/]: {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except Exception as exc:  # click usage errors and real bugs
        # click usage errors (typer may vendor click, so match by interface, not by class)
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error[/]: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        return 70
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
