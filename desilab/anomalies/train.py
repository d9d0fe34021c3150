"""Deterministic, resumable training of :class:`~desilab.anomalies.model.SpectrumVAE`.

Determinism: ``torch.use_deterministic_algorithms(True)``, a fixed thread count
(``TrainConfig.threads``), and every random draw (initial weights, the train/validation
split, batch order, reparameterisation noise) taken from generators seeded by
``TrainConfig.seed``. A checkpoint written after every epoch holds the model, optimiser,
best-so-far weights, history, early-stopping counters and *every* RNG state (the
training generator, torch's global CPU and CUDA states, NumPy's legacy state and
Python's ``random``), so a run killed after any epoch and resumed from its checkpoint
ends with tensors ``torch.equal`` to an uninterrupted run (tested).

Objective (per spectrum, averaged over the batch and divided by ``REST_NPIX``):
``-log L + β KL`` with β ramped linearly from 0 to ``beta`` over ``kl_warmup_epochs``
(KL warm-up, so the decoder learns before the latent is squeezed). Early stopping on the
validation loss (at full β) with ``patience`` epochs; the best weights are returned.
Learning rate: cosine decay from ``lr`` to ``lr_min_frac × lr`` over ``epochs``
(``lr_schedule = "cosine"``; ``"constant"`` keeps ``lr``). The rate is a function of the
epoch number alone, so a resumed run follows the same schedule. Without the decay the
validation loss of a 1500-spectrum run still jumps by ±50% between epochs at epoch 25.

On CUDA, the forward pass runs under bfloat16 autocast (mixed precision); on CPU in float32.

Data: in-memory arrays (moved to the device once; batches from a global permutation drawn
from the training generator), or a :class:`~desilab.anomalies.stream.ShardStream` over the
on-disk cache (one read window in memory; batches from its block shuffle, whose order is a
pure function of (seed, epoch), so resuming needs no extra state). The two paths hold out
the same validation rows but do not share a batch order (see ``_StreamSource``).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from desilab.anomalies.model import SpectrumVAE, gaussian_terms, kl_divergence
from desilab.anomalies.preprocess import Preprocessed
from desilab.anomalies.stream import ShardStream
from desilab.errors import InputError
from desilab.io.fits import atomic_output

__all__ = ["TrainConfig", "TrainResult", "learning_rate", "pick_device", "train_vae"]


@dataclass
class TrainConfig:
    """Hyperparameters of a training run (saved with the model)."""

    latent_dim: int = 128
    hidden: int = 256
    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    lr_min_frac: float = 0.05
    sigma_lr_mult: float = 20.0
    learn_sigma: bool = False
    sigma_init: float = 0.02
    beta: float = 1.0
    kl_warmup_epochs: int = 10
    patience: int = 8
    min_delta: float = 1e-4
    val_fraction: float = 0.1
    sigma_floor: float = 0.005
    seed: int = 0
    threads: int = 2
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass
class TrainResult:
    """A trained model and its record."""

    model: SpectrumVAE
    config: TrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    device: str = "cpu"


def pick_device(name: str = "auto") -> torch.device:
    """``cuda`` when asked for or available (``auto``), else ``cpu``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA requested but not available", parameter="device")
    return torch.device(name)


def _setup_determinism(cfg: TrainConfig) -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)
    torch.backends.cudnn.benchmark = False
    # cuBLAS needs this for deterministic GEMMs; it is read when CUDA initialises


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "gen": gen.get_state(),
        "torch_cpu": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state is saved on purpose
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_cpu"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 - restored on purpose
    random.setstate(state["python"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of *epoch* (0-based) under ``cfg.lr_schedule``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule != "cosine":
        raise InputError(f"unknown lr_schedule {cfg.lr_schedule!r} (cosine, constant)", parameter="lr_schedule")
    frac = epoch / max(cfg.epochs - 1, 1)
    return cfg.lr * (cfg.lr_min_frac + (1.0 - cfg.lr_min_frac) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _beta(cfg: TrainConfig, epoch: int) -> float:
    if cfg.kl_warmup_epochs <= 0:
        return cfg.beta
    return cfg.beta * min(1.0, (epoch + 1) / cfg.kl_warmup_epochs)


def _loss(
    model: SpectrumVAE, f: torch.Tensor, iv: torch.Tensor, beta: float, gen: torch.Generator, amp: bool
) -> torch.Tensor:
    with torch.autocast(device_type=f.device.type, dtype=torch.bfloat16, enabled=amp):
        recon, mu, logvar = model(f, iv, generator=gen, sample=True)
    _, loglik, _ = gaussian_terms(f, iv, recon.float(), model.model_sigma())
    kl = kl_divergence(mu.float(), logvar.float())
    return ((-loglik + beta * kl) / model.npix).mean()


@torch.no_grad()
def _val_sum(model: SpectrumVAE, f: torch.Tensor, iv: torch.Tensor, beta: float, bs: int, amp: bool) -> float:
    """Sum over the rows of *f* of the per-pixel loss at full β and mean latents (validation)."""
    model.eval()
    tot = 0.0
    for i in range(0, f.shape[0], bs):
        fb, ib = f[i : i + bs], iv[i : i + bs]
        with torch.autocast(device_type=fb.device.type, dtype=torch.bfloat16, enabled=amp):
            recon, mu, logvar = model(fb, ib, sample=False)
        _, loglik, _ = gaussian_terms(fb, ib, recon.float(), model.model_sigma())
        kl = kl_divergence(mu.float(), logvar.float())
        tot += float(((-loglik + beta * kl) / model.npix).sum())
    model.train()
    return tot


def _val_loss(model: SpectrumVAE, f: torch.Tensor, iv: torch.Tensor, beta: float, bs: int, amp: bool) -> float:
    return _val_sum(model, f, iv, beta, bs, amp) / max(f.shape[0], 1)


def _split(n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """(validation, training) positions among *n* valid rows: the first ``val_fraction`` of a seeded permutation."""
    split = np.random.default_rng(cfg.seed).permutation(n)
    n_val = max(1, round(cfg.val_fraction * n))
    return split[:n_val], split[n_val:]


def _check_enough(n: int) -> None:
    """Refuse fewer than 10 valid training spectra (a validation split needs a few rows)."""
    if n < 10:
        raise InputError(f"need at least 10 valid training spectra, got {n}", parameter="data")


class _MemorySource:
    """Training and validation batches from in-memory arrays (moved to the device once)."""

    def __init__(self, data: Preprocessed, cfg: TrainConfig, device: torch.device) -> None:
        valid = np.asarray(data.valid, dtype=bool)
        self.n = int(valid.sum())
        _check_enough(self.n)
        flux = torch.from_numpy(np.ascontiguousarray(np.asarray(data.flux)[valid], dtype=np.float32)).to(device)
        ivar = torch.from_numpy(np.ascontiguousarray(np.asarray(data.ivar)[valid], dtype=np.float32)).to(device)
        self.npix = int(flux.shape[1])
        val, tr = _split(self.n, cfg)
        val_idx, tr_idx = torch.from_numpy(val).to(device), torch.from_numpy(tr).to(device)
        self.f_val, self.iv_val = flux[val_idx], ivar[val_idx]
        self.f_tr, self.iv_tr = flux[tr_idx], ivar[tr_idx]
        self.cfg, self.device = cfg, device

    def describe(self) -> dict[str, Any]:
        return {"kind": "memory", "n": self.n}

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # a global permutation drawn from the training generator (its state is checkpointed)
        perm = torch.randperm(self.f_tr.shape[0], generator=gen, device=self.device)
        for i in range(0, perm.numel(), self.cfg.batch_size):
            b = perm[i : i + self.cfg.batch_size]
            yield self.f_tr[b], self.iv_tr[b]

    def val_loss(self, model: SpectrumVAE, beta: float, amp: bool) -> float:
        return _val_loss(model, self.f_val, self.iv_val, beta, self.cfg.batch_size, amp)


class _StreamSource:
    """Training and validation batches read from the cache, one window at a time.

    The validation rows follow the in-memory rule (the first ``val_fraction`` of a
    permutation seeded by ``cfg.seed`` of the valid selected rows, in cache order), so the
    same rows hold out the same spectra either way. Training batches come from a
    :class:`~desilab.anomalies.stream.ShardStream` block shuffle seeded by ``cfg.seed``:
    its order is a pure function of (seed, epoch, cache, selection), so a resumed run sees
    the batches an uninterrupted one does without any extra saved state. That order is not
    the in-memory path's global permutation (which needs random access to every row), so
    the two paths train on the same rows in a different batch order and end with
    different (equally valid) weights; everything after training is identical given the
    weights.
    """

    def __init__(self, stream: ShardStream, cfg: TrainConfig, device: torch.device) -> None:
        valid = stream.mask & stream.cache.column("valid")
        rows = np.nonzero(valid)[0]
        self.n = int(rows.size)
        _check_enough(self.n)
        val, _ = _split(self.n, cfg)
        val_mask = np.zeros(valid.size, dtype=bool)
        val_mask[rows[val]] = True
        self.train = stream.derive(
            select=valid & ~val_mask, batch_size=cfg.batch_size, seed=cfg.seed, shuffle=True, drop_last=False
        )
        # validation: one batch per read window (no copy), cut into cfg.batch_size by _val_sum
        self.val = stream.derive(select=val_mask, batch_size=stream.buffer_rows, shuffle=False, drop_last=False)
        self.npix = stream.npix
        self.cfg, self.device = cfg, device

    def describe(self) -> dict[str, Any]:
        t = self.train
        return {"kind": "stream", "n": self.n, "buffer_rows": t.buffer_rows, "chunk_rows": t.chunk_rows}

    def _tensors(self, data: Preprocessed) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.from_numpy(np.ascontiguousarray(data.flux, dtype=np.float32))
        iv = torch.from_numpy(np.ascontiguousarray(data.ivar, dtype=np.float32))
        return f.to(self.device), iv.to(self.device)

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.train.epoch(epoch):
            yield self._tensors(b.data)

    def val_loss(self, model: SpectrumVAE, beta: float, amp: bool) -> float:
        tot = 0.0
        for b in self.val.epoch(0):
            f, iv = self._tensors(b.data)
            tot += _val_sum(model, f, iv, beta, self.cfg.batch_size, amp)
            del b, f, iv  # before the next window is read: one window resident at a time
        return tot / self.val.n_rows


def train_vae(
    data: Preprocessed | ShardStream,
    config: TrainConfig | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train a VAE on preprocessed normal spectra.

    Parameters
    ----------
    data
        Training spectra (invalid rows are dropped): in memory, or a
        :class:`~desilab.anomalies.stream.ShardStream` over the on-disk cache (its
        selected rows; its ``buffer_rows`` and ``chunk_rows`` set the memory bound and
        the shuffle granularity, its batch size and seed are replaced by the config's).
        A validation split of ``config.val_fraction`` is drawn from them with
        ``config.seed``. The stream path holds one read window of rows in memory
        (``buffer_rows``), never the set; its batch order is a block shuffle, so it does
        not reproduce the in-memory path's weights (see ``_StreamSource``).
    config
        Hyperparameters.
    checkpoint
        File written after every epoch (atomically); with *resume* an existing one is
        continued.
    resume
        Continue from *checkpoint* when it exists.
    on_epoch_end
        Called with (epoch, record) after the checkpoint of each epoch is written.
    progress
        Called with (epoch, epochs).

    Returns
    -------
    TrainResult
    """
    cfg = config or TrainConfig()
    _setup_determinism(cfg)
    device = pick_device(cfg.device)
    amp = device.type == "cuda"
    src: _MemorySource | _StreamSource = (
        _StreamSource(data, cfg, device) if isinstance(data, ShardStream) else _MemorySource(data, cfg, device)
    )

    torch.manual_seed(cfg.seed)
    model = SpectrumVAE(
        npix=src.npix,
        latent_dim=cfg.latent_dim,
        hidden=cfg.hidden,
        sigma_floor=cfg.sigma_floor,
        sigma_init=cfg.sigma_init,
    )
    model.to(device)
    # Model-error term. Learned jointly (learn_sigma) it settles into a trap: where the decoder
    # is poor (broad-line cores) the term grows, which shrinks the gradient that would teach
    # the decoder the line, so line strengths are never learned (measured: s_j = 0.64 at C IV,
    # reconstructions that ignore a removed line). By default it is held at sigma_init (2% of the
    # continuum) during training, which makes the decoder fit the lines, and the
    # detector re-estimates it per pixel afterwards from the training residuals.
    # When learned, it gets a larger step: each pixel's amplitude sees one gradient per
    # spectrum covering it and must travel from its start to where the residual scatter is.
    others = [p for name, p in model.named_parameters() if name != "sigma_log"]
    groups: list[dict[str, Any]] = [{"params": others}]
    if cfg.learn_sigma:
        groups.append({"params": [model.sigma_log], "lr_mult": cfg.sigma_lr_mult, "weight_decay": 0.0})
    else:
        model.sigma_log.requires_grad_(False)
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 1)
    history: list[dict[str, float]] = []
    start, best, best_epoch, bad = 0, float("inf"), -1, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = Path(checkpoint) if checkpoint is not None else None
    stopped = False
    if ckpt is not None and resume and ckpt.exists():
        st = torch.load(ckpt, map_location=device, weights_only=False)
        if st["config"] != cfg.to_dict():
            raise InputError(
                f"checkpoint {ckpt} was written with another configuration", file=str(ckpt), parameter="config"
            )
        if st.get("source", src.describe()) != src.describe():
            raise InputError(
                f"checkpoint {ckpt} was written for other training data ({st['source']}, now {src.describe()})",
                file=str(ckpt),
                parameter="data",
            )
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        best_state = st["best_state"]
        history, start, best, best_epoch, bad = st["history"], st["epoch"] + 1, st["best"], st["best_epoch"], st["bad"]
        stopped = st["stopped"]
        _set_rng_state(gen, st["rng"])
    model.train()
    for epoch in range(start, cfg.epochs):
        if stopped:
            break
        beta = _beta(cfg, epoch)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, epoch) * group.get("lr_mult", 1.0)
        tot, nb = 0.0, 0
        for fb, ib in src.train_batches(epoch, gen):
            loss = _loss(model, fb, ib, beta, gen, amp)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * fb.shape[0]
            nb += fb.shape[0]
        val = src.val_loss(model, cfg.beta, amp)
        rec = {
            "epoch": float(epoch),
            "beta": beta,
            "lr": learning_rate(cfg, epoch),
            "train_loss": tot / max(nb, 1),
            "val_loss": val,
        }
        history.append(rec)
        if epoch + 1 >= cfg.kl_warmup_epochs:  # compare only losses at full β
            if val < best - cfg.min_delta:
                best, best_epoch, bad = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
                stopped = bad >= cfg.patience
        else:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best_epoch = epoch
        if ckpt is not None:
            state = {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "best_state": best_state,
                "history": history,
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad": bad,
                "stopped": stopped,
                "rng": _rng_state(gen),
                "source": src.describe(),
            }
            with atomic_output(ckpt) as tmp:
                torch.save(state, tmp)
        if progress is not None:
            progress(epoch + 1, cfg.epochs)
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, cfg, history, best_epoch, stopped, str(device))
