"""Cone search and crossmatch in the store, on both backends, against brute force and astropy.

Pairs whose separation is within 1e-9 arcsec of the radius may legitimately differ
(floating-point rounding of the two formulas); the random fields below contain none,
and the comparisons exclude them explicitly.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, search_around_sky

from desilab.sky.geometry import angular_separation
from tests.store import products as P

EPS_ARCSEC = 1e-9


def _field(seed: int) -> pa.Table:
    """Random sky plus crowds at RA 0/360, at both poles, and exact duplicates."""
    rng = np.random.default_rng(seed)
    parts = [P.sky(rng, 6000)]
    parts.append((np.mod(rng.uniform(-0.05, 0.05, 600), 360.0), rng.uniform(-0.05, 0.05, 600)))
    parts.append((rng.uniform(0, 360, 300), rng.uniform(89.95, 90.0, 300)))
    parts.append((rng.uniform(0, 360, 300), rng.uniform(-90.0, -89.95, 300)))
    parts.append((np.array([0.0, 0.0, 359.99999, 120.0, 120.0]), np.array([0.0, 0.0, 0.0, 90.0, -90.0])))
    ra = np.concatenate([p[0] for p in parts])
    dec = np.concatenate([p[1] for p in parts])
    n = ra.size
    return pa.table(
        {"TARGETID": np.arange(n), "SURVEY": ["main"] * n, "PROGRAM": ["dark"] * n, "TARGET_RA": ra, "TARGET_DEC": dec}
    )


@pytest.fixture
def field_store(store):
    t = _field(11)
    store.ingest_table("zcatalog", t)
    store.finish_bulk(["zcatalog"])
    return store, t


CONES = [
    (150.0, 20.0, 1.0),  # 1 degree
    (33.3, -45.0, 1 / 60),  # 1 arcmin
    (0.0, 0.0, 0.02),  # straddles RA 0/360
    (359.999, 0.01, 0.05),
    (12.0, 90.0, 0.03),  # north pole
    (200.0, -89.99, 0.05),  # near the south pole
    (80.0, 10.0, 30.0),  # big
    (0.0, 0.0, 0.0),  # radius 0 on two coincident rows
    (359.99999, 0.0, 0.0),
    (120.0, 90.0, 0.0),
]


@pytest.mark.parametrize(("ra", "dec", "radius"), CONES)
def test_cone_equals_brute_force(field_store, ra, dec, radius):
    store, t = field_store
    got = store.cone("zcatalog", ra, dec, radius)
    sep = angular_separation(ra, dec, t["TARGET_RA"].to_numpy(), t["TARGET_DEC"].to_numpy()) * 3600.0
    r = radius * 3600.0
    expected = set(np.flatnonzero(sep <= r).tolist())
    doubtful = set(np.flatnonzero(np.abs(sep - r) <= EPS_ARCSEC).tolist()) if r > 0 else set()
    ids = set(got.column("targetid").to_pylist())
    assert ids - doubtful == expected - doubtful
    if got.num_rows:
        s = got.column("sep_arcsec").to_numpy()
        assert np.all(np.diff(s) >= 0) and s.max() <= r + 1e-6
    if radius == 0.0:
        assert len(ids) >= 1  # the exact position is found


def test_cone_across_ra_zero_with_negative_ra(field_store):
    store, _ = field_store
    a = store.cone("zcatalog", -0.01, 0.0, 0.03)
    b = store.cone("zcatalog", 359.99, 0.0, 0.03)
    assert sorted(a.column("targetid").to_pylist()) == sorted(b.column("targetid").to_pylist())
    assert a.num_rows > 10


def _astropy_pairs(ra1, dec1, ra2, dec2, r_arcsec):
    c1 = SkyCoord(ra1 * u.deg, dec1 * u.deg)
    c2 = SkyCoord(ra2 * u.deg, dec2 * u.deg)
    i1, i2, d2, _ = search_around_sky(c1, c2, r_arcsec * u.arcsec)
    return set(zip(i1.tolist(), i2.tolist(), strict=True)), d2.to_value(u.arcsec)


@pytest.mark.parametrize("radius", [2.0, 30.0, 0.0])
def test_crossmatch_equals_astropy(field_store, radius):
    store, t = field_store
    rng = np.random.default_rng(5)
    pick = rng.choice(t.num_rows, 800, replace=False)
    ra = np.mod(t["TARGET_RA"].to_numpy()[pick] + rng.normal(0, 1.0 / 3600, pick.size), 360.0)
    dec = np.clip(t["TARGET_DEC"].to_numpy()[pick] + rng.normal(0, 1.0 / 3600, pick.size), -90, 90)
    if radius == 0.0:  # exact positions must match at radius 0
        ra = t["TARGET_RA"].to_numpy()[pick]
        dec = t["TARGET_DEC"].to_numpy()[pick]
    user = pa.table({"id": np.arange(pick.size), "RA": ra, "Dec": dec})
    got = store.crossmatch(user, "zcatalog", radius)
    pairs = set(zip(got.column("id").to_pylist(), got.column("targetid").to_pylist(), strict=True))
    expected, _ = _astropy_pairs(ra, dec, t["TARGET_RA"].to_numpy(), t["TARGET_DEC"].to_numpy(), radius)
    assert pairs == expected
    assert len(expected) >= (pick.size if radius == 0.0 else 300)
    # nearest: one row per matched user row, the closest one
    near = store.crossmatch(user, "zcatalog", radius, nearest=True)
    ids = near.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == len({p[0] for p in expected})
    sep_all = got.group_by("id").aggregate([("sep_arcsec", "min")])
    best = dict(zip(sep_all.column("id").to_pylist(), sep_all.column("sep_arcsec_min").to_pylist(), strict=True))
    for i, s in zip(ids, near.column("sep_arcsec").to_pylist(), strict=True):
        assert s == pytest.approx(best[i], abs=1e-9)


def test_crossmatch_table_with_table_and_column_suffixes(field_store):
    store, t = field_store
    sub = t.slice(0, 500)
    store.write_table("targets", sub, ra="target_ra", dec="target_dec")
    got = store.crossmatch("targets", "zcatalog", 0.5)
    assert {"targetid_1", "targetid_2", "sep_arcsec"} <= set(got.column_names)
    same = got.filter(pa.compute.equal(got["targetid_1"], got["targetid_2"]))
    assert same.num_rows == 500  # every target finds itself at 0 arcsec
    assert got.schema.field("sep_arcsec").metadata[b"unit"] == b"arcsec"


def test_crossmatch_errors(field_store):
    from desilab.errors import InputError

    store, _ = field_store
    user = pa.table({"x": [1.0], "y": [2.0]})
    with pytest.raises(InputError) as e:
        store.crossmatch(user, "zcatalog", 1.0)
    assert e.value.parameter == "--ra"
    ok = pa.table({"ra": [1.0], "dec": [2.0]})
    with pytest.raises(InputError) as e:
        store.crossmatch(ok, "zcatalog", -1.0)
    assert e.value.parameter == "radius"
    with pytest.raises(InputError) as e:
        store.crossmatch(ok, "runs", 1.0)
    assert e.value.parameter == "table"


def test_optimize_changes_nothing_visible(field_store):
    store, _ = field_store
    extra = _field(12).slice(0, 3000)
    extra = extra.set_column(0, "TARGETID", pa.array(np.arange(3000) + 100_000))
    store.ingest_table("zcatalog", extra, label="second run")
    before = {c: sorted(store.cone("zcatalog", *c).column("targetid").to_pylist()) for c in CONES[:4]}
    digest_before = store.query("SELECT count(*) AS n, sum(targetid) AS s FROM zcatalog").to_pylist()
    assert store.optimize(["zcatalog"]) == ["zcatalog"]
    after = {c: sorted(store.cone("zcatalog", *c).column("targetid").to_pylist()) for c in CONES[:4]}
    assert before == after
    assert store.query("SELECT count(*) AS n, sum(targetid) AS s FROM zcatalog").to_pylist() == digest_before
    assert store.check() == []
    assert store.query("SELECT count(*) AS n FROM galaxies").column(0)[0].as_py() == digest_before[0]["n"]


def test_cone_after_a_result_table_changes_its_columns(store):
    # PostgreSQL prepares one cone statement per table and column list: replacing the
    # table with other columns must not break (nor stale) the next cone search
    t1 = pa.table({"ra": [10.0, 10.0001, 50.0], "dec": [5.0, 5.0, 5.0], "a": [1, 2, 3]})
    store.write_table("res", t1, ra="ra", dec="dec")
    for _ in range(3):
        assert sorted(store.cone("res", 10.0, 5.0, 1 / 60).column("a").to_pylist()) == [1, 2]
    t2 = pa.table({"ra": [10.0, 50.0], "dec": [5.0, 5.0], "b": ["x", "y"], "c": [0.5, 1.5]})
    store.write_table("res", t2, ra="ra", dec="dec", mode="replace")
    got = store.cone("res", 10.0, 5.0, 1 / 60)
    assert got.column_names == ["ra", "dec", "b", "c", "hpx14", "sep_arcsec"]
    assert got.column("b").to_pylist() == ["x"]
    # a column added in place: the prepared statement must follow
    store._execute("ALTER TABLE res ADD COLUMN extra integer")
    got = store.cone("res", 10.0, 5.0, 1 / 60)
    assert got.column_names == ["ra", "dec", "b", "c", "hpx14", "extra", "sep_arcsec"]
    assert got.column("extra").to_pylist() == [None]


def test_large_cone_results_cross_the_small_result_path(field_store):
    # DuckDB converts the first rows of a result itself and the rest through Arrow: a
    # cone with thousands of rows must equal the brute-force set, in both halves
    store, t = field_store
    got = store.cone("zcatalog", 80.0, 10.0, 30.0)
    sep = angular_separation(80.0, 10.0, t["TARGET_RA"].to_numpy(), t["TARGET_DEC"].to_numpy())
    assert got.num_rows == int(np.sum(sep <= 30.0)) > 300
    assert got.schema.field("target_ra").metadata[b"unit"] == b"deg"
    assert got.column("targetid").type == pa.int64() and got.column("survey").type == pa.string()


def test_cone_rows_have_the_types_and_values_of_a_query(store):
    # cone results are converted by their own path (tuples -> Arrow on DuckDB for small
    # results, a binary cursor on PostgreSQL): every column type must come back as query() gives it
    import datetime as dt

    t = pa.table(
        {
            "ra": [10.0, 10.0002, 10.0004],
            "dec": [5.0, 5.0, 5.0],
            "a": pa.array([1, None, -32768], pa.int16()),
            "b": pa.array([2**31 - 1, -5, None], pa.int32()),
            "c": pa.array([2**62, None, -1], pa.int64()),
            "d": pa.array([1.5, float("nan"), None], pa.float32()),
            "e": pa.array([np.pi, float("inf"), -0.0], pa.float64()),
            "f": pa.array([True, None, False]),
            "g": pa.array(['x,y"z\n', None, "héllo"]),
            "h": pa.array([dt.datetime(2024, 6, 13, 1, 2, 3), None, dt.datetime(1999, 1, 1)], pa.timestamp("us")),
            "i": pa.array([[1.0, 2.5], [], None], pa.list_(pa.float32())),
        }
    )
    store.write_table("typed", t, ra="ra", dec="dec")
    want = store.query("SELECT * FROM typed ORDER BY ra")
    got = store.cone("typed", 10.0002, 5.0, 1 / 60)
    got = got.take(pc.sort_indices(got, [("ra", "ascending")])).drop_columns(["sep_arcsec"])
    assert [f.type for f in got.schema] == [f.type for f in want.schema]
    for name in t.column_names:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        assert [str(x) for x in a] == [str(x) for x in b], name
