"""`desilab sample`: generate the sample sky (a mock DR1 universe with known truth)."""

from __future__ import annotations

from pathlib import Path

import typer

from desilab.errors import ConfigError
from desilab.ui import console, progress_bar


def sample(
    ctx: typer.Context,
    scale: str = typer.Option(
        "tiny",
        "--scale",
        help="tiny (~20k galaxies, 500 quasar spectra; CI), small (~200k, 5k) or full (DESIVAST-sized).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the DESILAB_SEED setting)."),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder, laid out like the public DR1 tree (default: DATA_DIR/sample-SCALE-SEED)."
    ),
    no_spectra: bool = typer.Option(False, "--no-spectra", help="Catalogues and truth only (no coadd/redrock files)."),
    templates: str = typer.Option(
        "builtin", "--templates", help="Quasar templates: builtin (default) or real (../shared/data/real, if present)."
    ),
    env_quenching: float | None = typer.Option(
        None,
        "--env-quenching",
        help="Injected environmental quenching: void galaxies' quenched fraction is (1 - A) times the others' at "
        "fixed stellar mass (default 0.25; 0 = null sky).",
    ),
) -> None:
    """Generate a sample sky: a realistic mock DR1 universe with known truth, in the real formats.

    Galaxies (BGS Bright/Faint) fill a DESI-like NGC + SGC footprint with a cosmic web
    of voids, walls, filaments and clusters; VoidFinder and V² (REVOLVER, VIDE) void
    catalogues are built from the volume-limited tracers exactly as DESIVAST defines
    them; quasars come with coadd + redrock spectra (BALs, outflows, anomalies). Every
    file is written through desilab's DR1 writers, laid out like the public tree:

      spectro/redux/iron/zcatalog/v1/       zpix-main-bright, zpix-main-dark, zpix-sv3-bright, zall-pix-iron

      spectro/redux/iron/healpix/main/dark/ coadd-* and redrock-* (quasars; not with --no-spectra)

      vac/dr1/fastspecfit/iron/v3.0/        FastSpecFit v3.0 (h = 1 masses, SFRs, Dn4000, lines)

      vac/dr1/desivast/v1.0/                VoidFinder and V2 (REVOLVER, VIDE), NGC and SGC

      survey/catalogs/dr1/QSO/iron/         QSO catalogue with the BAL columns

      truth/                                what the mock is: environments, injected quenching, quasar truth

    The same seed and options give byte-identical files. Truth tables are documented in
    docs/sample-sky.md. Point DESILAB_DATA_DIR (or --data-dir) at the output to use it
    as DR1.

    Examples:

      desilab sample                                  # tiny sky in ./desilab-data/sample-tiny-SEED

      desilab sample --scale small --seed 7 --out /tmp/sky

      desilab sample --no-spectra --env-quenching 0   # a null sky, catalogues only
    """
    from desilab.compute import get_executor
    from desilab.sample import build_sample_sky, config_for_scale

    settings = ctx.obj.settings
    if templates not in ("builtin", "real"):
        raise ConfigError(f"unknown template set {templates!r}; choose builtin or real", parameter="--templates")
    seed = settings.seed if seed is None else seed
    if seed < 0:
        raise ConfigError("the seed must be a non-negative integer", parameter="--seed")
    overrides = {} if env_quenching is None else {"env_quenching": env_quenching}
    cfg = config_for_scale(scale, **overrides)
    out_dir = out if out is not None else Path(settings.data_dir) / f"sample-{scale}-{seed}"
    executor = get_executor(settings.workers, settings.ray)
    try:
        with progress_bar() as progress:
            sky = build_sample_sky(
                cfg,
                out_dir,
                seed=seed,
                spectra=not no_spectra,
                templates=templates,
                shared_dir=settings.shared_dir,
                executor=executor,
                progress=progress,
            )
    finally:
        executor.close()
    stats = sky.summary["statistics"]
    counts = sky.summary["counts"]
    console.print(
        f"[green]sample sky[/] ({scale}, seed {seed}) in {sky.summary['seconds_total']:.1f} s: "
        f"{counts['n_observed']} galaxies ({counts['n_tracers']} tracers), "
        f"{counts['n_voids']} VoidFinder voids / {counts['n_holes']} holes, "
        f"{sky.summary.get('quasars', {}).get('n', 0)} quasars; "
        f"voids fill {stats['void_volume_fraction_interior']:.0%} of the interior volume and hold "
        f"{stats['void_galaxy_fraction_interior']:.1%} of its tracers"
    )
    console.print(f"{len(sky.files)} files under {sky.out_dir}")


def register(app: typer.Typer) -> None:
    """Add `sample` to *app*."""
    app.command("sample")(sample)
