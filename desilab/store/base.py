"""The Store interface and everything both backends share.

A :class:`Store` is a catalog database with spatial indexing. The backends
(:mod:`desilab.store.duckdb_store`, :mod:`desilab.store.postgres_store`) implement a
small set of primitives — run SQL, fetch Arrow, bulk-insert Arrow, a transaction, the
spatial SQL — and this module builds the public behaviour on them, so that both
backends behave the same:

* :meth:`Store.ingest_table` / :meth:`Store.ingest` append rows, one transaction per
  file, recording the file (checksum, rows per table) in ``ingested_files`` in the
  same transaction: a crash leaves either all rows of a file or none, and re-ingesting
  a file already recorded is a no-op.
* :meth:`Store.query` runs one read-only SQL statement and returns Arrow.
* :meth:`Store.cone` and :meth:`Store.crossmatch` select by position; both add a
  ``sep_arcsec`` column.
* :meth:`Store.write_table` stores a pipeline result with its column documentation.
* :meth:`Store.export` / :meth:`Store.import_` back the store up to Parquet and restore
  it, verified by checksums.

Column names are lower case everywhere (results included).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from desilab import __version__
from desilab.errors import DesilabError, InputError, StoreError
from desilab.sky.crossmatch import match_sky
from desilab.sky.hpxrange import sky_index
from desilab.store.schema import (
    HPX_COLUMN,
    SCHEMA_VERSION,
    TABLES,
    VIEWS,
    StoreColumn,
    StoreTable,
    logical_type_of,
    view_columns,
)

__all__ = ["FileOutcome", "FileRecord", "SortedRows", "Store", "TableInfo", "conform", "prepare_rows", "prepare_tables"]

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class TableInfo:
    """One relation of the store, as :meth:`Store.tables` lists it."""

    name: str
    kind: str
    rows: int | None
    description: str
    sky: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "description": self.description,
            "sky": self.sky,
        }


@dataclass(frozen=True)
class FileRecord:
    """A source file about to be ingested."""

    path: str
    sha256: str
    size: int
    product: str
    seconds: float = 0.0


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file: ``ingested``, ``replaced``, ``skipped`` or ``failed``."""

    path: str
    status: str
    product: str | None = None
    rows: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    file_id: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "path": self.path,
            "status": self.status,
            "product": self.product,
            "rows": self.rows,
            "table_rows": self.table_rows,
            "file_id": self.file_id,
            "message": self.message,
        }


#: A zall-pix file holds every row of the zpix files (plus DR1-wide primary flags): it
#: replaces zpix files already ingested, and zpix files are skipped once it is in.
_SUPERSEDES: dict[str, tuple[str, ...]] = {"zall-pix": ("zpix",)}
_COVERED_BY: dict[str, tuple[str, ...]] = {"zpix": ("zall-pix",)}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def conform(
    tdef: StoreTable | Sequence[StoreColumn],
    data: pa.Table,
    *,
    file: str | None = None,
    sort: bool = False,
    fill_missing: bool = True,
) -> pa.Table:
    """Arrow table with the store columns of *tdef*, in order, with their types.

    :func:`conform_rows` with the sort applied; see there.
    """
    return conform_rows(tdef, data, file=file, sort=sort, fill_missing=fill_missing).to_table()


def conform_rows(
    tdef: StoreTable | Sequence[StoreColumn],
    data: pa.Table,
    *,
    file: str | None = None,
    sort: bool = False,
    fill_missing: bool = True,
) -> SortedRows:
    """The store columns of *tdef*, in order, with their types; the sort left pending.

    Input columns are matched by lower-case name; ``hpx14`` is computed from the
    position columns when the table is a sky table and the input lacks it; extra input
    columns are dropped. Missing columns become NULL columns, or with
    ``fill_missing=False`` are left out (the backends then insert by column name and the
    database fills them: cheaper than shipping NULL arrays). With *sort*, the rows of a
    sky table are to be ordered by ``hpx14``: the permutation is computed here and
    applied by :meth:`SortedRows.to_table`.

    Raises
    ------
    FormatError
        When a column cannot be converted to its store type (naming it).
    """
    from desilab.errors import FormatError

    columns = tdef.columns if isinstance(tdef, StoreTable) else tuple(tdef)
    by_name = {name.lower(): i for i, name in enumerate(data.column_names)}
    n = data.num_rows
    hpx = None
    if isinstance(tdef, StoreTable) and tdef.sky and HPX_COLUMN not in by_name:
        hpx = sky_index(_column_f8(data, tdef.ra), _column_f8(data, tdef.dec))
    order = None
    if sort and hpx is not None and n > 1 and np.any(hpx[1:] < hpx[:-1]):
        order, hpx = hpx_order(hpx)
    arrays, fields = [], []
    for col in columns:
        idx = by_name.get(col.name)
        if idx is None:
            if col.name == HPX_COLUMN and hpx is not None:
                arrays.append(pa.array(hpx, type=pa.int64()))
            elif fill_missing:
                arrays.append(pa.nulls(n, type=col.arrow))
            else:
                continue
            fields.append(pa.field(col.name, col.arrow))
            continue
        arr = data.column(idx)
        if _is_string_dictionary(arr.type) and pa.types.is_string(col.arrow):
            # kept encoded (its indices are cheap to permute); SortedRows decodes it on output
            arrays.append(arr)
            fields.append(pa.field(col.name, arr.type))
            continue
        try:
            arrays.append(_cast(arr, col.arrow))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise FormatError(f"cannot store as {col.type}: {exc}", file=file, column=col.name) from exc
        fields.append(pa.field(col.name, col.arrow))
    return SortedRows(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), order, in_order={HPX_COLUMN})


def hpx_order(hpx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort of ``hpx14`` values.

    ``hpx14`` lies in [-1, 12·4¹⁴) ⊂ [-1, 2³²), so ``(hpx14 + 1) << 31 | row`` is a unique
    int64 per row whose ascending order is the stable order of ``hpx14``. Sorting these
    keys in place (numpy's SIMD sort) took 39 ms for 1M rows against 180 ms for
    ``np.argsort(kind="stable")`` (which was ~15% of conforming a 1M-row file); other
    inputs fall back to it.

    Parameters
    ----------
    hpx
        ``hpx14`` values (int64; -1 for undefined positions).

    Returns
    -------
    order : numpy.ndarray
        The permutation, equal to ``np.argsort(hpx, kind="stable")``.
    values : numpy.ndarray
        ``hpx[order]``.
    """
    hpx = np.asarray(hpx, dtype=np.int64)
    n = hpx.size
    if n >= 1 << 31 or (n and (hpx.min() < -1 or hpx.max() >= (1 << 32) - 1)):
        order = np.argsort(hpx, kind="stable")
        return order, hpx[order]
    key = ((hpx + 1) << 31) | np.arange(n, dtype=np.int64)
    key.sort()
    return key & ((1 << 31) - 1), (key >> 31) - 1


_TAKE_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (pid that made it, pool): not across a fork
_DICT_PROBE = 4096  # leading values looked at to guess whether a string column has few distinct values
_DICT_MAX = 256  # ... at most this many distinct values in the probe: permute dictionary indices


def _take_pool() -> ThreadPoolExecutor:
    global _TAKE_POOL
    if _TAKE_POOL is None or _TAKE_POOL[0] != os.getpid():
        workers = min(4, os.cpu_count() or 1)
        _TAKE_POOL = (os.getpid(), ThreadPoolExecutor(max_workers=workers, thread_name_prefix="desilab-take"))
    return _TAKE_POOL[1]


def _is_string_dictionary(typ: pa.DataType) -> bool:
    return pa.types.is_dictionary(typ) and pa.types.is_string(typ.value_type)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """*arr*, dictionary-decoded if it is a dictionary."""
    if not pa.types.is_dictionary(arr.type):
        return arr
    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([c.dictionary_decode() for c in arr.chunks], type=arr.type.value_type)
    return arr.dictionary_decode()


def _permutable(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array | pa.ChunkedArray, bool]:
    """How to permute *arr* cheaply: (source to ``take`` from, or *arr* itself when its order does not matter).

    Arrow's ``take`` of a string column costs ~140 ns a row (1M rows: 140 ms, as much as
    ten numeric columns). Catalog strings mostly hold a few distinct values (survey,
    program, spectype, ...): a constant column needs no permutation at all (6 ms to
    check), and a low-cardinality one is dictionary-encoded once, and its int32 indices
    permuted. A NULL-only column needs no permutation either. Other columns (numbers;
    strings such as names or ids) are taken as they are.

    Returns
    -------
    source : pyarrow.Array or pyarrow.ChunkedArray
        *arr*, or its dictionary encoding.
    in_order : bool
        True when *arr* reads the same in any order (constant or NULL-only).
    """
    if arr.null_count == len(arr):
        return arr, True
    if pa.types.is_dictionary(arr.type):  # already encoded: its indices are permuted
        return (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr), False
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or len(arr) < 2:
        return arr, False
    if arr.null_count == 0 and pc.all(pc.equal(arr, arr[0])).as_py():
        return arr, True
    if pc.count_distinct(arr.slice(0, _DICT_PROBE), mode="all").as_py() > _DICT_MAX:
        return arr, False
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.dictionary_encode(arr), False


class SortedRows:
    """Rows conformed to a store table, with their sort into ``hpx14`` order still to apply.

    The backend applies the permutation when it writes (:meth:`to_table`), in the form
    it reads best: DuckDB takes low-cardinality strings dictionary-encoded, PostgreSQL's
    COPY encoder plain strings. Until then a dictionary-encoded input column stays
    encoded (decoding it, then encoding it again to permute it cheaply, cost ~50 ms per
    1M rows), and ``_row`` can be the permutation itself rather than a permuted column.

    Parameters
    ----------
    table
        The columns, in input order except those named in *in_order*.
    order
        The permutation (output row *i* is input row ``order[i]``); None when the rows
        are in order already.
    in_order
        Columns of *table* already in output order (``hpx14``, computed sorted).
    """

    def __init__(self, table: pa.Table, order: np.ndarray | None, in_order: set[str] | frozenset[str] = frozenset()):
        self.table = table
        self.order = order
        self._in_order = frozenset(in_order) & set(table.column_names)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def column_names(self) -> list[str]:
        return self.table.column_names

    def with_column(self, name: str, values: pa.Array) -> SortedRows:
        """With column *name* (replaced or appended) holding *values*, given in output order."""
        idx = self.table.schema.get_field_index(name)
        table = self.table.set_column(idx, name, values) if idx >= 0 else self.table.append_column(name, values)
        return SortedRows(table, self.order, self._in_order | {name})

    def to_table(self, *, dictionaries: bool = False) -> pa.Table:
        """All rows, in output order.

        Columns are permuted on a few threads (Arrow's ``take`` is single-threaded and
        releases the GIL; permuting the ~30-70 columns of a 1M-row file was a fifth of a
        DuckDB ingest). With *dictionaries*, low-cardinality string columns come back
        dictionary-encoded (for a database that stores them as strings either way).
        """
        names = self.table.column_names
        if self.order is None:
            arrays = list(self.table.columns)
        else:
            idx = pa.array(self.order)
            todo = [name for name in names if name not in self._in_order]
            if len(todo) > 1 and len(idx) >= 100_000:
                taken = list(_take_pool().map(lambda name: _take(self.table.column(name), idx), todo))
            else:
                taken = [_take(self.table.column(name), idx) for name in todo]
            got = dict(zip(todo, taken, strict=True))
            arrays = [got.get(name, self.table.column(name)) for name in names]
        if not dictionaries:
            arrays = [_plain(a) for a in arrays]
        return pa.Table.from_arrays(arrays, names=names)


def _take(arr: pa.Array | pa.ChunkedArray, idx: pa.Array) -> pa.Array | pa.ChunkedArray:
    """``arr.take(idx)``, cheaper for strings (see :func:`_permutable`); dictionaries stay encoded."""
    source, in_order = _permutable(arr)
    return arr if in_order else source.take(idx)


def prepare_rows(tables: Mapping[str, pa.Table], *, file: str | None = None) -> dict[str, SortedRows]:
    """The rows of one source file ready to insert, their sort by ``hpx14`` pending (:class:`SortedRows`).

    Adds ``_row`` (file order), converts to the store types, computes ``hpx14`` and its
    sort order. Idempotent: rows already prepared (by :func:`prepare_tables`) need no
    permutation.

    Raises
    ------
    FormatError
        A column cannot be converted to its store type (naming file and column).
    """
    out = {}
    for name, data in tables.items():
        numbered = "_row" not in [n.lower() for n in data.column_names]
        if numbered:
            data = data.append_column("_row", pa.array(np.arange(data.num_rows, dtype=np.int64)))
        rows = conform_rows(TABLES[name], data, file=file, sort=True, fill_missing=False)
        if numbered and rows.order is not None and "_row" in rows.column_names:  # file order = the permutation
            rows = rows.with_column("_row", pa.array(rows.order, type=pa.int64()))
        out[name] = rows
    return out


def prepare_tables(tables: Mapping[str, pa.Table], *, file: str | None = None) -> dict[str, pa.Table]:
    """The rows of one source file ready to insert: ``_row`` (file order), store types, ``hpx14``, sorted.

    Idempotent (a prepared table passes through unchanged but for a column selection), so
    ingest readers can run it in their worker processes, in parallel with the writer.

    Raises
    ------
    FormatError
        A column cannot be converted to its store type (naming file and column).
    """
    return {name: rows.to_table() for name, rows in prepare_rows(tables, file=file).items()}


def _column_f8(data: pa.Table, name: str | None) -> np.ndarray:
    if name is None:
        raise StoreError("no position column")
    idx = {n.lower(): i for i, n in enumerate(data.column_names)}.get(name.lower())
    if idx is None:
        return np.full(data.num_rows, np.nan)
    col = data.column(idx)
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _cast(arr: pa.ChunkedArray | pa.Array, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    src = arr.type
    if src == target:
        return arr
    if pa.types.is_list(target) and (
        pa.types.is_fixed_size_list(src) or pa.types.is_large_list(src) or pa.types.is_list(src)
    ):
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_fixed_size_list(src):
            size = src.list_size
            values = arr.flatten() if arr.null_count == 0 else arr.values.slice(arr.offset * size, len(arr) * size)
            offsets = pa.array(np.arange(len(arr) + 1, dtype=np.int32) * size)
            mask = arr.is_null() if arr.null_count else None
            arr = pa.ListArray.from_arrays(offsets, values, mask=mask)
        return arr.cast(target)
    if pa.types.is_boolean(target) and (pa.types.is_integer(src) or pa.types.is_floating(src)):
        return pc.not_equal(arr, pa.scalar(0, type=src))
    if pa.types.is_string(target) and (pa.types.is_binary(src) or pa.types.is_fixed_size_binary(src)):
        return pc.utf8_rtrim_whitespace(arr.cast(pa.binary()).cast(pa.string()))
    if pa.types.is_integer(target) and pa.types.is_floating(src):
        return arr.cast(target, safe=False)
    return arr.cast(target)


def _dedupe(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        low = name.lower()
        if low in seen:
            seen[low] += 1
            low = f"{low}_{seen[low]}"
        else:
            seen[low] = 0
        out.append(low)
    return out


def _portable_types(table: pa.Table) -> pa.Table:
    """Decimals (DuckDB's SUM of integers, PostgreSQL numerics) become float64 on both backends."""
    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type):
            table = table.set_column(i, f.with_type(pa.float64()), table.column(i).cast(pa.float64()))
    return table


def lower_names(table: pa.Table) -> pa.Table:
    """Column names in lower case, duplicates suffixed ``_1``, ``_2``..."""
    return table.rename_columns(_dedupe(table.column_names))


def check_radius_deg(radius_deg: float, parameter: str = "radius") -> float:
    """Validate a radius in degrees (0 ≤ r ≤ 180) and return it as float."""
    try:
        r = float(radius_deg)
    except (TypeError, ValueError):
        raise InputError(f"radius must be a number, got {radius_deg!r}", parameter=parameter) from None
    if not np.isfinite(r) or r < 0 or r > 180:
        raise InputError(
            f"radius must be between 0 and 180 deg (648000 arcsec), got {radius_deg!r}", parameter=parameter
        )
    return r


def check_position(ra: float, dec: float) -> tuple[float, float]:
    """Validate a sky position; returns (RA wrapped to [0, 360), Dec)."""
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError):
        raise InputError(f"RA/Dec must be numbers, got {ra!r}, {dec!r}", parameter="ra/dec") from None
    if not np.isfinite(ra_f):
        raise InputError(f"RA must be finite, got {ra!r}", parameter="ra")
    if not np.isfinite(dec_f) or abs(dec_f) > 90:
        raise InputError(f"Dec must be between -90 and 90 deg, got {dec!r}", parameter="dec")
    ra_f = float(np.mod(ra_f, 360.0))
    if ra_f >= 360.0:
        ra_f = 0.0
    return ra_f, dec_f


class Store(ABC):
    """A catalog store (abstract): one API, two backends.

    Use :func:`desilab.store.connect` to get one. Stores are context managers
    (``with connect(url) as store: ...``) and must be closed.
    """

    backend: ClassVar[str]
    url: str

    # ------------------------------------------------------------------ primitives

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns nothing (within the current transaction if any)."""

    @abstractmethod
    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """First column of the first row, or None."""

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """All rows as tuples (small results only)."""

    @abstractmethod
    def _fetch_arrow(
        self, sql: str, params: Sequence[Any] = (), schema: pa.Schema | None = None, shape: str | None = None
    ) -> pa.Table:
        """Run a SELECT and return Arrow (column types from *schema* when given).

        *shape*, if given, is a constant-free query with the same result columns that a
        backend may use to describe (and cache) the result types.
        """

    @abstractmethod
    def _fetch_batches(self, sql: str, schema: pa.Schema, batch_rows: int = 500_000) -> Iterator[pa.Table]:
        """Stream a SELECT as Arrow tables of at most *batch_rows* rows."""

    @abstractmethod
    def _insert_arrow(self, name: str, data: pa.Table) -> None:
        """Bulk-append an Arrow table whose columns are columns of the table (matched by
        name, of the store types); the table's other columns get NULL."""

    def _insert_rows(self, name: str, rows: SortedRows) -> None:
        """Bulk-append rows whose sort may be pending, as :meth:`_insert_arrow` (in output order).

        A backend may ask :meth:`SortedRows.to_table` for the form it reads best.
        """
        self._insert_arrow(name, rows.to_table())

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction: commit on success, roll back on any exception."""

    @abstractmethod
    def _relations(self) -> dict[str, str]:
        """Relations of the store's schema: name -> ``table`` or ``view``."""

    @abstractmethod
    def _physical_columns(self, name: str) -> list[tuple[str, str]]:
        """(column, logical type) of an existing relation, in order."""

    @abstractmethod
    def _create_table(self, name: str, columns: Sequence[StoreColumn]) -> None:
        """CREATE TABLE with the backend's types."""

    @abstractmethod
    def _cone_fetch(
        self, relation: str, ra_col: str, dec_col: str, ra: float, dec: float, radius_deg: float, select: str
    ) -> pa.Table:
        """Rows of *relation* within *radius_deg* of (ra, dec): the ``select`` columns plus ``sep_arcsec``.

        Any order; a row at exactly the radius is included.
        """

    @abstractmethod
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
        """(row index into the positions, matched rows of *relation*, sep_arcsec) for each pair."""

    @abstractmethod
    def _create_indexes(self, tables: Sequence[str]) -> None:
        """Create the spatial/provenance indexes of these tables if missing (after bulk loads)."""

    @abstractmethod
    def _cluster(self, table: str, order: Sequence[str]) -> None:
        """Rewrite *table* in spatial order (backend-specific)."""

    @abstractmethod
    def _check_read_only(self, sql: str) -> str:
        """Return the single read-only statement in *sql* or raise InputError(parameter='SQL')."""

    @abstractmethod
    def _read_only_arrow(self, sql: str) -> pa.Table:
        """Run a validated read-only statement."""

    @abstractmethod
    def _lock_files(self) -> None:
        """Serialise concurrent ingests (inside a transaction)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ schema

    def ensure_schema(self) -> None:
        """Create missing built-in tables and views; check the schema version.

        Raises
        ------
        StoreError
            If the store was created by an incompatible desilab (schema version).
        """
        existing = self._relations()
        with self._transaction():
            for t in TABLES.values():
                if t.name not in existing:
                    self._create_table(t.name, t.columns)
            for v in VIEWS.values():
                if v.name not in existing:
                    self._execute(f"CREATE VIEW {v.name} AS {v.sql}")
            version = self._scalar("SELECT value FROM store_meta WHERE key = 'schema_version'")
            if version is None:
                for key, value in (
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("hpx_order", "14"),
                    ("hpx_scheme", "NESTED"),
                    ("created_at", _now().isoformat()),
                    ("created_by", f"desilab {__version__}"),
                ):
                    self._execute(f"INSERT INTO store_meta VALUES ({self._p}, {self._p})", (key, value))
            elif int(version) != SCHEMA_VERSION:
                raise StoreError(
                    f"store schema version {version}, this desilab writes version {SCHEMA_VERSION}",
                    hint="export it with the desilab that made it and import into a new store",
                )

    def _data_table(self, name: str) -> str:
        """Where the rows of built-in table *name* are written (DuckDB keeps catalog rows
        in a narrower table behind a view of the same name; see :mod:`~desilab.store.duckdb_store`)."""
        return name

    @property
    def _p(self) -> str:
        """Bind-parameter placeholder of the backend."""
        return "?"

    def _order_expr(self, column: str, logical: str) -> str:
        """ORDER BY term giving the same order on both backends (byte order for strings)."""
        return column

    def _result_registry(self) -> dict[str, dict[str, Any]]:
        rows = self._rows("SELECT name, description, ra_column, dec_column, columns, rows FROM result_tables")
        return {
            r[0]: {"description": r[1], "ra": r[2], "dec": r[3], "columns": json.loads(r[4] or "[]"), "rows": r[5]}
            for r in rows
        }

    def _sky_columns(self, name: str) -> tuple[str, str] | None:
        low = name.lower()
        if low in TABLES and TABLES[low].sky:
            return TABLES[low].ra, TABLES[low].dec  # type: ignore[return-value]
        if low in VIEWS and VIEWS[low].ra:
            return VIEWS[low].ra, VIEWS[low].dec  # type: ignore[return-value]
        reg = self._result_registry().get(low)
        if reg and reg["ra"]:
            return reg["ra"], reg["dec"]
        return None

    def _require_relation(self, name: str, parameter: str = "table") -> str:
        low = str(name).lower()
        if low in TABLES or low in VIEWS:  # created by ensure_schema (or checked at connect)
            return low
        rel = self._relations()
        if low not in rel:
            known = ", ".join(sorted(n for n in rel if n not in {"store_meta"}))
            raise InputError(f"no table or view {name!r} in the store; known: {known}", parameter=parameter)
        return low

    def tables(self) -> list[TableInfo]:
        """Every table and view with its kind, row count and description."""
        rel = self._relations()
        results = self._result_registry()
        out = []
        for name in sorted(rel):
            if name in TABLES:
                t = TABLES[name]
                kind, desc, sky = t.kind, t.description, t.sky
            elif name in VIEWS:
                kind, desc, sky = "view", VIEWS[name].description, VIEWS[name].ra is not None
            elif name in results:
                kind, desc, sky = "result", results[name]["description"] or "", bool(results[name]["ra"])
            else:
                kind, desc, sky = "other", "", False
            rows = None if kind == "view" else int(self._scalar(f"SELECT count(*) FROM {name}"))
            out.append(TableInfo(name, kind, rows, desc, sky))
        return out

    def columns(self, table: str) -> list[StoreColumn]:
        """Documented columns of a table or view (unit, UCD, utype, description).

        Raises
        ------
        InputError
            Unknown table (parameter ``table``).
        """
        name = self._require_relation(table)
        if name in TABLES:
            return list(TABLES[name].columns)
        if name in VIEWS:
            return view_columns(VIEWS[name])
        reg = self._result_registry().get(name)
        if reg:
            return [
                StoreColumn(
                    c["name"], c["type"], c.get("unit"), c.get("ucd"), c.get("description") or "", c.get("utype")
                )
                for c in reg["columns"]
            ]
        return [StoreColumn(n, t, None, None, "") for n, t in self._physical_columns(name)]

    # ------------------------------------------------------------------ reading

    def query(self, sql: str) -> pa.Table:
        """Run one read-only SQL statement (SELECT, WITH, ...) and return Arrow.

        Parameters
        ----------
        sql
            The statement. Table and column names are case-insensitive; results come
            back with lower-case column names.

        Raises
        ------
        InputError
            Not a single read-only statement, or the database rejected it (the
            message is the database's first line; parameter ``SQL``).

        Examples
        --------
        >>> store.query("SELECT spectype, count(*) AS n FROM zcatalog GROUP BY spectype")  # doctest: +SKIP
        """
        if not isinstance(sql, str) or not sql.strip():
            raise InputError("empty SQL", parameter="SQL")
        stmt = self._check_read_only(sql)
        return _portable_types(lower_names(self._read_only_arrow(stmt)))

    def cone(
        self,
        table: str,
        ra: float,
        dec: float,
        radius_deg: float,
        *,
        columns: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Rows of a sky table within *radius_deg* of (ra, dec), nearest first.

        Exact great-circle distance after a spatial-index prefilter (HEALPix ranges on
        DuckDB, q3c on PostgreSQL); a row at exactly the radius is included. Correct
        across RA 0/360 and at the poles; radius 0 returns rows at exactly (ra, dec).

        Parameters
        ----------
        table
            A sky table or view (see :meth:`tables`).
        ra, dec
            Centre [deg].
        radius_deg
            Radius [deg], 0 to 180.
        columns
            Columns to return (default all); ``sep_arcsec`` is always added.
        limit
            Keep only the nearest *limit* rows.

        Returns
        -------
        pyarrow.Table
            With a ``sep_arcsec`` column, sorted by it.

        Raises
        ------
        InputError
            Unknown or non-sky table (``table``), bad position (``ra``/``dec``), bad
            radius (``radius``), unknown column (``columns``).
        """
        name = self._require_relation(table)
        sky = self._sky_columns(name)
        if sky is None:
            raise InputError(f"{name!r} has no sky position: cone search needs a sky table", parameter="table")
        r = check_radius_deg(radius_deg)
        ra_f, dec_f = check_position(ra, dec)
        select = self._select_list(name, columns)
        table = lower_names(self._cone_fetch(name, sky[0], sky[1], ra_f, dec_f, r, select))
        if table.num_rows > 1:  # nearest first (sorting the few rows here beats a SQL ORDER BY)
            table = table.take(pc.sort_indices(table, sort_keys=[("sep_arcsec", "ascending")]))
        if limit is not None:
            table = table.slice(0, max(0, int(limit)))
        return annotate(table, self.columns(name))

    def _select_list(self, name: str, columns: Sequence[str] | None) -> str:
        if columns is None:
            return "*"
        have = {c for c, _ in self._physical_columns(name)}
        out = []
        for c in columns:
            low = str(c).lower()
            if low not in have:
                raise InputError(f"no column {c!r} in {name}", parameter="columns")
            out.append(low)
        return ", ".join(out)

    def crossmatch(
        self,
        a: str | pa.Table,
        b: str,
        radius_arcsec: float,
        *,
        nearest: bool = False,
        ra: str | None = None,
        dec: str | None = None,
    ) -> pa.Table:
        """Pairs of rows of *a* and sky table *b* closer than *radius_arcsec*.

        Parameters
        ----------
        a
            An Arrow table with a position (user rows) or the name of a sky table.
        b
            Name of a sky table or view of the store.
        radius_arcsec
            Matching radius [arcsec], 0 to 648000.
        nearest
            Keep only the nearest row of *b* for each row of *a*.
        ra, dec
            Position columns of an Arrow *a* (default: the first of ``ra``,
            ``target_ra``, ``ra_deg`` / ``dec``, ``target_dec``, ``dec_deg``, any case).

        Returns
        -------
        pyarrow.Table
            The columns of *a*, then those of *b*, then ``sep_arcsec``; a name present
            in both gets ``_1`` (from *a*) and ``_2`` (from *b*) suffixes. Rows are in
            the order of *a*, then by separation.

        Raises
        ------
        InputError
            Unknown / non-sky table, missing position column, bad radius.
        """
        r_deg = check_radius_deg(float(radius_arcsec) / 3600.0 if _is_number(radius_arcsec) else radius_arcsec)
        r_arcsec = r_deg * 3600.0
        bname = self._require_relation(b, parameter="table")
        bsky = self._sky_columns(bname)
        if bsky is None:
            raise InputError(f"{bname!r} has no sky position: crossmatch needs a sky table", parameter="table")
        if isinstance(a, str):
            aname = self._require_relation(a, parameter="table")
            asky = self._sky_columns(aname)
            if asky is None:
                raise InputError(f"{aname!r} has no sky position", parameter="table")
            order = TABLES[aname].order_by if aname in TABLES else ()
            sql = f"SELECT * FROM {aname}" + (f" ORDER BY {', '.join(order)}" if order else "")
            atab = lower_names(self._fetch_arrow(sql))
            ra_col, dec_col = asky
        else:
            atab = a
            ra_col, dec_col = find_position_columns(a, ra, dec)
        ra_a = _column_f8(atab, ra_col)
        dec_a = _column_f8(atab, dec_col)
        bad = np.isfinite(dec_a) & (np.abs(dec_a) > 90)
        if np.any(bad):
            raise InputError(f"{int(bad.sum())} rows with |Dec| > 90 deg", column=dec_col, parameter="crossmatch")
        idx, brows, sep = self._crossmatch_rows(ra_a, dec_a, bname, bsky[0], bsky[1], r_arcsec, nearest)
        if isinstance(a, str):
            atab = annotate(atab, self.columns(a))
        return join_pairs(atab, annotate(lower_names(brows), self.columns(bname)), idx, sep)

    # ------------------------------------------------------------------ writing

    def ingest_table(self, table: str, data: pa.Table, *, label: str | None = None) -> int:
        """Append an Arrow table to a built-in catalog table, as one transaction.

        The rows are conformed to the table's columns (``hpx14`` computed when
        missing), sorted by ``hpx14`` for sky tables, and recorded in
        ``ingested_files`` under the pseudo path ``arrow:<label>`` (not idempotent:
        files are, through :meth:`ingest`).

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        InputError
            Unknown or non-catalog table (parameter ``table``).
        """
        tdef = TABLES.get(str(table).lower())
        if tdef is None or tdef.kind != "catalog":
            names = ", ".join(n for n, t in TABLES.items() if t.kind == "catalog")
            raise InputError(f"not a catalog table: {table!r}; catalog tables: {names}", parameter="table")
        rec = FileRecord(f"arrow:{label or tdef.name}", f"arrow-{uuid.uuid4().hex}", 0, "arrow")
        outcome = self.ingest_file(rec, {tdef.name: data})
        return outcome.rows

    def ingest_file(self, rec: FileRecord, tables: Mapping[str, pa.Table]) -> FileOutcome:
        """Write the rows of one source file in a single transaction (the ingest unit).

        Skips a file whose checksum is already recorded; replaces the rows of a file
        previously ingested from the same path with other content.
        """
        t0 = time.perf_counter()
        prepared = prepare_rows(tables, file=rec.path)
        try:
            return self._ingest_prepared(rec, prepared, t0)
        except (DesilabError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the database refused the rows; the transaction is rolled back
            text = str(exc).strip().splitlines()
            raise StoreError(
                f"the database refused the rows: {text[0] if text else type(exc).__name__}", file=rec.path
            ) from exc

    def _ingest_prepared(self, rec: FileRecord, prepared: dict[str, SortedRows], t0: float) -> FileOutcome:
        status = "ingested"
        with self._transaction():
            self._lock_files()
            if self._scalar(f"SELECT file_id FROM ingested_files WHERE sha256 = {self._p}", (rec.sha256,)) is not None:
                return FileOutcome(rec.path, "skipped", rec.product, message="already ingested (same checksum)")
            covering = _COVERED_BY.get(rec.product, ())
            if covering:
                marks = ", ".join([self._p] * len(covering))
                cover = self._scalar(
                    f"SELECT min(name) FROM ingested_files WHERE product IN ({marks})", tuple(covering)
                )
                if cover is not None:
                    return FileOutcome(
                        rec.path, "skipped", rec.product, message=f"rows already in the store from {cover}"
                    )
            old = []
            if rec.product != "arrow":  # Arrow tables have no identity: never replace them by label
                old = [
                    r[0] for r in self._rows(f"SELECT file_id FROM ingested_files WHERE path = {self._p}", (rec.path,))
                ]
            superseded = _SUPERSEDES.get(rec.product, ())
            if superseded:
                marks = ", ".join([self._p] * len(superseded))
                old += [
                    r[0]
                    for r in self._rows(
                        f"SELECT file_id FROM ingested_files WHERE product IN ({marks})", tuple(superseded)
                    )
                ]
            if old:
                self._delete_files(sorted(set(old)))
                status = "replaced"
            file_id = int(self._scalar("SELECT coalesce(max(file_id), 0) + 1 FROM ingested_files"))
            counts: dict[str, int] = {}
            for name, t in prepared.items():
                if t.num_rows == 0:
                    counts[name] = 0
                    continue
                t = t.with_column("_file_id", pa.array(np.full(t.num_rows, file_id, dtype=np.int64)))
                self._insert_rows(name, t)
                counts[name] = t.num_rows
            total = sum(counts.values())
            seconds = rec.seconds + (time.perf_counter() - t0)
            self._execute(
                f"INSERT INTO ingested_files VALUES ({', '.join([self._p] * 11)})",
                (
                    file_id,
                    rec.path,
                    Path(rec.path).name,
                    rec.sha256,
                    int(rec.size),
                    rec.product,
                    total,
                    json.dumps(counts, sort_keys=True),
                    _now(),
                    float(seconds),
                    __version__,
                ),
            )
        return FileOutcome(rec.path, status, rec.product, total, counts, file_id)

    def _delete_files(self, file_ids: Sequence[int]) -> None:
        ids = ", ".join(str(int(i)) for i in file_ids)
        for t in TABLES.values():
            if t.kind == "catalog":
                self._execute(f"DELETE FROM {self._data_table(t.name)} WHERE _file_id IN ({ids})")
        self._execute(f"DELETE FROM ingested_files WHERE file_id IN ({ids})")

    def ingest(self, paths: Sequence[str | Path], *, workers: int = 1, progress: Any = None, on_file: Any = None):
        """Ingest DR1 files or directory trees (see :func:`desilab.store.ingest.ingest`)."""
        from desilab.store.ingest import ingest

        return ingest(self, paths, workers=workers, progress=progress, on_file=on_file)

    def known_checksums(self) -> set[str]:
        """SHA-256 of every file already ingested."""
        return {r[0] for r in self._rows("SELECT sha256 FROM ingested_files")}

    def optimize(self, tables: Sequence[str] | None = None) -> list[str]:
        """Put sky tables in spatial order so that cone searches read fewer blocks.

        Each ingest transaction writes its rows sorted by ``hpx14``, so a table loaded from
        many files is a set of sorted runs and a cone visits one block per run. This
        rewrites the table as one run: DuckDB re-creates it ``ORDER BY hpx14`` (in one
        transaction), PostgreSQL ``CLUSTER``s it on its q3c index. Worth running after
        large ingests; never needed for correctness.

        Returns
        -------
        list of str
            The tables rewritten.
        """
        names = [t.lower() for t in tables] if tables else [n for n, t in TABLES.items() if t.sky]
        done = []
        rel = self._relations()
        for name in names:
            tdef = TABLES.get(name)
            if tdef is None or not tdef.sky:
                raise InputError(f"{name!r} is not a built-in sky table", parameter="table")
            if name in rel and int(self._scalar(f"SELECT count(*) FROM {name}")):
                self._cluster(name, [HPX_COLUMN, *tdef.order_by])
                done.append(name)
        return done

    def finish_bulk(self, tables: Sequence[str] | None = None) -> None:
        """Build indexes after bulk loads (q3c on PostgreSQL) and refresh statistics."""
        names = [t for t in (tables or TABLES) if t in TABLES]
        self._create_indexes(names)

    def write_table(
        self,
        name: str,
        data: pa.Table,
        *,
        description: str = "",
        ra: str | None = None,
        dec: str | None = None,
        mode: str = "create",
        run_id: str | None = None,
    ) -> int:
        """Store a result table (pipeline output) with its column documentation.

        Units, UCDs, utypes and descriptions are taken from the Arrow field metadata
        keys ``unit``, ``ucd``, ``utype``, ``description``. With *ra*/*dec* the table is
        a sky table: ``hpx14`` is added and cone/crossmatch work on it.

        Parameters
        ----------
        name
            Lower-case SQL identifier, not a built-in table name.
        data
            The rows.
        description
            What one row is.
        ra, dec
            Position columns [deg], if any.
        mode
            ``create`` (fail if it exists), ``replace`` or ``append``.
        run_id
            ``runs.run_id`` of the run that produced it.

        Returns
        -------
        int
            Rows written.

        Raises
        ------
        InputError
            Bad name, mode, position column or column type (naming it).
        """
        low = str(name).lower()
        if not _IDENT.match(low) or low in TABLES or low in VIEWS:
            raise InputError(
                f"invalid result-table name {name!r}: use a lower-case identifier that is not a built-in table",
                parameter="name",
            )
        if mode not in ("create", "replace", "append"):
            raise InputError(f"mode must be create, replace or append, got {mode!r}", parameter="mode")
        data = lower_names(data)
        if (ra is None) != (dec is None):
            raise InputError("give both ra and dec, or neither", parameter="ra/dec")
        cols: list[StoreColumn] = []
        for f in data.schema:
            if f.name == HPX_COLUMN:
                continue
            try:
                logical = logical_type_of(f.type)
            except ValueError as exc:
                raise InputError(str(exc), column=f.name, parameter="data") from None
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            cols.append(
                StoreColumn(
                    f.name, logical, meta.get("unit"), meta.get("ucd"), meta.get("description", ""), meta.get("utype")
                )
            )
        if ra is not None:
            for c in (ra, dec):
                if str(c).lower() not in data.column_names:
                    raise InputError(f"no column {c!r} in the data", parameter="ra/dec")
            ra, dec = str(ra).lower(), str(dec).lower()  # type: ignore[union-attr]
            cols.append(
                StoreColumn(
                    HPX_COLUMN, "int64", None, "pos.healpix", f"HEALPix index, NESTED, order 14, of ({ra}, {dec})"
                )
            )
        tdef = StoreTable(name=low, description=description, columns=tuple(cols), kind="result", ra=ra, dec=dec)
        prepared = conform(tdef, data)
        exists = low in self._relations()
        with self._transaction():
            if exists and mode == "create":
                raise InputError(f"table {low!r} exists (use mode='replace' or 'append')", parameter="name")
            if exists and mode == "replace":
                self._execute(f"DROP TABLE {low}")
                self._execute(f"DELETE FROM result_tables WHERE name = {self._p}", (low,))
                exists = False
            if exists:
                have = [c for c, _ in self._physical_columns(low)]
                if have != tdef.names:
                    raise InputError(f"columns differ from the existing table {low}: {have}", parameter="data")
            else:
                self._create_table(low, tdef.columns)
            if prepared.num_rows:
                self._insert_arrow(low, prepared)
            rows = int(self._scalar(f"SELECT count(*) FROM {low}"))
            self._execute(f"DELETE FROM result_tables WHERE name = {self._p}", (low,))
            self._execute(
                f"INSERT INTO result_tables VALUES ({', '.join([self._p] * 8)})",
                (low, run_id, _now(), description, rows, ra, dec, json.dumps([c.to_dict() for c in cols])),
            )
        if ra is not None:
            self._create_indexes([low])
        return prepared.num_rows

    def drop_table(self, name: str) -> None:
        """Drop a result table (built-in tables cannot be dropped)."""
        low = self._require_relation(name)
        if low in TABLES or low in VIEWS:
            raise InputError(f"{low!r} is a built-in table and cannot be dropped", parameter="table")
        with self._transaction():
            self._execute(f"DROP TABLE {low}")
            self._execute(f"DELETE FROM result_tables WHERE name = {self._p}", (low,))

    # ------------------------------------------------------------------ runs

    def start_run(self, command: str, settings: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Record a run in ``runs`` (status ``running``) and return its id."""
        rid = run_id or f"{_now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        with self._transaction():
            self._execute(
                f"INSERT INTO runs VALUES ({', '.join([self._p] * 8)})",
                (
                    rid,
                    _now(),
                    None,
                    "running",
                    command,
                    __version__,
                    json.dumps(dict(settings or {}), default=str),
                    None,
                ),
            )
        return rid

    def finish_run(self, run_id: str, status: str = "ok", summary: Mapping[str, Any] | None = None) -> None:
        """Mark a run finished with a status and a JSON summary."""
        with self._transaction():
            self._execute(
                f"UPDATE runs SET finished_at = {self._p}, status = {self._p}, summary = {self._p} "
                f"WHERE run_id = {self._p}",
                (_now(), status, json.dumps(dict(summary or {}), default=str), run_id),
            )

    # ------------------------------------------------------------------ consistency, backup

    def check(self, *, keys: bool = True) -> list[str]:
        """Consistency problems (empty list: consistent).

        Checks that every catalog row belongs to a recorded file and that each file's
        recorded row counts match the rows present (what a crash could break), and with
        *keys* that logical keys are unique (what bad input data could break).
        """
        problems: list[str] = []
        files = {r[0]: json.loads(r[1] or "{}") for r in self._rows("SELECT file_id, table_rows FROM ingested_files")}
        for t in TABLES.values():
            if t.kind != "catalog":
                continue
            counts = dict(self._rows(f"SELECT _file_id, count(*) FROM {t.name} GROUP BY _file_id"))
            for fid, n in counts.items():
                if fid not in files:
                    problems.append(f"{t.name}: {n} rows of unrecorded file {fid}")
                elif files[fid].get(t.name, 0) != n:
                    problems.append(f"{t.name}: file {fid} has {n} rows, recorded {files[fid].get(t.name, 0)}")
            for fid, rec in files.items():
                if rec.get(t.name, 0) and fid not in counts:
                    problems.append(f"{t.name}: file {fid} recorded {rec[t.name]} rows, none present")
            if t.key and keys:
                cols = ", ".join(t.key)
                dup = self._scalar(
                    f"SELECT count(*) FROM (SELECT {cols} FROM {t.name} GROUP BY {cols} HAVING count(*) > 1) AS d"
                )
                if dup:
                    problems.append(f"{t.name}: {dup} duplicated keys ({cols})")
        return problems

    def export(self, directory: str | Path, *, progress: Any = None) -> dict[str, Any]:
        """Back the store up to *directory* (see :mod:`desilab.store.backup`)."""
        from desilab.store.backup import export_store

        return export_store(self, directory, progress=progress)

    def import_(self, directory: str | Path, *, progress: Any = None) -> dict[str, Any]:
        """Restore a backup into this (empty) store (see :mod:`desilab.store.backup`)."""
        from desilab.store.backup import import_store

        return import_store(self, directory, progress=progress)


def _is_number(x: Any) -> bool:
    try:
        float(x)
    except (TypeError, ValueError):
        return False
    return True


_RA_NAMES = ("ra", "target_ra", "ra_deg", "raj2000", "alpha")
_DEC_NAMES = ("dec", "target_dec", "dec_deg", "dej2000", "decj2000", "delta")


def find_position_columns(table: pa.Table, ra: str | None, dec: str | None) -> tuple[str, str]:
    """Names of the RA/Dec columns of a user table (given, or found by common names).

    Raises
    ------
    InputError
        A named column is missing, or none of the common names is present.
    """
    lower = {n.lower(): n for n in table.column_names}

    def pick(given: str | None, names: tuple[str, ...], what: str) -> str:
        if given is not None:
            if given.lower() not in lower:
                raise InputError(
                    f"no {what} column {given!r}; columns: {', '.join(table.column_names)}", parameter=f"--{what}"
                )
            return lower[given.lower()]
        for n in names:
            if n in lower:
                return lower[n]
        raise InputError(
            f"no {what.upper()} column found (looked for {', '.join(names)}); name it with --{what}",
            parameter=f"--{what}",
        )

    return pick(ra, _RA_NAMES, "ra"), pick(dec, _DEC_NAMES, "dec")


_SEP_META = {"unit": "arcsec", "ucd": "pos.angDistance", "description": "Great-circle separation"}


def annotate(table: pa.Table, columns: Sequence[StoreColumn]) -> pa.Table:
    """Attach unit / UCD / description field metadata from column docs (and to ``sep_arcsec``)."""
    schema = _annotated_schema(table.schema, tuple(columns))
    return pa.Table.from_arrays(table.columns, schema=schema)


@functools.lru_cache(maxsize=256)
def _annotated_schema(schema: pa.Schema, columns: tuple[StoreColumn, ...]) -> pa.Schema:
    # cached: rebuilding 70 annotated fields took ~0.5 ms, a tenth of a 1' cone search
    docs = {c.name: c for c in columns}
    fields = []
    for f in schema:
        c = docs.get(f.name)
        if c is not None:
            meta = {k: v for k, v in (("unit", c.unit), ("ucd", c.ucd), ("description", c.description)) if v}
            f = f.with_metadata(meta or None)
        elif f.name == "sep_arcsec":
            f = f.with_metadata(_SEP_META)
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def join_pairs(a: pa.Table, b: pa.Table, idx_a: np.ndarray, sep: np.ndarray) -> pa.Table:
    """Columns of ``a.take(idx_a)`` and of *b* (already one row per pair) side by side, plus ``sep_arcsec``.

    Pairs are ordered by ``idx_a`` then by separation; colliding names get ``_1``/``_2``.
    """
    order = np.lexsort((sep, idx_a))
    idx_a = np.asarray(idx_a, dtype=np.int64)[order]
    sep = np.asarray(sep, dtype=np.float64)[order]
    left = a.take(pa.array(idx_a))
    right = b.take(pa.array(order))
    lnames = [n.lower() for n in left.column_names]
    rnames = [n.lower() for n in right.column_names]
    both = set(lnames) & set(rnames)
    names = [f"{n}_1" if n in both else n for n in lnames] + [f"{n}_2" if n in both else n for n in rnames]
    if "sep_arcsec" in names:
        names = [f"{n}_in" if n == "sep_arcsec" else n for n in names]
    arrays = list(left.columns) + list(right.columns) + [pa.array(sep)]
    metas = [f.metadata for f in left.schema] + [f.metadata for f in right.schema] + [_SEP_META]
    fields = [
        pa.field(n, a.type, metadata=m) for n, a, m in zip([*_dedupe(names), "sep_arcsec"], arrays, metas, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def nearest_per_row(idx: np.ndarray, sep: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Positions of the nearest pair of each ``idx`` value (ties: smallest *tiebreak*)."""
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    o = np.lexsort((tiebreak, sep, idx))
    first = np.ones(o.size, dtype=bool)
    first[1:] = idx[o][1:] != idx[o][:-1]
    return o[first]


def kernel_match(
    ra_a: np.ndarray, dec_a: np.ndarray, ra_b: np.ndarray, dec_b: np.ndarray, radius_arcsec: float, nearest: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx_a, idx_b, sep_arcsec) from the in-memory kernel."""
    m = match_sky(ra_a, dec_a, ra_b, dec_b, radius_arcsec, nearest=nearest)
    return m.idx1, m.idx2, m.sep_arcsec
