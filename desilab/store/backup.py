"""Back a store up to Parquet and restore it, verified by checksums.

Backup format (``desilab store export DIR``)::

    DIR/manifest.json        what is in the backup (written last: no manifest, no backup)
    DIR/SHA256SUMS           sha256sum-compatible list of every file below
    DIR/tables/<name>.parquet  one file per table, rows in the table's total order

``manifest.json`` holds the format version, the store schema version, the HEALPix order,
the source backend and desilab version, and per table: kind, description, position
columns, the documented columns (type, unit, UCD, utype, description), the row count,
the Parquet file's SHA-256 and size, the ``ORDER BY`` used, and a **content digest**.

The content digest is a SHA-256 over the table's values in that total order, column by
column, in a canonical form (little-endian numbers, -0.0 folded into 0.0, one NaN,
validity and string/list lengths hashed separately). It does not depend on the backend,
on batch sizes or on Parquet encoding, so ``import`` can prove that the restored store
holds exactly the exported rows: it verifies every Parquet file against its SHA-256,
loads everything in one transaction, recomputes every content digest from the database
and commits only if all match. Export from DuckDB and import into PostgreSQL (or the
reverse) is supported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from desilab import __version__
from desilab.errors import InputError, StoreError
from desilab.store.schema import SCHEMA_VERSION, TABLES, StoreColumn, StoreTable, arrow_type

if TYPE_CHECKING:
    from desilab.store.base import Store

__all__ = ["FORMAT", "FORMAT_VERSION", "ContentDigest", "export_store", "import_store", "table_digest"]

FORMAT = "desilab-store-backup"
FORMAT_VERSION = 1


class ContentDigest:
    """Order-sensitive, batch-independent SHA-256 of a table's values (see module docstring)."""

    def __init__(self, columns: Sequence[StoreColumn]) -> None:
        self.columns = list(columns)
        self.schema = pa.schema([pa.field(c.name, c.arrow) for c in self.columns])
        self._h = [[hashlib.sha256() for _ in range(3)] for _ in self.columns]  # validity, lengths, values
        self.rows = 0

    @staticmethod
    def _numbers(arr: pa.Array, dtype: str) -> bytes:
        values = pc.fill_null(arr, 0) if arr.null_count else arr
        out = np.asarray(values.to_numpy(zero_copy_only=False))
        if out.dtype.kind == "f":
            out = out.astype(dtype) + 0.0  # -0.0 -> 0.0
            out[np.isnan(out)] = np.nan
        return np.ascontiguousarray(out.astype(dtype)).tobytes()

    def update(self, table: pa.Table) -> None:
        """Feed the next rows (in the table's total order)."""
        table = table.cast(self.schema)
        self.rows += table.num_rows
        for i, col in enumerate(self.columns):
            arr = table.column(i).combine_chunks()
            hv, hl, hx = self._h[i]
            valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
            hv.update(valid.tobytes())
            t = col.type
            if t == "string":
                text = pc.fill_null(arr, "")
                lengths = np.asarray(pc.binary_length(text).to_numpy(zero_copy_only=False), dtype="<i8")
                hl.update(lengths.tobytes())
                data = text.buffers()[2]
                if data is not None and len(text):
                    offs = np.frombuffer(text.buffers()[1], dtype=np.int32, count=len(text) + 1, offset=text.offset * 4)
                    hx.update(memoryview(data)[int(offs[0]) : int(offs[-1])])
            elif t.startswith("list<"):
                lengths = np.asarray(
                    pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False), dtype="<i8"
                )
                hl.update(lengths.tobytes())
                flat = pc.list_flatten(arr)
                inner = t[5:-1]
                hx.update(self._numbers(flat, "<f8" if inner.startswith("float") else "<i8"))
            elif t == "timestamp":
                hx.update(self._numbers(arr.cast(pa.timestamp("us")).cast(pa.int64()), "<i8"))
            elif t == "bool":
                hx.update(self._numbers(arr.cast(pa.uint8()), "<u1"))
            elif t.startswith("float"):
                hx.update(self._numbers(arr, "<f8"))
            else:
                hx.update(self._numbers(arr, "<i8"))

    def hexdigest(self) -> str:
        """Combined digest of all columns (and the row count)."""
        top = hashlib.sha256(f"rows={self.rows}".encode())
        for col, hs in zip(self.columns, self._h, strict=True):
            top.update(col.name.encode() + b"\0" + col.type.encode() + b"\0")
            for h in hs:
                top.update(h.digest())
        return top.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def _table_plan(store: Store) -> list[tuple[str, str, list[StoreColumn], StoreTable | None, dict[str, Any]]]:
    """(name, kind, columns, built-in definition or None, registry entry) of every table to back up."""
    rel = store._relations()
    plan = []
    for t in TABLES.values():
        if t.name in rel:
            plan.append((t.name, t.kind, list(t.columns), t, {}))
    for name, reg in sorted(store._result_registry().items()):
        if name in rel:
            cols = [
                StoreColumn(
                    c["name"], c["type"], c.get("unit"), c.get("ucd"), c.get("description") or "", c.get("utype")
                )
                for c in reg["columns"]
            ]
            plan.append((name, "result", cols, None, reg))
    return plan


def _order_by(store: Store, columns: Sequence[StoreColumn], tdef: StoreTable | None) -> list[str]:
    names = list(tdef.order_by) if tdef is not None and tdef.order_by else [c.name for c in columns]
    types = {c.name: c.type for c in columns}
    return [store._order_expr(n, types[n]) for n in names]


def _select(name: str, columns: Sequence[StoreColumn], order: Sequence[str]) -> str:
    cols = ", ".join(c.name for c in columns)
    return f"SELECT {cols} FROM {name}" + (f" ORDER BY {', '.join(order)}" if order else "")


def table_digest(
    store: Store, name: str, columns: Sequence[StoreColumn], tdef: StoreTable | None = None
) -> tuple[str, int]:
    """Content digest and row count of a table as stored now."""
    digest = ContentDigest(columns)
    sql = _select(name, columns, _order_by(store, columns, tdef))
    for batch in store._fetch_batches(sql, digest.schema):
        digest.update(batch)
    return digest.hexdigest(), digest.rows


def export_store(store: Store, directory: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Write a backup of *store* to *directory* (see the module docstring).

    Parameters
    ----------
    store
        The store to back up.
    directory
        Must not exist or be empty.
    progress
        Optional :class:`rich.progress.Progress`.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    InputError
        The directory is not empty (parameter ``DIR``).
    """
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise InputError("backup directory is not empty", file=out, parameter="DIR")
    (out / "tables").mkdir(parents=True, exist_ok=True)
    plan = _table_plan(store)
    task = progress.add_task("export", total=len(plan)) if progress else None
    tables = []
    sums = []
    for name, kind, columns, tdef, reg in plan:
        if progress:
            progress.update(task, description=f"export {name}")
        digest = ContentDigest(columns)
        order = _order_by(store, columns, tdef)
        path = out / "tables" / f"{name}.parquet"
        schema = pa.schema(
            [
                pa.field(
                    c.name,
                    c.arrow,
                    metadata={
                        k: v
                        for k, v in (
                            ("unit", c.unit),
                            ("ucd", c.ucd),
                            ("utype", c.utype),
                            ("description", c.description),
                        )
                        if v
                    }
                    or None,
                )
                for c in columns
            ]
        )
        with pq.ParquetWriter(path, schema, compression="zstd") as writer:
            for batch in store._fetch_batches(_select(name, columns, order), digest.schema):
                digest.update(batch)
                writer.write_table(batch.cast(schema))
        sha = _sha256(path)
        sums.append(f"{sha}  tables/{name}.parquet")
        tables.append(
            {
                "name": name,
                "kind": kind,
                "description": (tdef.description if tdef is not None else reg.get("description")) or "",
                "ra": tdef.ra if tdef is not None else reg.get("ra"),
                "dec": tdef.dec if tdef is not None else reg.get("dec"),
                "rows": digest.rows,
                "file": f"tables/{name}.parquet",
                "sha256": sha,
                "bytes": path.stat().st_size,
                "order_by": [o.split(" ")[0] for o in order],
                "content_digest": digest.hexdigest(),
                "columns": [c.to_dict() for c in columns],
            }
        )
        if progress:
            progress.advance(task)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "hpx_order": 14,
        "source_backend": store.backend,
        "desilab_version": __version__,
        "tables": tables,
    }
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "manifest.json")
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Load and check a backup's manifest.

    Raises
    ------
    StoreError
        No manifest, another format, or another store schema version.
    """
    d = Path(directory)
    path = d / "manifest.json"
    if not path.exists():
        raise StoreError("no manifest.json: not a desilab store backup (or an interrupted export)", file=d)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"manifest.json is not valid JSON: {exc}", file=path) from exc
    if manifest.get("format") != FORMAT or int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise StoreError(
            f"unsupported backup format {manifest.get('format')!r} v{manifest.get('format_version')}", file=path
        )
    if int(manifest.get("schema_version", -1)) != SCHEMA_VERSION:
        raise StoreError(
            f"backup of store schema version {manifest.get('schema_version')}, this desilab uses {SCHEMA_VERSION}",
            file=path,
        )
    return manifest


def import_store(store: Store, directory: str | Path, *, progress: Any = None) -> dict[str, Any]:
    """Restore a backup into an empty store, verified by checksums (one transaction).

    Raises
    ------
    StoreError
        Bad manifest, a Parquet file that does not match its SHA-256, a store that is
        not empty, or a restored table whose content digest differs (nothing is kept).
    """
    d = Path(directory)
    manifest = read_manifest(d)
    for t in manifest["tables"]:
        path = d / t["file"]
        if not path.exists():
            raise StoreError("file listed in the manifest is missing", file=path)
        if _sha256(path) != t["sha256"]:
            raise StoreError("checksum mismatch: the backup file is corrupted", file=path)
    non_empty = [
        ti.name
        for ti in store.tables()
        if ti.kind in ("catalog", "system", "result") and ti.name != "store_meta" and ti.rows
    ]
    if non_empty:
        raise StoreError(
            f"the target store is not empty ({', '.join(non_empty)})", hint="import into a new store file or database"
        )
    task = progress.add_task("import", total=len(manifest["tables"])) if progress else None
    verified = []
    with store._transaction():
        for t in manifest["tables"]:
            name = t["name"]
            columns = [
                StoreColumn(
                    c["name"], c["type"], c.get("unit"), c.get("ucd"), c.get("description") or "", c.get("utype")
                )
                for c in t["columns"]
            ]
            if progress:
                progress.update(task, description=f"import {name}")
            tdef = TABLES.get(name)
            if tdef is None:
                store._create_table(name, columns)
            elif name == "store_meta":
                store._execute("DELETE FROM store_meta")
            schema = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in columns])
            pf = pq.ParquetFile(d / t["file"])
            for batch in pf.iter_batches(batch_size=500_000):
                store._insert_arrow(name, pa.Table.from_batches([batch]).cast(schema))
            digest, rows = table_digest(store, name, columns, tdef)
            if rows != t["rows"] or digest != t["content_digest"]:
                raise StoreError(
                    f"restored table {name} differs from the backup (rows {rows} vs {t['rows']}, digest mismatch)",
                    file=d / t["file"],
                )
            verified.append({"name": name, "rows": rows, "content_digest": digest})
            if progress:
                progress.advance(task)
    store.finish_bulk([t["name"] for t in manifest["tables"] if t["name"] in TABLES])
    results = [t["name"] for t in manifest["tables"] if t["kind"] == "result"]
    if results:
        store._create_indexes(results)
    return {"tables": verified, "source_backend": manifest["source_backend"], "verified": True}
