"""The void-galaxy pipeline end to end (thin driver: read → classify → statistics → write).

Used by ``desilab voids`` and by :class:`desilab.voids.stage.VoidsStage`. Galaxies come
from the store's ``galaxies`` view (zcatalog ⋈ FastSpecFit, main/bright) and the void
catalogs from the store's void tables (:func:`~desilab.voids.catalogs.voidset_from_store`)
or from files. Products under ``out_dir``: the VAC (FITS + Parquet), ``voids-summary.json``,
``voids-quenching.csv`` (per mass bin, per finder) and the figures (PNG + PDF).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.errors import InputError
from desilab.voids.analysis import StatsConfig, random_volume_fractions, run_statistics
from desilab.voids.catalogs import VoidSet
from desilab.voids.classify import classify_galaxies
from desilab.voids.figures import (
    main_sequence_figure,
    mass_function_figure,
    quenched_fraction_figure,
    slice_map_figure,
)
from desilab.voids.sample import select_tracers
from desilab.voids.vac import vac_keywords, write_vac

__all__ = ["GALAXY_SQL", "classify_files", "galaxy_arrays", "read_galaxy_file", "run_pipeline"]

log = logging.getLogger("desilab.voids")

#: What the pipeline reads from the store (lower-case names as the store keeps them).
GALAXY_SQL = (
    "SELECT targetid, survey, program, target_ra, target_dec, z, zwarn, deltachi2, spectype, bgs_target, "
    "absmag01_sdss_r, logmstar, logmstar_ivar, sfr, sfr_ivar, dn4000 FROM galaxies "
    "WHERE survey = 'main' AND program = 'bright' AND spectype = 'GALAXY' ORDER BY targetid"
)


def galaxy_arrays(table: pa.Table) -> dict[str, np.ndarray]:
    """Upper-case column name → numpy array (NULL → NaN for floats)."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_floating(col.type):
            arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
        elif pa.types.is_integer(col.type) and col.null_count:
            arr = col.fill_null(0).to_numpy(zero_copy_only=False)
        else:
            arr = col.to_numpy(zero_copy_only=False)
        out[name.upper()] = arr
    return out


def _pick(g: dict[str, np.ndarray], *names: str) -> np.ndarray:
    for n in names:
        if n in g:
            return g[n]
    raise InputError(f"galaxies need one of the columns {', '.join(names)}", column=names[0])


def run_pipeline(
    galaxies: dict[str, np.ndarray],
    voids: VoidSet,
    out_dir: Path,
    *,
    seed: int = 0,
    executor: Any = None,
    stats: StatsConfig | None = None,
    edge_rule: str = "probe",
    n_randoms: int = 200_000,
    workers: int = 1,
    figures: bool = True,
) -> dict[str, Any]:
    """Classify, measure and write every product; return the summary (also written as JSON).

    Parameters
    ----------
    galaxies
        Upper-case columns: TARGETID, TARGET_RA/TARGET_DEC (or RA/DEC), Z; for the tracer
        recipe and the statistics also SURVEY, PROGRAM, BGS_TARGET, SPECTYPE, ZWARN,
        DELTACHI2, ABSMAG01_SDSS_R, LOGMSTAR, SFR (optional LOGMSTAR_IVAR, SFR_IVAR, DN4000).
    voids
        Loaded void catalogs.
    out_dir
        Output folder.
    seed, executor
        Randoms for the volume fractions are drawn per shard from ``seed``; the
        VoidFinder classification of galaxies and randoms is sharded through *executor*.
    stats
        Statistics configuration (default :class:`StatsConfig`).
    edge_rule
        ``probe`` or ``buffer`` for the code-2 flags.
    n_randoms
        Uniform randoms for the environment volume fractions.
    workers
        Threads for KD-tree queries.
    figures
        Write the figures.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = stats or StatsConfig()
    tid = _pick(galaxies, "TARGETID")
    ra = _pick(galaxies, "TARGET_RA", "RA")
    dec = _pick(galaxies, "TARGET_DEC", "DEC")
    z = _pick(galaxies, "Z").astype(np.float64)
    recipe_cols = ("BGS_TARGET", "SPECTYPE", "ZWARN", "DELTACHI2", "ABSMAG01_SDSS_R")
    sel = None
    if all(c in galaxies for c in recipe_cols):
        sel = select_tracers(
            targetid=tid, z=z, absmag01_r=galaxies["ABSMAG01_SDSS_R"], bgs_target=galaxies["BGS_TARGET"],
            spectype=galaxies["SPECTYPE"], zwarn=galaxies["ZWARN"], deltachi2=galaxies["DELTACHI2"],
            survey=galaxies.get("SURVEY"), program=galaxies.get("PROGRAM"),
            mag_limit=voids.mag_limit if voids.mag_limit is not None else -20.0,
            z_max=voids.z_max if np.isfinite(voids.z_max) else 0.24,
        )
    table, summary = classify_galaxies(
        tid, ra, dec, z, voids, is_tracer=None if sel is None else sel.tracer, edge_rule=edge_rule, workers=workers,
        executor=executor,
    )
    summary["tracer_recipe_counts"] = sel.counts if sel is not None else None
    paths = write_vac(table, out, vac_keywords(summary))
    summary["vac"] = {k: str(v) for k, v in paths.items()}
    env = {k: table.column(k).to_numpy(zero_copy_only=False) for k in table.column_names}
    result_files: list[Path] = []
    have_props = all(c in galaxies for c in ("LOGMSTAR", "SFR", "ABSMAG01_SDSS_R"))
    summary["statistics"] = {}
    rows_csv: list[dict[str, Any]] = []
    if have_props and voids.voidfinder is not None:
        fracs = random_volume_fractions(
            voids.survey, voids.voidfinder.grid, n=n_randoms, seed=seed, executor=executor, rule=edge_rule
        )
        summary["volume_fractions"] = fracs
        finder_cols = [c for c in table.column_names if c.startswith("ENV_")]
        for finder in finder_cols:
            cfg = StatsConfig(**{**asdict(stats), "finder": finder})
            try:
                vf_fracs = fracs if finder == "ENV_VOIDFINDER" else None
                s, arr = run_statistics(env, galaxies, cfg, volume_fractions=vf_fracs)
            except InputError as exc:
                summary["statistics"][finder] = {"error": str(exc)}
                continue
            summary["statistics"][finder] = s
            q = s["quenching"]
            me = q["mass_edges"]
            for b in range(len(me) - 1):
                rows_csv.append({
                    "finder": finder, "logm_lo": me[b], "logm_hi": me[b + 1], "h": cfg.h,
                    "n_void": q["n_void"][b], "n_wall": q["n_wall"][b],
                    "fq_void": q["fq_void"][b], "fq_void_err": q["fq_void_err"][b],
                    "fq_wall_matched": q["fq_wall"][b], "fq_wall_err": q["fq_wall_err"][b],
                    "diff": q["diff"][b], "diff_err": q["diff_err"][b], "z_score": q["z_score"][b],
                })
            if figures and finder == "ENV_VOIDFINDER":
                cmp_ = arr["comparison"]
                result_files += quenched_fraction_figure(cmp_, out / "voids-quenched-fraction")
                result_files += mass_function_figure(arr["smf"], arr["mass_edges"], cfg.h, out / "voids-mass-function")
                result_files += main_sequence_figure(
                    arr["logm"], arr["log_sfr"], arr["is_void"], arr["is_wall"], arr["ms"], arr["mass_edges"], cfg.h,
                    out / "voids-main-sequence",
                )
    if figures and voids.voidfinder is not None:
        xyz = np.stack([env["X"], env["Y"], env["ZC"]], axis=1)
        result_files += slice_map_figure(
            xyz, env["ENV_VOIDFINDER"], voids.voidfinder.hole_xyz, voids.voidfinder.hole_radius, out / "voids-slice-map"
        )
    csv_path = out / "voids-quenching.csv"
    with csv_path.open("w", newline="") as fh:
        cols = ["finder", "logm_lo", "logm_hi", "h", "n_void", "n_wall", "fq_void", "fq_void_err",
                "fq_wall_matched", "fq_wall_err", "diff", "diff_err", "z_score"]
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows_csv:
            w.writerow(r)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["figures"] = [str(p) for p in result_files]
    summary["csv"] = str(csv_path)
    js = out / "voids-summary.json"
    js.write_text(json.dumps(_clean(summary), indent=2, default=_json_default, allow_nan=False) + "\n")
    summary["json"] = str(js)
    return summary


def _clean(o: Any) -> Any:
    """NaN/inf → None recursively, so the summary is strict JSON."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float | np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def read_galaxy_file(path: str | Path) -> dict[str, np.ndarray]:
    """Galaxies from a user FITS (first binary table) or Parquet file, upper-case columns.

    Needs TARGETID, RA/DEC (or TARGET_RA/TARGET_DEC) and Z; a missing one is a FormatError
    naming the file and column.
    """
    import pyarrow.parquet as pq

    from desilab.errors import FormatError
    from desilab.io.fits import open_fits, read_table_hdu

    p = Path(path)
    if not p.exists():
        raise InputError("galaxy file not found", file=p)
    if p.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(p)
    else:
        with open_fits(p) as fits:
            hdu = next((h for h in fits if h.get_exttype() in ("BINARY_TBL", "ASCII_TBL")), None)
            if hdu is None:
                raise FormatError("no table HDU in the galaxy file", file=p)
            table = read_table_hdu(hdu, None, None, file=p)
    g = galaxy_arrays(table)
    for need in (("TARGETID",), ("RA", "TARGET_RA"), ("DEC", "TARGET_DEC"), ("Z",)):
        if not any(n in g for n in need):
            raise FormatError(f"missing column {' or '.join(need)}", file=p, column=need[0])
    return g


def classify_files(
    galaxies: str | Path, voids: list[str | Path], out: str | Path, *, edge_rule: str = "probe", workers: int = 1,
    executor: Any = None,
) -> dict[str, Any]:
    """``desilab voids classify``: one user galaxy file against void catalog files, no store.

    Writes one row per galaxy (:data:`~desilab.voids.classify.COLUMN_DOCS`) to *out*
    (``.parquet`` → Parquet, anything else → FITS, via :func:`~desilab.voids.vac.write_vac`);
    returns the classification summary.
    """
    from desilab.compute import get_executor
    from desilab.voids.catalogs import load_void_catalogs

    g = read_galaxy_file(galaxies)
    vs = load_void_catalogs(voids)
    own = executor is None
    ex = get_executor(workers) if own else executor
    try:
        table, summary = classify_galaxies(
            g["TARGETID"], _pick(g, "TARGET_RA", "RA"), _pick(g, "TARGET_DEC", "DEC"), g["Z"], vs,
            edge_rule=edge_rule, workers=workers, executor=ex,
        )
    finally:
        if own:
            ex.close()
    o = Path(out)
    paths = write_vac(table, o.parent, vac_keywords(summary), stem=o.name.removesuffix(o.suffix))
    keep = paths["parquet"] if o.suffix.lower() in (".parquet", ".pq") else paths["fits"]
    other = paths["fits"] if keep == paths["parquet"] else paths["parquet"]
    other.unlink()
    if keep != o:
        keep.replace(o)
    summary["output"] = str(o)
    return summary
