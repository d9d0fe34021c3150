"""Baselines the VAE must beat on the same ROC: PCA reconstruction error, Isolation Forest on raw flux.

Both follow the scikit-learn outlier contract (``score_samples`` higher = more normal)
and take the same inputs as :class:`~desilab.anomalies.detector.VAEAnomalyDetector`.
Missing pixels (``ivar = 0``) are filled with the training mean spectrum before the
projection (PCA) or the trees (Isolation Forest), so both see complete vectors.
The PCA score is the ivar-weighted reconstruction χ² per used pixel, with the same kind of
per-pixel model-error floor as the VAE (the RMS residual of the training set in each
pixel beyond the noise), so the comparison is like for like.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from desilab.anomalies.detector import as_arrays

__all__ = ["IForestRawBaseline", "PCABaseline"]


class _Filled(OutlierMixin, BaseEstimator):
    def _fill(self, flux: np.ndarray, ivar: np.ndarray) -> np.ndarray:
        return np.where(ivar > 0, flux, self.mean_[None, :])

    def _fit_mean(self, flux: np.ndarray, ivar: np.ndarray) -> None:
        w = (ivar > 0).astype(np.float64)
        n = w.sum(axis=0)
        self.mean_ = np.where(n > 0, (flux * w).sum(axis=0) / np.maximum(n, 1), 0.0).astype(np.float32)

    def predict(self, X: Any) -> np.ndarray:
        """+1 inlier / −1 outlier at the training ``contamination`` quantile."""
        return np.where(self.score_samples(X) < self.offset_, -1, 1)


class PCABaseline(_Filled):
    """PCA reconstruction error.

    Parameters
    ----------
    n_components
        Principal components kept.
    contamination
        Fraction of training spectra flagged by ``predict``.
    random_state
        Seed (randomised SVD).
    """

    def __init__(self, n_components: int = 20, contamination: float = 0.01, random_state: int = 0) -> None:
        self.n_components = n_components
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> PCABaseline:
        """Fit the mean, components and per-pixel error floor; returns self."""
        flux, ivar = as_arrays(X)
        self._fit_mean(flux, ivar)
        filled = self._fill(flux, ivar)
        k = min(self.n_components, filled.shape[0] - 1, filled.shape[1])
        self.pca_ = PCA(n_components=k, svd_solver="randomized", random_state=self.random_state).fit(filled)
        rec = self.pca_.inverse_transform(self.pca_.transform(filled))
        w = ivar > 0
        var_noise = np.where(w, 1.0 / np.where(w, ivar, 1.0), 0.0)
        excess = np.where(w, (flux - rec) ** 2 - var_noise, 0.0).sum(axis=0) / np.maximum(w.sum(axis=0), 1)
        self.floor2_ = np.maximum(excess, 0.005**2).astype(np.float32)
        self.offset_ = float(np.quantile(self.score_samples(X), self.contamination))
        return self

    def chi2_per_pixel(self, X: Any) -> np.ndarray:
        """Reconstruction χ² per used pixel (higher = more anomalous)."""
        check_is_fitted(self, "pca_")
        flux, ivar = as_arrays(X)
        rec = self.pca_.inverse_transform(self.pca_.transform(self._fill(flux, ivar)))
        w = ivar > 0
        var = np.where(w, 1.0 / np.where(w, ivar, 1.0), 1.0) + self.floor2_[None, :]
        chi2 = np.where(w, (flux - rec) ** 2 / var, 0.0).sum(axis=1)
        return chi2 / np.maximum(w.sum(axis=1), 1)

    def score_samples(self, X: Any) -> np.ndarray:
        """``-χ²/pixel`` (higher = more normal)."""
        return -self.chi2_per_pixel(X)


class IForestRawBaseline(_Filled):
    """Isolation Forest on the (filled) normalised flux vectors.

    Parameters
    ----------
    n_estimators
        Trees.
    contamination
        Fraction of training spectra flagged by ``predict``.
    random_state
        Seed.
    """

    def __init__(self, n_estimators: int = 200, contamination: float = 0.01, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.contamination = contamination
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> IForestRawBaseline:
        """Fit the fill mean and the forest; returns self."""
        flux, ivar = as_arrays(X)
        self._fit_mean(flux, ivar)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state)
        self.forest_.fit(self._fill(flux, ivar))
        self.offset_ = float(np.quantile(self.score_samples(X), self.contamination))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Isolation Forest normality (higher = more normal)."""
        check_is_fitted(self, "forest_")
        flux, ivar = as_arrays(X)
        return self.forest_.score_samples(self._fill(flux, ivar))
