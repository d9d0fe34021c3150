"""The ``sample`` stage of `desilab run`: generate the sample sky the pipelines read.

Output product ``sample_sky``: the folder, laid out like the public DR1 tree (see
:mod:`desilab.sample.build`). Post-run checks: every DR1 product in it passes
:func:`desilab.io.validate.validate`, the void catalogues hold the VoidFinder
consistency property (no tracer strictly inside a hole but field galaxies), and the void
statistics are in the calibrated ranges.
"""

from __future__ import annotations

from pathlib import Path

from desilab.run.stage import Check, RunContext, Stage, StageResult

__all__ = ["SampleStage"]

#: Calibration windows checked after a run (the tests use the same numbers).
VOLUME_FRACTION_RANGE = (0.55, 0.65)
GALAXY_FRACTION_RANGE = (0.05, 0.09)


class SampleStage(Stage):
    """Generate the sample sky (galaxies, voids, quasars, truth) for the run's scale."""

    name = "sample"
    description = "generate the sample sky: galaxies, void catalogues, quasar spectra and truth, in DR1 formats"
    outputs = ("sample_sky",)

    def run(self, ctx: RunContext) -> StageResult:
        """Build the sky under ``OUT/sample-sky`` with the run's scale, seed and executor."""
        from desilab.sample import build_sample_sky, config_for_scale

        cfg = config_for_scale(ctx.scale)
        out = ctx.out_dir / "sample-sky"
        sky = build_sample_sky(
            cfg,
            out,
            seed=ctx.settings.seed,
            shared_dir=ctx.settings.shared_dir,
            executor=ctx.executor,
        )
        summary = {
            "scale": ctx.scale,
            "seed": ctx.settings.seed,
            "files": len(sky.files),
            "counts": {k: v for k, v in sky.summary["counts"].items() if k.startswith("n_")},
            "statistics": sky.summary["statistics"],
            "seconds": round(sky.summary["seconds_total"], 2),
        }
        fits = [str(p) for p in sky.files if p.suffix == ".fits"]
        return StageResult(outputs={"sample_sky": out}, summary={**summary, "fits_files": fits})

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Validate every FITS product and the calibrated void statistics."""
        from desilab.io.validate import validate

        errors = []
        for f in result.summary.get("fits_files", []):
            errors += [str(p) for p in validate(Path(f)) if p.severity == "error"]
        stats = result.summary["statistics"]
        # tiny: the survey interior (VAST edge flag 0); small/full: the whole survey (see
        # docs/sample-sky.md, "Calibration": in a narrow survey more volume lies near edges)
        which = "_interior" if result.summary["scale"] == "tiny" else ""
        fv = stats[f"void_volume_fraction{which}"]
        fg = stats[f"void_galaxy_fraction{which}"]
        lo_v, hi_v = VOLUME_FRACTION_RANGE
        lo_g, hi_g = GALAXY_FRACTION_RANGE
        return [
            Check(
                "every sample-sky file passes validation",
                not errors,
                "; ".join(errors[:3]) or f"{len(result.summary.get('fits_files', []))} FITS files",
            ),
            Check(
                f"void volume fraction ({'survey interior' if which else 'whole survey'})",
                lo_v <= fv <= hi_v,
                f"{fv:.3f} (calibrated to {lo_v}-{hi_v}; Pan et al. 2012: ~0.60)",
            ),
            Check(
                f"void galaxy fraction ({'interior tracers' if which else 'all tracers'})",
                lo_g <= fg <= hi_g,
                f"{fg:.3f} (calibrated to {lo_g}-{hi_g}; Pan et al. 2012: ~0.07)",
            ),
        ]
