"""Anomaly scores, conformal p-values per S/N × redshift bin, Benjamini–Hochberg, residual maps.

Sign conventions (every score column of the catalog states its sign, see ``docs/anomalies.md``):

* ``CHI2_PIX`` — reconstruction χ² per used pixel with the model-error term; **higher = more anomalous**.
* ``SCAN`` — matched-filter scan of the normalised residuals (box widths 1–243 pixels, a
  high-pass 1–3 pixel scan and difference-of-boxes shape scans 3–243 pixels, per-position
  normalised on the training spectra, see :func:`desilab.anomalies.detector.all_scans`);
  **higher = more anomalous**.
* ``ELBO`` — evidence lower bound per used pixel; **higher = more normal**.
* ``IFOREST`` — scikit-learn ``IsolationForest.score_samples`` on the latent means;
  **higher = more normal**.
* ``ENSEMBLE`` — maximum over ``SCAN`` and ``IFOREST`` (anomalous-positive) of
  ``−log`` of their tail probability among the *training* spectra (:class:`TailReference`);
  **higher = more anomalous**.
* p-values — small = anomalous.

Conformal p-value of a test score s (anomaly direction) against the calibration scores of
held-out normal spectra in the same bin: ``p = (1 + #{cal ≥ s}) / (n_cal + 1)``. Under
exchangeability with the calibration set this is super-uniform (P(p ≤ t) ≤ t), so BH at
level q controls the false-discovery rate. The ensemble's p-value comes from the ensemble
score's own calibration (not a min-p over components, which would not be valid).
Bins: S/N tertiles × redshift tertiles of the calibration set (redshift fixes which
rest-frame pixels a spectrum covers); a bin with fewer than ``min_per_bin`` calibration
spectra falls back to the pooled calibration set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from desilab.errors import InputError

__all__ = [
    "LINE_REGIONS",
    "BinnedConformal",
    "TailReference",
    "benjamini_hochberg",
    "conformal_pvalues",
    "driving_regions",
    "robust_standardiser",
]


def conformal_pvalues(cal: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Conformal p-values ``(1 + #{cal ≥ s}) / (n_cal + 1)`` (higher score = more anomalous).

    Parameters
    ----------
    cal
        Calibration scores of normal objects (finite).
    test
        Test scores.

    Returns
    -------
    numpy.ndarray
        p-values in (0, 1].
    """
    cal = np.sort(np.asarray(cal, dtype=np.float64))
    if cal.size == 0 or not np.all(np.isfinite(cal)):
        raise InputError("calibration scores must be a non-empty finite array", parameter="cal")
    test = np.asarray(test, dtype=np.float64)
    # NaN test scores (unscoreable spectra) get p = 1: never a discovery
    n_ge = cal.size - np.searchsorted(cal, test, side="left")
    p = (1.0 + n_ge) / (cal.size + 1.0)
    return np.where(np.isnan(test), 1.0, p)


def benjamini_hochberg(p: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini–Hochberg step-up procedure.

    Parameters
    ----------
    p
        p-values.
    q
        Target false-discovery rate.

    Returns
    -------
    reject, qvalues
        Discoveries at level *q*, and BH-adjusted p-values (the smallest q at which each
        object would be a discovery).
    """
    if not 0.0 < q < 1.0:
        raise InputError(f"q must lie in (0, 1), got {q}", parameter="q")
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    if m == 0:
        return np.zeros(0, bool), np.zeros(0)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    qs = np.minimum.accumulate(ranked[::-1])[::-1]
    qvals = np.empty(m)
    qvals[order] = np.minimum(qs, 1.0)
    below = np.nonzero(p[order] <= q * np.arange(1, m + 1) / m)[0]
    reject = np.zeros(m, bool)
    if below.size:
        reject[order[: below[-1] + 1]] = True
    return reject, qvals


@dataclass
class BinnedConformal:
    """Conformal p-values calibrated per S/N × redshift bin.

    Parameters
    ----------
    n_snr, n_z
        Quantile bins in S/N and redshift (edges from the calibration set).
    min_per_bin
        Bins with fewer calibration objects use the pooled set.
    """

    n_snr: int = 3
    n_z: int = 3
    min_per_bin: int = 50
    snr_edges_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    z_edges_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cal_: dict[int, np.ndarray] = field(default_factory=dict)
    pooled_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _bin(self, snr: np.ndarray, z: np.ndarray) -> np.ndarray:
        i = np.clip(np.searchsorted(self.snr_edges_, snr, side="right") - 1, 0, self.n_snr - 1)
        j = np.clip(np.searchsorted(self.z_edges_, z, side="right") - 1, 0, self.n_z - 1)
        return i * self.n_z + j

    def fit(self, scores: np.ndarray, snr: np.ndarray, z: np.ndarray) -> BinnedConformal:
        """Store the calibration scores (higher = more anomalous) by bin."""
        scores, snr, z = (np.asarray(a, dtype=np.float64) for a in (scores, snr, z))
        if not (scores.shape == snr.shape == z.shape):
            raise InputError("scores, snr and z must have one shape", parameter="scores")
        ok = np.isfinite(scores)
        scores, snr, z = scores[ok], snr[ok], z[ok]
        if scores.size < 10:
            raise InputError(f"need at least 10 calibration spectra, got {scores.size}", parameter="scores")
        self.snr_edges_ = np.quantile(snr, np.linspace(0, 1, self.n_snr + 1))
        self.z_edges_ = np.quantile(z, np.linspace(0, 1, self.n_z + 1))
        b = self._bin(snr, z)
        self.cal_ = {k: np.sort(scores[b == k]) for k in range(self.n_snr * self.n_z)}
        self.pooled_ = np.sort(scores)
        return self

    def pvalues(self, scores: np.ndarray, snr: np.ndarray, z: np.ndarray) -> np.ndarray:
        """p-values of test scores, each against its own bin's calibration set."""
        scores, snr, z = (np.asarray(a, dtype=np.float64) for a in (scores, snr, z))
        b = self._bin(snr, z)
        p = np.empty(scores.shape)
        for k, cal in self.cal_.items():
            sel = b == k
            if sel.any():
                p[sel] = conformal_pvalues(cal if cal.size >= self.min_per_bin else self.pooled_, scores[sel])
        return p

    def to_dict(self) -> dict:
        """Arrays for saving (np.savez)."""
        d = {"snr_edges": self.snr_edges_, "z_edges": self.z_edges_, "pooled": self.pooled_}
        d.update({f"cal_{k}": v for k, v in self.cal_.items()})
        d["params"] = np.array([self.n_snr, self.n_z, self.min_per_bin])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BinnedConformal:
        """Inverse of :meth:`to_dict`."""
        n_snr, n_z, mpb = (int(x) for x in d["params"])
        obj = cls(n_snr, n_z, mpb)
        obj.snr_edges_, obj.z_edges_, obj.pooled_ = d["snr_edges"], d["z_edges"], d["pooled"]
        obj.cal_ = {k: d[f"cal_{k}"] for k in range(n_snr * n_z)}
        return obj


@dataclass(eq=False)
class TailReference:
    """Tail probability of a score against a reference sample of normal objects, extrapolated beyond it.

    ``p(s) = (1 + #{ref ≥ s}) / (n + 1)`` inside the sample; above the threshold ``u``
    (the value exceeded by the ``k = max(min_tail, tail_frac · n)`` largest reference
    scores) the exceedances are modelled as exponential with the mean excess of those
    ``k``: ``p(s) = (k + 1)/(n + 1) · exp(−(s − u)/scale)`` (the smaller of the two is
    taken, so ``p`` never increases with ``s``). ``−log p`` puts scores with different
    tails on one scale — the one on which the ensemble takes its maximum. These are *not*
    the published p-values: the reference sample is the training set, and the ensemble
    score built from them is calibrated conformally on held-out spectra like any score.

    Parameters
    ----------
    tail_frac
        Fraction of the reference sample used to fit the exponential tail.
    min_tail
        Fewest reference scores in the tail fit.
    """

    tail_frac: float = 0.02
    min_tail: int = 10
    ref_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    u_: float = 0.0
    scale_: float = 1.0
    k_: int = 0

    def fit(self, scores: np.ndarray) -> TailReference:
        """Store the sorted finite reference scores (higher = more anomalous) and fit the tail."""
        x = np.asarray(scores, dtype=np.float64)
        x = np.sort(x[np.isfinite(x)])
        if x.size < 2 * self.min_tail:
            raise InputError(f"need at least {2 * self.min_tail} reference scores, got {x.size}", parameter="scores")
        k = max(self.min_tail, int(self.tail_frac * x.size))
        self.ref_, self.k_ = x, k
        self.u_ = float(x[x.size - k - 1])
        self.scale_ = max(float(np.mean(x[x.size - k :] - self.u_)), 1e-12)
        return self

    def neg_log_p(self, scores: np.ndarray) -> np.ndarray:
        """``−log p`` of *scores* (NaN stays NaN)."""
        s = np.asarray(scores, dtype=np.float64)
        n = self.ref_.size
        n_ge = n - np.searchsorted(self.ref_, s, side="left")
        lp = np.log((1.0 + n_ge) / (n + 1.0))
        with np.errstate(invalid="ignore"):
            lt = np.log((self.k_ + 1.0) / (n + 1.0)) - (s - self.u_) / self.scale_
            out = -np.where(s > self.u_, np.minimum(lp, lt), lp)
        return np.where(np.isnan(s), np.nan, out)

    def __eq__(self, other: object) -> bool:
        """Equal when fitted to the same reference scores with the same settings."""
        if not isinstance(other, TailReference):
            return NotImplemented
        mine = (self.tail_frac, self.min_tail, self.u_, self.scale_, self.k_)
        theirs = (other.tail_frac, other.min_tail, other.u_, other.scale_, other.k_)
        return mine == theirs and np.array_equal(self.ref_, other.ref_)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict:
        """Arrays for saving (np.savez)."""
        return {"ref": self.ref_, "params": np.array([self.tail_frac, self.min_tail, self.u_, self.scale_, self.k_])}

    @classmethod
    def from_dict(cls, d: dict) -> TailReference:
        """Inverse of :meth:`to_dict`."""
        tail_frac, min_tail, u, scale, k = (float(v) for v in d["params"])
        obj = cls(tail_frac, int(min_tail))
        obj.ref_, obj.u_, obj.scale_, obj.k_ = np.asarray(d["ref"], np.float64), u, scale, int(k)
        return obj


def robust_standardiser(x: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 × MAD of *x* (finite values), MAD floored at 1e-12."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    med = float(np.median(x))
    mad = float(1.4826 * np.median(np.abs(x - med)))
    return med, max(mad, 1e-12)


LINE_REGIONS: tuple[tuple[str, float, float], ...] = (
    ("Lya forest", 800.0, 1200.0),
    ("Lya/NV", 1200.0, 1260.0),
    ("SiIV", 1360.0, 1430.0),
    ("CIV", 1490.0, 1590.0),
    ("CIII]", 1860.0, 1960.0),
    ("MgII", 2700.0, 2900.0),
    ("FeII UV", 2200.0, 2700.0),
    ("[NeV]/[OII]", 3400.0, 3760.0),
    ("Hgamma", 4280.0, 4400.0),
    ("Hbeta/[OIII]", 4780.0, 5060.0),
    ("Halpha", 6450.0, 6700.0),
)
"""Named rest-frame regions [Å] used to describe where a score comes from."""


def _region_name(lam: float) -> str:
    for name, lo, hi in LINE_REGIONS:
        if lo <= lam < hi:
            return name
    return "continuum"


def driving_regions(
    resid2: np.ndarray, wave_rest: np.ndarray, z: np.ndarray, *, n_regions: int = 3, window: int = 15
) -> list[str]:
    """Describe which wavelength regions drive each spectrum's χ².

    Parameters
    ----------
    resid2
        (n, npix) squared normalised residuals (0 where unused).
    wave_rest
        (npix,) rest-frame wavelengths [Å].
    z
        (n,) redshifts (to quote observed wavelengths too).
    n_regions
        Regions named per spectrum.
    window
        Box-smoothing width [pixels] before picking peaks.

    Returns
    -------
    list of str
        Per spectrum, e.g. ``"CIV 1549A (obs 4650A) 41%; MgII 2800A (obs 8400A) 12%"`` —
        rest and observed centre of each region and its share of the total χ².
    """
    resid2 = np.asarray(resid2, dtype=np.float64)
    kern = np.ones(window) / window
    csum = np.cumsum(np.pad(resid2, ((0, 0), (window // 2, window - window // 2)), mode="constant"), axis=1)
    sm = (csum[:, window:] - csum[:, :-window])[:, : resid2.shape[1]] * kern[0]
    total = resid2.sum(axis=1)
    out: list[str] = []
    for i in range(resid2.shape[0]):
        s = sm[i].copy()
        parts = []
        for _ in range(n_regions):
            j = int(np.argmax(s))
            if s[j] <= 0:
                break
            lo, hi = max(0, j - 2 * window), min(s.size, j + 2 * window)
            share = resid2[i, lo:hi].sum() / total[i] if total[i] > 0 else 0.0
            lam = wave_rest[j]
            parts.append(f"{_region_name(lam)} {lam:.0f}A (obs {lam * (1 + z[i]):.0f}A) {100 * share:.0f}%")
            s[lo:hi] = 0.0
        out.append("; ".join(parts))
    return out
