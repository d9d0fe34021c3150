"""``desilab run`` stage: the void-galaxy pipeline on the run's store."""

from __future__ import annotations

from pathlib import Path

from desilab.run.stage import Check, RunContext, Stage, StageResult
from desilab.store import connect
from desilab.store.stage import run_store_url
from desilab.voids.catalogs import voidset_from_store
from desilab.voids.pipeline import GALAXY_SQL, galaxy_arrays, run_pipeline

__all__ = ["VoidsStage"]


class VoidsStage(Stage):
    """Classify every galaxy against the DESIVAST catalogs and compare star formation in voids and walls."""

    name = "voids"
    description = (
        "void-galaxy VAC (VoidFinder + V2 flags, distances, edge/extrapolated flags), quenching vs environment "
        "with jackknife errors, figures"
    )
    inputs = ("sample_sky", "store")
    outputs = ("void_vac", "void_summary")

    def run(self, ctx: RunContext) -> StageResult:
        """Read galaxies and void catalogs from the store, run the pipeline, write under ``voids/``."""
        out = ctx.path("voids", "x").parent
        with connect(run_store_url(ctx), read_only=True) as store:
            voids = voidset_from_store(store)
            galaxies = galaxy_arrays(store.query(GALAXY_SQL))
        summary = run_pipeline(
            galaxies, voids, out, seed=ctx.settings.seed, executor=ctx.executor, workers=ctx.settings.workers
        )
        brief = {
            "n_galaxies": summary["n_galaxies"],
            "tracers": summary["tracers"],
            "voidfinder_flags": summary.get("voidfinder", {}).get("flags"),
            "shell_galaxies": summary.get("voidfinder", {}).get("shell_galaxies"),
            "agreement": summary.get("agreement"),
            "quenching": {
                k: {
                    kk: v.get("quenching", {}).get(kk)
                    for kk in ("combined_diff", "combined_diff_err", "combined_z", "combined_p", "ratio", "ratio_ci95")
                }
                for k, v in summary.get("statistics", {}).items()
                if "quenching" in v
            },
        }
        return StageResult(
            outputs={"void_vac": Path(summary["vac"]["fits"]), "void_summary": Path(summary["json"])},
            summary=brief,
            figures=[Path(p) for p in summary["figures"] if p.endswith(".png")],
        )

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Every galaxy classified, valid flag codes, a void and a wall population, finite quenching errors."""
        import numpy as np
        import pyarrow.parquet as pq

        vac = pq.read_table(Path(result.outputs["void_vac"]).with_suffix(".parquet"))
        flags = np.asarray(vac.column("ENV_VOIDFINDER"))
        codes_ok = bool(np.isin(flags, (0, 1, 2, 9)).all())
        q = result.summary["quenching"].get("ENV_VOIDFINDER", {})
        err = q.get("combined_diff_err")
        return [
            Check("one VAC row per galaxy", vac.num_rows == result.summary["n_galaxies"], f"{vac.num_rows} rows"),
            Check("flags are VAST codes 0/1/2/9", codes_ok, str(result.summary["voidfinder_flags"])),
            Check(
                "void and wall galaxies present",
                bool((flags == 1).any() and (flags == 0).any()),
                f"void {(flags == 1).sum()}, wall {(flags == 0).sum()}",
            ),
            Check(
                "quenching difference has a finite jackknife error",
                err is not None and np.isfinite(err) and err > 0,
                f"dfQ = {q.get('combined_diff')} +- {err}",
            ),
        ]
