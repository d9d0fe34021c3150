"""The schema is fully documented; the PostgreSQL COPY codec round-trips every type."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from desilab.store.schema import HPX_COLUMN, TABLES, VIEWS, schema_markdown, view_columns


def test_every_column_has_description_and_ucd():
    for t in TABLES.values():
        for c in t.columns:
            assert c.description, (t.name, c.name)
            assert c.ucd, (t.name, c.name)
        if t.sky:
            assert HPX_COLUMN in t.names, t.name
            assert t.column(t.ra).unit == "deg" and t.column(t.dec).unit == "deg"
        if t.kind == "catalog":
            assert {"_file_id", "_row"} <= set(t.names), t.name
    for v in VIEWS.values():
        assert view_columns(v)
    text = schema_markdown()
    assert "| `target_ra` | float64 | deg | pos.eq.ra;meta.main |" in text


def test_postgres_rows_fit_in_8kb():
    widths = {"int16": 2, "int32": 4, "int64": 8, "float32": 4, "float64": 8, "bool": 1, "timestamp": 8}
    for t in TABLES.values():
        if t.kind != "catalog":
            continue
        fixed = sum(widths.get(c.type, 0) for c in t.columns)
        lists = sum(4 * 17 + 24 for c in t.columns if c.type.startswith("list"))
        strings = sum(24 for c in t.columns if c.type == "string")
        assert fixed + lists + strings < 8000, t.name


@pytest.mark.postgres
def test_binary_copy_and_csv_roundtrip_every_type(pg_database):
    from desilab.store import connect
    from tests.store.conftest import _drop_schema, _pg_schema_url

    t = pa.table(
        {
            "a": pa.array([1, None, -32768], pa.int16()),
            "b": pa.array([2**31 - 1, -5, None], pa.int32()),
            "c": pa.array([2**62, None, -1], pa.int64()),
            "d": pa.array([1.5, float("nan"), None], pa.float32()),
            "e": pa.array([np.pi, float("inf"), -0.0], pa.float64()),
            "f": pa.array([True, None, False]),
            "g": pa.array(['x,y"z\n', None, "héllo"]),
            "h": pa.array(
                [dt.datetime(2024, 6, 13, 1, 2, 3, 456789), None, dt.datetime(1999, 1, 1)], pa.timestamp("us")
            ),
            "i": pa.array([[1.0, 2.5], [], None], pa.list_(pa.float32())),
            "j": pa.array([[1, 2, 3], None, [-(2**40)]], pa.list_(pa.int64())),
            "k": pa.array(["", "", ""]),
        }
    )
    url, schema = _pg_schema_url(pg_database)
    try:
        with connect(url) as store:
            store.write_table("roundtrip", t)
            back = store.query("SELECT * FROM roundtrip")
    finally:
        _drop_schema(pg_database, schema)
    assert back.schema == t.schema
    for name in t.column_names:
        want, got = t.column(name).to_pylist(), back.column(name).to_pylist()
        if name in ("d", "e"):
            assert [str(x) for x in got] == [str(x) for x in want], name
        else:
            assert got == want, name


def test_docs_show_the_current_schema():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    body = doc.split("<!-- schema:begin -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert body == schema_markdown(), "regenerate the schema section of docs/store.md from schema_markdown()"
