"""Server backend: PostgreSQL with q3c (and pg_sphere), through psycopg 3.

* Bulk loads use binary ``COPY ... FROM STDIN`` built with numpy/Arrow
  (:mod:`desilab.store._pgcopy`), one transaction per file.
* Spatial indexes are q3c expression indexes ``q3c_ang2ipix(ra, dec)``, created after
  bulk loads (:meth:`~desilab.store.base.Store.finish_bulk`) rather than maintained row
  by row during the first load. Cone searches use ``q3c_radial_query``, crossmatches
  ``q3c_join``; both then apply the exact distance test ``q3c_sindist <= sin²(r/2)`` so
  that a pair at exactly the radius is kept, as on DuckDB and in astropy.
* pg_sphere, when it is installed, gets one GiST index: the sky footprint of each
  VoidFinder hole, ``scircle(spoint(radians(ra), radians(dec)), asin(radius / r))``, so
  that ad-hoc SQL can ask which holes cover a direction with
  ``spoint(radians(RA), radians(DEC)) @ scircle(...)``; q3c covers every point query.
* Results come back through ``COPY (query) TO STDOUT (FORMAT csv)`` parsed by Arrow,
  except cone searches: one parametrised statement per table, prepared once per
  connection and run with a generic plan (planning q3c's range expansion cost several
  times more than running it), fetched through a binary cursor.

Tables live in the connection's current schema (``search_path``), so several stores
can share a database (``?options=-csearch_path%3Dmy_schema``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg.copy import QueuedLibpqWriter

from desilab.errors import InputError, StoreError
from desilab.store import _pgcopy
from desilab.store.base import Store, nearest_per_row
from desilab.store.schema import TABLES, StoreColumn

__all__ = ["PostgresStore"]

_TYPES = {
    "int16": "smallint",
    "int32": "integer",
    "int64": "bigint",
    "float32": "real",
    "float64": "double precision",
    "bool": "boolean",
    "string": "text",
    "timestamp": "timestamp",
    "list<float32>": "real[]",
    "list<float64>": "double precision[]",
    "list<int32>": "integer[]",
    "list<int64>": "bigint[]",
}
_LOGICAL = {
    "smallint": "int16",
    "integer": "int32",
    "bigint": "int64",
    "real": "float32",
    "double precision": "float64",
    "numeric": "float64",
    "boolean": "bool",
    "text": "string",
    "character varying": "string",
    "character": "string",
    "timestamp without time zone": "timestamp",
    "_float4": "list<float32>",
    "_float8": "list<float64>",
    "_int4": "list<int32>",
    "_int8": "list<int64>",
}
_READ_ONLY = re.compile(r"^\s*(\(\s*)*(select|with|values|table)\b", re.IGNORECASE | re.DOTALL)
#: Secondary indexes (besides q3c and _file_id) that the views and joins use.
_KEY_INDEXES = {
    "fastspec": "targetid",
    "fastspec_lines": "targetid",
    "quasars": "targetid",
    "bal": "targetid",
    "v2_zones": "catalog, zone",
    "spectra_index": "targetid",
}


def _prefilter_radius(radius_deg: float) -> float:
    """Radius given to q3c: a rounding margin, and never below 1e-5 deg (q3c misses
    exact positions below ~1e-7 deg); the exact test ``q3c_sindist <= sin²(r/2)`` follows."""
    return max(radius_deg * (1.0 + 1e-9) + 1e-12, 1e-5)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresStore(Store):
    """A store in a PostgreSQL database with the q3c extension.

    Parameters
    ----------
    url
        libpq URL, e.g. ``postgresql://postgres@127.0.0.1:5432/desilab``.
    create
        Create missing tables, views and extensions.
    connect_timeout
        Seconds to wait for the server.
    """

    backend = "postgresql"

    def __init__(self, url: str, *, create: bool = True, connect_timeout: float = 10.0) -> None:
        self.url = url
        try:
            self._con = psycopg.connect(url, autocommit=True, connect_timeout=int(max(1, connect_timeout)))
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL: {_first_line(exc)}",
                parameter="DESILAB_STORE",
                hint="is the server running, and does the database exist?",
            ) from exc
        # q3c joins look expensive to the planner, which then spends ~1 s JIT-compiling
        # a query that runs in milliseconds: JIT off for this session.
        self._con.execute("SET jit = off")
        # Parametrised statements we prepare (cone searches) keep one generic plan instead
        # of being re-planned for every set of values; user SQL is never parametrised.
        self._con.execute("SET plan_cache_mode = force_generic_plan")
        self._cone_statements: dict[tuple[str, str, str, str], str] = {}
        self._tx_depth = 0
        self._describe_cache: dict[str, tuple[list[str], list[int]]] = {}
        self.has_pgsphere = False
        if create:
            self._ensure_extensions()
            self.ensure_schema()
        elif "store_meta" not in self._relations():
            raise StoreError(
                "not a desilab store (no store_meta table)",
                parameter="DESILAB_STORE",
                hint="run `desilab ingest PATH...` to create it",
            )
        self.has_pgsphere = bool(self._scalar("SELECT count(*) FROM pg_extension WHERE extname = 'pg_sphere'"))

    def _ensure_extensions(self) -> None:
        try:
            self._con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
        except psycopg.Error as exc:
            raise StoreError(
                f"the q3c extension is not available: {_first_line(exc)}",
                parameter="DESILAB_STORE",
                hint="install postgresql-15-q3c (scripts/system-deps.sh)",
            ) from exc
        with contextlib.suppress(psycopg.Error):
            self._con.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")

    # ------------------------------------------------------------------ primitives

    @property
    def _p(self) -> str:
        return "%s"

    def _order_expr(self, column: str, logical: str) -> str:
        return f'{column} COLLATE "C"' if logical == "string" else column

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._con.execute(sql, list(params) if params else None)

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._con.execute(sql, list(params) if params else None).fetchone()
        return None if row is None else row[0]

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._con.execute(sql, list(params) if params else None).fetchall()

    def _describe(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[int]]:
        key = sql
        if not params and key in self._describe_cache:
            return self._describe_cache[key]
        cur = self._con.cursor()
        cur.execute(f"SELECT * FROM ({sql}) AS __q LIMIT 0", list(params) if params else None)
        desc = cur.description or []
        out = ([d.name for d in desc], [int(d.type_code) for d in desc])
        if not params:
            self._describe_cache[key] = out
        return out

    def _copy_out(self, sql: str, params: Sequence[Any] = ()) -> bytes:
        buf = bytearray()
        with self._con.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", list(params) if params else None) as cp:
            for chunk in cp:
                buf += chunk
        return bytes(buf)

    def _fetch_arrow(
        self, sql: str, params: Sequence[Any] = (), schema: pa.Schema | None = None, shape: str | None = None
    ) -> pa.Table:
        """Run *sql*; *shape* is a constant-free query with the same result columns (cached describe)."""
        names, oids = self._describe(shape, ()) if shape is not None else self._describe(sql, params)
        safe = [f"c{i}" for i in range(len(names))]
        table = _pgcopy.parse_csv(self._copy_out(sql, params), safe, oids).rename_columns(names)
        return table.cast(schema) if schema is not None else table

    def _fetch_batches(self, sql: str, schema: pa.Schema, batch_rows: int = 500_000) -> Iterator[pa.Table]:
        names, oids = self._describe(sql)
        safe = [f"c{i}" for i in range(len(names))]
        with self._transaction(), self._con.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as cp:
            for table in _pgcopy.parse_csv_stream(iter(cp), safe, oids):
                yield table.rename_columns(names).cast(schema)

    def _insert_arrow(self, name: str, data: pa.Table) -> None:
        tdef = TABLES.get(name)
        if tdef is not None:
            have = {c.name: c.type for c in tdef.columns}
        else:
            have = dict(self._physical_columns(name))
        types = [have[c] for c in data.column_names]
        order = _pgcopy.plan_columns(data, types)
        cols = ", ".join(data.column_names[i] for i in order)
        cur = self._con.cursor()
        # A writer thread sends batch k while numpy/Arrow encode batch k+1.
        with cur.copy(f"COPY {name} ({cols}) FROM STDIN (FORMAT BINARY)", writer=QueuedLibpqWriter(cur)) as cp:
            cp.write(_pgcopy.HEADER)
            for chunk in _pgcopy.encode_rows(data, types, order):
                cp.write(chunk)
            cp.write(_pgcopy.TRAILER)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self._tx_depth = 1
        try:
            with self._con.transaction():
                yield
        finally:
            self._tx_depth = 0

    def _relations(self) -> dict[str, str]:
        rows = self._con.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'p', 'm')"
        ).fetchall()
        return {r[0].lower(): ("view" if r[1] in ("v", "m") else "table") for r in rows}

    def _physical_columns(self, name: str) -> list[tuple[str, str]]:
        rows = self._con.execute(
            "SELECT column_name, data_type, udt_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            [name],
        ).fetchall()
        return [(r[0], _LOGICAL.get(r[1], _LOGICAL.get(r[2], "string"))) for r in rows]

    def _create_table(self, name: str, columns: Sequence[StoreColumn]) -> None:
        cols = ", ".join(f"{c.name} {_TYPES[c.type]}" for c in columns)
        self._con.execute(f"CREATE TABLE {name} ({cols})")
        self._describe_cache.clear()

    def _create_indexes(self, tables: Sequence[str]) -> None:
        rel = self._relations()
        results = self._result_registry()
        for name in tables:
            if name not in rel:
                continue
            tdef = TABLES.get(name)
            ra, dec = (
                (tdef.ra, tdef.dec)
                if tdef is not None
                else (results.get(name, {}).get("ra"), results.get(name, {}).get("dec"))
            )
            stmts = []
            if ra:
                stmts.append(f"CREATE INDEX IF NOT EXISTS {name}_q3c ON {name} (q3c_ang2ipix({ra}, {dec}))")
            if tdef is not None and tdef.kind == "catalog":
                stmts.append(f"CREATE INDEX IF NOT EXISTS {name}_file ON {name} (_file_id)")
            if name in _KEY_INDEXES:
                stmts.append(f"CREATE INDEX IF NOT EXISTS {name}_key ON {name} ({_KEY_INDEXES[name]})")
            if name == "voidfinder_holes" and self.has_pgsphere:
                stmts.append(
                    f"CREATE INDEX IF NOT EXISTS {name}_scircle ON {name} USING gist "
                    "(scircle(spoint(radians(ra), radians(dec)), asin(least(1.0, radius / nullif(r, 0)))))"
                )
            with self._maintenance_memory():
                for s in stmts:
                    self._con.execute(s)
                self._con.execute(f"ANALYZE {name}")

    @contextlib.contextmanager
    def _maintenance_memory(self) -> Iterator[None]:
        """Index builds and CLUSTER sort every row: with the default 64 MB of maintenance
        memory a 13M-row table spills the sort to disk. 512 MB for this session, reset after."""
        self._con.execute("SET maintenance_work_mem = '512MB'")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # in a failed transaction the rollback undoes the SET
                self._con.execute("RESET maintenance_work_mem")

    def _cluster(self, table: str, order: Sequence[str]) -> None:
        self._create_indexes([table])
        with self._maintenance_memory():
            self._con.execute(f"CLUSTER {table} USING {table}_q3c")
        self._con.execute(f"ANALYZE {table}")

    def _lock_files(self) -> None:
        self._con.execute("LOCK TABLE ingested_files IN EXCLUSIVE MODE")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
            self._con = None  # type: ignore[assignment]

    def ensure_schema(self) -> None:
        """Create tables/views (see :meth:`Store.ensure_schema`); indexes come with loads."""
        super().ensure_schema()
        self._describe_cache.clear()

    # ------------------------------------------------------------------ reading

    def _check_read_only(self, sql: str) -> str:
        stmt = sql.strip().rstrip(";").strip()
        if not _READ_ONLY.match(stmt):
            raise InputError("only read-only queries (SELECT, WITH ... SELECT, VALUES) are allowed", parameter="SQL")
        return stmt

    def _read_only_arrow(self, sql: str) -> pa.Table:
        try:
            with self._con.transaction():
                self._con.execute("SET TRANSACTION READ ONLY")
                names, oids = self._describe(sql)
                self._describe_cache.pop(sql, None)
                safe = [f"c{i}" for i in range(len(names))]
                return _pgcopy.parse_csv(self._copy_out(sql), safe, oids).rename_columns(names)
        except psycopg.Error as exc:
            raise InputError(_first_line(exc), parameter="SQL") from None

    def _cone_fetch(
        self, relation: str, ra_col: str, dec_col: str, ra: float, dec: float, radius_deg: float, select: str
    ) -> pa.Table:
        # One parametrised statement per (relation, columns), prepared once per connection
        # and run with a generic plan (plan_cache_mode, set at connect): planning the
        # q3c range expansion costs ~3-8 ms per literal query, running it < 1 ms.
        # Rows come back through a binary cursor (psycopg's C loaders) rather than COPY,
        # which cannot be prepared.
        key = (relation, ra_col, dec_col, select)
        sql = self._cone_statements.get(key)
        if sql is None:
            sindist = f"q3c_sindist({ra_col}, {dec_col}, %(ra)s, %(dec)s)"
            sql = (
                f"SELECT {select}, degrees(2 * asin(sqrt(least({sindist}, 1.0)))) * 3600 AS sep_arcsec "
                f"FROM {relation} WHERE q3c_radial_query({ra_col}, {dec_col}, %(ra)s, %(dec)s, %(pad)s) "
                f"AND {sindist} <= %(s)s"
            )
            self._cone_statements[key] = sql
        params = {
            "ra": float(ra),
            "dec": float(dec),
            "pad": _prefilter_radius(float(radius_deg)),
            "s": float(np.sin(np.radians(float(radius_deg)) / 2.0) ** 2),
        }
        # Protocol-level prepared statements are re-planned by the server when the table
        # changes, result columns included (tests/store/test_spatial.py checks it).
        cur = self._con.cursor(binary=True)
        cur.execute(sql, params, prepare=True)
        desc = cur.description or []  # psycopg builds it anew at each access
        names = [d.name for d in desc]
        oids = [int(d.type_code) for d in desc]
        if not _pgcopy.binary_loadable(oids):  # a type without a binary loader here: as text
            cur = self._con.cursor()
            cur.execute(sql, params, prepare=True)
        return _pgcopy.rows_to_arrow(cur.fetchall(), names, oids)

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
        r_deg = radius_arcsec / 3600.0
        s = float(np.sin(np.radians(r_deg) / 2.0) ** 2)
        pad = _prefilter_radius(r_deg)
        ok = np.isfinite(ra) & np.isfinite(dec)
        rows = np.flatnonzero(ok).astype(np.int64)
        points = pa.table({"row": rows, "ra": np.mod(ra[ok], 360.0), "dec": dec[ok]})
        sindist = f"q3c_sindist(a.ra, a.dec, b.{ra_col}, b.{dec_col})"
        sql = (
            f"SELECT a.row AS __xm_row, b.*, degrees(2 * asin(sqrt(least({sindist}, 1.0)))) * 3600 AS __xm_sep "
            f"FROM __xm_points AS a JOIN {relation} AS b "
            f"ON q3c_join(a.ra, a.dec, b.{ra_col}, b.{dec_col}, {pad!r}) AND {sindist} <= {s!r}"
        )
        with self._transaction():
            self._con.execute(
                "CREATE TEMP TABLE __xm_points (row bigint, ra double precision, dec double precision) ON COMMIT DROP"
            )
            with self._con.cursor().copy("COPY __xm_points (row, ra, dec) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(_pgcopy.HEADER)
                for chunk in _pgcopy.encode_rows(points, ["int64", "float64", "float64"]):
                    cp.write(chunk)
                cp.write(_pgcopy.TRAILER)
            self._con.execute("ANALYZE __xm_points")
            names, oids = self._describe(sql)
            self._describe_cache.pop(sql, None)
            safe = [f"c{i}" for i in range(len(names))]
            table = _pgcopy.parse_csv(self._copy_out(sql), safe, oids).rename_columns(names)
        idx = np.asarray(table.column(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        sep = np.asarray(table.column(table.num_columns - 1).to_numpy(zero_copy_only=False), dtype=np.float64)
        brows = table.select(list(range(1, table.num_columns - 1)))
        if nearest and idx.size:
            keep = nearest_per_row(idx, sep, np.arange(idx.size))
            idx, sep, brows = idx[keep], sep[keep], brows.take(pa.array(keep))
        return idx, brows, sep
