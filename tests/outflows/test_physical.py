"""n_e / T_e inversion: agreement with PyNeb's getTemDen (< 1 %), speed (>= 100x), limits."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

pn = pytest.importorskip("pyneb")

from desilab.outflows.physical import build_grid, density, temperature  # noqa: E402


@pytest.fixture(scope="module")
def s2() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pn.Atom("S", 2)


def test_sii_density_matches_gettemden_and_is_100x_faster(s2: object) -> None:
    build_grid("SII")  # built once per process; not part of the per-object cost
    ratios = np.linspace(0.50, 1.38, 40)
    t0 = time.perf_counter()
    ref = np.array([s2.getTemDen(r, tem=1e4, wave1=6716, wave2=6731) for r in ratios])  # type: ignore[attr-defined]
    t_ref = (time.perf_counter() - t0) / ratios.size
    many = np.tile(ratios, 500)  # 20,000 objects
    times = []
    for _ in range(3):  # best of three: the shared machine's load must not decide the test
        t0 = time.perf_counter()
        res = density(many, diagnostic="SII")
        times.append((time.perf_counter() - t0) / many.size)
    t_ours = min(times)
    ours = res.ne[: ratios.size]
    ok = np.isfinite(ref) & (ref > 20) & (ref < 5e4)
    assert ok.sum() > 30
    assert np.max(np.abs(ours[ok] / ref[ok] - 1)) < 0.01
    assert t_ref / t_ours >= 100


def test_limits() -> None:
    r = density(np.array([1.42, 1.30, 0.45, np.nan, 1.0]), np.array([0.05, 0.02, 0.02, 0.1, 0.6]), diagnostic="SII")
    assert r.limit[0] == -1  # consistent with the low-density limit -> upper limit
    assert r.limit[1] == 0 and 100 < r.ne[1] < 400
    assert r.limit[2] == 1  # at the high-density asymptote -> lower limit
    assert r.limit[3] == -9 and np.isnan(r.ne[3])
    assert r.limit[4] == 9 and np.isnan(r.ne[4])  # 2σ range spans both asymptotes: unconstrained
    # the rule is kσ: R = 1.30 ± 0.08 reaches the low-density asymptote (1.444 at 10 cm⁻³) at 2σ
    # but not at 1σ; R = 0.50 ± 0.02 (n_e ≈ 1.3e4) stays > 2σ above the high-density one (0.447)
    r2 = density(np.array([1.30, 0.50, 0.50]), np.array([0.08, 0.02, 0.04]), diagnostic="SII")
    assert list(r2.limit) == [-1, 0, 1]
    assert 4.0 < np.log10(r2.ne[1]) < 4.3 and r2.ne_lo[1] < r2.ne[1] < r2.ne_hi[1]
    r1 = density(np.array([1.30]), np.array([0.08]), diagnostic="SII", k_sigma=1.0)
    assert r1.limit[0] == 0 and r1.ne[0] == pytest.approx(density(np.array([1.30]), diagnostic="SII").ne[0])
    assert r2.ne[0] == pytest.approx(density(np.array([1.30 - 2 * 0.08]), diagnostic="SII").ne[0], rel=1e-6)


def test_oii_and_oiii_temperature() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        o3 = pn.Atom("O", 3)
        ref = o3.getTemDen(100.0, den=100.0, to_eval="(L(4959)+L(5007))/L(4363)")
    t = temperature(np.array([100.0]), ne=100.0)
    assert t[0] == pytest.approx(ref, rel=0.01)
    r = density(np.array([1.0]), diagnostic="OII")
    assert 100 < r.ne[0] < 1500 and r.limit[0] == 0
