"""Statistics: jackknife on known cases, injected quenching, empty bins, cuts, completeness."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.errors import InputError
from desilab.voids.stats import (
    bootstrap_replicates,
    compare_quenching,
    jackknife_regions,
    jackknife_variance,
    main_sequence,
    mass_completeness,
    mass_function,
    quenched,
    sanity_cuts,
    to_h,
)


def test_jackknife_of_the_mean_is_the_standard_error():
    # delete-one jackknife of the mean reproduces s^2 / n exactly
    rng = np.random.default_rng(1)
    x = rng.normal(size=57)
    loo = (x.sum() - x) / (len(x) - 1)
    var = jackknife_variance(loo[:, None])[0]
    assert var == pytest.approx(x.var(ddof=1) / len(x), rel=1e-12)


def test_jackknife_regions_contiguous_and_balanced():
    rng = np.random.default_rng(2)
    pix = rng.integers(0, 5000, 100_000)
    reg = jackknife_regions(pix, 64)
    assert reg.max() + 1 == 64
    counts = np.bincount(reg)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    # one pixel never spans two regions
    for p in np.unique(pix)[:200]:
        assert len(np.unique(reg[pix == p])) == 1
    with pytest.raises(InputError, match="jackknife"):
        jackknife_regions(np.arange(10), 50)


def _population(rng, n, amp, n_clusters=400):
    """Galaxies in clusters (regions of correlated environment) with a void quenching deficit ``amp``."""
    cl = rng.integers(0, n_clusters, n)
    cl_void = rng.uniform(size=n_clusters) < 0.2
    is_void = cl_void[cl]
    logm = rng.uniform(9.5, 11.5, n)
    z = rng.uniform(0.02, 0.2, n)
    fq = 1 / (1 + np.exp(-(logm - 10.5) * 2.5))
    p = np.where(is_void, fq * (1 - amp), fq)
    q = rng.uniform(size=n) < p
    return logm, z, q, is_void, cl


def test_injected_quenching_is_detected_and_null_is_not():
    rng = np.random.default_rng(3)
    edges = np.arange(9.5, 11.51, 0.5)
    zed = np.linspace(0, 0.2, 5)
    logm, z, q, v, cl = _population(rng, 40_000, 0.3)
    reg = cl % 64
    res = compare_quenching(logm, z, q, v, ~v, reg, mass_edges=edges, z_edges=zed)
    assert res.error_method == "jackknife" and res.n_resamples == 64
    assert res.combined_z < -5
    assert 0.6 < res.ratio < 0.8 and res.ratio_ci95[0] < 0.7 < res.ratio_ci95[1]
    # null: false-positive rate over many realisations (jackknife is calibrated)
    zs = []
    for i in range(60):
        r2 = np.random.default_rng(100 + i)
        logm, z, q, v, cl = _population(r2, 8000, 0.0)
        zs.append(compare_quenching(logm, z, q, v, ~v, cl % 64, mass_edges=edges, z_edges=zed).combined_z)
    zs = np.asarray(zs)
    assert np.mean(np.abs(zs) > 1.96) < 0.2  # 0.05 expected; binomial 3-sigma for n=60 is ~0.13
    assert 0.6 < np.std(zs) < 1.5


def test_bootstrap_option_and_empty_bins_flagged():
    rng = np.random.default_rng(4)
    logm, z, q, v, cl = _population(rng, 5000, 0.2)
    edges = np.array([8.0, 8.5, 9.5, 10.5, 11.5])  # first bin is empty
    boot = bootstrap_replicates(len(logm), 50, np.random.default_rng(0))
    res = compare_quenching(logm, z, q, v, ~v, None, mass_edges=edges, z_edges=np.linspace(0, 0.2, 4), bootstrap=boot)
    assert res.error_method.startswith("bootstrap") and res.n_resamples == 50
    assert np.isnan(res.fq_void[0]) and 0 in res.notes["bins_too_small"]
    assert np.isfinite(res.combined_diff_err)
    d = res.to_dict()
    assert d["fq_void"][0] is None
    with pytest.raises(InputError, match="void and wall"):
        compare_quenching(
            logm, z, q, np.zeros(len(v), bool), ~v, cl % 8, mass_edges=edges, z_edges=np.linspace(0, 0.2, 3)
        )


def test_sanity_cuts_count_failures():
    m = np.array([10.0, -12.1, 15.6, np.nan, 10.5, 10.2])
    s = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 2.0])
    ivar = np.array([1, 1, 1, 1, 1, 0.0])
    keep, c = sanity_cuts(m, s, logmstar_ivar=ivar)
    assert keep.tolist() == [True, False, False, False, False, False]
    assert c["logmstar_nonfinite_or_outside_6_13"] == 3
    assert c["sfr_nonfinite_or_floored_le_0"] == 1 and c["logmstar_ivar_le_0"] == 1 and c["kept"] == 1


def test_h_conversion_and_quenched_definitions():
    assert to_h(np.array([10.0]), 0.7)[0] == pytest.approx(10.0 - 2 * np.log10(0.7))
    q = quenched(np.array([10.0, 10.0]), np.array([1e-2, 1.0]))
    assert q.tolist() == [True, False]
    assert quenched(np.zeros(2), dn4000=np.array([1.7, 1.2]), definition="dn4000").tolist() == [True, False]
    with pytest.raises(InputError):
        quenched(np.zeros(2), definition="color")


def test_mass_completeness_limit_tracks_red_galaxies():
    rng = np.random.default_rng(5)
    n = 20000
    z = rng.uniform(0.02, 0.2, n)
    red = rng.uniform(size=n) < 0.4
    m_r = rng.uniform(-23, -20, n)
    ml = np.where(red, 0.9, 0.4)  # log M/L-ish offset
    logm = -0.4 * (m_r - 4.65) + ml - 0.3
    lim_b, lim_g = mass_completeness(logm, m_r, z, red, mag_limit=-20.0, z_edges=np.linspace(0.02, 0.2, 4))
    # a red galaxy at the limit has logm = -0.4(-20-4.65) + 0.9 - 0.3 = 10.46
    assert np.allclose(lim_b, 10.46, atol=0.02)
    assert np.all(np.isfinite(lim_g))


def test_mass_function_volume_normalisation():
    rng = np.random.default_rng(6)
    m = rng.uniform(10, 11, 10000)
    res = mass_function(m, 1e6, np.array([10.0, 10.5, 11.0]), rng.integers(0, 50, 10000))
    assert res["phi"].sum() * 0.5 == pytest.approx(10000 / 1e6)
    assert np.all(res["phi_err"] > 0) and np.all(res["phi_err"] < 0.1 * res["phi"])
    with pytest.raises(InputError):
        mass_function(m, 0.0, np.array([10.0, 11.0]), np.zeros(len(m), int))
    # an empty bin is flagged, with no (zero) error claimed
    res = mass_function(m, 1e6, np.array([9.0, 9.5, 10.0, 10.5, 11.0]), rng.integers(0, 50, 10000))
    assert res["empty"].tolist() == [True, True, False, False]
    assert np.isnan(res["phi_err"][:2]).all() and (res["phi"][:2] == 0).all() and np.isfinite(res["phi_err"][2:]).all()


def test_main_sequence_median_and_scatter():
    rng = np.random.default_rng(7)
    m = rng.uniform(9, 11, 20000)
    sfr = 0.8 * (m - 10) + 0.1 + rng.normal(0, 0.3, len(m))
    res = main_sequence(m, sfr, np.array([9.0, 10.0, 11.0]))
    assert res["median"] == pytest.approx([-0.3, 0.5], abs=0.03)
    assert res["scatter"] == pytest.approx([0.36, 0.36], abs=0.04)  # sqrt(0.3^2 + slope spread^2)


def test_jackknife_regions_exact_count_with_a_dominant_pixel():
    rng = np.random.default_rng(9)
    pix = rng.integers(0, 120, 20000)
    pix[:8000] = 5  # one pixel holds 40% of the galaxies
    reg = jackknife_regions(pix, 50)
    assert len(np.unique(reg)) == 50 and reg.max() == 49
