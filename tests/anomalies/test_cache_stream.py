"""The chunked cache read in shards: bounded memory, deterministic and resumable order, resumable builds."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.preprocess import REST_NPIX, Preprocessed
from desilab.anomalies.stream import ShardStream
from desilab.errors import InputError


def _part(first: int, n: int, seed: int, invalid_every: int = 0) -> Preprocessed:
    """*n* rows whose flux[:, 0] is the global row number (so rows can be told apart)."""
    rng = np.random.default_rng(seed)
    flux = rng.normal(1.0, 0.1, (n, REST_NPIX)).astype(np.float32)
    flux[:, 0] = np.arange(first, first + n)
    ivar = np.full((n, REST_NPIX), 4.0, np.float32)
    valid = np.ones(n, bool)
    if invalid_every:
        valid[::invalid_every] = False
    return Preprocessed(
        flux,
        ivar,
        rng.uniform(0.5, 3, n),
        np.ones(n),
        rng.uniform(1, 20, n),
        valid,
        10_000 + np.arange(first, first + n),
    )


def _cache(path, sizes, invalid_every=0) -> SpectrumCache:
    cache = SpectrumCache(path, create=True)
    first = 0
    for i, n in enumerate(sizes):
        cache.append(_part(first, n, i, invalid_every), source=f"file{i}")
        first += n
    return cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> SpectrumCache:
    """7 shards of uneven size (1 230 rows, 39 MB of flux + ivar), every 7th row invalid."""
    return _cache(tmp_path_factory.mktemp("cache"), [300, 50, 211, 169, 0, 400, 100], invalid_every=7)


def _rows(stream: ShardStream, epoch: int, start: int = 0) -> list[np.ndarray]:
    return [b.rows.copy() for b in stream.epoch(epoch, start_batch=start)]


def test_epoch_covers_selected_rows_once(cache) -> None:
    valid = cache.column("valid")
    rng = np.random.default_rng(0)
    select = rng.random(len(cache)) < 0.7
    st = ShardStream(cache, batch_size=32, seed=3, select=select, buffer_rows=128, chunk_rows=16)
    got = []
    for b in st.epoch(0):
        assert len(b.data) == b.rows.size <= 32
        # the arrays are the cache's rows (flux[:, 0] holds the global row number)
        np.testing.assert_array_equal(b.data.flux[:, 0].astype(np.int64), b.rows)
        np.testing.assert_array_equal(b.data.targetid, 10_000 + b.rows)
        got.append(b.rows)
    allrows = np.concatenate(got)
    assert allrows.size == st.n_rows == int((select & valid).sum())
    np.testing.assert_array_equal(np.sort(allrows), np.nonzero(select & valid)[0])
    assert len(got) == st.n_batches(0)
    # shuffled: not in cache order, and batches mix several shards
    assert not np.all(np.diff(allrows) > 0)
    starts = np.cumsum([0] + [s["rows"] for s in cache.manifest["shards"]])
    assert max(len(set(np.searchsorted(starts, r, side="right").tolist())) for r in got) >= 3


def test_order_deterministic_per_seed_and_epoch(cache) -> None:
    a = ShardStream(cache, batch_size=50, seed=11, buffer_rows=200, chunk_rows=25)
    b = ShardStream(SpectrumCache(cache.path), batch_size=50, seed=11, buffer_rows=200, chunk_rows=25)
    e0, e0b = _rows(a, 0), _rows(b, 0)
    assert len(e0) == len(e0b) and all(np.array_equal(x, y) for x, y in zip(e0, e0b, strict=True))
    e1 = np.concatenate(_rows(a, 1))
    other = np.concatenate(_rows(ShardStream(cache, batch_size=50, seed=12, buffer_rows=200, chunk_rows=25), 0))
    assert not np.array_equal(np.concatenate(e0), e1) and not np.array_equal(np.concatenate(e0), other)
    assert np.array_equal(np.sort(e1), np.sort(other))
    ordered = np.concatenate(_rows(ShardStream(cache, batch_size=50, shuffle=False, buffer_rows=200), 0))
    assert np.all(np.diff(ordered) > 0)


@pytest.mark.parametrize("start", [0, 1, 5, 13])
def test_resume_mid_epoch_gives_the_remaining_batches(cache, start) -> None:
    st = ShardStream(cache, batch_size=40, seed=5, buffer_rows=160, chunk_rows=32)
    full = _rows(st, 2)
    again = ShardStream(cache, batch_size=40, seed=5, buffer_rows=160, chunk_rows=32)
    tail = _rows(again, 2, start=start)
    assert len(tail) == len(full) - start
    assert all(np.array_equal(x, y) for x, y in zip(full[start:], tail, strict=True))
    idx = [b.index for b in again.epoch(2, start_batch=start)]
    assert idx == list(range(start, len(full)))


def test_peak_memory_bounded_by_buffer(tmp_path) -> None:
    """Iterating a cache 10x larger than the buffer keeps the Python-heap peak near one window."""
    sizes = [160] * 8  # 1 280 rows x 4000 px x 8 B = 41 MB of flux + ivar
    cache = _cache(tmp_path / "big", sizes)
    buffer_rows, batch, chunk = 128, 16, 16
    row_bytes = REST_NPIX * 8  # flux + ivar
    # one window + the batch being built + the one the caller holds + one chunk being read, 10% slack
    bound = 1.1 * (buffer_rows + 2 * batch + chunk) * row_bytes  # 6.2 MB
    assert sum(sizes) * row_bytes > 6 * bound
    st = ShardStream(cache, batch_size=batch, seed=0, buffer_rows=buffer_rows, chunk_rows=chunk)
    tracemalloc.start()
    try:
        n = 0
        checksum = 0.0
        for b in st.epoch(0):
            n += len(b.data)
            checksum += float(b.data.flux[:, 1].sum())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == sum(sizes) and np.isfinite(checksum)
    assert peak < bound, f"peak {peak / 1e6:.1f} MB vs bound {bound / 1e6:.1f} MB"


def test_drop_last_keeps_full_batches_only(cache) -> None:
    st = ShardStream(cache, batch_size=48, seed=1, buffer_rows=200, chunk_rows=40, drop_last=True)
    sizes = [len(b.data) for b in st.epoch(0)]
    assert sizes and set(sizes) == {48} and len(sizes) == st.n_batches(0)
    assert sum(sizes) < st.n_rows  # the short batches were dropped


def test_stream_rejects_bad_parameters(cache) -> None:
    with pytest.raises(InputError, match="select"):
        ShardStream(cache, select=np.ones(3, bool))
    with pytest.raises(InputError, match="buffer_rows"):
        ShardStream(cache, batch_size=64, buffer_rows=10)
    with pytest.raises(InputError, match="batch_size"):
        ShardStream(cache, batch_size=0)
    with pytest.raises(InputError, match="start_batch"):
        next(ShardStream(cache).epoch(0, start_batch=-1))


def test_cache_columns_and_sources(cache) -> None:
    tid = cache.column("targetid")
    assert tid.size == len(cache) == 1230 and np.array_equal(tid, 10_000 + np.arange(1230))
    assert cache.sources == [f"file{i}" for i in range(7)]
    with pytest.raises(InputError, match="per-row"):
        cache.column("flux")


def test_unsaved_shard_is_an_orphan_replaced_on_resume(tmp_path) -> None:
    """A crash between writing shards and the manifest: the orphan folder is invisible, then replaced."""
    c = SpectrumCache(tmp_path / "c", create=True)
    c.append(_part(0, 5, 0), source="a")
    c.append(_part(5, 7, 1), source="b", save_manifest=False)  # "crash" before save_manifest
    again = SpectrumCache(tmp_path / "c")
    assert again.sources == ["a"] and len(again) == 5
    again.append(_part(100, 3, 2), source="c")
    back = SpectrumCache(tmp_path / "c")
    assert back.sources == ["a", "c"] and len(back) == 8
    np.testing.assert_array_equal(back.column("targetid")[5:], 10_100 + np.arange(3))


def test_detector_fits_and_scores_a_stream_as_it_does_arrays(pre, tmp_path) -> None:
    """Given the same VAE weights (epochs=0: the seeded initial ones), the post-training fits and every
    score from the cache read shard by shard equal the in-memory ones exactly."""
    import torch

    from desilab.anomalies.cache import write_cache
    from desilab.anomalies.detector import VAEAnomalyDetector
    from desilab.anomalies.stream import RowView

    data = pre.subset(np.arange(90))
    cache = write_cache(tmp_path / "c", [data.subset(np.arange(a, min(a + 17, 90))) for a in range(0, 90, 17)])
    st = ShardStream(cache, batch_size=8, buffer_rows=32, chunk_rows=8)
    kw = dict(latent_dim=8, hidden=16, epochs=0, batch_size=8, threads=1, device="cpu", n_estimators=20)
    a = VAEAnomalyDetector(**kw).fit(data)
    b = VAEAnomalyDetector(**kw).fit(st)
    assert b.n_train_ == a.n_train_ == 90 and b.n_features_in_ == a.n_features_in_
    for k, v in a.model_.state_dict().items():  # includes the re-measured model-error term
        assert torch.equal(v, b.model_.state_dict()[k]), k
    for x, y in zip(a.scan_inv_sigma_, b.scan_inv_sigma_, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.scan_standardise_, b.scan_standardise_)
    assert a.offset_ == b.offset_  # (the ensemble's reference distributions: through the scores below)
    sa, sb = a.score(data), b.score(st)
    for f in ("chi2_pix", "scan", "elbo", "iforest", "ensemble", "npix_used", "scan_kind"):
        np.testing.assert_array_equal(getattr(sa, f), getattr(sb, f), err_msg=f)
    # the batches differ (one sorted batch in memory, cache windows here), and on some CPUs
    # (AVX-512) a matrix product's blocking depends on the batch size: latents may differ in
    # the last bit of float32 (measured: 1.5e-8), too little to move any score above
    np.testing.assert_allclose(sa.latent, sb.latent, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(st.targetid, data.targetid)
    # per-row views: the spectra from the cache, residual maps recomputed for one row
    full = a.score(data, keep_resid=True)
    flux, resid2 = RowView(st, "flux"), RowView(st, "resid2", b)
    assert flux.shape == data.flux.shape
    np.testing.assert_array_equal(flux[41], data.flux[41])
    # (a one-row forward pass takes another convolution path: equal to float32 rounding)
    np.testing.assert_allclose(resid2[41], full.resid2[41], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="keep_resid"):
        b.score(st, keep_resid=True)
