"""DuckDB's narrow catalog tables: only columns some file brought are stored, views show every column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from desilab.store import TABLES, connect
from desilab.store.duckdb_store import _TYPES, DATA_SCHEMA

ALWAYS = {"targetid", "survey", "program", "target_ra", "target_dec", "hpx14", "_file_id", "_row"}
DOCUMENTED = [(c.name, c.type) for c in TABLES["zcatalog"].columns]


def rows(n: int, start: int, **extra) -> pa.Table:
    rng = np.random.default_rng(start)
    cols = {
        "TARGETID": np.arange(start, start + n, dtype=np.int64),
        "SURVEY": ["main"] * n,
        "PROGRAM": ["dark"] * n,
        "TARGET_RA": rng.uniform(150.0, 150.2, n),
        "TARGET_DEC": rng.uniform(2.0, 2.2, n),
        "Z": rng.uniform(0.0, 2.0, n),
    }
    cols.update(extra)
    return pa.table(cols)


def stored(store) -> set[str]:
    return set(store._stored_columns("zcatalog"))


def test_only_brought_columns_are_stored_and_added_in_the_file_transaction(tmp_path: Path):
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with connect(url) as store:
        assert stored(store) == ALWAYS
        assert store._data_table("zcatalog") == f"{DATA_SCHEMA}.zcatalog"
        # the user-facing relation has the documented columns, order and types from the start
        assert store._physical_columns("zcatalog") == DOCUMENTED
        # a column a file has but that is NULL in all its rows is not stored
        store.ingest_table("zcatalog", rows(50, 0, PMRA=pa.nulls(50, pa.float32())))
        assert stored(store) == ALWAYS | {"z"}
        # a later file bringing a new column adds it; the rows already in read NULL there
        pmra = np.linspace(-5, 5, 40).astype(np.float32)
        store.ingest_table("zcatalog", rows(40, 1000, PMRA=pmra))
        assert stored(store) == ALWAYS | {"z", "pmra"}
        assert store._physical_columns("zcatalog") == DOCUMENTED
        t = store.query("SELECT targetid, z, pmra, objtype FROM zcatalog ORDER BY targetid")
        assert t.schema.field("pmra").type == pa.float32() and t.schema.field("objtype").type == pa.string()
        got = t.column("pmra").to_numpy(zero_copy_only=False)
        assert np.all(np.isnan(got[:50])) and t.column("pmra").null_count == 50
        np.testing.assert_array_equal(got[50:], pmra)
        assert t.column("objtype").null_count == 90 and t.column("z").null_count == 0
        # galaxies (a view over the zcatalog view) sees the new column too
        g = store.query("SELECT count(pmra) AS n FROM galaxies")
        assert g.column("n")[0].as_py() == 40
        # a rolled-back transaction takes its ALTER TABLE and view change with it
        before = store.query("SELECT * FROM zcatalog ORDER BY targetid")
        with pytest.raises(RuntimeError, match="abort"), store._transaction():
            store.ingest_table("zcatalog", rows(10, 5000, EBV=np.full(10, 0.02, np.float32)))
            assert "ebv" in stored(store)
            raise RuntimeError("abort")
        assert stored(store) == ALWAYS | {"z", "pmra"}
        assert store.query("SELECT * FROM zcatalog ORDER BY targetid").equals(before)
        # spatial search reads through the view
        near = store.cone("zcatalog", 150.1, 2.1, 0.2)
        assert near.num_rows == 90 and near.column_names[: len(DOCUMENTED)] == [n for n, _ in DOCUMENTED]
        assert store.check() == []
        assert store.optimize(["zcatalog"]) == ["zcatalog"]
        assert stored(store) == ALWAYS | {"z", "pmra"}
        assert store.query("SELECT * FROM zcatalog ORDER BY targetid").equals(before)
    with connect(url) as store:  # the layout persists
        assert stored(store) == ALWAYS | {"z", "pmra"} and "zcatalog" in store._narrow


def test_older_full_width_stores_work_and_give_the_same_results(tmp_path: Path):
    old_url, new_url = f"duckdb:///{tmp_path / 'old.duckdb'}", f"duckdb:///{tmp_path / 'new.duckdb'}"
    with connect(old_url) as store:  # make zcatalog as older stores have it: a full table in the main schema
        store._execute("DROP VIEW zcatalog")
        store._execute(f"DROP TABLE {DATA_SCHEMA}.zcatalog")
        cols = ", ".join(f"{c.name} {_TYPES[c.type]}" for c in TABLES["zcatalog"].columns)
        store._execute(f"CREATE TABLE zcatalog ({cols})")
    files = [rows(300, 0), rows(200, 1000, PMRA=np.linspace(-5, 5, 200).astype(np.float32))]
    with connect(old_url) as old, connect(new_url) as new:
        assert "zcatalog" not in old._narrow and old._data_table("zcatalog") == "zcatalog"
        assert "zcatalog" in new._narrow
        for store in (old, new):
            for t in files:
                store.ingest_table("zcatalog", t)
            assert store.optimize(["zcatalog"]) == ["zcatalog"] and store.check() == []
        assert old._physical_columns("zcatalog") == new._physical_columns("zcatalog") == DOCUMENTED
        sql = "SELECT * FROM zcatalog ORDER BY targetid"
        assert old.query(sql).equals(new.query(sql))
        # cones and crossmatches read the stored columns of the narrow table and add the NULL ones
        for radius in (0.02, 0.2):
            a, b = old.cone("zcatalog", 150.1, 2.1, radius), new.cone("zcatalog", 150.1, 2.1, radius)
            assert a.num_rows > 0 and a.equals(b, check_metadata=True)
        sub = ["objtype", "z", "pmra"]
        assert old.cone("zcatalog", 150.1, 2.1, 0.2, columns=sub).equals(
            new.cone("zcatalog", 150.1, 2.1, 0.2, columns=sub)
        )
        assert old.cone("zcatalog", 10, 2.1, 0.1).equals(new.cone("zcatalog", 10, 2.1, 0.1))  # empty
        user = pa.table({"ra": [150.05, 150.15, 10.0], "dec": [2.05, 2.15, 0.0]})
        a, b = old.crossmatch(user, "zcatalog", 300.0), new.crossmatch(user, "zcatalog", 300.0)
        assert a.num_rows > 0 and a.equals(b, check_metadata=True)
        a, b = old.crossmatch("zcatalog", "galaxies", 1.0), new.crossmatch("zcatalog", "galaxies", 1.0)
        assert a.num_rows >= 500 and a.equals(b, check_metadata=True)  # every row with itself, and close pairs
