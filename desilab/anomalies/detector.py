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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from desilab.anomalies.model import SpectrumVAE, gaussian_terms, kl_divergence
from desilab.anomalies.preprocess import Preprocessed
from desilab.anomalies.score import BinnedConformal, robust_standardiser
from desilab.anomalies.train import TrainConfig, pick_device, train_vae
from desilab.errors import FormatError, InputError

__all__ = ["COMPONENTS", "SCAN_WINDOWS", "Scores", "VAEAnomalyDetector", "as_arrays", "scan_statistic"]

COMPONENTS = ("CHI2_PIX", "CHI2_PEAK", "ELBO", "IFOREST", "ENSEMBLE")
_SIGN = {"CHI2_PIX": 1.0, "CHI2_PEAK": 1.0, "ELBO": -1.0, "IFOREST": -1.0}  # × sign = "higher = more anomalous"
SCAN_WINDOWS = (1, 9, 49)
"""Window widths [rest pixels] of the χ² scan statistic ``CHI2_PEAK``."""


def scan_statistic(r2: torch.Tensor, used: torch.Tensor, windows: tuple[int, ...] = SCAN_WINDOWS) -> torch.Tensor:
    """Largest standardised local χ² excess: max over windows and positions of (Σr² − N)/√(2N).

    ``N`` is the number of used pixels in the window (windows less than half used are
    skipped). A χ²/pixel averages a few bad pixels away among ~2000; this statistic keeps
    a hot pixel (w = 1), a narrow feature (9 pixels ≈ 1500 km/s) or a trough (49 ≈ 8500 km/s)
    visible.
    """
    zero = torch.zeros((r2.shape[0], 1), dtype=r2.dtype, device=r2.device)
    cs = torch.cat([zero, torch.cumsum(r2, dim=1)], dim=1)
    cn = torch.cat([zero, torch.cumsum(used, dim=1)], dim=1)
    best = torch.full((r2.shape[0],), -1e30, dtype=r2.dtype, device=r2.device)
    for w in windows:
        if w > r2.shape[1]:
            continue
        s = cs[:, w:] - cs[:, :-w]
        n = cn[:, w:] - cn[:, :-w]
        stat = torch.where(
            n >= max(1.0, w / 2), (s - n) / torch.sqrt(2.0 * n.clamp(min=1.0)), torch.full_like(s, -1e30)
        )
        best = torch.maximum(best, stat.max(dim=1).values)
    return best


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
    chi2_peak: np.ndarray
    elbo: np.ndarray
    iforest: np.ndarray
    ensemble: np.ndarray
    latent: np.ndarray
    npix_used: np.ndarray
    resid2: np.ndarray | None = None
    recon: np.ndarray | None = None

    def component(self, name: str) -> np.ndarray:
        """Score *name* of :data:`COMPONENTS`."""
        return {
            "CHI2_PIX": self.chi2_pix,
            "CHI2_PEAK": self.chi2_peak,
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
        """Train the VAE on normal spectra, then the latent Isolation Forest and the ensemble scaling.

        Returns
        -------
        self
        """
        flux, ivar = as_arrays(X)
        n = flux.shape[0]
        pre = X if isinstance(X, Preprocessed) else _wrap(flux, ivar)
        res = train_vae(pre, self._config(), checkpoint=self.checkpoint, progress=progress)
        self.model_ = res.model.cpu()
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.train_device_ = res.device
        self.n_features_in_ = flux.shape[1]
        valid = np.asarray(pre.valid, dtype=bool)
        lat, chi2, peak, elbo, _npx, _, _ = self._vae_scores(flux[valid], ivar[valid])
        self.iforest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state)
        self.iforest_.fit(lat)
        ifs = self.iforest_.score_samples(lat)
        comps = {"CHI2_PIX": chi2, "CHI2_PEAK": peak, "ELBO": elbo, "IFOREST": ifs}
        self.standardise_ = {k: robust_standardiser(_SIGN[k] * v) for k, v in comps.items()}
        ens = self._ensemble(comps)
        self.offset_ = float(np.quantile(-ens, self.contamination))
        self.n_train_ = int(valid.sum())
        del n
        return self

    def _ensemble(self, comps: dict[str, np.ndarray]) -> np.ndarray:
        zs = [(_SIGN[k] * comps[k] - self.standardise_[k][0]) / self.standardise_[k][1] for k in _SIGN]
        return np.mean(zs, axis=0)

    @torch.no_grad()
    def _vae_scores(
        self, flux: np.ndarray, ivar: np.ndarray, batch: int = 512, keep_resid: bool = False
    ) -> tuple[np.ndarray, ...]:
        torch.set_num_threads(self.threads)
        dev = pick_device(self.device) if self.device != "auto" else torch.device("cpu")
        if self.device == "auto" and torch.cuda.is_available():
            dev = torch.device("cuda")
        model = self.model_.to(dev)
        model.eval()
        sig = model.model_sigma()
        lats, chis, peaks, elbos, npxs, r2s, recs = [], [], [], [], [], [], []
        for i in range(0, flux.shape[0], batch):
            f = torch.from_numpy(np.ascontiguousarray(flux[i : i + batch])).to(dev)
            iv = torch.from_numpy(np.ascontiguousarray(ivar[i : i + batch])).to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                recon, mu, logvar = model(f, iv, sample=False)
            recon, mu, logvar = recon.float(), mu.float(), logvar.float()
            chi2, loglik, npx = gaussian_terms(f, iv, recon, sig)
            kl = kl_divergence(mu, logvar)
            npx_c = npx.clamp(min=1.0)
            lats.append(mu.cpu().numpy())
            chis.append((chi2 / npx_c).cpu().numpy())
            elbos.append(((loglik - kl) / npx_c).cpu().numpy())
            npxs.append(npx.cpu().numpy())
            w = iv > 0
            var = torch.where(w, 1.0 / torch.where(w, iv, torch.ones_like(iv)), torch.ones_like(iv)) + sig**2
            r2 = ((f - recon) ** 2 / var) * w
            peaks.append(scan_statistic(r2.double(), w.double()).cpu().numpy())
            if keep_resid:
                r2s.append(r2.cpu().numpy())
                recs.append(recon.cpu().numpy())
        self.model_.cpu()
        cat = np.concatenate
        return (
            cat(lats),
            cat(chis).astype(np.float64),
            cat(peaks).astype(np.float64),
            cat(elbos).astype(np.float64),
            cat(npxs),
            cat(r2s) if keep_resid else None,
            cat(recs) if keep_resid else None,
        )

    def score(self, X: Any, keep_resid: bool = False) -> Scores:
        """Every score component for *X* (named ``score`` after no sklearn method; see :meth:`score_samples`)."""
        check_is_fitted(self, "model_")
        flux, ivar = as_arrays(X)
        lat, chi2, peak, elbo, npx, r2, rec = self._vae_scores(flux, ivar, keep_resid=keep_resid)
        ifs = self.iforest_.score_samples(lat)
        ens = self._ensemble({"CHI2_PIX": chi2, "CHI2_PEAK": peak, "ELBO": elbo, "IFOREST": ifs})
        # spectra with no usable pixel cannot be scored
        bad = npx <= 0
        for a in (chi2, peak, elbo, ifs, ens):
            a[bad] = np.nan
        return Scores(chi2, peak, elbo, ifs, ens, lat, npx, r2, rec)

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
        arrays: dict[str, np.ndarray] = {"iforest": np.frombuffer(buf.getvalue(), dtype=np.uint8)}
        for k, cal in getattr(self, "calibration_", {}).items():
            arrays.update({f"{k}__{kk}": v for kk, v in cal.to_dict().items()})
        with atomic_output(d / "detector.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        meta = {
            "params": self.get_params(),
            "standardise": self.standardise_,
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
        det.iforest_ = pickle.loads(arrays.pop("iforest").tobytes())  # our own file, written by save()
        det.standardise_ = {k: tuple(v) for k, v in meta["standardise"].items()}
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
