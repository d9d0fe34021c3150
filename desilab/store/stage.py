"""The ``ingest`` stage of ``desilab run``: the sample sky into the catalog store.

Input: the ``sample_sky`` product (the folder written by the sample stage). Output: the
``store`` product, ``store.json`` in the run folder, which names the store URL (without
password), the backend, the rows per table and the ingest summary. Later stages open
the store with :func:`run_store_url` (or read ``store.json``).

Which store: with a DuckDB configuration the run gets its **own** store file,
``<out>/store/desilab.duckdb``, so that mock data never mixes with a real store and a
run folder is self-contained; with PostgreSQL the configured database is used (point
``DESILAB_STORE`` at a dedicated database for runs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from desilab.run.stage import Check, RunContext, Stage, StageResult
from desilab.store import connect

__all__ = ["IngestStage", "run_store_url"]


def run_store_url(ctx: RunContext) -> str:
    """URL of the store a run uses (see the module docstring)."""
    url = ctx.settings.store
    if url.startswith("duckdb://"):
        return f"duckdb:///{(ctx.out_dir / 'store' / 'desilab.duckdb').resolve()}"
    return url


def _redact(url: str) -> str:
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


class IngestStage(Stage):
    """Load every DR1-format file of the sample sky into the store, then index it."""

    name = "ingest"
    description = "load the sample sky into the catalog store (one transaction per file, idempotent) and index it"
    inputs = ("sample_sky",)
    outputs = ("store",)

    def run(self, ctx: RunContext) -> StageResult:
        """Ingest ``ctx.products['sample_sky']`` and write ``store.json``."""
        source = Path(ctx.products["sample_sky"])
        url = run_store_url(ctx)
        with connect(url) as store:
            report = store.ingest([source], workers=ctx.settings.workers)
            store.optimize()
            again = store.ingest([source], workers=1)
            tables = {t.name: t.rows for t in store.tables() if t.rows is not None and t.kind == "catalog"}
            problems = store.check(keys=False)
            duplicates = [p for p in store.check() if "duplicated keys" in p]
            probe = _probe_cone(store)
        summary: dict[str, Any] = {
            "url": _redact(url),
            "backend": "duckdb" if url.startswith("duckdb") else "postgresql",
            "files_ingested": report.count("ingested") + report.count("replaced"),
            "files_skipped": report.count("skipped"),
            "files_failed": report.count("failed"),
            "failures": [f.message for f in report.failed],
            "rows": report.rows,
            "seconds": round(report.seconds, 3),
            "table_rows": tables,
            "rerun_all_skipped": all(f.status == "skipped" for f in again.files),
            "consistency_problems": problems,
            "duplicated_keys": duplicates,
            "cone_probe": probe,
        }
        path = ctx.path("store.json")
        path.write_text(json.dumps(summary, indent=2) + "\n")
        return StageResult(outputs={"store": path}, summary=summary)

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """No failed file, consistent store, unique keys, zcatalog populated, idempotent re-run, cone probe."""
        s = result.summary
        rows = s["table_rows"]
        empty = [] if rows.get("zcatalog") else ["zcatalog"]
        return [
            Check(
                "every file ingested or deliberately skipped",
                s["files_failed"] == 0,
                "; ".join(s["failures"]) or f"{s['files_ingested']} ingested",
            ),
            Check(
                "store consistent (every row from a recorded file, row counts match)",
                not s["consistency_problems"],
                "; ".join(s["consistency_problems"]) or "ok",
            ),
            Check(
                "keys unique in the input catalogs (e.g. targetid, survey, program)",
                not s["duplicated_keys"],
                "; ".join(s["duplicated_keys"]) or "ok",
            ),
            Check(
                "redshift catalog populated (rows per table in the detail)",
                not empty,
                ", ".join(empty) or ", ".join(f"{k}={v}" for k, v in sorted(rows.items()) if v),
            ),
            Check(
                "re-ingesting is a no-op",
                bool(s["rerun_all_skipped"]),
                "all files skipped by checksum" if s["rerun_all_skipped"] else "some files re-ingested",
            ),
            Check(
                "cone search finds a known row at 0 arcsec",
                bool(s["cone_probe"].get("found")),
                json.dumps(s["cone_probe"]),
            ),
        ]


def _probe_cone(store: Any) -> dict[str, Any]:
    """Pick one zcatalog row and find it again with a 1-arcsec cone."""
    row = store.query("SELECT targetid, target_ra, target_dec FROM zcatalog ORDER BY targetid LIMIT 1").to_pylist()
    if not row:
        return {"found": False, "reason": "zcatalog is empty"}
    r = row[0]
    hits = store.cone("zcatalog", r["target_ra"], r["target_dec"], 1.0 / 3600.0, columns=["targetid"])
    found = r["targetid"] in hits.column("targetid").to_pylist()
    sep = min(hits.column("sep_arcsec").to_pylist(), default=None)
    return {"found": found, "targetid": r["targetid"], "rows_within_1arcsec": hits.num_rows, "min_sep_arcsec": sep}
