"""`desilab doctor`."""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.table import Table

from desilab.doctor import run_checks
from desilab.ui import console

_STYLE = {"ok": "green", "missing": "bold red", "warn": "yellow", "info": "cyan"}


def doctor(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
) -> None:
    """Check what is installed and reachable: Python deps, the store, PostgreSQL q3c and
    pg_sphere, Ray, CUDA, disk space. Each line is OK or missing, with the fix.

    Exit status is non-zero when a required component is missing (core packages,
    the configured store; PostgreSQL only when DESILAB_STORE points to it).

    Example: DESILAB_STORE=postgresql://postgres@127.0.0.1:5432/desilab desilab doctor
    """
    settings = ctx.obj.settings
    findings = run_checks(settings)
    bad = [f for f in findings if f.required and f.status == "missing"]
    if as_json:
        typer.echo(json.dumps({"ok": not bad, "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        table = Table(title=f"desilab doctor — store {settings.store_backend}, output {settings.out_dir}")
        for col in ("area", "component", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        for f in findings:
            status = f"[{_STYLE[f.status]}]{f.status.upper()}[/]" + (" *" if f.required else "")
            table.add_row(f.area, f.name, status, escape(f.detail), escape(f.fix))
        console.print(table)
        console.print("* required for the current settings")
        if bad:
            console.print(f"[bold red]{len(bad)} required component(s) missing[/]")
        else:
            console.print("[green]everything required is in place[/]")
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `doctor` to *app*."""
    app.command("doctor")(doctor)
