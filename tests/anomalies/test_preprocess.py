"""Rest-frame resampling, weights, normalisation and the shard cache."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.anomalies.cache import SpectrumCache, write_cache
from desilab.anomalies.preprocess import (
    REST_NPIX,
    preprocess,
    resample_flux_conserving,
    rest_grid,
    rest_grid_edges,
)
from desilab.errors import FormatError, InputError
from desilab.io.spectra import combined_wave


def test_grid_is_documented_log_grid() -> None:
    lam = rest_grid()
    assert lam.size == REST_NPIX == 4000
    assert lam[0] == pytest.approx(800.0)
    np.testing.assert_allclose(np.diff(np.log10(lam)), 2.5e-4, rtol=1e-9)
    e = rest_grid_edges()
    assert np.all((e[:-1] < lam) & (lam < e[1:]))


def test_resampling_conserves_flux_and_constant() -> None:
    wave = combined_wave()
    rng = np.random.default_rng(0)
    flux = rng.normal(5.0, 1.0, (3, wave.size))
    ivar = np.ones_like(flux)
    # output edges covering the input exactly, in coarse uneven pixels
    edges = np.concatenate([[wave[0] - 0.4], np.sort(rng.uniform(wave[0], wave[-1], 300)), [wave[-1] + 0.4]])
    fo, _io, cov = resample_flux_conserving(wave, flux, ivar, np.broadcast_to(edges, (3, edges.size)))
    # integral of flux over the whole range is conserved to float precision
    np.testing.assert_allclose((fo * np.diff(edges)).sum(axis=1), (flux * 0.8).sum(axis=1), rtol=1e-10)
    assert np.all(cov > 0.99)
    # a constant spectrum stays constant; variance of a mean over k pixels is 1/k
    fo2, io2, _ = resample_flux_conserving(wave, np.full((1, wave.size), 3.0), np.ones((1, wave.size)), edges[None])
    np.testing.assert_allclose(fo2, 3.0, rtol=1e-9)
    k = np.diff(edges) / 0.8
    np.testing.assert_allclose(io2[0], k, rtol=0.25)  # edge pixels count by overlap (≤ 1-pixel approximation)


def test_masked_pixels_are_excluded_not_zeroed() -> None:
    wave = combined_wave()
    flux = np.full((1, wave.size), 2.0)
    ivar = np.ones_like(flux)
    flux[0, 1000:1003] = 1e6  # garbage under a mask
    ivar[0, 1000:1003] = 0.0
    edges = wave[990:1021:5][None] - 0.4
    fo, io, cov = resample_flux_conserving(wave, flux, ivar, edges)
    ok = cov >= 0.5
    np.testing.assert_allclose(fo[ok], 2.0)  # the garbage never leaks in
    assert cov.min() == pytest.approx(0.4, abs=0.01)  # 3 of 5 pixels masked -> < 0.5 coverage -> missing
    assert np.all(io[~ok] == 0.0) and np.all(fo[~ok] == 0.0) and ok.sum() >= 4


def test_vectorised_equals_row_by_row(observed) -> None:
    o = observed
    p_all = preprocess(o.wave, o.flux[:6], o.ivar[:6], o.z[:6], mask=o.mask[:6])
    for i in range(6):
        p1 = preprocess(o.wave, o.flux[i : i + 1], o.ivar[i : i + 1], o.z[i : i + 1], mask=o.mask[i : i + 1])
        np.testing.assert_array_equal(p1.flux[0], p_all.flux[i])
        np.testing.assert_array_equal(p1.ivar[0], p_all.ivar[i])


def test_preprocess_masks_forest_normalises_and_covers(pre, observed) -> None:
    lam = rest_grid()
    assert pre.valid.all()
    assert np.all(pre.ivar[:, lam < 1205.0] == 0)  # forest masked by default
    # robust normalisation: median of the used flux in 1280-7000 A is 1
    sel = (lam >= 1280) & (lam <= 7000)
    med = np.array([np.median(f[(iv > 0) & sel]) for f, iv in zip(pre.flux, pre.ivar, strict=True)])
    np.testing.assert_allclose(med, 1.0, atol=0.02)
    # rest coverage follows the redshift: first used pixel ~ 3600/(1+z) (or the forest edge)
    i = int(np.argmin(observed.z))
    first = lam[np.argmax(pre.ivar[i] > 0)]
    assert first == pytest.approx(max(3600.0 / (1 + observed.z[i]), 1205.67), rel=0.01)
    assert np.all(np.isfinite(pre.snr)) and np.median(pre.snr) > 1


def test_sky_lines_downweighted(observed) -> None:
    o = observed
    i = 0
    p_w = preprocess(o.wave, o.flux[i : i + 1], o.ivar[i : i + 1], o.z[i : i + 1], sky_weight=0.25)
    p_1 = preprocess(o.wave, o.flux[i : i + 1], o.ivar[i : i + 1], o.z[i : i + 1], sky_weight=1.0)
    j = int(np.argmin(np.abs(rest_grid() * (1 + o.z[i]) - 5577.34)))
    assert p_w.ivar[0, j] < 0.8 * p_1.ivar[0, j]
    np.testing.assert_array_equal(p_w.flux[0, j], p_1.flux[0, j])


def test_bad_input_errors(observed) -> None:
    o = observed
    with pytest.raises(InputError, match="z"):
        preprocess(o.wave, o.flux[:2], o.ivar[:2], o.z[:3])
    with pytest.raises(InputError, match="weights"):
        preprocess(o.wave, o.flux[:2], o.ivar[:2], o.z[:2], sky_weight=2.0)
    dead = preprocess(o.wave, np.zeros((1, o.wave.size)), np.zeros((1, o.wave.size)), o.z[:1])
    assert not dead.valid[0] and np.all(dead.ivar == 0)


def test_cache_roundtrip_in_shards(pre, tmp_path) -> None:
    parts = [pre.subset(np.arange(0, 100)), pre.subset(np.arange(100, 150))]
    cache = write_cache(tmp_path / "c", parts)
    again = SpectrumCache(tmp_path / "c")
    assert len(again) == 150 and again.n_shards == 2
    s1 = again.shard(1)
    assert isinstance(s1.flux, np.memmap)
    np.testing.assert_array_equal(np.asarray(s1.flux), pre.flux[100:150])
    np.testing.assert_array_equal(again.load().targetid, pre.targetid[:150])
    assert len(cache) == 150
    (tmp_path / "c" / "manifest.json").write_text("{")
    with pytest.raises(FormatError, match="manifest"):
        SpectrumCache(tmp_path / "c")
    with pytest.raises(InputError, match="no anomaly cache"):
        SpectrumCache(tmp_path / "nothing")
