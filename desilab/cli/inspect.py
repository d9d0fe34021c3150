"""`desilab inspect`: name a DR1 product, list its HDUs and validate it against its golden schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from desilab.errors import FormatError, InputError
from desilab.io.products import load_all
from desilab.io.schema import Problem
from desilab.io.validate import describe, identify, validate
from desilab.ui import console

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


HELP = (
    "Name each file's DR1 product, list its HDUs, and validate it against the golden schema.\n\n"
    "For every FILE: the product (from the file name, else from the HDU names and PRIMARY keywords), "
    "each HDU (EXTNAME, type, rows or shape, number of columns), then the problems found: missing HDUs "
    "or columns, wrong TFORMs or image dtypes, truncation, and product-specific content checks (e.g. "
    "coadd image shapes, all-NaN flux). Warnings (units, string widths, missing keywords) do not make a "
    "file invalid.\n\n"
    "Exit status: 0 when every file is valid, 1 otherwise. Each error line names the file, HDU and "
    "column, e.g. ERROR: zpix-main-dark.fits[ZCATALOG].TARGETID: TFORM is D, expected K.\n\n"
    "Products: zpix, zall-pix, fastspec-v2.1, fastspec-v3.0, coadd, redrock, desivast, qso... "
    "(see docs/formats/).\n\n"
    "Examples:\n\n"
    "  desilab inspect zpix-main-dark.fits coadd-main-dark-10016.fits\n\n"
    "  desilab inspect --product fastspec-v3.0 renamed.fits --json"
)


def inspect_file(path: Path, product: str | None = None) -> dict[str, Any]:
    """Identify, describe and validate one file; never raises for a bad file.

    Returns
    -------
    dict
        ``{"file", "product", "valid", "hdus", "problems"}`` where ``problems`` are
        dicts with ``severity``, ``hdu``, ``column``, ``message``.
    """
    products = load_all()
    file = str(path)
    problems: list[Problem] = []
    hdus: list[dict[str, Any]] = []
    schema = None
    if product is not None:
        if product not in products:
            raise InputError(
                f"unknown product {product!r} (known: {', '.join(sorted(products))})", parameter="--product"
            )
        schema = products[product]
    try:
        if schema is None:
            schema = identify(path)
        hdus = describe(path, schema=schema)["hdus"]
    except FormatError as exc:  # not FITS, truncated, or no known product
        problems.append(Problem(exc.file or file, exc.message, hdu=_str(exc.hdu), column=exc.column))
    else:
        problems = validate(path, schema)
    valid = not any(p.severity == "error" for p in problems)
    return {
        "file": file,
        "product": schema.name if schema is not None else None,
        "valid": valid,
        "hdus": hdus,
        "problems": [
            {"severity": p.severity, "hdu": p.hdu, "column": p.column, "message": p.message, "text": str(p)}
            for p in problems
        ],
    }


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _print_report(report: dict[str, Any]) -> None:
    product = report["product"] or "unknown product"
    status = "[green]valid[/]" if report["valid"] else "[bold red]INVALID[/]"
    console.print(f"[bold]{escape(report['file'])}[/]: {escape(product)} - {status}", soft_wrap=True)
    if report["hdus"]:
        table = Table(show_edge=False, pad_edge=False)
        for col in ("#", "EXTNAME", "type", "rows / shape", "columns"):
            table.add_column(col)
        for h in report["hdus"]:
            if h["type"] == "table":
                size = str(h["rows"])
            elif h["type"] == "image":
                size = "x".join(str(d) for d in h["shape"]) + (f" {h['dtype']}" if h.get("dtype") else "")
            else:
                size = "-"
            table.add_row(str(h["index"]), escape(h["extname"]), h["type"], size, str(h["columns"] or ""))
        console.print(table)
    for p in report["problems"]:
        style = _SEVERITY_STYLE[p["severity"]]
        console.print(f"[{style}]{escape(p['text'])}[/]", soft_wrap=True, highlight=False)


def inspect(
    files: list[Path] = typer.Argument(..., help="FITS files to inspect (.fits or .fits.gz).", show_default=False),
    product: str | None = typer.Option(
        None, "--product", "-p", help="Validate against this product instead of identifying it (e.g. zpix)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    """Inspect FILES (the help text is :data:`HELP`); exit 1 if any file is invalid."""
    reports = [inspect_file(path, product) for path in files]
    ok = all(r["valid"] for r in reports)
    if as_json:
        typer.echo(json.dumps({"valid": ok, "files": reports}, indent=2))
    else:
        for report in reports:
            _print_report(report)
        bad = sum(not r["valid"] for r in reports)
        if len(reports) > 1:
            console.print(f"{len(reports) - bad} of {len(reports)} file(s) valid")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `inspect` to *app*."""
    app.command("inspect", help=HELP)(inspect)
