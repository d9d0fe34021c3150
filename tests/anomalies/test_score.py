"""Conformal p-values, their validity on nulls, Benjamini-Hochberg, residual maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from desilab.anomalies.preprocess import rest_grid
from desilab.anomalies.score import (
    BinnedConformal,
    TailReference,
    benjamini_hochberg,
    conformal_pvalues,
    driving_regions,
)
from desilab.errors import InputError


def test_conformal_formula_exact() -> None:
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    p = conformal_pvalues(cal, np.array([0.5, 2.0, 2.5, 4.0, 9.0, np.nan]))
    np.testing.assert_allclose(p, [5 / 5, 4 / 5, 3 / 5, 2 / 5, 1 / 5, 1.0])
    with pytest.raises(InputError):
        conformal_pvalues(np.array([]), np.array([1.0]))


def test_conformal_pvalues_uniform_on_nulls() -> None:
    """Exchangeable nulls: P(p <= t) = floor(t (n+1)) / (n+1); KS against U(0,1) and exact tail rate."""
    rng = np.random.default_rng(1)
    n_cal, trials = 199, 4000
    ps = np.array([conformal_pvalues(rng.normal(size=n_cal), rng.normal(size=1))[0] for _ in range(trials)])
    # discrete uniform on {1/200, ..., 1}: its mean is (n+2)/(2(n+1))
    assert abs(ps.mean() - 201 / 400) < 4 * np.sqrt(1 / 12 / trials)
    for t in (0.01, 0.05, 0.2):
        rate = (ps <= t).mean()
        assert rate <= t + 3 * np.sqrt(t * (1 - t) / trials)
    assert stats.kstest(ps + rng.uniform(-1 / 200, 0, trials), "uniform").pvalue > 1e-3


def test_binned_calibration_uses_own_bin() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    snr = rng.uniform(1, 30, n)
    z = rng.uniform(0.3, 3.5, n)
    score = rng.normal(size=n) + 0.3 * snr  # scores depend on S/N, like χ² before the model-error floor
    bc = BinnedConformal(3, 3, min_per_bin=50).fit(score, snr, z)
    snr_t = rng.uniform(1, 30, 20000)
    z_t = rng.uniform(0.3, 3.5, 20000)
    p = bc.pvalues(rng.normal(size=20000) + 0.3 * snr_t, snr_t, z_t)
    for lo, hi in ((1, 10), (21, 30)):  # per S/N slice, still valid at 5% (and not absurdly conservative)
        sel = (snr_t > lo) & (snr_t < hi)
        assert 0.02 < (p[sel] <= 0.05).mean() < 0.05 + 3 * np.sqrt(0.05 * 0.95 / sel.sum())
    # a pooled calibration would not be: the bright slice would be flagged far too often
    p_pool = conformal_pvalues(score, rng.normal(size=20000) + 0.3 * snr_t)
    assert (p_pool[snr_t > 20] <= 0.05).mean() > 0.1
    again = BinnedConformal.from_dict(bc.to_dict())
    np.testing.assert_array_equal(again.pvalues(score[:50], snr[:50], z[:50]), bc.pvalues(score[:50], snr[:50], z[:50]))


def test_bh_matches_definition() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    rej, q = benjamini_hochberg(p, 0.05)
    # k = max{i: p_(i) <= i q / m} = 2  (0.039 > 3*0.005 = 0.015)
    assert rej.tolist() == [True, True] + [False] * 8
    np.testing.assert_allclose(q[:2], [0.01, 0.04])
    assert np.all(np.diff(q[np.argsort(p)]) >= 0)
    rej2, _ = benjamini_hochberg(p[::-1], 0.05)
    assert rej2.tolist() == rej.tolist()[::-1]
    with pytest.raises(InputError, match="q"):
        benjamini_hochberg(p, 1.5)


def test_bh_controls_fdr_on_mixture() -> None:
    rng = np.random.default_rng(3)
    fdp, any_null = [], []
    for _ in range(300):
        cal = rng.normal(size=300)
        null = rng.normal(size=180)
        alt = rng.normal(3.5, 1.0, 20)
        p = conformal_pvalues(cal, np.r_[null, alt])
        rej, _ = benjamini_hochberg(p, 0.1)
        fdp.append(rej[:180].sum() / max(rej.sum(), 1))
        rej0, _ = benjamini_hochberg(conformal_pvalues(cal, null), 0.1)
        any_null.append(rej0.any())
    se = np.std(fdp) / np.sqrt(len(fdp))
    assert np.mean(fdp) <= 0.1 + 2 * se
    assert np.mean(any_null) <= 0.1 + 2 * np.sqrt(0.1 * 0.9 / 300)


def test_driving_regions_names_the_line() -> None:
    lam = rest_grid()
    r2 = np.zeros((1, lam.size))
    j = int(np.argmin(np.abs(lam - 1549.0)))
    r2[0, j - 3 : j + 3] = 50.0
    r2[0, 3000] = 1.0
    txt = driving_regions(r2, lam, np.array([2.0]))[0]
    assert txt.startswith("CIV 15") and "obs 46" in txt


def test_tail_reference_ranks_and_extrapolated_tail() -> None:
    """Inside the sample −log p is the rank formula; beyond it an exponential tail follows the true one."""
    rng = np.random.default_rng(4)
    ref = rng.exponential(size=4000)  # true −log P(X ≥ s) = s
    t = TailReference(tail_frac=0.02).fit(np.r_[ref, np.nan])
    assert t.ref_.size == 4000 and t.k_ == 80
    inside = np.quantile(ref, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(t.neg_log_p(inside), -np.log((1 + (ref[None, :] >= inside[:, None]).sum(1)) / 4001))
    far = np.array([10.0, 14.0])  # 1e-4 .. 1e-6 tail probabilities, far beyond the 4000 spectra
    assert np.all(np.abs(t.neg_log_p(far) - far) < 0.15 * far), t.neg_log_p(far)
    grid = np.linspace(-1, 20, 500)
    assert np.all(np.diff(t.neg_log_p(grid)) >= 0)  # monotone through the junction
    assert np.isnan(t.neg_log_p(np.array([np.nan]))[0])
    back = TailReference.from_dict(t.to_dict())
    assert back == t and back != TailReference().fit(ref + 1.0)
    with pytest.raises(InputError, match="reference scores"):
        TailReference().fit(np.ones(5))
