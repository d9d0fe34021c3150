"""Shared fixtures: real reference data, settings for tests, validation output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from desilab.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO / ".." / "shared" / "data" / "real").resolve()


def real_path(*parts: str) -> Path:
    """Path of a real reference file under ../shared/data/real, or skip the test.

    These public files are never copied into the repository; a checkout without the
    shared folder skips the tests that need them, saying which file is missing.
    """
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference file {path} not present (the ../shared/data/real folder is optional)")
    return path


@pytest.fixture
def real() -> object:
    """The :func:`real_path` helper as a fixture."""
    return real_path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated in tmp_path (DuckDB store, data and output folders), 2 workers."""
    return load_settings(
        {
            "store": f"duckdb:///{tmp_path / 'store.duckdb'}",
            "data_dir": tmp_path / "data",
            "out_dir": tmp_path / "out",
            "workers": 2,
        },
        environ={},
    )


@pytest.fixture
def validation_report(request: pytest.FixtureRequest):
    """Write a validation's figures to $DESILAB_VALIDATION_DIR/<name>.json (desilab validate)."""

    def write(name: str, figures: dict) -> Path:
        out = Path(os.environ.get("DESILAB_VALIDATION_DIR", REPO / "docs" / "validation"))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.json"
        doc = {"scale": os.environ.get("DESILAB_VALIDATION_SCALE", "small"), "test": request.node.nodeid, **figures}
        path.write_text(json.dumps(doc, indent=2, default=float) + "\n")
        return path

    return write


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI, a postgres test must not be skipped for a missing server: fail loudly instead."""
    if not os.environ.get("CI"):
        return
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.usefixtures("_require_postgres_in_ci"))


@pytest.fixture
def _require_postgres_in_ci() -> None:
    import psycopg

    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=5).close()
    except Exception as exc:  # pragma: no cover - CI misconfiguration
        pytest.fail(f"CI must provide PostgreSQL at 127.0.0.1:5432: {exc}")
