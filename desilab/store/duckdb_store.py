"""Embedded backend: one DuckDB file, Arrow in and out, zero set-up.

Spatial queries use the ``hpx14`` column (NESTED HEALPix order 14). Rows of every
ingested file are written sorted by ``hpx14``, so DuckDB's per-row-group min/max
statistics (zone maps) skip everything outside the few index ranges of a cone; the
exact great-circle (haversine) distance is then computed on the survivors only, in
numpy. Bulk inserts go in as record batches of one row group each, which DuckDB writes
on all its threads.
Crossmatches fetch the candidate rows the same way and pair them with the in-memory
kernel (:func:`desilab.sky.crossmatch.match_sky`), which gives astropy's pairs.

**Narrow catalog tables.** The rows of a built-in catalog table (``zcatalog``,
``fastspec``...) live in ``catalog_data.<name>``, which holds only the columns that some
ingested file brought (and, from the start, the key, position, ``hpx14`` and provenance
columns); ``<name>`` itself is a view in the main schema with every documented column,
in the documented order and type, ``CAST(NULL AS type)`` for the columns not stored yet.
DuckDB writes an all-NULL column at about the cost of a real one, so a file that brings
31 of ``zcatalog``'s 70 columns was paying for 70 (DuckDB's insert of 1M such rows: 3.6 s
of CPU into 70 columns, 1.9 s into the 34 stored ones). When a file brings a column not
stored yet, ``ALTER TABLE ... ADD COLUMN`` and the new view definition run inside that
file's transaction (a crash leaves neither). Queries and backups read the views; cones
and crossmatches read the stored columns and add the NULL ones in Arrow (binding the
wide view cost a 1' cone more than the rest of it); both give the results of full-width
tables, and the ``hpx14`` filters reach the table scan, so zone maps still prune. A
store made before this layout (full-width tables in the main schema) keeps working as
it is.

DuckDB allows one writing process per file: a second process (another ``desilab
ingest``) gets a clear :class:`~desilab.errors.StoreError`.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from desilab.errors import InputError, StoreError
from desilab.sky.hpxrange import covering_ranges, disc_ranges
from desilab.store.base import SortedRows, Store, kernel_match
from desilab.store.schema import HPX_COLUMN, TABLES, StoreColumn, StoreTable

__all__ = ["DATA_SCHEMA", "DuckDBStore", "cluster_ranges", "haversine"]

DATA_SCHEMA = "catalog_data"
"""Schema of the narrow tables behind the catalog views (see the module docstring)."""

_ROW_GROUP = 122_880  # DuckDB's default row-group size
_SMALL = 256  # results up to this many rows are converted to Arrow here (see _fetch_small)
_SCALAR_ARROW = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "SMALLINT": pa.int16(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "TIMESTAMP": pa.timestamp("us"),
}

_TYPES = {
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float32": "REAL",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "list<float32>": "REAL[]",
    "list<float64>": "DOUBLE[]",
    "list<int32>": "INTEGER[]",
    "list<int64>": "BIGINT[]",
}
_LOGICAL = {
    "SMALLINT": "int16",
    "TINYINT": "int16",
    "UTINYINT": "int16",
    "INTEGER": "int32",
    "USMALLINT": "int32",
    "BIGINT": "int64",
    "UINTEGER": "int64",
    "FLOAT": "float32",
    "REAL": "float32",
    "DOUBLE": "float64",
    "BOOLEAN": "bool",
    "VARCHAR": "string",
    "TIMESTAMP": "timestamp",
    "FLOAT[]": "list<float32>",
    "REAL[]": "list<float32>",
    "DOUBLE[]": "list<float64>",
    "INTEGER[]": "list<int32>",
    "BIGINT[]": "list<int64>",
}


def _arrow(rel: Any) -> pa.Table:
    """Arrow table of a DuckDB relation/result (DuckDB 1.x and 2.x spellings)."""
    fn = getattr(rel, "to_arrow_table", None) or getattr(rel, "fetch_arrow_table", None) or rel.arrow
    return fn()


_SCALAR_TYPES = frozenset(_SCALAR_ARROW.values())


def _with_nulls(table: pa.Table, plan: Sequence[tuple[str, pa.DataType | None]]) -> pa.Table:
    """Columns of *plan* in order: those of *table* (type None) and NULL columns of the given types."""
    n = table.num_rows
    arrays = [table.column(name) if typ is None else pa.nulls(n, type=typ) for name, typ in plan]
    return pa.Table.from_arrays(arrays, names=[name for name, _ in plan])


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def cluster_ranges(ranges: np.ndarray, max_clusters: int = 8, gap: int = 4096) -> np.ndarray:
    """Merge index ranges separated by less than *gap* until at most *max_clusters* remain.

    DuckDB evaluates a long OR of ranges row by row, while a few BETWEENs are pushed
    into the scan; the exact distance test removes what the wider ranges let through.
    """
    if len(ranges) == 0:
        return ranges
    while True:
        breaks = np.flatnonzero(ranges[1:, 0] - ranges[:-1, 1] > gap)
        if breaks.size + 1 <= max_clusters:
            starts = np.r_[0, breaks + 1]
            ends = np.r_[breaks, len(ranges) - 1]
            return np.column_stack([ranges[starts, 0], ranges[ends, 1]])
        gap *= 16


def haversine(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """hav(θ) = sin²(Δδ/2) + cos δ cos δ0 sin²(Δα/2) between (ra0, dec0) and each (ra, dec) [deg].

    The quantity PostgreSQL's ``q3c_sindist`` returns; NaN for NaN positions.
    """
    d_dec = np.radians(dec - dec0) / 2.0
    d_ra = np.radians(ra - ra0) / 2.0
    return np.sin(d_dec) ** 2 + np.cos(np.radians(dec)) * np.cos(np.radians(dec0)) * np.sin(d_ra) ** 2


@functools.lru_cache(maxsize=256)
def _empty_table(schema: pa.Schema) -> pa.Table:
    """``schema.empty_table()``, cached: many 1' cones are empty (Arrow tables are immutable)."""
    return schema.empty_table()


def _as_f8(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _range_predicate(ranges: np.ndarray) -> str:
    if len(ranges) == 0:
        return "FALSE"
    ors = " OR ".join(f"{HPX_COLUMN} BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in ranges)
    if len(ranges) == 1:
        return f"({ors})"
    # the outer BETWEEN is what DuckDB pushes into the scan (zone maps, fast path)
    return f"({HPX_COLUMN} BETWEEN {int(ranges[0, 0])} AND {int(ranges[-1, 1])} AND ({ors}))"


def _always_stored(tdef: StoreTable) -> set[str]:
    """Columns a narrow table has from its creation: key, position, ``hpx14``, provenance, order."""
    names = {*tdef.key, *tdef.order_by, "_file_id", "_row"}
    if tdef.sky:
        names |= {tdef.ra, tdef.dec, HPX_COLUMN}  # type: ignore[arg-type]
    return names & set(tdef.names)


def _is_narrow_candidate(name: str, columns: Sequence[StoreColumn]) -> bool:
    tdef = TABLES.get(name)
    return tdef is not None and tdef.kind == "catalog" and tuple(columns) == tdef.columns


class DuckDBStore(Store):
    """A store in one DuckDB file.

    Parameters
    ----------
    path
        Database file (created with its folder when *create*), or ``:memory:``.
    create
        Create the file and the schema if missing; otherwise a missing file is a
        :class:`~desilab.errors.StoreError`.
    read_only
        Open read-only (several readers may share a file that nobody writes).
    """

    backend = "duckdb"

    def __init__(self, path: str | Path, *, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self.url = f"duckdb:///{path}"
        if self.path is not None and not self.path.exists():
            if not create:
                raise StoreError(
                    "the store does not exist yet", file=self.path, hint="run `desilab ingest PATH...` to create it"
                )
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = _first_line(exc)
            if "lock" in msg.lower():
                raise StoreError(
                    "the store is in use by another process",
                    file=self.path,
                    hint="DuckDB allows one writer; wait for it",
                ) from exc
            raise StoreError(f"cannot open the store: {msg}", file=self.path) from exc
        self._depth = 0
        self._narrow = self._load_narrow()  # catalog tables stored in DATA_SCHEMA (behind views)
        self._stored_cache: dict[str, frozenset[str]] = {}  # their stored columns (this connection is the only writer)
        if not read_only and create:
            self.ensure_schema()
        elif "store_meta" not in self._relations():
            raise StoreError("not a desilab store (no store_meta table)", file=self.path)

    # ------------------------------------------------------------------ primitives

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        # DuckDB 2 refuses new work while a result is pending: always drain it.
        self._con.execute(sql, list(params) if params else None).fetchall()

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._con.execute(sql, list(params) if params else None).fetchall()
        return rows[0][0] if rows else None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._con.execute(sql, list(params) if params else None).fetchall()

    def _fetch_arrow(
        self, sql: str, params: Sequence[Any] = (), schema: pa.Schema | None = None, shape: str | None = None
    ) -> pa.Table:
        if params:
            table = _arrow(self._con.execute(sql, list(params)))
        else:
            table = _arrow(self._con.sql(sql))
        return table.cast(schema) if schema is not None else table

    def _fetch_small(self, sql: str) -> pa.Table:
        """Like :meth:`_fetch_arrow`, faster for results of a few rows (cone searches).

        DuckDB's Arrow export costs a few ms per query whatever the size, more than a
        1' cone itself: up to :data:`_SMALL` rows are fetched as Python tuples and turned
        into Arrow here; a larger result comes through Arrow as usual.
        """
        self._con.execute(sql)
        types = [_SCALAR_ARROW.get(str(d[1])) for d in self._con.description or []]
        if any(t is None for t in types):  # a type we do not convert: the Arrow path
            self._con.fetchall()
            return self._fetch_arrow(sql)
        names = [d[0] for d in self._con.description]
        rows = self._con.fetchmany(_SMALL)
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
        if rows:
            columns = zip(*rows, strict=True)
            # from_pandas=False: NaN stays a value, and pyarrow skips its pandas checks
            arrays = [pa.array(v, type=t, from_pandas=False) for v, t in zip(columns, types, strict=True)]
            head = pa.Table.from_arrays(arrays, schema=schema)
        else:
            head = _empty_table(schema)
        if len(rows) < _SMALL:
            return head
        with warnings.catch_warnings():  # "Arrow output on a DB-API result makes an extra copy": fine here
            warnings.simplefilter("ignore")
            rest = _arrow(self._con)
        return pa.concat_tables([head, rest.cast(schema)])

    def _fetch_batches(self, sql: str, schema: pa.Schema, batch_rows: int = 500_000) -> Iterator[pa.Table]:
        rel = self._con.sql(sql)
        if hasattr(rel, "to_arrow_reader"):
            reader = rel.to_arrow_reader(batch_rows)
        else:  # pragma: no cover - DuckDB 1.x
            reader = rel.fetch_arrow_reader(batch_rows)
        for batch in reader:
            yield pa.Table.from_batches([batch]).cast(schema)

    def _insert_arrow(self, name: str, data: pa.Table) -> None:
        if name not in self._narrow:
            self._append(name, data)
            return
        with self._transaction():  # the file's transaction when ingesting (nested: joins it)
            self._append(f"{DATA_SCHEMA}.{name}", self._widen(name, data))

    def _insert_rows(self, name: str, rows: SortedRows) -> None:
        # Low-cardinality strings go in dictionary-encoded: DuckDB stores them as VARCHAR
        # at the same cost, and decoding them first cost ~25 ms per 1M-row column.
        self._insert_arrow(name, rows.to_table(dictionaries=True))

    def _append(self, target: str, data: pa.Table) -> None:
        # Record batches of one row group each: DuckDB scans them on all its threads and
        # still appends them in order (the hpx14 order that zone maps rely on).
        batches = pa.Table.from_batches(data.to_batches(max_chunksize=_ROW_GROUP), schema=data.schema)
        self._con.register("__desilab_src", batches)
        try:
            cols = ", ".join(data.column_names)
            self._con.execute(f"INSERT INTO {target} ({cols}) SELECT * FROM __desilab_src").fetchall()
        finally:
            with contextlib.suppress(duckdb.Error):
                self._con.unregister("__desilab_src")

    def _load_narrow(self) -> set[str]:
        rows = self._con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = current_database()",
            [DATA_SCHEMA],
        ).fetchall()
        return {r[0] for r in rows if r[0] in TABLES and TABLES[r[0]].kind == "catalog"}

    def _stored_columns(self, name: str) -> list[str]:
        """Columns of the narrow table behind catalog view *name*, in table order."""
        rows = self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "AND database_name = current_database() ORDER BY column_index",
            [DATA_SCHEMA, name],
        ).fetchall()
        return [r[0] for r in rows]

    def _define_view(self, tdef: StoreTable, stored: set[str]) -> None:
        """(Re)create the view *tdef.name*: every documented column, NULL where not stored."""
        cols = ", ".join(
            c.name if c.name in stored else f"CAST(NULL AS {_TYPES[c.type]}) AS {c.name}" for c in tdef.columns
        )
        self._execute(f"CREATE OR REPLACE VIEW {tdef.name} AS SELECT {cols} FROM {DATA_SCHEMA}.{tdef.name}")

    def _widen(self, name: str, data: pa.Table) -> pa.Table:
        """Add to narrow table *name* the columns of *data* it lacks and that hold a value.

        Columns the table lacks that are NULL in every row of *data* are dropped from it
        (the view shows them as NULL anyway). Runs inside the caller's transaction.
        """
        tdef = TABLES[name]
        stored = set(self._stored(name))
        new = [c for c in data.column_names if c not in stored]
        if not new:
            return data
        unknown = [c for c in new if c not in set(tdef.names)]
        if unknown:
            raise StoreError(f"no column {unknown[0]!r} in table {name}", column=unknown[0])
        empty = [c for c in new if data.column(c).null_count == data.num_rows]
        add = [c for c in new if c not in empty]
        for c in add:
            self._execute(f"ALTER TABLE {DATA_SCHEMA}.{name} ADD COLUMN {c} {_TYPES[tdef.column(c).type]}")
        if add:
            self._define_view(tdef, stored | set(add))
            self._stored_cache[name] = frozenset(stored | set(add))
        return data.drop_columns(empty) if empty else data

    def _stored(self, name: str) -> frozenset[str]:
        """Stored columns of narrow table *name* (cached; the cache is dropped on rollback)."""
        got = self._stored_cache.get(name)
        if got is None:
            got = self._stored_cache[name] = frozenset(self._stored_columns(name))
        return got

    def _narrow_read(self, relation: str, select: str) -> tuple[str, list[tuple[str, pa.DataType | None]]] | None:
        """How to read *select* (``*`` or ``a, b, ...``) of a narrow table without its view.

        Returns the select list over the stored columns and, for every output column in
        order, None (read) or the Arrow type of the NULL column to add; None when the
        relation is not a narrow table or a column is not a scalar (list columns: the
        view gives DuckDB's own Arrow types). A 1' cone bound through the view's ~70-column
        projection cost ~8 ms of CPU, on the stored columns ~4.7 ms.
        """
        if relation not in self._narrow:
            return None
        tdef = TABLES[relation]
        names = tdef.names if select == "*" else [n.strip() for n in select.split(",")]
        stored = self._stored(relation)
        plan: list[tuple[str, pa.DataType | None]] = []
        for name in names:
            typ = tdef.column(name).arrow
            if typ not in _SCALAR_TYPES:
                return None
            plan.append((name, None if name in stored else typ))
        return ", ".join(n for n, t in plan if t is None), plan

    def _data_table(self, name: str) -> str:
        return f"{DATA_SCHEMA}.{name}" if name in self._narrow else name

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(duckdb.Error):
                self._execute("ROLLBACK")
            self._stored_cache.clear()  # columns added in the transaction are gone
            with contextlib.suppress(duckdb.Error):
                self._narrow = self._load_narrow()  # and so are tables created in it
            raise
        else:
            self._depth = 0
            self._execute("COMMIT")

    def _relations(self) -> dict[str, str]:
        rows = self._con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_catalog = current_database()"
        ).fetchall()
        return {r[0].lower(): ("view" if r[1] == "VIEW" else "table") for r in rows}

    def _physical_columns(self, name: str) -> list[tuple[str, str]]:
        rows = self._con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = current_schema() AND table_catalog = current_database() ORDER BY ordinal_position",
            [name],
        ).fetchall()
        return [(r[0].lower(), _LOGICAL.get(r[1].upper(), "string")) for r in rows]

    def _create_table(self, name: str, columns: Sequence[StoreColumn]) -> None:
        if _is_narrow_candidate(name, columns):  # a narrow table behind a view (module docstring)
            tdef = TABLES[name]
            keep = _always_stored(tdef)
            cols = ", ".join(f"{c.name} {_TYPES[c.type]}" for c in columns if c.name in keep)
            with self._transaction():
                self._execute(f"CREATE SCHEMA IF NOT EXISTS {DATA_SCHEMA}")
                self._execute(f"CREATE TABLE {DATA_SCHEMA}.{name} ({cols})")
                self._define_view(tdef, keep)
                self._narrow.add(name)
            return
        cols = ", ".join(f"{c.name} {_TYPES[c.type]}" for c in columns)
        self._execute(f"CREATE TABLE {name} ({cols})")

    def _create_indexes(self, tables: Sequence[str]) -> None:
        """Nothing to build: DuckDB prunes by zone maps on the hpx14-sorted rows."""

    def _cluster(self, table: str, order: Sequence[str]) -> None:
        # Views are bound at query time in DuckDB, so the swap is invisible to them.
        src = self._data_table(table)
        with self._transaction():
            self._execute(f"CREATE TABLE {src}__sorted AS SELECT * FROM {src} ORDER BY {', '.join(order)}")
            self._execute(f"DROP TABLE {src}")
            self._execute(f"ALTER TABLE {src}__sorted RENAME TO {table}")
        self._execute("CHECKPOINT")

    def _lock_files(self) -> None:
        """DuckDB already allows a single writing process."""

    def close(self) -> None:
        """Close the connection (idempotent)."""
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
            self._con = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ reading

    def _check_read_only(self, sql: str) -> str:
        try:
            stmts = self._con.extract_statements(sql)
        except duckdb.Error as exc:
            raise InputError(_first_line(exc), parameter="SQL") from None
        if len(stmts) != 1:
            raise InputError(f"one SQL statement at a time (got {len(stmts)})", parameter="SQL")
        if stmts[0].type != duckdb.StatementType.SELECT:
            raise InputError(
                f"only read-only queries (SELECT, WITH ... SELECT) are allowed, got {stmts[0].type.name}",
                parameter="SQL",
            )
        return sql.strip().rstrip(";")

    def _read_only_arrow(self, sql: str) -> pa.Table:
        try:
            return _arrow(self._con.sql(sql))
        except duckdb.Error as exc:
            raise InputError(_first_line(exc), parameter="SQL") from None

    def _cone_fetch(
        self, relation: str, ra_col: str, dec_col: str, ra: float, dec: float, radius_deg: float, select: str
    ) -> pa.Table:
        # The database only applies the HEALPix-range prefilter (a few BETWEENs on the
        # sorted hpx14 column, pushed into the scan: zone maps skip all but a row group or
        # two); the exact distance test runs here in numpy on the candidates. With the
        # trigonometry in SQL, DuckDB evaluated it inside the scan for whole vectors of
        # every column, which tripled the time of a 1' cone. (Reading (rowid, position)
        # first and the wide rows by rowid after saved only ~15% of the CPU of a 1' cone
        # on 13.1M rows: not worth a second query.)
        ra, dec, radius_deg = float(ra), float(dec), float(radius_deg)
        pred = _range_predicate(cluster_ranges(disc_ranges(ra, dec, radius_deg)))
        limit = np.sin(np.radians(radius_deg) / 2.0) ** 2
        narrow = self._narrow_read(relation, select)
        if narrow is not None:  # the stored columns of a narrow table; NULL columns added below
            select, source = narrow[0], self._data_table(relation)
        else:
            source = relation
        head = f"{select}, " if select else ""
        cand = self._fetch_small(
            f"SELECT {head}{ra_col} AS __cone_ra, {dec_col} AS __cone_dec FROM {source} WHERE {pred}"
        )
        n = cand.num_columns
        hav = haversine(ra, dec, _as_f8(cand.column(n - 2)), _as_f8(cand.column(n - 1)))
        with np.errstate(invalid="ignore"):
            keep = hav <= limit
        sep = np.degrees(2.0 * np.arcsin(np.sqrt(np.minimum(hav[keep], 1.0)))) * 3600.0
        out = cand.select(list(range(n - 2))).filter(pa.array(keep))
        if narrow is not None:
            out = _with_nulls(out, narrow[1])
        return out.append_column("sep_arcsec", pa.array(sep, type=pa.float64()))

    def _crossmatch_rows(
        self,
        ra: np.ndarray,
        dec: np.ndarray,
        relation: str,
        ra_col: str,
        dec_col: str,
        radius_arcsec: float,
        nearest: bool,
    ) -> tuple[np.ndarray, pa.Table, np.ndarray]:
        ranges = covering_ranges(ra, dec, radius_arcsec / 3600.0)
        where = "TRUE" if ranges is None else _range_predicate(cluster_ranges(ranges, max_clusters=64))
        narrow = self._narrow_read(relation, "*")
        if narrow is None:
            cand = self._fetch_arrow(f"SELECT * FROM {relation} WHERE {where}")
        else:  # stored columns only (see _narrow_read), the NULL ones added here
            cand = self._fetch_arrow(f"SELECT {narrow[0]} FROM {self._data_table(relation)} WHERE {where}")
            cand = _with_nulls(cand, narrow[1])
        names = {n.lower(): n for n in cand.column_names}
        rb = np.asarray(cand.column(names[ra_col]).to_numpy(zero_copy_only=False), dtype=np.float64)
        db = np.asarray(cand.column(names[dec_col]).to_numpy(zero_copy_only=False), dtype=np.float64)
        ia, ib, sep = kernel_match(ra, dec, rb, db, radius_arcsec, nearest)
        return ia, cand.take(pa.array(ib)), sep
