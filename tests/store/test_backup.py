"""Backup and restore: Parquet + manifest + checksums; restore gives an identical store."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from desilab.errors import InputError, StoreError
from desilab.store import connect


@pytest.fixture
def filled(store, product_dir: Path):
    store.ingest([product_dir / "zpix-main-dark.fits", product_dir / "QSO_cat_iron_main_dark_bal.fits"])
    store.ingest([product_dir / "DESIVAST_BGS_VOLLIM_V2_REVOLVER_NGC.fits"])
    t = pa.table(
        {
            "ra": [1.0, 2.0],
            "dec": [3.0, -4.0],
            "tag": ["a", None],
            "v": pa.array([[1.0, 2.0], []], pa.list_(pa.float32())),
        }
    )
    store.write_table("my_result", t, description="a result", ra="ra", dec="dec")
    rid = store.start_run("test")
    store.finish_run(rid)
    return store


def test_export_import_roundtrip_is_identical(filled, new_url, tmp_path: Path):
    manifest = filled.export(tmp_path / "bk")
    names = {t["name"] for t in manifest["tables"]}
    assert {"zcatalog", "quasars", "v2_galaxies", "my_result", "ingested_files", "store_meta"} <= names
    files = sorted(p.name for p in (tmp_path / "bk" / "tables").iterdir())
    assert files == sorted(f"{n}.parquet" for n in names)
    sums = (tmp_path / "bk" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(names)
    zc = next(t for t in manifest["tables"] if t["name"] == "zcatalog")
    assert zc["rows"] == 400 and {c["name"]: c["ucd"] for c in zc["columns"]}["target_ra"] == "pos.eq.ra;meta.main"

    with connect(new_url("restored")) as other:
        result = other.import_(tmp_path / "bk")
        assert result["verified"]
        assert other.check() == []
        again = other.export(tmp_path / "bk2")
        assert [t["content_digest"] for t in again["tables"]] == [t["content_digest"] for t in manifest["tables"]]
        docs = {c.name: c for c in other.columns("my_result")}
        assert docs["hpx14"].ucd == "pos.healpix"
        assert other.cone("my_result", 1.0, 3.0, 0.001).num_rows == 1
        # a re-ingest of the same file into the restored store is still a no-op
        assert set(other.known_checksums()) == set(filled.known_checksums())
        with pytest.raises(StoreError) as e:
            other.import_(tmp_path / "bk")
        assert "not empty" in str(e.value)


def test_corrupted_backup_is_refused_and_nothing_kept(filled, new_url, tmp_path: Path):
    filled.export(tmp_path / "bk")
    target = tmp_path / "bk" / "tables" / "quasars.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with connect(new_url("restored")) as other:
        with pytest.raises(StoreError) as e:
            other.import_(tmp_path / "bk")
        assert "quasars.parquet" in str(e.value)
        assert all(t.rows == 0 for t in other.tables() if t.kind == "catalog")


def test_tampered_manifest_digest_rolls_back(filled, new_url, tmp_path: Path):
    filled.export(tmp_path / "bk")
    mpath = tmp_path / "bk" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    for t in manifest["tables"]:
        if t["name"] == "zcatalog":
            t["content_digest"] = "0" * 64
    mpath.write_text(json.dumps(manifest))
    with connect(new_url("restored")) as other:
        with pytest.raises(StoreError) as e:
            other.import_(tmp_path / "bk")
        assert "zcatalog" in str(e.value)
        assert all(t.rows == 0 for t in other.tables() if t.kind in ("catalog", "result"))
        assert "my_result" not in {t.name for t in other.tables()}


def test_export_refuses_non_empty_dir_and_import_needs_manifest(filled, tmp_path: Path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("x")
    with pytest.raises(InputError) as e:
        filled.export(tmp_path / "x")
    assert e.value.parameter == "DIR"
    (tmp_path / "y").mkdir()
    with pytest.raises(StoreError):
        filled.import_(tmp_path / "y")


@pytest.mark.postgres
def test_backup_moves_between_backends(product_dir: Path, tmp_path: Path, pg_database: str):
    from tests.store.conftest import _drop_schema, _pg_schema_url

    with connect(f"duckdb:///{tmp_path / 'a.duckdb'}") as duck:
        duck.ingest([product_dir / "zpix-main-bright.fits", product_dir / "coadd-main-dark-1234.fits"])
        m1 = duck.export(tmp_path / "bk1")
    url, schema = _pg_schema_url(pg_database)
    try:
        with connect(url) as pg:
            pg.import_(tmp_path / "bk1")
            m2 = pg.export(tmp_path / "bk2")
    finally:
        _drop_schema(pg_database, schema)
    with connect(f"duckdb:///{tmp_path / 'b.duckdb'}") as duck2:
        duck2.import_(tmp_path / "bk2")
    assert [t["content_digest"] for t in m1["tables"]] == [t["content_digest"] for t in m2["tables"]]
