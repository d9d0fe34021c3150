"""Store commands: `desilab ingest`, `query`, `cone`, `crossmatch` and `desilab store ...`.

Thin wrappers over :mod:`desilab.store`: parse arguments, open the configured store
(``--store`` / ``DESILAB_STORE``), call one library function, print or write the result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.table import Table

from desilab.errors import FormatError, InputError
from desilab.ui import console, progress_bar

FORMATS = ("table", "csv", "parquet", "fits")

store_app = typer.Typer(
    name="store",
    help=(
        "Manage the catalog store: list tables and columns, check consistency, back up and restore.\n\n"
        "  desilab store tables\n\n"
        "  desilab store columns zcatalog\n\n"
        "  desilab store export backups/2024-06-01\n\n"
        "  desilab --store duckdb:///new.duckdb store import backups/2024-06-01"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _open(ctx: typer.Context, *, create: bool = False, read_only: bool = False):
    from desilab.store import connect

    url = ctx.obj.settings.store
    return connect(url, create=create, read_only=read_only and url.startswith("duckdb"))


def _spinner(text: str):
    bar = progress_bar(transient=True)
    prog = bar.__enter__()
    prog.add_task(text, total=None)
    return bar


def _lists_to_text(table: pa.Table) -> pa.Table:
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type) or pa.types.is_fixed_size_list(f.type) or pa.types.is_large_list(f.type):
            text = [None if v is None else json.dumps(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(text, pa.string()))
    return table


def _fits_ready(table: pa.Table) -> pa.Table:
    """FITS has no NULL: fill with 0 / NaN / False / "" (desilab's neutral values); lists
    become fixed-size when every row has the same length."""
    for i, f in enumerate(table.schema):
        col = table.column(i)
        if col.null_count and not (pa.types.is_list(f.type) or pa.types.is_large_list(f.type)):
            if pa.types.is_floating(f.type):
                fill = pa.scalar(float("nan"), f.type)
            elif pa.types.is_boolean(f.type):
                fill = pa.scalar(False)
            elif pa.types.is_string(f.type):
                fill = pa.scalar("")
            elif pa.types.is_timestamp(f.type):
                col = col.cast(pa.string())
                fill = pa.scalar("")
                f = f.with_type(pa.string())
            else:
                fill = pa.scalar(0, f.type)
            table = table.set_column(i, f, pc.fill_null(col, fill))
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            col = table.column(i).combine_chunks()
            lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
            if col.null_count or len(set(np.asarray(lengths).tolist())) > 1 or len(col) == 0:
                raise FormatError(
                    "variable-length list column cannot be written to FITS; use --format parquet", column=f.name
                )
            size = int(lengths[0])
            fixed = pa.FixedSizeListArray.from_arrays(col.flatten(), size)
            table = table.set_column(i, pa.field(f.name, fixed.type, metadata=f.metadata), fixed)
    return table


def _write(table: pa.Table, fmt: str | None, out: Path | None, limit: int) -> None:
    if fmt is None:
        fmt = (
            "table"
            if out is None
            else {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(out.suffix.lower(), "fits")
        )
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", parameter="--format")
    if fmt in ("parquet", "fits") and out is None:
        raise InputError(f"--format {fmt} needs --out FILE", parameter="--out")
    if fmt == "table":
        text_out = out.open("w") if out is not None else None
        try:
            _print_table(table, limit, text_out)
        finally:
            if text_out is not None:
                text_out.close()
        return
    if fmt == "csv":
        import pyarrow.csv as pacsv

        data = _lists_to_text(table)
        if out is None:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(data, sink)
            typer.echo(sink.getvalue().to_pybytes().decode(), nl=False)
        else:
            pacsv.write_csv(data, out)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    else:
        import fitsio

        from desilab.io.fits import arrow_to_numpy

        data = _fits_ready(table)
        data = data.rename_columns([n.upper() for n in data.column_names])
        units = [((f.metadata or {}).get(b"unit") or b"").decode() for f in data.schema]
        if out.exists():
            out.unlink()
        with fitsio.FITS(str(out), "rw") as fits:
            fits.write(arrow_to_numpy(data), units=units, extname="RESULT")
    if out is not None:
        console.print(f"wrote {table.num_rows} rows to {out}", highlight=False)


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.10g}"
    return str(v)


def _print_table(table: pa.Table, limit: int, file=None) -> None:
    shown = table.slice(0, limit)
    if file is not None:
        file.write("\t".join(table.column_names) + "\n")
        for row in shown.to_pylist():
            file.write("\t".join(_fmt(v) for v in row.values()) + "\n")
        return
    rows = shown.to_pylist()
    width = sum(max([len(n)] + [len(_fmt(r[n])) for r in rows]) + 3 for n in table.column_names)
    if width > max(console.width, 80):  # too wide for columns: one block per row
        key = max(len(n) for n in table.column_names)
        for k, row in enumerate(rows):
            console.rule(f"row {k}", style="dim")
            for name, v in row.items():
                console.print(f"{name:>{key}}  {_fmt(v)}", highlight=False, soft_wrap=True)
        more = f" (showing {len(rows)}; use --limit or --out for more)" if table.num_rows > len(rows) else ""
        console.print(f"{table.num_rows} row(s){more}", highlight=False)
        return
    t = Table(show_edge=False, header_style="bold")
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in shown.to_pylist():
        t.add_row(*(_fmt(v) for v in row.values()))
    console.print(t)
    more = f" (showing {shown.num_rows}; use --limit or --out for more)" if table.num_rows > shown.num_rows else ""
    console.print(f"{table.num_rows} row(s){more}", highlight=False)


def _radius(value: float, name: str) -> float:
    if not math.isfinite(value) or value < 0 or value > 648000:
        raise InputError(f"radius must be between 0 and 648000 arcsec (180 deg), got {value}", parameter=name)
    return value


_FMT_HELP = "Output format: table (default on screen), csv, parquet or fits (guessed from --out's suffix)."


def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="DR1 files or directories (searched recursively for FITS files)."),
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Reader processes (default: the --workers setting)."
    ),
) -> None:
    """Load DR1 files into the store: redshift catalogs (zpix, zall-pix), FastSpecFit,
    QSO/BAL catalogs, DESIVAST void catalogs and coadds (as a spectra index).

    Each file is one transaction (a crash leaves no partial rows), files already
    ingested are skipped by checksum, and an interrupted ingest resumes where it
    stopped when run again. Files are read in parallel; indexes are built at the end.

    Examples:

      desilab ingest desilab-data/sample             # a whole tree

      desilab ingest zall-pix-iron.fits fastspec-iron-main-bright-nside1-hp0*.fits

      desilab --store postgresql://postgres@127.0.0.1:5432/desilab ingest desilab-data/dr1
    """
    settings = ctx.obj.settings
    with _open(ctx, create=True) as store, progress_bar() as prog:
        report = store.ingest(paths, workers=workers or settings.workers, progress=prog)
    t = Table(show_edge=False, header_style="bold")
    for col in ("status", "files"):
        t.add_column(col)
    for status in ("ingested", "replaced", "skipped", "failed"):
        if report.count(status):
            t.add_row(status, str(report.count(status)))
    console.print(t)
    for name, n in sorted(report.table_rows().items()):
        console.print(f"  {name}: {n} rows", highlight=False)
    console.print(f"{report.rows} rows in {report.seconds:.1f} s", highlight=False)
    for f in report.files:
        if f.status == "skipped" and f.message and not f.message.startswith("already"):
            console.print(f"[yellow]skipped[/] {f.path}: {f.message}", highlight=False)
    if report.failed:
        for f in report.failed:
            console.print(f"[bold red]failed[/] {f.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., metavar="SQL", help="One read-only statement (SELECT / WITH ... SELECT)."),
    fmt: str | None = typer.Option(None, "--format", "-f", help=_FMT_HELP),
    out: Path | None = typer.Option(None, "--out", help="Write the result to this file."),
    limit: int = typer.Option(20, "--limit", help="Rows shown on screen (--format table)."),
) -> None:
    """Run one read-only SQL query on the store. Column names are case-insensitive and
    come back in lower case; the same SQL works on DuckDB and PostgreSQL for standard
    SELECTs (list tables with `desilab store tables`, columns with `desilab store columns`).

    Examples:

      desilab query "SELECT spectype, count(*) AS n FROM zcatalog GROUP BY spectype"

      desilab query "SELECT targetid, z FROM galaxies WHERE logmstar > 11" --out massive.parquet

      desilab query "SELECT * FROM quasars WHERE bi_civ > 0" --format fits --out bal.fits
    """
    with _open(ctx, read_only=True) as store:
        bar = _spinner("query")
        try:
            table = store.query(sql)
        finally:
            bar.__exit__(None, None, None)
    _write(table, fmt, out, limit)


def cone(
    ctx: typer.Context,
    table: str = typer.Argument(..., metavar="TABLE", help="A sky table or view, e.g. zcatalog, galaxies, quasars."),
    ra: float = typer.Argument(..., metavar="RA", help="Centre right ascension (deg)."),
    dec: float = typer.Argument(..., metavar="DEC", help="Centre declination (deg)."),
    radius: float = typer.Argument(..., metavar="RADIUS_ARCSEC", help="Radius (arcsec)."),
    fmt: str | None = typer.Option(None, "--format", "-f", help=_FMT_HELP),
    out: Path | None = typer.Option(None, "--out", help="Write the result to this file."),
    limit: int = typer.Option(20, "--limit", help="Rows shown on screen (--format table)."),
) -> None:
    """Rows of TABLE within RADIUS_ARCSEC of (RA, DEC), nearest first, with their
    separation (sep_arcsec). Exact great-circle distances; correct across RA 0/360,
    at the poles, and for radius 0 (exact position only).

    Examples:

      desilab cone zcatalog 150.1 2.2 60             # 1 arcmin around (150.1, +2.2)

      desilab cone galaxies 0.0 -0.5 3600 --out field.parquet

      desilab cone voidfinder_maximals 180 40 36000 --format csv
    """
    _radius(radius, "RADIUS_ARCSEC")
    if not math.isfinite(dec) or abs(dec) > 90:
        raise InputError(f"Dec must be between -90 and 90 deg, got {dec}", parameter="DEC")
    if not math.isfinite(ra):
        raise InputError(f"RA must be a finite number of degrees, got {ra}", parameter="RA")
    with _open(ctx, read_only=True) as store:
        result = store.cone(table, ra, dec, radius / 3600.0)
    _write(result, fmt, out, limit)


def _read_user_table(path: Path) -> pa.Table:
    if not path.exists():
        raise InputError("no such file", file=path, parameter="USERFILE")
    name = path.name.lower()
    try:
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"cannot read: {exc}", file=path, parameter="USERFILE") from exc
    if name.endswith((".fits", ".fits.gz", ".fit")):
        from desilab.io.fits import hdu_names, open_fits, read_table

        with open_fits(path) as fits:
            names = hdu_names(fits)
            ext = next(
                (n for i, n in enumerate(names) if i and fits[i].get_exttype() in ("BINARY_TBL", "ASCII_TBL")), None
            )
        if ext is None:
            raise FormatError("no table HDU", file=path, parameter="USERFILE")
        return read_table(path, ext)
    raise InputError("unknown file type: use .csv, .parquet or .fits", file=path, parameter="USERFILE")


def crossmatch(
    ctx: typer.Context,
    userfile: Path = typer.Argument(..., metavar="USERFILE", help="Your positions: .csv, .parquet or .fits."),
    table: str = typer.Argument(..., metavar="TABLE", help="A sky table or view of the store."),
    radius: float = typer.Argument(..., metavar="RADIUS", help="Matching radius (arcsec)."),
    nearest: bool = typer.Option(False, "--nearest", help="Keep only the nearest match of each row."),
    ra_col: str | None = typer.Option(None, "--ra", help="RA column of USERFILE (default: ra, target_ra, ...)."),
    dec_col: str | None = typer.Option(None, "--dec", help="Dec column of USERFILE (default: dec, target_dec, ...)."),
    fmt: str | None = typer.Option(None, "--format", "-f", help=_FMT_HELP),
    out: Path | None = typer.Option(None, "--out", help="Write the result to this file."),
    limit: int = typer.Option(20, "--limit", help="Rows shown on screen (--format table)."),
) -> None:
    """Match the rows of USERFILE with TABLE within RADIUS arcsec. The result has your
    columns, the table's columns (a name in both gets _1 / _2 suffixes) and sep_arcsec;
    the pairs are the same as astropy's search_around_sky.

    Examples:

      desilab crossmatch targets.csv zcatalog 1.0 --nearest

      desilab crossmatch my_clusters.fits galaxies 30 --ra RA_BCG --dec DEC_BCG --out members.parquet
    """
    _radius(radius, "RADIUS")
    user = _read_user_table(userfile)
    with _open(ctx, read_only=True) as store:
        bar = _spinner("crossmatch")
        try:
            result = store.crossmatch(user, table, radius, nearest=nearest, ra=ra_col, dec=dec_col)
        finally:
            bar.__exit__(None, None, None)
    _write(result, fmt, out, limit)


@store_app.command("tables")
def tables_cmd(ctx: typer.Context) -> None:
    """List the store's tables and views with their row counts.

    Example:

      desilab store tables
    """
    with _open(ctx, read_only=True) as store:
        infos = store.tables()
    t = Table(show_edge=False, header_style="bold")
    for col in ("table", "kind", "rows", "sky", "description"):
        t.add_column(col, overflow="fold")
    for i in infos:
        t.add_row(i.name, i.kind, "" if i.rows is None else str(i.rows), "yes" if i.sky else "", i.description[:90])
    console.print(t)


@store_app.command("columns")
def columns_cmd(ctx: typer.Context, table: str = typer.Argument(..., metavar="TABLE")) -> None:
    """Describe the columns of TABLE: type, unit, UCD, utype and description.

    Example:

      desilab store columns zcatalog
    """
    with _open(ctx, read_only=True) as store:
        cols = store.columns(table)
    t = Table(show_edge=False, header_style="bold")
    for col in ("column", "type", "unit", "ucd", "description"):
        t.add_column(col, overflow="fold")
    for c in cols:
        t.add_row(c.name, c.type, c.unit or "", c.ucd or "", c.description)
    console.print(t)


@store_app.command("check")
def check_cmd(ctx: typer.Context) -> None:
    """Check the store's consistency: every row belongs to a recorded file, recorded row
    counts match, keys are unique. Exits 1 if anything is wrong.

    Example:

      desilab store check
    """
    with _open(ctx, read_only=True) as store:
        problems = store.check()
    if problems:
        for p in problems:
            console.print(f"[red]problem[/] {p}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]consistent[/]")


@store_app.command("optimize")
def optimize_cmd(
    ctx: typer.Context,
    tables: list[str] = typer.Argument(None, metavar="[TABLE]...", help="Sky tables (default: all)."),
) -> None:
    """Rewrite sky tables in spatial order so that cone searches read fewer blocks
    (DuckDB: sorted by hpx14; PostgreSQL: CLUSTER on the q3c index). Worth it after
    ingesting many files; results never change.

    Examples:

      desilab store optimize

      desilab store optimize zcatalog quasars
    """
    with _open(ctx, create=False) as store:
        bar = _spinner("optimize")
        try:
            done = store.optimize(tables or None)
        finally:
            bar.__exit__(None, None, None)
    console.print(f"optimized {', '.join(done) or 'nothing (empty tables)'}", highlight=False)


@store_app.command("export")
def export_cmd(
    ctx: typer.Context, directory: Path = typer.Argument(..., metavar="DIR", help="New or empty folder.")
) -> None:
    """Back the store up to DIR: one Parquet file per table, manifest.json (schema,
    column docs, row counts, checksums, content digests) and SHA256SUMS.

    Example:

      desilab store export backups/2024-06-01
    """
    with _open(ctx, read_only=True) as store, progress_bar() as prog:
        manifest = store.export(directory, progress=prog)
    rows = sum(t["rows"] for t in manifest["tables"])
    console.print(f"exported {len(manifest['tables'])} tables, {rows} rows to {directory}", highlight=False)


@store_app.command("import")
def import_cmd(
    ctx: typer.Context, directory: Path = typer.Argument(..., metavar="DIR", help="A folder made by export.")
) -> None:
    """Restore a backup made by `desilab store export` into an empty store, verifying
    every file's checksum and every table's content digest (nothing is kept on a
    mismatch). Works across backends (DuckDB <-> PostgreSQL).

    Example:

      desilab --store duckdb:///restored.duckdb store import backups/2024-06-01
    """
    with _open(ctx, create=True) as store, progress_bar() as prog:
        result = store.import_(directory, progress=prog)
    rows = sum(t["rows"] for t in result["tables"])
    console.print(f"imported {len(result['tables'])} tables, {rows} rows; content digests verified", highlight=False)


# Negative numbers (Dec -2.5) must be arguments, not unknown options.
_NUMERIC_ARGS = {"ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}


def register(app: typer.Typer) -> None:
    """Add ingest, query, cone, crossmatch and the `store` group to *app*."""
    app.command("ingest")(ingest)
    app.command("query")(query)
    app.command("cone", context_settings=_NUMERIC_ARGS)(cone)
    app.command("crossmatch", context_settings=_NUMERIC_ARGS)(crossmatch)
    app.add_typer(store_app, name="store")
