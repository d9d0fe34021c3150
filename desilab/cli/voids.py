"""`desilab voids`: the cosmic-void galaxy pipeline, and `desilab voids classify` for any file pair."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from desilab.errors import ConfigError
from desilab.ui import console

voids_app = typer.Typer(
    name="voids",
    help=(
        "Void galaxies: environment of every galaxy (VoidFinder and V2, VAST flag codes), quenching in voids vs "
        "walls with jackknife errors, a VAC and figures.\n\n"
        "  desilab voids                      run on the configured store (galaxies + DESIVAST catalogs)\n\n"
        "  desilab voids classify --galaxies my.parquet --voids VF_NGC.fits --voids V2_VIDE_NGC.fits --out env.fits"
    ),
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_EDGE_HELP = "Edge rule of flag 2: 'probe' (VAST, six points +-10 Mpc/h) or 'buffer' (DESIVAST, 30 Mpc/h)."


@voids_app.callback()
def voids(
    ctx: typer.Context,
    edge: str = typer.Option("probe", "--edge", help=_EDGE_HELP),
    quenched: str = typer.Option("ssfr", "--quenched", help="Quenched if log sSFR < -11 ('ssfr') or Dn4000 > 1.6."),
    h: float = typer.Option(1.0, "--h", help="Hubble h for masses/SFRs (FastSpecFit is h = 1)."),
    regions: int = typer.Option(64, "--regions", help="Jackknife regions (HEALPix runs; >= 50 recommended)."),
    out: Path | None = typer.Option(None, "--out-dir", help="Output folder (default: <out>/voids)."),
) -> None:
    """Run the void-galaxy pipeline on the store: VAC (FITS + Parquet), summary JSON/CSV, figures."""
    if ctx.invoked_subcommand is not None:
        return
    from desilab.compute import get_executor
    from desilab.store import connect
    from desilab.voids.analysis import StatsConfig
    from desilab.voids.catalogs import voidset_from_store
    from desilab.voids.pipeline import GALAXY_SQL, galaxy_arrays, run_pipeline

    if edge not in ("probe", "buffer"):
        raise ConfigError(f"unknown edge rule {edge!r}", parameter="--edge")
    if regions < 2:
        raise ConfigError("need at least 2 jackknife regions", parameter="--regions")
    settings = ctx.obj.settings
    out_dir = out or (settings.out_dir / "voids")
    with connect(settings.store, create=False, read_only=settings.store.startswith("duckdb")) as store:
        vs = voidset_from_store(store)
        galaxies = galaxy_arrays(store.query(GALAXY_SQL))
    executor = get_executor(settings.workers, settings.ray)
    try:
        summary = run_pipeline(
            galaxies, vs, out_dir, seed=settings.seed, executor=executor, edge_rule=edge, workers=settings.workers,
            stats=StatsConfig(quenched_definition=quenched, h=h, n_regions=regions, edge=edge),
        )
    finally:
        executor.close()
    q = summary.get("statistics", {}).get("ENV_VOIDFINDER", {}).get("quenching", {})
    console.print(f"classified {summary['n_galaxies']:,} galaxies ({summary['tracers']:,} tracers); "
                  f"VoidFinder flags {summary.get('voidfinder', {}).get('flags')}")
    if q:
        console.print(f"f_Q(void) - f_Q(wall, matched) = {q['combined_diff']:+.3f} +- {q['combined_diff_err']:.3f} "
                      f"({q['error_method']}, {q['n_resamples']} regions; h = {h})")
    console.print(f"products in {out_dir}")


@voids_app.command("classify")
def classify(
    ctx: typer.Context,
    galaxies: Path = typer.Option(..., "--galaxies", help="FITS or Parquet with TARGETID, RA/DEC (or TARGET_*), Z."),
    voids_: list[Path] = typer.Option(..., "--voids", help="DESIVAST VoidFinder / V2 file (repeat for several)."),
    out: Path = typer.Option(..., "--out", help="Output file (.fits or .parquet)."),
    edge: str = typer.Option("probe", "--edge", help=_EDGE_HELP),
) -> None:
    """Classify any galaxy file against void catalog files (no store needed)."""
    from desilab.voids.pipeline import classify_files

    if edge not in ("probe", "buffer"):
        raise ConfigError(f"unknown edge rule {edge!r}", parameter="--edge")
    summary = classify_files(galaxies, list(voids_), out, edge_rule=edge, workers=ctx.obj.settings.workers)
    vf = summary.get("voidfinder", {})
    console.print(f"{summary['n_galaxies']:,} galaxies -> {out}")
    if vf:
        console.print(f"VoidFinder flags {vf['flags']} (boundary shell: {vf['shell_galaxies']})")
    console.print(json.dumps(summary.get("agreement", {}), indent=1))


def register(app: typer.Typer) -> None:
    """Add the `voids` group to *app*."""
    app.add_typer(voids_app, name="voids")
