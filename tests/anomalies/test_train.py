"""Deterministic training: a run killed mid-way and resumed equals an uninterrupted one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from desilab.anomalies.model import SpectrumVAE, flops_per_spectrum, gaussian_terms
from desilab.anomalies.train import TrainConfig, train_vae
from desilab.errors import InputError


class _Killed(RuntimeError):
    pass


def _cfg() -> TrainConfig:
    return TrainConfig(
        latent_dim=16, hidden=64, epochs=4, batch_size=16, kl_warmup_epochs=2, patience=5, seed=7, threads=1
    )


def test_killed_run_resumes_to_equal_tensors(pre, tmp_path) -> None:
    data = pre.subset(np.arange(48))
    full = train_vae(data, _cfg(), checkpoint=tmp_path / "a.pt")

    def kill(epoch: int, rec: dict) -> None:
        if epoch == 1:
            raise _Killed("simulated kill after epoch 1")

    with pytest.raises(_Killed):
        train_vae(data, _cfg(), checkpoint=tmp_path / "b.pt", on_epoch_end=kill)
    resumed = train_vae(data, _cfg(), checkpoint=tmp_path / "b.pt")
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ca = torch.load(tmp_path / "a.pt", weights_only=False)
    cb = torch.load(tmp_path / "b.pt", weights_only=False)
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for i, st in ca["optimizer"]["state"].items():
        for name, t in st.items():
            assert torch.equal(t, cb["optimizer"]["state"][i][name]), (i, name)
    assert torch.equal(ca["rng"]["gen"], cb["rng"]["gen"])
    assert full.history == resumed.history
    # and the loss went down
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]


def test_checkpoint_with_other_config_is_refused(pre, tmp_path) -> None:
    data = pre.subset(np.arange(32))
    cfg = TrainConfig(latent_dim=8, hidden=32, epochs=1, batch_size=16, kl_warmup_epochs=1, threads=1)
    train_vae(data, cfg, checkpoint=tmp_path / "c.pt")
    cfg2 = TrainConfig(latent_dim=8, hidden=32, epochs=1, batch_size=16, kl_warmup_epochs=1, lr=1e-2, threads=1)
    with pytest.raises(InputError, match="another configuration"):
        train_vae(data, cfg2, checkpoint=tmp_path / "c.pt")
    with pytest.raises(InputError, match="at least 10"):
        train_vae(data.subset(np.arange(5)), cfg)


def test_early_stopping_stops(pre) -> None:
    data = pre.subset(np.arange(40))
    cfg = TrainConfig(
        latent_dim=8, hidden=32, epochs=30, batch_size=20, kl_warmup_epochs=1, patience=1, threads=1, min_delta=1e9
    )  # nothing counts as an improvement -> stop after 1 + patience epochs
    res = train_vae(data, cfg)
    assert res.stopped_early and len(res.history) == 2 and res.best_epoch == 0


def test_model_shapes_likelihood_and_flops() -> None:
    m = SpectrumVAE()
    f = torch.randn(3, 4000)
    iv = torch.ones(3, 4000)
    iv[:, :100] = 0
    recon, mu, _lv = m(f, iv, sample=False)
    assert recon.shape == (3, 4000) and mu.shape == (3, 128)
    sig = torch.full((4000,), 0.0)
    chi2, _ll, npx = gaussian_terms(f, iv, f, sig)
    assert torch.all(chi2 == 0) and torch.all(npx == 3900)
    chi2, _, _ = gaussian_terms(f, iv, f + 1.0, sig)
    assert torch.allclose(chi2, torch.full((3,), 3900.0))
    # the floor: the same residual counts less when the model error is large
    chi2b, _, _ = gaussian_terms(f, iv, f + 1.0, torch.full((4000,), 1.0))
    assert torch.allclose(chi2b, torch.full((3,), 1950.0))
    assert 5e6 < flops_per_spectrum(m) < 1e8


def test_cosine_learning_rate_schedule() -> None:
    from desilab.anomalies.train import learning_rate

    cfg = TrainConfig(epochs=11, lr=1e-3, lr_min_frac=0.05)
    lrs = [learning_rate(cfg, e) for e in range(cfg.epochs)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(5e-5)
    assert lrs[5] == pytest.approx(0.5 * (1e-3 + 5e-5))  # half-way
    assert all(a > b for a, b in itertools.pairwise(lrs))
    assert learning_rate(TrainConfig(lr_schedule="constant"), 7) == TrainConfig().lr
    with pytest.raises(InputError, match="lr_schedule"):
        learning_rate(TrainConfig(lr_schedule="step"), 0)


def test_model_error_held_during_training_unless_learned(pre) -> None:
    data = pre.subset(np.arange(40))
    base = dict(latent_dim=8, hidden=32, epochs=2, batch_size=20, kl_warmup_epochs=1, threads=1)
    held = train_vae(data, TrainConfig(**base)).model.model_sigma()
    assert torch.allclose(held, torch.full_like(held, 0.02))
    learned = train_vae(data, TrainConfig(**base, learn_sigma=True)).model.model_sigma()
    assert not torch.allclose(learned, torch.full_like(learned, 0.02))


def _stream(pre, tmp_path, n: int = 60, shard: int = 13):
    """*n* spectra of *pre* in a cache of small shards, streamed 24 rows at a time."""
    from desilab.anomalies.cache import write_cache
    from desilab.anomalies.stream import ShardStream

    cache = write_cache(tmp_path / "cache", [pre.subset(np.arange(a, min(a + shard, n))) for a in range(0, n, shard)])
    return ShardStream(cache, batch_size=8, buffer_rows=24, chunk_rows=8)


def test_streamed_killed_run_resumes_to_equal_tensors(pre, tmp_path) -> None:
    """The same kill-and-resume guarantee when training reads the cache shard by shard."""
    st = _stream(pre, tmp_path)
    cfg = TrainConfig(
        latent_dim=8, hidden=32, epochs=3, batch_size=8, kl_warmup_epochs=1, patience=5, seed=3, threads=1
    )
    full = train_vae(st, cfg, checkpoint=tmp_path / "a.pt")

    def kill(epoch: int, rec: dict) -> None:
        if epoch == 0:
            raise _Killed("simulated kill after epoch 0")

    with pytest.raises(_Killed):
        train_vae(st, cfg, checkpoint=tmp_path / "b.pt", on_epoch_end=kill)
    resumed = train_vae(st, cfg, checkpoint=tmp_path / "b.pt")
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ca = torch.load(tmp_path / "a.pt", weights_only=False)
    cb = torch.load(tmp_path / "b.pt", weights_only=False)
    for i, s in ca["optimizer"]["state"].items():
        for name, t in s.items():
            assert torch.equal(t, cb["optimizer"]["state"][i][name]), (i, name)
    assert full.history == resumed.history and len(full.history) == 3
    # a checkpoint of the streamed run is not continued by an in-memory run on the same rows
    with pytest.raises(InputError, match="other training data"):
        train_vae(pre.subset(np.arange(60)), cfg, checkpoint=tmp_path / "a.pt")


def test_streamed_training_never_holds_the_set(pre, tmp_path) -> None:
    """Python-heap peak while training from a 15-shard cache stays near one 24-row window, far below the set."""
    import tracemalloc

    st = _stream(pre, tmp_path, n=195)
    cfg = TrainConfig(latent_dim=8, hidden=16, epochs=1, batch_size=8, kl_warmup_epochs=1, seed=1, threads=1)
    row_bytes = pre.flux.shape[1] * 8  # flux + ivar
    full_set = 195 * row_bytes  # 6.2 MB
    train_vae(pre.subset(np.arange(12)), cfg)  # one-time initialisations (~60 MB) are not what is measured
    tracemalloc.start()
    try:
        res = train_vae(st, cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(res.history) == 1 and np.isfinite(res.history[0]["val_loss"])
    # a window (24 rows) + the batch + the chunk being read, twice over for slack (measured 1.6 MB;
    # the in-memory path on the same rows peaks at 6.2 MB)
    bound = 2 * (24 + 8 + 8) * row_bytes  # 2.6 MB
    assert peak < bound < full_set / 2, f"peak {peak / 1e6:.2f} MB, bound {bound / 1e6:.2f} MB"
