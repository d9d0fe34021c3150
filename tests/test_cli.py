"""The CLI: every command has teaching --help; errors are one line with non-zero exit."""

import json

import pytest
import typer.main

from desilab.cli import app, main


def _commands():
    group = typer.main.get_command(app)
    return sorted(group.commands)


def test_every_command_has_help(capsys):
    names = _commands()
    assert {"doctor", "run", "validate"} <= set(names)
    for name in names:
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert "Usage" in out
        assert len(out.split()) > 25, f"`desilab {name} --help` does not teach much"


def test_doctor_json(capsys, tmp_path):
    rc = main(["--out", str(tmp_path), "doctor", "--json"])
    doc = json.loads(capsys.readouterr().out)
    names = {f["name"] for f in doc["findings"]}
    assert {"numpy", "fitsio", "duckdb", "q3c", "pg_sphere", "ray", "cuda"} <= names
    assert rc == (0 if doc["ok"] else 1)


def test_bad_option_is_one_line_nonzero(capsys):
    assert main(["run", "--scale", "huge"]) != 0
    err = capsys.readouterr().err
    assert "--scale" in err and "Traceback" not in err
    assert main(["--store", "sqlite:///x", "doctor"]) != 0
    assert "DESILAB_STORE" in capsys.readouterr().err


@pytest.mark.slow
def test_run_end_to_end(tmp_path, capsys):
    rc = main(["--out", str(tmp_path / "out"), "--store", f"duckdb:///{tmp_path / 's.duckdb'}", "run"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["status"] == "ok"
    assert (tmp_path / "out" / "report.md").exists()
