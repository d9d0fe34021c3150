"""Cloudy interface: decks, parsing of the documented save-line-list format, grid file,
interpolation of observed ratios back to (U, n_H) on an analytic grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from desilab.compute import SerialExecutor
from desilab.errors import ConfigError, FormatError
from desilab.outflows.cloudy import (
    DEFAULT_LINES,
    GridSpec,
    collect_grid,
    infer,
    interpolation_error,
    make_deck,
    parse_line_list,
    read_grid,
    run_grid,
    stem,
    write_decks,
    write_grid,
)

LABEL = {v: k for k, v in DEFAULT_LINES.items()}


def analytic_lines(log_u: float, log_nh: float, z: float) -> dict[str, float]:
    """Smooth, monotonic stand-ins for photoionisation line intensities (absolute)."""
    hb = 1e-3 * 10**log_nh
    return {
        "HB": hb,
        "HA": 2.9 * hb,
        "OIII_5007": hb * 10 ** (0.9 * (log_u + 2.5) + 0.3 * np.log10(z) + 0.6),
        "OIII_4363": hb * 10 ** (0.5 * (log_u + 2.5) - 1.2),
        "NII_6583": hb * 10 ** (-0.35 * (log_u + 2.5) + 0.5 * np.log10(z) + 0.1),
        "SII_6716": hb * 10 ** (-0.45 * (log_u + 2.5) - 0.25 * (log_nh - 3.0) - 0.2),
        "SII_6731": hb * 10 ** (-0.45 * (log_u + 2.5) - 0.35),
        "OII_3726": hb * 10 ** (-0.2 * (log_u + 2.5) + 0.1),
        "OII_3729": hb * 10 ** (-0.2 * (log_u + 2.5) - 0.3 * np.tanh(log_nh - 3.0)),
    }


def write_cloudy_lin(path: Path, lines: dict[str, float]) -> None:
    """Write one grid point exactly in Cloudy's `save line list ... last no hash` layout."""
    labels = list(DEFAULT_LINES)
    header = "#lineslist\t" + "\t".join(labels)
    vals = "\t".join(f"{lines[DEFAULT_LINES[lab]]:.6e}" for lab in labels)
    path.write_text(header + "\niteration 2\t" + vals + "\n")


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GridSpec]:
    spec = GridSpec(metallicity=(1.0,))
    d = tmp_path_factory.mktemp("cloudy")
    stems = write_decks(d, spec)
    for u, n, z in spec.points():
        write_cloudy_lin(d / f"{stem(u, n, z)}.lin", analytic_lines(u, n, z))
    assert len(stems) == 31 * 21
    return d, spec


def test_deck_content() -> None:
    deck = make_deck(-2.5, 3.0, 1.0)
    assert "ionization parameter -2.500" in deck and "hden 3.000" in deck
    assert deck.splitlines()[1].startswith("AGN")
    assert 'save line list "' in deck and "last no hash absolute" in deck
    assert len(GridSpec().points()) == 31 * 21 * 4


def test_parse_and_grid_file(grid_dir: tuple[Path, GridSpec], tmp_path: Path) -> None:
    d, spec = grid_dir
    one = parse_line_list(d / f"{stem(-2.0, 3.0, 1.0)}.lin")
    assert one[LABEL["HA"]] == pytest.approx(2.9 * 1.0, rel=1e-5)
    grid = collect_grid(d, spec)
    assert grid.lines["HB"].shape == (1, 31, 21) and np.isfinite(grid.lines["HB"]).all()
    f = write_grid(grid, tmp_path / "grid.parquet")
    back = read_grid(f)
    np.testing.assert_allclose(back.lines["OIII_5007"], grid.lines["OIII_5007"])
    np.testing.assert_allclose(back.log_nh, spec.log_nh)


def test_parse_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.lin"
    p.write_text("no header\n")
    with pytest.raises(FormatError, match="header"):
        parse_line_list(p)
    p.write_text("#lineslist\tA\tB\niteration 1\t1.0\n")
    with pytest.raises(FormatError, match="labels"):
        parse_line_list(p)


def test_infer_recovers_u_and_n(grid_dir: tuple[Path, GridSpec]) -> None:
    d, spec = grid_dir
    grid = collect_grid(d, spec)
    true_u, true_n = -2.63, 3.41  # off-node
    lines = analytic_lines(true_u, true_n, 1.0)
    obs = {
        ("OIII_5007", "HB"): (lines["OIII_5007"] / lines["HB"], 0.02 * lines["OIII_5007"] / lines["HB"]),
        ("NII_6583", "HA"): (lines["NII_6583"] / lines["HA"], 0.02 * lines["NII_6583"] / lines["HA"]),
        ("SII_6716", "SII_6731"): (lines["SII_6716"] / lines["SII_6731"], 0.01 * lines["SII_6716"] / lines["SII_6731"]),
    }
    res = infer(grid, obs, metallicity=1.0)
    assert res.log_u == pytest.approx(true_u, abs=0.02)
    assert res.log_nh == pytest.approx(true_n, abs=0.03)
    assert res.log_u_range[0] <= true_u <= res.log_u_range[1]
    assert res.interp_err_dex < 0.05
    # the seed's < 1 % grid interpolation error, measured on the decimated grid
    assert interpolation_error(grid, ("SII_6716", "SII_6731")) < 0.01


def test_run_grid_without_cloudy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Cloudy"):
        run_grid(tmp_path, ["x"], None, SerialExecutor())


def test_real_cloudy_run(tmp_path: Path) -> None:
    exe = shutil.which("cloudy") or shutil.which("cloudy.exe")
    if exe is None:
        pytest.skip(
            "Cloudy is not installed here (no 'cloudy' or 'cloudy.exe' on PATH); U is not measured on real output"
        )
    spec = GridSpec(log_u=(-2.0,), log_nh=(3.0,), metallicity=(1.0,))
    stems = write_decks(tmp_path, spec)
    codes = run_grid(tmp_path, stems, exe, SerialExecutor())
    assert codes[stems[0]] == 0
    grid = collect_grid(tmp_path, spec)
    assert np.isfinite(grid.lines["HB"]).all()
