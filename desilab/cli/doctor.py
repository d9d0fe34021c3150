"""`desilab doctor` (being written; registers nothing yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Add the command(s) of this module to *app*."""
