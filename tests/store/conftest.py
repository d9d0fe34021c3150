"""Fixtures of the store suite: every store test runs on DuckDB and on PostgreSQL.

PostgreSQL: a throwaway database per test run (created and dropped by a session
fixture) at 127.0.0.1:5432, and one schema per test inside it, so tests never see each
other's tables. Without a server the PostgreSQL half is skipped (in CI it fails:
tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from tests.store import products as P

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_available() -> str | None:
    try:
        import psycopg

        psycopg.connect(PG_ADMIN, connect_timeout=3).close()
    except Exception as exc:  # server down or not installed
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


@pytest.fixture(scope="session")
def pg_database() -> str:
    """URL of a database created for this test run (dropped at the end)."""
    why = _pg_available()
    if why is not None:
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {why}")
    import psycopg

    name = f"desilab_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("CREATE EXTENSION IF NOT EXISTS q3c")
        # optional: pg_sphere 1.2.0 does not install on some PostgreSQL 15 minors
        with contextlib.suppress(psycopg.Error):
            con.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _pg_schema_url(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}%2Cpublic", schema


def _drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def new_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A factory of fresh, empty store URLs of the test's backend."""
    backend = request.param if hasattr(request, "param") else "duckdb"
    made: list[str] = []

    def make(name: str = "store") -> str:
        if backend == "duckdb":
            return f"duckdb:///{tmp_path / (name + '.duckdb')}"
        base = request.getfixturevalue("pg_database")
        url, schema = _pg_schema_url(base)
        made.append(schema)
        return url

    yield make
    if made:
        base = request.getfixturevalue("pg_database")
        for schema in made:
            _drop_schema(base, schema)


@pytest.fixture
def store_url(new_url) -> str:
    """One fresh store URL of the parametrized backend."""
    return new_url()


@pytest.fixture
def store(store_url: str):
    """An open, empty store of the parametrized backend."""
    from desilab.store import connect

    with connect(store_url) as s:
        yield s


@pytest.fixture(scope="session")
def product_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file of every product the store ingests (small, seeded)."""
    d = tmp_path_factory.mktemp("products")
    P.write_zpix(d / "zpix-main-dark.fits", 400, 1, "main", "dark")
    P.write_zpix(d / "zpix-main-bright.fits", 300, 2, "main", "bright", first_id=1000)
    P.write_fastspec_file(d / "fastspec-iron-main-dark.fits", P.zcat_table(400, 1, "main", "dark"), 3)
    P.write_qso_file(d / "QSO_cat_iron_main_dark_bal.fits", 150, 4)
    P.write_voids(d, 5)
    P.write_coadd_file(d / "coadd-main-dark-1234.fits", P.zcat_table(40, 1, "main", "dark"), "main", "dark", 1234)
    (d / "notes.txt").write_text("not a product\n")
    return d


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a store on both backends."""
    if "new_url" in metafunc.fixturenames:
        metafunc.parametrize("new_url", BACKENDS, indirect=True)
