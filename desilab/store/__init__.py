"""Catalog store: one API, two backends (embedded DuckDB, PostgreSQL + q3c).

>>> from desilab.store import connect
>>> with connect("duckdb:///desilab-data/desilab.duckdb") as store:  # doctest: +SKIP
...     store.ingest(["desilab-data/sample"])
...     near = store.cone("zcatalog", 150.1, 2.2, 1 / 60)
...     pairs = store.crossmatch(my_table, "zcatalog", 1.0, nearest=True)

URLs: ``duckdb:///relative/path.duckdb``, ``duckdb:////absolute/path.duckdb``,
``duckdb:///:memory:`` and any libpq URL ``postgresql://user@host:port/db`` (tables go
to the connection's current schema). See ``docs/store.md`` for the schema, the HEALPix
order, ingest semantics and the backup format.
"""

from __future__ import annotations

from pathlib import Path

from desilab.errors import ConfigError
from desilab.store.base import FileOutcome, Store, TableInfo
from desilab.store.schema import HPX_COLUMN, SCHEMA_VERSION, TABLES, VIEWS, StoreColumn, StoreTable

__all__ = [
    "DEFAULT_URL",
    "HPX_COLUMN",
    "SCHEMA_VERSION",
    "TABLES",
    "VIEWS",
    "FileOutcome",
    "Store",
    "StoreColumn",
    "StoreTable",
    "TableInfo",
    "connect",
    "duckdb_path",
]

DEFAULT_URL = "duckdb:///desilab-data/desilab.duckdb"
"""Default store: ``./desilab-data/desilab.duckdb``."""


def duckdb_path(url: str) -> Path | None:
    """The file of a ``duckdb:///`` URL (None for ``:memory:`` or another backend)."""
    if not url.startswith("duckdb://"):
        return None
    rest = url[len("duckdb://") :]
    if rest.startswith("/"):
        rest = rest[1:]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def connect(url: str = DEFAULT_URL, *, create: bool = True, read_only: bool = False) -> Store:
    """Open (and by default create) the store at *url*.

    Parameters
    ----------
    url
        ``duckdb:///path.duckdb`` or ``postgresql://user@host:port/db``.
    create
        Create the database file/tables when missing. With ``create=False`` a missing
        store is a :class:`~desilab.errors.StoreError` (what read-only commands want).
    read_only
        DuckDB only: open the file read-only.

    Returns
    -------
    Store

    Raises
    ------
    ConfigError
        For a URL of an unknown kind.
    StoreError
        When the store cannot be opened (missing, locked, server down, no q3c).
    """
    if url.startswith("duckdb://"):
        from desilab.store.duckdb_store import DuckDBStore

        path = duckdb_path(url)
        return DuckDBStore(path if path is not None else ":memory:", create=create, read_only=read_only)
    if url.startswith(("postgresql://", "postgres://")):
        from desilab.store.postgres_store import PostgresStore

        return PostgresStore(url, create=create)
    raise ConfigError(
        f"unknown store URL {url!r}: use duckdb:///path.duckdb or postgresql://user@host/db",
        parameter="DESILAB_STORE",
    )
