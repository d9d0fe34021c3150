"""The VAE anomaly detector with scikit-learn's outlier-detector contract.

``VAEAnomalyDetector`` follows ``sklearn.ensemble.IsolationForest``: ``__init__`` only
stores hyperparameters, ``fit`` returns ``self``, learned state ends in ``_``,
``score_samples`` is *higher = more normal* (it is ``-ENSEMBLE``), ``decision_function``
is ``score_samples - offset_`` and ``predict`` returns +1 (inlier) / −1 (outlier).

``X`` is a :class:`~desilab.anomalies.preprocess.Preprocessed` set, or an array of shape
(n, 2, npix) stacking normalised flux and ivar (what scikit-learn tools can pass around).
Conformal calibration (:meth:`calibrate`) and p-values (:meth:`pvalues`) use held-out
normal spectra, per S/N × redshift bin (:class:`~desilab.anomalies.score.BinnedConformal`).
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from desilab.anomalies.model import SpectrumVAE, kl_divergence
from desilab.anomalies.preprocess import Preprocessed
from desilab.anomalies.score import BinnedConformal, TailReference
from desilab.anomalies.stream import ShardStream, fit_detector, score_stream
from desilab.anomalies.train import TrainConfig, pick_device, train_vae
from desilab.errors import FormatError, InputError

__all__ = [
    "COMPONENTS",
    "ENSEMBLE_MEMBERS",
    "HIGHPASS_WIDTHS",
    "SCAN_LABELS",
    "SCAN_WIDTHS",
    "SHAPE_WIDTHS",
    "Scores",
    "VAEAnomalyDetector",
    "all_scans",
    "as_arrays",
    "highpass_residual",
    "residual_scan",
    "shape_scan",
    "tail_standardiser",
]

COMPONENTS = ("CHI2_PIX", "SCAN", "ELBO", "IFOREST", "ENSEMBLE")
_SIGN = {"CHI2_PIX": 1.0, "SCAN": 1.0, "ELBO": -1.0, "IFOREST": -1.0}  # × sign = "higher = more anomalous"
ENSEMBLE_MEMBERS = ("SCAN", "IFOREST")
"""Components whose maximum on the tail-probability scale is the ENSEMBLE score.

CHI2_PIX and ELBO are published with their own p-values but are not members: on the
small-scale validation every injected class they detect in the far tail is detected
there by SCAN too (its widest boxes are local χ² sums), while their own tails add false
alarms — with them the ensemble's overall ROC AUC was 0.937 and its mean recall at
FDR 5% 0.50, without them 0.948 and 0.57 (same model, docs/anomalies.md)."""
SCAN_WIDTHS = (1, 3, 9, 27, 81, 243)
"""Box widths [rest pixels, 173 km/s each] of the matched-filter scan ``SCAN``: a hot pixel
(1), an 8600 Å artefact or dead column (1–9), a shifted or split line core (9–27), a BAL
trough 2,000–20,000 km/s (12–115), a vanished broad line or stellar light (81–243)."""


HIGHPASS_WIDTHS = (1, 3)
"""Box widths [pixels] scanned on the high-pass residual in noise units (narrow artefacts)."""
HIGHPASS_HALF = 6
"""Half-width [pixels] of the side band whose mean the high-pass residual subtracts."""
SHAPE_WIDTHS = (3, 9, 27, 81, 243)
"""Box widths [pixels] of the shape scan: a box minus the mean of its two neighbours (:func:`shape_scan`)."""
SCAN_LABELS = (
    tuple(f"box{w}" for w in SCAN_WIDTHS)
    + tuple(f"hp{w}" for w in HIGHPASS_WIDTHS)
    + tuple(f"dob{w}" for w in SHAPE_WIDTHS)
)
"""Names of the scan statistics, in the order of ``Scores.scan_kind`` indices."""
SCAN_QUANTILE = 0.98
"""Quantile of the training spectra's |box statistic| that normalises each scan position."""
SCAN_FIT_MAX = 3000
"""Most training spectra used to set the scan normalisation."""


def _scan_stride(width: int) -> int:
    return max(1, width // 3)


CROP_ALIGN = math.lcm(*(_scan_stride(w) for w in SCAN_WIDTHS + HIGHPASS_WIDTHS))
"""Crops of the grid start at multiples of this (every scan stride divides it)."""


def _cumsum0(x: torch.Tensor) -> torch.Tensor:
    """(n, L) → (n, L + 1) cumulative sums with a leading 0."""
    return torch.nn.functional.pad(torch.cumsum(x, dim=1), (1, 0))


def _edge_padded(c: torch.Tensor, half: int) -> torch.Tensor:
    """A :func:`_cumsum0` array extended by *half* copies of its end values on each side."""
    return torch.cat([c[:, :1].expand(-1, half), c, c[:, -1:].expand(-1, half)], dim=1)


def _window_sums(cp: torch.Tensor, a: int, half: int) -> torch.Tensor:
    """Sums over [j − a, j + a] (clipped to the array), a ≤ half, from an :func:`_edge_padded` array."""
    length = cp.shape[1] - 1 - 2 * half
    return cp[:, half + a + 1 : half + a + 1 + length] - cp[:, half - a : half - a + length]


def _box(c: torch.Tensor, w: int, st: int) -> torch.Tensor:
    """Box sums of width *w* at starts 0, st, 2 st, … from a :func:`_cumsum0` array."""
    npix = c.shape[1] - 1
    return c[:, w : npix + 1 : st] - c[:, 0 : npix - w + 1 : st]


def residual_scan(
    r: torch.Tensor,
    used: torch.Tensor,
    widths: tuple[int, ...] = SCAN_WIDTHS,
    inv_sigma: list[torch.Tensor] | None = None,
    reduce: bool = True,
    offset: int = 0,
    _cache: dict[Any, torch.Tensor] | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Matched-filter scan of normalised residuals: boxes of several widths at every position.

    For width ``w`` and start pixel ``j``, ``S_w(j) = Σ r_k / √N`` over the ``N`` used pixels
    of the box (boxes less than half used are skipped), multiplied by ``inv_sigma[w](j)``,
    the inverse of the training spectra's 98th percentile of ``|S_w(j)|`` (residuals of
    neighbouring pixels are correlated where the model is imperfect — line cores — so a
    pure-noise normalisation would let those regions dominate every wide box). Both signs
    count: troughs, vanished lines and dead columns are negative, hot pixels and artefacts
    positive. A global χ²/pixel dilutes a 20-pixel trough among ~2000 pixels; this keeps it
    visible. Starts are every ``max(1, w // 3)`` pixels (a box-shaped feature keeps ≥ 5/6 of
    its matched-filter signal; the wide widths cost a fraction of the narrow ones).

    Parameters
    ----------
    r
        (n, npix) residual / σ, 0 where unused.
    used
        (n, npix) 1 where the pixel enters the likelihood, else 0 (same dtype as *r*).
    widths
        Box widths [pixels].
    inv_sigma
        Per width, (n_positions of the full grid,) weights (None = 1).
    reduce
        Return the (n, len(widths)) maximum of ``|S_w|`` over positions; otherwise the
        list of (n, n_positions) signed statistics (0 where skipped).
    offset
        Grid pixel of ``r[:, 0]`` when *r* is a crop of the grid (a multiple of every stride),
        used to pick the matching *inv_sigma* entries.

    Returns
    -------
    torch.Tensor or list of torch.Tensor
    """
    cache = {} if _cache is None else _cache  # counts and 1/√N factors, shared between scans of one batch
    if "cn" not in cache:
        cache["cn"] = _cumsum0(used)
    cs = _cumsum0(r) if any(w > 1 for w in widths) else r
    out = []
    for w in widths:
        st = _scan_stride(w)
        if w == 1:
            stat = r  # one used pixel per box, 0 where unused
        else:
            if w not in cache:
                n = _box(cache["cn"], w, st)
                cache[w] = torch.rsqrt(n.clamp(min=1.0)) * (n >= w / 2)
            stat = _box(cs, w, st) * cache[w]
        out.append(stat)
    return _weigh_and_reduce(out, widths, inv_sigma, reduce, offset)


def _weigh_and_reduce(
    stats: list[torch.Tensor],
    widths: tuple[int, ...],
    inv_sigma: list[torch.Tensor] | None,
    reduce: bool,
    offset: int,
) -> torch.Tensor | list[torch.Tensor]:
    """Scan statistics times their per-position weights; with *reduce*, the (n, len) max of ``|stat|``."""
    out = []
    for k, (stat, w) in enumerate(zip(stats, widths, strict=True)):
        if inv_sigma is not None:
            st = _scan_stride(w)
            stat = stat * inv_sigma[k][offset // st : offset // st + stat.shape[1]]
        out.append(torch.maximum(stat.amax(dim=1), -stat.amin(dim=1)) if reduce else stat)
    return torch.stack(out, dim=1) if reduce else out


def highpass_residual(
    resid: torch.Tensor,
    used: torch.Tensor,
    ivar: torch.Tensor,
    half: int = HIGHPASS_HALF,
    cn: torch.Tensor | None = None,
) -> torch.Tensor:
    """Residual minus the mean of its side band, in units of the *noise* alone.

    For pixel j the side band is [j − half, j + half] without [j − 1, j + 1]. The smooth part
    of a reconstruction error (what the model-error term absorbs) cancels, so a 1–3 pixel
    spike — a cosmic ray, a sky residual, the 8600 Å artefact — is measured against the
    photon noise only, at any S/N, instead of against noise + model error.

    Parameters
    ----------
    resid
        (n, npix) flux − reconstruction.
    used
        (n, npix) 1 where used, else 0.
    ivar
        (n, npix) inverse noise variance.
    half
        Half-width of the side band [pixels].
    cn
        ``_cumsum0(used)`` when already computed.

    Returns
    -------
    torch.Tensor
        (n, npix) high-pass residual × √ivar, 0 where unused or the side band has < 4 pixels.
    """
    cr = _edge_padded(_cumsum0(resid * used), half)
    cn = _edge_padded(_cumsum0(used) if cn is None else cn, half)
    side_n = _window_sums(cn, half, half) - _window_sums(cn, 1, half)
    side_mean = (_window_sums(cr, half, half) - _window_sums(cr, 1, half)) / side_n.clamp(min=1.0)
    return (resid - side_mean) * torch.sqrt(ivar) * ((side_n >= 4) * used)


def shape_scan(box: torch.Tensor, valid: torch.Tensor, width: int) -> torch.Tensor:
    """Difference-of-boxes statistic: each box minus the mean of its two neighbours one width away.

    ``D_w(j) = [S_w(j) − (S_w(j − w) + S_w(j + w)) / 2] / √1.5`` (unit variance for white
    residuals), 0 where any of the three boxes is skipped or missing. A change of line
    *shape* leaves this signature: a broad line split in two peaks 2,000–6,000 km/s apart
    (a central deficit between two excesses), the edge of a trough, a vanished line whose
    continuum on either side is still fitted. A plain box sum at the same place also meets
    the commonest model error of normal spectra, a broad line reconstructed too strong or
    too weak as a whole, which moves a box and its neighbours inside the line together and
    so largely cancels here. Normalised per position on the training spectra like every
    scan (docs/anomalies.md: double-peaked AUC 0.80 → 0.83, vanishing lines 0.78 → 0.83).

    Parameters
    ----------
    box
        (n, n_positions) signed box statistics ``S_w`` at starts every ``max(1, w // 3)`` pixels.
    valid
        (n, n_positions) True where the box is not skipped.
    width
        Box width ``w`` [pixels] (a multiple of its stride, so the neighbours lie on the same starts).

    Returns
    -------
    torch.Tensor
        (n, n_positions) ``D_w``.
    """
    k = width // _scan_stride(width)
    n = box.shape[1]
    if n <= 2 * k:
        return torch.zeros_like(box)
    ok = valid[:, k : n - k] & valid[:, : n - 2 * k] & valid[:, 2 * k :]
    d = (box[:, k : n - k] - 0.5 * (box[:, : n - 2 * k] + box[:, 2 * k :])) * ok * (1.0 / math.sqrt(1.5))
    return torch.nn.functional.pad(d, (k, k))


def all_scans(
    r: torch.Tensor,
    used: torch.Tensor,
    r_hp: torch.Tensor,
    inv_sigma: list[torch.Tensor] | None = None,
    reduce: bool = True,
    offset: int = 0,
    cn: torch.Tensor | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Every scan of :data:`SCAN_LABELS`: box scans of *r* at :data:`SCAN_WIDTHS`, of the high-pass
    *r_hp* at :data:`HIGHPASS_WIDTHS`, and shape scans (:func:`shape_scan`) of *r* at :data:`SHAPE_WIDTHS`.

    Arguments and result as :func:`residual_scan` (*inv_sigma*: one weight array per label).
    """
    cache: dict[Any, torch.Tensor] = {} if cn is None else {"cn": cn}
    a = residual_scan(r, used, SCAN_WIDTHS, None, False, offset, cache)
    b = residual_scan(r_hp, used, HIGHPASS_WIDTHS, None, False, offset, cache)
    assert isinstance(a, list) and isinstance(b, list)
    boxes = dict(zip(SCAN_WIDTHS, a, strict=True))
    c = [shape_scan(boxes[w], cache[w] > 0, w) for w in SHAPE_WIDTHS]
    return _weigh_and_reduce(a + b + c, SCAN_WIDTHS + HIGHPASS_WIDTHS + SHAPE_WIDTHS, inv_sigma, reduce, offset)


def tail_standardiser(x: np.ndarray, q: float = 0.99) -> tuple[float, float]:
    """Median of *x* and the distance from it to the *q* quantile (finite values; floored at 1e-12).

    ``(x - median) / spread`` puts the training set's 99th percentile at 1 for every scan
    statistic, so the maximum over scans that makes ``SCAN`` compares them in the tail (a
    median/MAD scaling would compare them in the core, and a heavy-tailed scan would
    dominate the maximum). The ensemble uses a finer scale, the whole tail probability
    (:class:`~desilab.anomalies.score.TailReference`).
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    med = float(np.median(x))
    return med, max(float(np.quantile(x, q)) - med, 1e-12)


def as_arrays(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flux, ivar) float32 arrays from a Preprocessed set or an (n, 2, npix) array."""
    if isinstance(X, Preprocessed):
        return np.asarray(X.flux, dtype=np.float32), np.asarray(X.ivar, dtype=np.float32)
    a = np.asarray(X, dtype=np.float32)
    if a.ndim != 3 or a.shape[1] != 2:
        raise InputError(f"X must be Preprocessed or shaped (n, 2, npix), got {a.shape}", parameter="X")
    return a[:, 0], a[:, 1]


@dataclass
class Scores:
    """Per-spectrum scores (see :mod:`desilab.anomalies.score` for signs)."""

    chi2_pix: np.ndarray
    scan: np.ndarray
    elbo: np.ndarray
    iforest: np.ndarray
    ensemble: np.ndarray
    latent: np.ndarray
    npix_used: np.ndarray
    scan_kind: np.ndarray | None = None
    resid2: np.ndarray | None = None
    recon: np.ndarray | None = None

    def component(self, name: str) -> np.ndarray:
        """Score *name* of :data:`COMPONENTS`."""
        return {
            "CHI2_PIX": self.chi2_pix,
            "SCAN": self.scan,
            "ELBO": self.elbo,
            "IFOREST": self.iforest,
            "ENSEMBLE": self.ensemble,
        }[name]

    def anomaly(self, name: str) -> np.ndarray:
        """Score *name* in the "higher = more anomalous" direction (for p-values)."""
        return self.ensemble if name == "ENSEMBLE" else _SIGN[name] * self.component(name)


class VAEAnomalyDetector(OutlierMixin, BaseEstimator):
    """Convolutional-VAE outlier detector for rest-frame quasar spectra.

    Parameters
    ----------
    latent_dim, hidden, epochs, batch_size, lr, kl_warmup_epochs, patience, sigma_floor
        Training hyperparameters (:class:`~desilab.anomalies.train.TrainConfig`).
    contamination
        Fraction of training spectra above the ``predict`` threshold.
    n_estimators
        Trees of the latent-space Isolation Forest.
    random_state
        Seed of every draw.
    threads
        Torch CPU threads.
    device
        ``auto``, ``cpu`` or ``cuda``.
    checkpoint
        Optional checkpoint file (training resumes from it).
    """

    def __init__(
        self,
        latent_dim: int = 128,
        hidden: int = 256,
        epochs: int = 60,
        batch_size: int = 64,
        lr: float = 1e-3,
        kl_warmup_epochs: int = 10,
        patience: int = 8,
        sigma_floor: float = 0.005,
        contamination: float = 0.01,
        n_estimators: int = 200,
        random_state: int = 0,
        threads: int = 2,
        device: str = "auto",
        checkpoint: str | None = None,
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.kl_warmup_epochs = kl_warmup_epochs
        self.patience = patience
        self.sigma_floor = sigma_floor
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.threads = threads
        self.device = device
        self.checkpoint = checkpoint

    def _config(self) -> TrainConfig:
        return TrainConfig(
            latent_dim=self.latent_dim,
            hidden=self.hidden,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            kl_warmup_epochs=self.kl_warmup_epochs,
            patience=self.patience,
            sigma_floor=self.sigma_floor,
            seed=self.random_state,
            threads=self.threads,
            device=self.device,
        )

    def fit(self, X: Any, y: Any = None, progress: Any = None) -> VAEAnomalyDetector:
        """Train the VAE on normal spectra, then the scan weights, the latent Isolation Forest and the ensemble scaling.

        Everything after the VAE is fitted on the same training spectra (never on the
        calibration set, which must stay exchangeable with the spectra scored later).

        Returns
        -------
        self
        """
        if isinstance(X, ShardStream):  # from the on-disk cache, in bounded memory
            return fit_detector(self, X, progress)
        flux, ivar = as_arrays(X)
        pre = X if isinstance(X, Preprocessed) else _wrap(flux, ivar)
        self._adopt(train_vae(pre, self._config(), checkpoint=self.checkpoint, progress=progress), flux.shape[1])
        valid = np.asarray(pre.valid, dtype=bool)
        self._fit_scores(flux[valid], ivar[valid])
        self.n_train_ = int(valid.sum())
        return self

    def _adopt(self, res: Any, n_features: int) -> None:
        """Keep a :func:`~desilab.anomalies.train.train_vae` result for *n_features*-pixel spectra."""
        self.model_ = res.model.cpu()
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.train_device_ = res.device
        self.n_features_in_ = int(n_features)

    def _fit_scores(self, flux: np.ndarray, ivar: np.ndarray, raw: Any = None) -> None:
        """Model-error term, scan weights, Isolation Forest and standardisation from (normal) training spectra.

        *raw*: a callable giving ``_vae_scores`` of all training spectra, when *flux*, *ivar* are only their subsample.
        """
        self._fit_model_error(flux, ivar)
        self.scan_inv_sigma_ = self._scan_weights(flux, ivar)
        raw = self._vae_scores(flux, ivar) if raw is None else raw()
        self.scan_standardise_ = np.array([tail_standardiser(raw["scan_w"][:, k]) for k in range(len(SCAN_LABELS))])
        lat = raw["latent"]
        self.iforest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state)
        self.iforest_.fit(lat)
        comps = {
            "CHI2_PIX": raw["chi2_pix"],
            "SCAN": self._scan_combine(raw["scan_w"])[0],
            "ELBO": raw["elbo"],
            "IFOREST": self.iforest_.score_samples(lat),
        }
        self.tail_ = {k: TailReference().fit(_SIGN[k] * comps[k]) for k in ENSEMBLE_MEMBERS}
        ens = self._ensemble(comps)
        self.offset_ = float(np.quantile(-ens, self.contamination))

    @torch.inference_mode()
    def _fit_model_error(self, flux: np.ndarray, ivar: np.ndarray, batch: int = 512) -> None:
        """Per pixel, the model-error amplitude s_j that makes the mean χ² of the training spectra 1.

        Solves ``mean_i (f_ij − recon_ij)² / (1/ivar_ij + s_j²) = 1`` over the training spectra
        covering pixel j (mean-latent reconstructions, as scoring uses), by bisection in
        log s_j on [sigma_floor, 10]; pixels already at χ² ≤ 1 with the floor keep the floor,
        pixels covered by fewer than 20 spectra take the median amplitude. This is the
        "model-error floor" of the likelihood, measured rather than guessed.
        """
        step = max(1, flux.shape[0] // SCAN_FIT_MAX)
        flux, ivar = flux[::step], ivar[::step]
        floor = float(self.model_.sigma_floor)
        res2, var = [], []
        for i in range(0, flux.shape[0], batch):
            f = torch.from_numpy(np.ascontiguousarray(flux[i : i + batch], dtype=np.float32))
            iv = torch.from_numpy(np.ascontiguousarray(ivar[i : i + batch], dtype=np.float32))
            recon, _, _ = self.model_.cpu()(f, iv, sample=False)
            used = iv > 0
            res2.append(torch.where(used, (f - recon) ** 2, torch.nan))
            var.append(torch.where(used, 1.0 / torch.where(used, iv, torch.ones_like(iv)), torch.nan))
        r2, v = torch.cat(res2).double(), torch.cat(var).double()
        cnt = torch.isfinite(r2).sum(dim=0)

        def mean_chi2(s: torch.Tensor) -> torch.Tensor:
            return torch.nanmean(r2 / (v + s[None, :] ** 2), dim=0)

        lo = torch.full((r2.shape[1],), np.log(floor), dtype=torch.float64)
        hi = torch.full_like(lo, np.log(10.0))
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            above = mean_chi2(torch.exp(mid)) > 1.0
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        s = torch.exp(hi)
        s = torch.where(mean_chi2(torch.full_like(s, floor)) <= 1.0, torch.full_like(s, floor), s)
        ok = cnt >= 20
        s = torch.where(ok, s, torch.median(s[ok]) if ok.any() else torch.full_like(s, floor))
        # model_sigma() = exp(sigma_log) + floor
        self.model_.sigma_log.copy_(torch.log((s - floor).clamp(min=1e-6)).float())

    def _scan_weights(self, flux: np.ndarray, ivar: np.ndarray, batch: int = 256) -> list[np.ndarray]:
        """Per width and position, 1 / the ``SCAN_QUANTILE`` quantile of ``|S_w(j)|`` over training spectra.

        A quantile, not an RMS: next to the Lyα forest mask (1206–1216 Å) or at a narrow
        line the residuals of *normal* spectra are heavy-tailed, and it is their tail that
        a maximum over positions meets. At most ``SCAN_FIT_MAX`` training spectra (evenly
        spaced) are used; positions covered by fewer than 50 take the width's overall quantile.
        """
        step = max(1, flux.shape[0] // SCAN_FIT_MAX)
        flux, ivar = flux[::step], ivar[::step]
        parts: list[list[np.ndarray]] = [[] for _ in SCAN_LABELS]
        for i in range(0, flux.shape[0], batch):
            r, used, r_hp, *_ = self._forward(flux[i : i + batch], ivar[i : i + batch])  # full grid
            for k, st in enumerate(all_scans(r, used, r_hp, reduce=False)):
                parts[k].append(st.abs().numpy())
        torch.set_num_threads(self.threads)
        out = []
        for chunks in parts:
            a = np.concatenate(chunks)
            a[a == 0] = np.nan  # skipped boxes
            cnt = np.isfinite(a).sum(axis=0)
            glob = float(np.nanquantile(a, SCAN_QUANTILE))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN positions
                qpos = np.nanquantile(a, SCAN_QUANTILE, axis=0)
            scale = np.where(cnt >= 50, qpos, glob)
            out.append((1.0 / np.maximum(np.nan_to_num(scale, nan=glob), 1e-6)).astype(np.float32))
        return out

    def _scan_combine(self, scan_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SCAN = max over scans of the tail-standardised per-scan maxima, and the index (SCAN_LABELS) of that scan."""
        med, spread = self.scan_standardise_[:, 0], self.scan_standardise_[:, 1]
        z = (scan_w - med[None, :]) / spread[None, :]
        k = np.argmax(z, axis=1)
        return z[np.arange(z.shape[0]), k], k.astype(np.int16)

    def _ensemble(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        """Maximum over :data:`ENSEMBLE_MEMBERS` of ``−log`` (tail probability among the training spectra).

        Each member is put on one distribution-free scale first (:class:`~desilab.anomalies.score.TailReference`:
        ranks among the training spectra, an exponential tail beyond them), so the maximum
        compares the members where detection happens — far in the tail — whatever the shape
        of their distributions. (A scaling that matched the members at one quantile let the
        heaviest-tailed member set the ensemble's extreme tail, where BH operates, and the
        bounded IFOREST could never get there.) A maximum, not a mean: an anomaly usually
        shows in one member (a hot pixel in SCAN, an odd latent in IFOREST), and a mean or a
        Fisher sum dilutes it (measured: mean recall at FDR 5% 0.48 with the sum, 0.57 with
        the maximum). These tail probabilities are a scale, not the published p-values: the
        ENSEMBLE p-value comes from its own conformal calibration on held-out spectra.
        """
        zs = [self.tail_[k].neg_log_p(_SIGN[k] * comps[k]) for k in ENSEMBLE_MEMBERS]
        return np.max(zs, axis=0)

    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return pick_device(self.device)

    @torch.inference_mode()
    def _forward(self, flux: np.ndarray, ivar: np.ndarray, crop: bool = False) -> tuple[Any, ...]:
        """Reconstruct and form the residuals of one batch.

        Returns r = (f − recon)/σ_tot (0 where unused), the used mask, the high-pass residual
        (:func:`highpass_residual`), ivar_tot, recon, mu, logvar and the first grid pixel of
        the per-pixel arrays. With *crop* those arrays are cut to the columns the batch's
        spectra cover, plus the widest box on each side (a box half inside the coverage
        counts), aligned to :data:`CROP_ALIGN` on the blue side: a spectrum covers ~1850 of
        the 4000 rest pixels, and the rest of the row is zeros that every scan would
        otherwise sweep.
        """
        dev = self._device()
        model = self.model_
        if next(model.parameters()).device != dev:
            model.to(dev)
        model.eval()
        f = torch.from_numpy(np.ascontiguousarray(flux, dtype=np.float32)).to(dev)
        iv = torch.from_numpy(np.ascontiguousarray(ivar, dtype=np.float32)).to(dev)
        torch.set_num_threads(self.threads)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            recon, mu, logvar = model(f, iv, sample=False)
        # The element-wise residual and scan work below runs on one thread: it is memory-bound
        # (little to gain from a second thread) and made of ~100 short parallel regions, each
        # of which waits for the slowest thread — on a shared 2-core machine (load 5) two
        # threads scored 198 spectra/s and one thread 1169/s (bench/anomalies.py).
        torch.set_num_threads(1)
        recon, mu, logvar = recon.float(), mu.float(), logvar.float()
        s2 = model.model_sigma() ** 2
        c0 = 0
        if crop:
            cols = np.flatnonzero((ivar > 0).any(axis=0))
            if cols.size:
                c0 = max(0, (int(cols[0]) - max(SCAN_WIDTHS)) // CROP_ALIGN * CROP_ALIGN)
                # boxes at least half used reach up to a box width past the last used pixel
                c1 = min(flux.shape[1], int(cols[-1]) + 1 + max(SCAN_WIDTHS))
                f, iv, recon, s2 = f[:, c0:c1], iv[:, c0:c1], recon[:, c0:c1], s2[c0:c1]
        # 1/(1/ivar + s²) written so that ivar = 0 gives 0 without a division by zero
        ivt = iv / (1.0 + iv * s2)
        resid = f - recon
        r = resid * torch.sqrt(ivt)
        used = (iv > 0).to(r.dtype)
        cn = _cumsum0(used)
        r_hp = highpass_residual(resid, used, iv, cn=cn)
        return r, used, r_hp, ivt, recon, mu, logvar, c0, cn

    @torch.inference_mode()
    def _vae_scores(self, flux: np.ndarray, ivar: np.ndarray, batch: int = 256, keep_resid: bool = False) -> dict:
        """Raw per-spectrum quantities in batches: latent, χ²/pixel, ELBO/pixel, per-scan maxima.

        Spectra are taken in order of their first used pixel (≈ redshift) so that each batch
        can be cropped to a narrow band of the grid (:meth:`_forward`); results come back
        in the input order.
        """
        torch.set_num_threads(self.threads)
        inv_sig = [torch.from_numpy(a) for a in self.scan_inv_sigma_] if hasattr(self, "scan_inv_sigma_") else None
        n = flux.shape[0]
        npix = flux.shape[1]
        first = np.where((ivar > 0).any(axis=1), np.argmax(ivar > 0, axis=1), npix)
        order = np.argsort(first, kind="stable")
        out: dict[str, Any] = {
            "latent": np.zeros((n, self.model_.latent_dim), np.float32),
            "chi2_pix": np.zeros(n),
            "elbo": np.zeros(n),
            "npix": np.zeros(n, np.float32),
            "scan_w": np.zeros((n, len(SCAN_LABELS))),
            "resid2": np.zeros((n, npix), np.float32) if keep_resid else None,
            "recon": np.zeros((n, npix), np.float32) if keep_resid else None,
        }
        log2pi = float(np.log(2 * np.pi))
        for i in range(0, n, batch):
            rows = order[i : i + batch]
            r, used, r_hp, ivt, recon, mu, logvar, c0, cn = self._forward(flux[rows], ivar[rows], crop=True)
            if inv_sig is not None and inv_sig[0].device != r.device:
                inv_sig = [a.to(r.device) for a in inv_sig]
            r2 = r * r
            chi2 = r2.sum(dim=1)
            npx = used.sum(dim=1)
            # log-likelihood: −½ Σ_used [r² + log 2π − log ivar_tot]
            logdet = torch.log(ivt + (1.0 - used)).sum(dim=1)
            loglik = -0.5 * (chi2 + log2pi * npx - logdet)
            kl = kl_divergence(mu, logvar)
            npx_c = npx.clamp(min=1.0)
            out["latent"][rows] = mu.cpu().numpy()
            out["chi2_pix"][rows] = (chi2 / npx_c).cpu().numpy()
            out["elbo"][rows] = ((loglik - kl) / npx_c).cpu().numpy()
            out["npix"][rows] = npx.cpu().numpy()
            out["scan_w"][rows] = all_scans(r, used, r_hp, inv_sigma=inv_sig, offset=c0, cn=cn).cpu().numpy()
            if keep_resid:
                out["resid2"][rows, c0 : c0 + r.shape[1]] = r2.cpu().numpy()
                out["recon"][rows, c0 : c0 + r.shape[1]] = recon.cpu().numpy()
        torch.set_num_threads(self.threads)
        return out

    def score(self, X: Any, keep_resid: bool = False) -> Scores:
        """Every score component for *X* (named ``score`` after no sklearn method; see :meth:`score_samples`)."""
        check_is_fitted(self, "model_")
        if isinstance(X, ShardStream):  # shard by shard; rows in cache order
            return score_stream(self, X, keep_resid)
        flux, ivar = as_arrays(X)
        raw = self._vae_scores(flux, ivar, keep_resid=keep_resid)
        lat = raw["latent"]
        ifs = self.iforest_.score_samples(lat)
        scan, width = self._scan_combine(raw["scan_w"])
        chi2, elbo = raw["chi2_pix"], raw["elbo"]
        ens = self._ensemble({"CHI2_PIX": chi2, "SCAN": scan, "ELBO": elbo, "IFOREST": ifs})
        # spectra with no usable pixel cannot be scored
        bad = raw["npix"] <= 0
        for a in (chi2, scan, elbo, ifs, ens):
            a[bad] = np.nan
        return Scores(chi2, scan, elbo, ifs, ens, lat, raw["npix"], width, raw["resid2"], raw["recon"])

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality score: ``-ENSEMBLE`` (higher = more normal)."""
        return -self.score(X).ensemble

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples - offset_`` (negative = outlier)."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, −1 for outliers (threshold at the training ``contamination`` quantile)."""
        d = self.decision_function(X)
        return np.where(d < 0, -1, 1)

    def calibrate(self, X: Preprocessed, n_snr: int = 3, n_z: int = 3, min_per_bin: int = 50) -> VAEAnomalyDetector:
        """Fit per-component conformal calibrations on held-out *normal* spectra (returns self)."""
        check_is_fitted(self, "model_")
        s = self.score(X)
        snr, z = np.asarray(X.snr), np.asarray(X.z)
        self.calibration_ = {k: BinnedConformal(n_snr, n_z, min_per_bin).fit(s.anomaly(k), snr, z) for k in COMPONENTS}
        return self

    def pvalues(self, scores: Scores, snr: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
        """Conformal p-value of every component (each against its own calibration)."""
        check_is_fitted(self, "calibration_")
        return {k: self.calibration_[k].pvalues(scores.anomaly(k), snr, z) for k in COMPONENTS}

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the fitted detector to a folder: ``model.pt``, ``detector.npz``, ``config.json``."""
        import pickle

        from desilab.io.fits import atomic_output

        check_is_fitted(self, "model_")
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_output(d / "model.pt") as tmp:
            torch.save(self.model_.state_dict(), tmp)
        buf = io.BytesIO()
        pickle.dump(self.iforest_, buf)
        arrays: dict[str, np.ndarray] = {
            "iforest": np.frombuffer(buf.getvalue(), dtype=np.uint8),
            "scan_standardise": self.scan_standardise_,
            **{f"scan_inv_sigma_{k}": v for k, v in enumerate(self.scan_inv_sigma_)},
            **{f"tail_{k}__{kk}": v for k, t in self.tail_.items() for kk, v in t.to_dict().items()},
        }
        for k, cal in getattr(self, "calibration_", {}).items():
            arrays.update({f"{k}__{kk}": v for kk, v in cal.to_dict().items()})
        with atomic_output(d / "detector.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        meta = {
            "params": self.get_params(),
            "offset": self.offset_,
            "n_features_in": self.n_features_in_,
            "n_train": self.n_train_,
            "best_epoch": self.best_epoch_,
            "history": self.history_,
            "train_device": self.train_device_,
            "calibrated": sorted(getattr(self, "calibration_", {})),
        }
        with atomic_output(d / "config.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return d

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VAEAnomalyDetector:
        """Load a detector saved by :meth:`save`."""
        import pickle

        d = Path(path)
        try:
            meta = json.loads((d / "config.json").read_text())
            arrays = dict(np.load(d / "detector.npz"))
            state = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise FormatError(f"cannot load anomaly model: {exc}", file=str(d)) from exc
        det = cls(**meta["params"])
        det.model_ = SpectrumVAE(
            npix=meta["n_features_in"], latent_dim=det.latent_dim, hidden=det.hidden, sigma_floor=det.sigma_floor
        )
        det.model_.load_state_dict(state)
        det.model_.eval()
        try:
            det.iforest_ = pickle.loads(arrays.pop("iforest").tobytes())  # our own file, written by save()
            det.scan_standardise_ = arrays.pop("scan_standardise")
            det.scan_inv_sigma_ = [arrays.pop(f"scan_inv_sigma_{k}") for k in range(len(SCAN_LABELS))]
            det.tail_ = {
                k: TailReference.from_dict({kk: arrays.pop(f"tail_{k}__{kk}") for kk in ("ref", "params")})
                for k in ENSEMBLE_MEMBERS
            }
        except KeyError as exc:
            raise FormatError(
                f"anomaly model lacks {exc}: written by another version of the scores; retrain it",
                file=str(d / "detector.npz"),
            ) from exc
        det.offset_ = meta["offset"]
        det.n_features_in_ = meta["n_features_in"]
        det.n_train_ = meta["n_train"]
        det.best_epoch_ = meta["best_epoch"]
        det.history_ = meta["history"]
        det.train_device_ = meta["train_device"]
        if meta["calibrated"]:
            det.calibration_ = {
                k: BinnedConformal.from_dict(
                    {kk.split("__", 1)[1]: v for kk, v in arrays.items() if kk.startswith(k + "__")}
                )
                for k in meta["calibrated"]
            }
        return det


def _wrap(flux: np.ndarray, ivar: np.ndarray) -> Preprocessed:
    n = flux.shape[0]
    return Preprocessed(
        flux, ivar, np.zeros(n), np.ones(n), np.zeros(n), (ivar > 0).any(axis=1), np.arange(n, dtype=np.int64)
    )
