"""The store commands end to end through the CLI entry point (DuckDB store)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from desilab.cli import main


@pytest.fixture
def cli_store(tmp_path: Path, product_dir: Path) -> list[str]:
    base = ["--store", f"duckdb:///{tmp_path / 'cli.duckdb'}"]
    assert (
        main(
            [
                *base,
                "ingest",
                str(product_dir / "zpix-main-dark.fits"),
                str(product_dir / "zpix-main-bright.fits"),
                "-j",
                "1",
            ]
        )
        == 0
    )
    return base


def test_every_command_has_an_example_in_its_help(capsys):
    for cmd in (
        ["ingest"],
        ["query"],
        ["cone"],
        ["crossmatch"],
        ["store", "export"],
        ["store", "import"],
        ["store", "tables"],
    ):
        assert main([*cmd, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Example" in out and "desilab" in out, cmd


def test_query_formats(cli_store, tmp_path: Path, capsys):
    assert main([*cli_store, "query", "SELECT spectype, count(*) AS n FROM zcatalog GROUP BY spectype ORDER BY 1"]) == 0
    assert "GALAXY" in capsys.readouterr().out
    assert main([*cli_store, "query", "SELECT targetid, z FROM zcatalog ORDER BY targetid", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == '"targetid","z"' and len(lines) == 701
    out = tmp_path / "q.parquet"
    assert main([*cli_store, "query", "SELECT * FROM zcatalog", "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 700
    fits = tmp_path / "q.fits"
    assert (
        main(
            [
                *cli_store,
                "query",
                "SELECT targetid, target_ra, zcat_primary FROM zcatalog",
                "--format",
                "fits",
                "--out",
                str(fits),
            ]
        )
        == 0
    )
    import fitsio

    assert fitsio.read(str(fits)).dtype.names == ("TARGETID", "TARGET_RA", "ZCAT_PRIMARY")


def test_cone_and_crossmatch(cli_store, tmp_path: Path, capsys):
    assert (
        main(
            [
                *cli_store,
                "query",
                "SELECT targetid, target_ra AS ra, target_dec AS dec FROM zcatalog ORDER BY targetid LIMIT 5",
                "--out",
                str(tmp_path / "u.csv"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    row = (tmp_path / "u.csv").read_text().splitlines()[1].split(",")
    ra, dec = row[1], row[2]
    assert main([*cli_store, "cone", "zcatalog", ra, dec, "1", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "sep_arcsec" in out.splitlines()[0] and len(out.strip().splitlines()) >= 2
    assert (
        main(
            [
                *cli_store,
                "crossmatch",
                str(tmp_path / "u.csv"),
                "zcatalog",
                "0.5",
                "--nearest",
                "--out",
                str(tmp_path / "m.parquet"),
            ]
        )
        == 0
    )
    m = pq.read_table(tmp_path / "m.parquet")
    assert m.num_rows == 5 and m.column("targetid_1").to_pylist() == m.column("targetid_2").to_pylist()


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        (["query", "SELECT * FROM nowhere"], "parameter SQL"),
        (["query", "DROP TABLE zcatalog"], "parameter SQL"),
        (["cone", "nowhere", "1", "2", "3"], "parameter table"),
        (["cone", "zcatalog", "1", "-2.5", "-3"], "parameter RADIUS_ARCSEC"),
        (["cone", "zcatalog", "1", "95", "3"], "parameter DEC"),
        (["crossmatch", "nofile.csv", "zcatalog", "1"], "parameter USERFILE"),
        (["query", "SELECT 1", "--format", "xml"], "parameter --format"),
    ],
)
def test_errors_are_one_line_and_name_the_parameter(cli_store, args, parameter, capsys):
    assert main([*cli_store, *args]) != 0
    err = capsys.readouterr().err.strip()
    assert parameter in err and len(err.splitlines()) == 1, err


def test_store_subcommands(cli_store, tmp_path: Path, capsys):
    assert main([*cli_store, "store", "tables"]) == 0
    assert "zcatalog" in capsys.readouterr().out
    assert main([*cli_store, "store", "columns", "zcatalog"]) == 0
    assert "pos.eq.ra" in capsys.readouterr().out
    assert main([*cli_store, "store", "check"]) == 0
    assert main([*cli_store, "store", "export", str(tmp_path / "bk")]) == 0
    other = ["--store", f"duckdb:///{tmp_path / 'restored.duckdb'}"]
    assert main([*other, "store", "import", str(tmp_path / "bk")]) == 0
    assert "verified" in capsys.readouterr().out
    assert main([*other, "query", "SELECT count(*) AS n FROM zcatalog", "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "700"


def test_ingest_reports_failures_with_nonzero_exit(tmp_path: Path, capsys):
    bad = tmp_path / "zpix-main-dark.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    assert main(["--store", f"duckdb:///{tmp_path / 's.duckdb'}", "ingest", str(bad)]) == 1
    assert "failed" in capsys.readouterr().out


def test_query_on_missing_store_says_how_to_create_it(tmp_path: Path, capsys):
    assert main(["--store", f"duckdb:///{tmp_path / 'none.duckdb'}", "query", "SELECT 1"]) != 0
    assert "desilab ingest" in capsys.readouterr().err
