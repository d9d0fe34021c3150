"""BAL metrics: the worked example of issue #6 in both modes, and trough bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.io.qso import NAI, NBI
from desilab.outflows.bal import bal_columns, bal_metrics, ion_metrics, velocity


def _box(v: np.ndarray, lo: float = -15000.0, hi: float = -5000.0, depth: float = 0.5) -> np.ndarray:
    return np.where((v > lo) & (v < hi), depth, 1.0)


@pytest.mark.parametrize("mode", ["baltools", "classical"])
def test_worked_example_exact_on_1kms_grid(mode: str) -> None:
    # pixel centres at half-integers: the box edges fall on pixel edges, so the
    # sums are exact (no partial pixels): BI = 8000*(1-0.5/0.9), AI = 9550 or 10000 * 0.444
    v = np.arange(-30000.0, 2000.0) + 0.5
    f = _box(v)
    s = np.full_like(v, 1e-4)
    r = ion_metrics(v, f, s, mode=mode)
    assert round(r.bi) == 3556
    assert round(r.ai) == (4244 if mode == "baltools" else 4444)
    assert r.bi == pytest.approx(8000 * (1 - 0.5 / 0.9), abs=1e-6)
    bi = [t for t in r.troughs if t.kind == "BI"]
    assert len(bi) == 1
    assert bi[0].vmin == pytest.approx(5000.5) and bi[0].vmax == pytest.approx(14999.5)
    assert bi[0].fmin == pytest.approx(0.5)


@pytest.mark.parametrize(("mode", "ai"), [("baltools", 4244.4), ("classical", 4444.4)])
def test_worked_example_on_sdss_loglam_grid(mode: str, ai: float) -> None:
    # a real SDSS/DESI-like log grid (69 km/s pixels): within one pixel x depth
    loglam = np.arange(np.log10(1300.0), np.log10(1700.0), 1e-4)
    wave = 10**loglam
    v = velocity(wave, "CIV", mode)
    f = _box(v)
    s = np.full_like(v, 1e-3)
    r = bal_metrics(wave, f, s, mode=mode, ions=("CIV",))["CIV"]
    tol = 69.1 * (1 - 0.5 / 0.9) * 1.01
    assert abs(r.bi - 3555.6) <= tol
    assert abs(r.ai - ai) <= tol


def test_no_trough_and_noise_gate() -> None:
    v = np.arange(-30000.0, 2000.0, 50.0)
    r = ion_metrics(v, np.ones_like(v), np.full_like(v, 0.05))
    assert r.bi == 0 and r.ai == 0 and not r.troughs and r.measured
    # baltools: median flux below median error -> not searched
    r = ion_metrics(v, np.ones_like(v), np.full_like(v, 2.0))
    assert not r.measured and r.bi == 0


def test_narrow_trough_is_ai_not_bi_and_spike_bridged() -> None:
    v = np.arange(-30000.0, 2000.0, 50.0) + 25.0
    f = _box(v, -9000.0, -8000.0, 0.3)  # 1000 km/s wide: AI only
    f2 = _box(v, -20000.0, -16000.0, 0.4)
    f = np.minimum(f, f2)
    k = np.argmin(np.abs(v + 18000.0))
    f[k] = 1.0  # one noise spike inside the wide trough
    r = ion_metrics(v, f, np.full_like(v, 0.01))
    bi = [t for t in r.troughs if t.kind == "BI"]
    ai = [t for t in r.troughs if t.kind == "AI"]
    assert len(bi) == 1 and bi[0].vmax > 19000  # spike bridged: one BI trough
    assert len(ai) == 2
    # classical mode does not bridge spikes: the wide trough splits into two of 2000 km/s
    rc = ion_metrics(v, f, np.full_like(v, 0.01), mode="classical")
    assert len([t for t in rc.troughs if t.kind == "BI"]) == 0 or rc.bi < r.bi


def test_more_troughs_than_baltools_slots_are_kept() -> None:
    v = np.arange(-30000.0, 2000.0, 10.0) + 5.0
    f = np.ones_like(v)
    for c in np.arange(-24000.0, -500.0, 1000.0):  # 24 AI troughs, 600 km/s wide
        f[(v > c - 300) & (v < c + 300)] = 0.2
    r = ion_metrics(v, f, np.full_like(v, 0.01))
    ai = [t for t in r.troughs if t.kind == "AI"]
    assert len(ai) == 24 > NAI
    cols = bal_columns(r)
    assert cols["NCIV_450"] == 24
    assert cols["VMIN_CIV_450"].shape == (NAI,) and np.all(cols["VMIN_CIV_450"] > 0)
    assert cols["VMIN_CIV_2000"].shape == (NBI,) and np.all(cols["VMIN_CIV_2000"] == -1)
    assert cols["AI_CIV"] == pytest.approx(sum(t.index for t in ai), rel=1e-6)


def test_bad_mode() -> None:
    from desilab.errors import InputError

    with pytest.raises(InputError, match="mode"):
        velocity(np.array([1500.0]), "CIV", "weymann")  # type: ignore[arg-type]
