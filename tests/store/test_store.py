"""The store on both backends: schema, ingest semantics, queries, spatial search, results."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from desilab.errors import InputError, StoreError
from desilab.store import TABLES, connect
from desilab.store.base import hpx_order
from tests.store import products as P

EXPECTED = {
    "zcatalog": 700,
    "fastspec": 400,
    "quasars": 150,
    "void_catalogs": 2,
    "voidfinder_maximals": 20,
    "voidfinder_holes": 60,
    "v2_voids": 20,
    "v2_zones": 40,
    "v2_galaxies": 200,
    "spectra_index": 40,
}


def counts(store) -> dict[str, int]:
    return {t.name: t.rows for t in store.tables() if t.kind == "catalog" and t.rows}


def test_schema_is_created_and_documented(store):
    names = {t.name for t in store.tables()}
    assert set(TABLES) <= names
    assert {"galaxies", "v2_membership"} <= names
    cols = {c.name: c for c in store.columns("zcatalog")}
    assert cols["target_ra"].unit == "deg" and cols["target_ra"].ucd == "pos.eq.ra;meta.main"
    assert cols["hpx14"].ucd == "pos.healpix"
    galaxy_cols = {c.name for c in store.columns("galaxies")}
    assert {"logmstar", "z", "zcat_primary"} <= galaxy_cols
    # the view exposes exactly the documented columns
    assert store.query("SELECT * FROM galaxies LIMIT 0").column_names == [c.name for c in store.columns("galaxies")]


def test_ingest_every_product_then_idempotent(store, product_dir: Path):
    report = store.ingest([product_dir])
    by_status = {f.path.split("/")[-1]: f.status for f in report.files}
    assert all(s == "ingested" for s in by_status.values()), [f.to_dict() for f in report.files]
    assert "notes.txt" not in by_status  # not a FITS file: not even looked at
    got = counts(store)
    lines = got.pop("fastspec_lines")
    assert got == EXPECTED
    assert 400 < lines < 800  # OIII always measured, HALPHA in about half
    assert store.check() == []
    # re-ingest: every file skipped by checksum, nothing read
    again = store.ingest([product_dir])
    assert [f.status for f in again.files] == ["skipped"] * len(report.files)
    assert counts(store)["zcatalog"] == 700
    # the galaxies view joins FastSpecFit where it has rows
    n, nfs = store.query("SELECT count(*) AS n, count(logmstar) AS nfs FROM galaxies").to_pylist()[0].values()
    assert (n, nfs) == (700, 400)
    # V² membership view and spectra index
    assert store.query("SELECT count(*) AS n FROM v2_membership").column(0)[0].as_py() == 200
    row = store.query("SELECT file, row, arms, healpix FROM spectra_index ORDER BY row LIMIT 1").to_pylist()[0]
    assert row == {"file": str(product_dir / "coadd-main-dark-1234.fits"), "row": 0, "arms": "brz", "healpix": 1234}
    # VoidFinder RA wrapped to [0, 360)
    lo, hi = store.query("SELECT min(ra) AS lo, max(ra) AS hi FROM voidfinder_maximals").to_pylist()[0].values()
    assert lo >= 0 and hi < 360


def test_same_content_elsewhere_is_skipped_and_changed_file_replaced(store, product_dir: Path, tmp_path: Path):
    src = tmp_path / "a" / "zpix-main-dark.fits"
    src.parent.mkdir()
    shutil.copy(product_dir / "zpix-main-dark.fits", src)
    assert store.ingest([src]).files[0].status == "ingested"
    copy = tmp_path / "b" / "zpix-main-dark.fits"
    copy.parent.mkdir()
    shutil.copy(src, copy)
    assert store.ingest([copy]).files[0].status == "skipped"
    P.write_zpix(src, 123, 99)  # new content at the same path
    out = store.ingest([src]).files[0]
    assert out.status == "replaced" and out.rows == 123
    assert counts(store)["zcatalog"] == 123
    assert store.check() == []


def test_zall_supersedes_zpix(store, tmp_path: Path):
    from desilab.io.zcatalog import write_zcatalog

    zp = P.write_zpix(tmp_path / "zpix-main-dark.fits", 50, 1)
    store.ingest([zp])
    rows = pa.concat_tables([P.zcat_table(50, 1), P.zcat_table(30, 2, "sv1", "dark", first_id=500)])
    za = write_zcatalog(tmp_path / "zall-pix-iron.fits", rows, kind="zall")
    out = store.ingest([za]).files[0]
    assert out.status == "replaced" and counts(store)["zcatalog"] == 80
    (tmp_path / "x").mkdir()
    zp2 = P.write_zpix(tmp_path / "x" / "zpix-main-dark.fits", 10, 7)
    skipped = store.ingest([zp2]).files[0]
    assert skipped.status == "skipped" and "zall-pix-iron.fits" in skipped.message
    assert store.check() == []


def test_bad_file_leaves_no_rows(store, product_dir: Path, tmp_path: Path):
    bad = tmp_path / "zpix-sv1-dark.fits"
    data = (product_dir / "zpix-main-dark.fits").read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated
    good = tmp_path / "zpix-main-bright.fits"
    shutil.copy(product_dir / "zpix-main-bright.fits", good)
    report = store.ingest([bad, good])
    status = {Path(f.path).name: f.status for f in report.files}
    assert status == {"zpix-sv1-dark.fits": "failed", "zpix-main-bright.fits": "ingested"}
    assert "zpix-sv1-dark.fits" in report.failed[0].message
    assert counts(store) == {"zcatalog": 300}
    assert store.check() == []


def test_failure_inside_the_transaction_rolls_back(store, product_dir: Path):
    # Make the last table of a VoidFinder file impossible to write (its catalog column an
    # integer: the file's names cannot go in): the database rejects that insert after the
    # other tables' rows went in, and everything rolls back.
    target = store._data_table("voidfinder_holes")  # where its rows live (behind a view on DuckDB)
    store._execute(f"DROP TABLE {target}")
    store._execute(f"CREATE TABLE {target} (catalog INTEGER)")
    out = store.ingest([product_dir / "DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits"]).files[0]
    assert out.status == "failed" and "refused" in out.message, out
    for table in ("void_catalogs", "voidfinder_maximals", "ingested_files"):
        assert store.query(f"SELECT count(*) AS n FROM {table}").column(0)[0].as_py() == 0, table


def test_query_is_read_only_and_errors_name_the_parameter(store):
    assert store.query("SELECT 1 AS One").column_names == ["one"]
    with pytest.raises(InputError) as e:
        store.query("DELETE FROM zcatalog")
    assert e.value.parameter == "SQL"
    with pytest.raises(InputError) as e:
        store.query("SELECT * FROM no_such_table")
    assert e.value.parameter == "SQL" and "no_such_table" in str(e.value)
    with pytest.raises(InputError) as e:
        store.query("SELEC 1")
    assert e.value.parameter == "SQL"
    with pytest.raises(InputError) as e:
        store.cone("no_such_table", 1, 1, 1)
    assert e.value.parameter == "table"
    with pytest.raises(InputError) as e:
        store.cone("ingested_files", 1, 1, 1)
    assert e.value.parameter == "table"
    for bad in (-1, float("nan"), 181, "x"):
        with pytest.raises(InputError) as e:
            store.cone("zcatalog", 1, 1, bad)
        assert e.value.parameter == "radius"
    with pytest.raises(InputError) as e:
        store.cone("zcatalog", 1, 91, 1)
    assert e.value.parameter == "dec"


def test_write_table_keeps_docs_and_is_a_sky_table(store):
    ra = pa.field("ra", pa.float64(), metadata={"unit": "deg", "ucd": "pos.eq.ra", "description": "RA"})
    t = pa.table({"ra": [10.0, 10.001, 200.0], "dec": [5.0, 5.0, -30.0], "score": pa.array([1, 2, 3], pa.int32())})
    t = t.cast(pa.schema([ra, pa.field("dec", pa.float64()), pa.field("score", pa.int32())]))
    rid = store.start_run("test", {"seed": 1})
    assert store.write_table("anomaly_scores", t, description="scores", ra="ra", dec="dec", run_id=rid) == 3
    store.finish_run(rid, "ok", {"rows": 3})
    docs = {c.name: c for c in store.columns("anomaly_scores")}
    assert docs["ra"].unit == "deg" and docs["ra"].ucd == "pos.eq.ra" and docs["hpx14"].ucd == "pos.healpix"
    hits = store.cone("anomaly_scores", 10.0, 5.0, 10 / 3600)
    assert sorted(hits.column("score").to_pylist()) == [1, 2]
    with pytest.raises(InputError):
        store.write_table("anomaly_scores", t, ra="ra", dec="dec")
    store.write_table("anomaly_scores", t.slice(0, 1), ra="ra", dec="dec", mode="replace")
    store.write_table("anomaly_scores", t.slice(1, 1), ra="ra", dec="dec", mode="append")
    assert store.query("SELECT count(*) FROM anomaly_scores").column(0)[0].as_py() == 2
    with pytest.raises(InputError):
        store.write_table("zcatalog", t)
    status = store.query("SELECT status FROM runs").column(0).to_pylist()
    assert status == ["ok"]
    store.drop_table("anomaly_scores")
    assert "anomaly_scores" not in {t.name for t in store.tables()}


def test_ingest_table_arrow(store):
    rng = np.random.default_rng(3)
    ra, dec = P.sky(rng, 1000)
    t = pa.table(
        {
            "TARGETID": np.arange(1000),
            "SURVEY": ["main"] * 1000,
            "PROGRAM": ["dark"] * 1000,
            "TARGET_RA": ra,
            "TARGET_DEC": dec,
        }
    )
    assert store.ingest_table("zcatalog", t) == 1000
    assert store.ingest_table("zcatalog", t.slice(0, 10), label="more") == 10
    assert counts(store)["zcatalog"] == 1010
    with pytest.raises(InputError):
        store.ingest_table("runs", t)


def test_hpx_order_is_the_stable_argsort():
    rng = np.random.default_rng(3)
    hpx = rng.integers(-1, 50, 10_000)  # many ties, and -1 (undefined positions)
    hpx[:5] = 12 * 4**14 - 1  # the largest order-14 index
    order, values = hpx_order(hpx)
    expect = np.argsort(hpx, kind="stable")
    assert np.array_equal(order, expect) and np.array_equal(values, hpx[expect])


def test_missing_store_is_a_clear_error(tmp_path: Path):
    with pytest.raises(StoreError) as e:
        connect(f"duckdb:///{tmp_path / 'nope.duckdb'}", create=False)
    assert "desilab ingest" in str(e.value)


def test_ingest_sorts_by_hpx14_and_keeps_every_value_with_its_row(store):
    # 150k rows: large enough for the threaded column permutation of conform(); the
    # columns the input lacks are not shipped to the database and must read as NULL
    n = 150_000
    rng = np.random.default_rng(8)
    ra, dec = P.sky(rng, n)
    z = rng.uniform(0, 3, n)
    t = pa.table(
        {
            "TARGETID": np.arange(n) * 7 + 11,
            "SURVEY": pa.array(rng.choice(["main", "sv1", "sv3"], n)),
            "PROGRAM": ["dark"] * n,
            "TARGET_RA": ra,
            "TARGET_DEC": dec,
            "Z": z,
            "FLUX_G": rng.uniform(0, 100, n).astype(np.float32),
            # strings of few values with NULLs, and of distinct values (the two ways conform permutes strings)
            "OBJTYPE": pa.array(np.where(rng.random(n) < 0.1, None, rng.choice(["TGT", "SKY", "BAD"], n)), pa.string()),
            "DESINAME": pa.array([None if i % 9 == 0 else f"DESI J{i:09d}" for i in range(n)]),
        }
    )
    assert store.ingest_table("zcatalog", t) == n
    back = store.query(
        "SELECT targetid, survey, objtype, desiname, z, flux_g, hpx14, _row, spectype, zwarn "
        "FROM zcatalog ORDER BY _row"
    )
    assert back.column("targetid").to_pylist() == t.column("TARGETID").to_pylist()
    for name in ("survey", "objtype", "desiname"):
        assert back.column(name).to_pylist() == t.column(name.upper()).to_pylist(), name
    assert np.array_equal(back.column("z").to_numpy(), z)
    assert np.array_equal(back.column("flux_g").to_numpy(), t.column("FLUX_G").to_numpy())
    assert back.column("spectype").null_count == n and back.column("zwarn").null_count == n
    from desilab.sky.hpxrange import sky_index

    assert np.array_equal(back.column("hpx14").to_numpy(), sky_index(ra, dec))
    # physical order (DuckDB) / insertion order (PostgreSQL, before any CLUSTER) is hpx14 order
    phys = store.query("SELECT hpx14 FROM zcatalog").column(0).to_numpy()
    assert np.all(np.diff(phys) >= 0)


def test_large_ingest_writes_rows_in_stable_hpx14_order_with_their_values(store):
    # 600k rows, on the threaded permutation, from inputs of every kind it treats apart:
    # several Arrow chunks, dictionary columns (one with repeated and NULL values, which
    # reach DuckDB still encoded), a constant string, a low-cardinality string with
    # NULLs, distinct strings, undefined positions (hpx14 = -1) and ties (duplicate
    # positions); `_row` is the permutation itself, so it is checked against numpy's.
    from desilab.sky.hpxrange import sky_index

    n = 600_000
    rng = np.random.default_rng(21)
    ra, dec = P.sky(rng, n)
    ra[::1000] = np.nan  # undefined positions sort first, in file order
    ra[1::997], dec[1::997] = ra[0::997][: len(ra[1::997])], dec[0::997][: len(dec[1::997])]  # ties
    spectype = pa.DictionaryArray.from_arrays(rng.integers(0, 3, n).astype(np.int8), ["GALAXY", "QSO", "STAR"])
    # a dictionary Arrow allows and a database might not: repeated values, a NULL value, NULL indices
    codes = pa.array(np.where(rng.random(n) < 0.02, None, rng.integers(0, 4, n)), pa.int32())
    objtype = pa.DictionaryArray.from_arrays(codes, pa.array(["TGT", "SKY", "TGT", None]))
    whole = pa.table(
        {
            "TARGETID": np.arange(n, dtype=np.int64) * 3 + 5,
            "SURVEY": pa.array(["main"] * n),
            "PROGRAM": pa.array(np.where(rng.random(n) < 0.05, None, rng.choice(["dark", "bright"], n)), pa.string()),
            "SPECTYPE": spectype,
            "OBJTYPE": objtype,
            "DESINAME": pa.array([f"DESI J{i:09d}" for i in range(n)]),
            "TARGET_RA": ra,
            "TARGET_DEC": dec,
            "Z": rng.uniform(0, 3, n),
            "ZWARN": rng.integers(0, 8, n).astype(np.int64),
            "FLUX_G": rng.uniform(0, 100, n).astype(np.float32),
        }
    )
    t = pa.concat_tables([whole.slice(0, 250_000), whole.slice(250_000, 50_000), whole.slice(300_000)])
    assert t.column("Z").num_chunks == 3
    assert store.ingest_table("zcatalog", t) == n
    got = store.query(
        "SELECT targetid, survey, program, spectype, objtype, desiname, target_ra, z, zwarn, flux_g, hpx14, _row "
        "FROM zcatalog"
    )
    hpx = sky_index(ra, dec)
    expect = np.lexsort((np.arange(n), hpx))  # stable order of hpx14, computed independently
    assert np.array_equal(got.column("_row").to_numpy(), expect)
    assert np.array_equal(got.column("hpx14").to_numpy(), hpx[expect])
    want = whole.take(pa.array(expect))
    for name in ("TARGETID", "SURVEY", "PROGRAM", "DESINAME", "ZWARN", "FLUX_G"):
        assert got.column(name.lower()).to_pylist() == want.column(name).to_pylist(), name
    for name in ("SPECTYPE", "OBJTYPE"):
        assert got.column(name.lower()).to_pylist() == want.column(name).cast(pa.string()).to_pylist(), name
    assert got.column("objtype").null_count > n // 5  # NULL indices and the NULL dictionary value
    assert np.array_equal(got.column("z").to_numpy(), want.column("Z").to_numpy())
    assert np.array_equal(got.column("target_ra").to_numpy(), ra[expect], equal_nan=True)
