"""Figures drawn out of multi-spectrum batches (windows padded to the batch's longest row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from desilab.errors import InputError
from desilab.outflows import figures as fg
from desilab.outflows.catalog import process
from desilab.outflows.stage import resources_for
from desilab.sample.quasars import simulate_spectra
from tests.outflows.test_sample_injection import SHARED, quasar


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(11)
    # different redshifts: the Hβ+[O III] window has a different number of pixels per spectrum
    params = [quasar(rng, z, outflow=(-400.0, 350.0, 0.6))[0] for z in (0.12, 0.31, 0.47)]
    sim = simulate_spectra(params, np.full(len(params), 18.0), seed=3)
    sp = sim.spectra
    sp.redshifts = pa.table({"Z": [p.z for p in params]})
    return process(sp, resources_for(SHARED if SHARED.exists() else None))


def test_fit_rows_line_up_with_the_batch_model(batch) -> None:
    widths = set()
    for i in range(3):
        fit, j, row = fg.fit_row(batch, "HB_OIII", i)
        widths.add(row["npix"])
        assert row["lam"].size == row["flux"].size == row["npix"]
        # the fitted model of this row, unpadded, describes the row's data: χ² from these
        # arrays is the fit's χ²
        model = fit.lm.model[j, : row["npix"]]
        chi2 = np.sum(row["ivar"] * (row["flux"] - model) ** 2)
        assert chi2 == pytest.approx(fit.lm.chi2[j], rel=1e-6)
    assert len(widths) == 3  # the bug needed rows of different widths to show


def test_plot_fit_and_qa_out_of_a_batch(batch, tmp_path: Path) -> None:
    for i in range(3):
        fig = fg.plot_fit(batch, i)
        ax = fig.axes[0]
        n = {ln.get_xdata().size for ln in ax.get_lines()}
        assert len(n) == 1  # data, model and every component on the same pixels
        fg.plt.close(fig)
    paths = fg.save(fg.plot_fit(batch, 2), tmp_path / "fit")
    assert all(p.stat().st_size > 0 for p in paths)
    qa = fg.qa_worst_fits(batch, tmp_path, n_worst=3)
    assert (tmp_path / "qa_worst_fits.png").exists() and len(qa) == 3


def test_fit_row_of_an_unfitted_complex_is_a_clear_error(batch) -> None:
    # C IV (1549 Å) is far blueward of the DESI range at z < 0.5
    assert "CIV" not in batch.lines.fits
    with pytest.raises(InputError, match="CIV"):
        fg.fit_row(batch, "CIV", 0)


def test_completeness_maps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 300
    v, snr, e = rng.uniform(200, 2000, n), rng.uniform(5, 80, n), rng.uniform(0, 200, n)
    det, orc = e > 30, e > 10
    fig = fg.plot_completeness(v, snr, det, orc, e, fpr=0.006, oracle_fpr=0.005)
    paths = fg.save(fig, tmp_path / "completeness")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    with pytest.raises(InputError, match="one shape"):
        fg.plot_completeness(v, snr[:-1], det, orc, e, fpr=0.0, oracle_fpr=0.0)
