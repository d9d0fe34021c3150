"""Broad-absorption-line (BAL) metrics in two named modes.

``baltools``
    As the DESI DR1 BAL catalog computes them (paulmartini/baltools ``fitbal.py``,
    constants from :mod:`desilab.io.qso`): λ_CIV = 1549 Å, λ_SiIV = 1398 Å,
    non-relativistic velocities ``v = c (λ − λ0)/λ0``; a pixel is "in a trough" when
    ``1 − f/0.9 − 0.5 σ_f > 0``; one noise spike is bridged (BI: the next pixel is in a
    trough; AI: the next one and the two before are); troughs are searched from the
    high-speed end (v = −25,000 km/s) towards zero, must be wider than 2000 km/s (BI,
    window −25,000…−3,000 km/s) or 450 km/s (AI, window −25,000…0 km/s, plus the
    3σ test ``1 − (⟨f⟩ + 3 ⟨σ⟩/√N)/0.9 > 0``), and the first 2000 / 450 km/s of each
    trough (counted from its high-speed edge) are not integrated.
``classical``
    Weymann et al. (1991) BI (no σ term, no spike bridging, C = 1 only after 2000 km/s of
    continuous absorption counted from the low-speed edge of the trough, −25,000…−3,000
    km/s) and Trump et al. (2006) AI (troughs ≥ 1000 km/s within −29,000…0 km/s, the
    whole trough integrated); relativistic Doppler velocities about the doublet
    wavelengths λ_CIV = 1549.06 Å, λ_SiIV = 1396.76 Å.

Integrals are sums over pixels ``Σ (1 − f_i/0.9) Δv_i`` with ``Δv_i`` the pixel width
(``np.gradient`` of the velocity grid); a pixel counts as "past the threshold" when its
centre lies at least 2000 (450) km/s from the centre of the trough's first pixel. For a
noise-free box trough at f = 0.5 from −15,000 to −5,000 km/s this gives BI = 3556,
AI(baltools) = 4244, AI(classical) = 4444 km/s, to one pixel × depth
(``tests/outflows/test_bal.py``).

Unlike baltools, every trough is returned (:class:`Trough`), not only the first 5 / 17;
the fixed-width baltools columns hold the first ``NBI`` / ``NAI``.

Uncertainties: ``ERR_BI = sqrt(Σ (σ_i/0.9)² Δv_i²)`` — plain propagation of the pixel
noise of the normalised flux (baltools sums ``σ² Δv`` without a square root and adds a
continuum term; ours is the statistical error only, stated here and in docs/outflows.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from desilab.errors import InputError
from desilab.io.qso import (
    AI_MIN_WIDTH,
    AI_VMAX,
    BI_FLUX_THRESHOLD,
    BI_MIN_WIDTH,
    BI_VMAX,
    C_KMS,
    LAMBDA_CIV,
    LAMBDA_SIIV,
    NAI,
    NBI,
    TROUGH_SIGMA,
    VMIN_BAL,
)

__all__ = [
    "MODES",
    "BalResult",
    "Trough",
    "bal_columns",
    "bal_metrics",
    "ion_metrics",
    "velocity",
]

Mode = Literal["baltools", "classical"]
MODES: tuple[str, ...] = ("baltools", "classical")

#: Classical (Trump et al. 2006) AI settings.
CLASSICAL_AI_VMIN = -29000.0
CLASSICAL_AI_MIN_WIDTH = 1000.0
#: Doublet-mean rest wavelengths used in classical mode [Å] (Trump et al. 2006).
CLASSICAL_LAMBDA = {"CIV": 1549.06, "SIIV": 1396.76}
BALTOOLS_LAMBDA = {"CIV": LAMBDA_CIV, "SIIV": LAMBDA_SIIV}
#: Significance (in σ of the trough mean) of baltools' AI trough test.
AI_SIGMA_TEST = 3.0


@dataclass(frozen=True)
class Trough:
    """One absorption trough.

    Attributes
    ----------
    ion, kind
        ``"CIV"``/``"SIIV"`` and ``"BI"`` (2000 km/s troughs) or ``"AI"``.
    vmin, vmax
        Trough limits as positive outflow speeds [km/s] (``vmin < vmax``).
    posmin, fmin
        Speed [km/s] and normalised flux of the deepest pixel.
    index, index_err
        This trough's contribution to BI or AI and its uncertainty [km/s].
    """

    ion: str
    kind: str
    vmin: float
    vmax: float
    posmin: float
    fmin: float
    index: float
    index_err: float


@dataclass
class BalResult:
    """BI/AI of one ion in one spectrum, with every trough."""

    ion: str
    mode: str
    bi: float = 0.0
    bi_err: float = 0.0
    ai: float = 0.0
    ai_err: float = 0.0
    troughs: list[Trough] = field(default_factory=list)
    measured: bool = True

    def columns(self) -> dict[str, object]:
        """The baltools column block for this ion (``BI_CIV``, ``ERR_BI_CIV``, …)."""
        return bal_columns(self)


def velocity(wave_rest: np.ndarray, ion: str, mode: Mode = "baltools") -> np.ndarray:
    """Velocity [km/s] relative to the ion's rest wavelength (negative = outflow).

    ``baltools``: non-relativistic ``c (λ − λ0)/λ0`` with λ0 = 1549 / 1398 Å;
    ``classical``: relativistic Doppler about 1549.06 / 1396.76 Å.
    """
    _check_mode(mode)
    lam = np.asarray(wave_rest, dtype=np.float64)
    if mode == "baltools":
        lam0 = BALTOOLS_LAMBDA[ion]
        return C_KMS * (lam - lam0) / lam0
    r2 = (lam / CLASSICAL_LAMBDA[ion]) ** 2
    return C_KMS * (r2 - 1.0) / (r2 + 1.0)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"unknown BAL mode {mode!r}; choose one of {MODES}", parameter="mode")


def _runs(inside: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of runs of True."""
    if not inside.any():
        return []
    d = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _bridge_spikes(expr_pos: np.ndarray, kind: str) -> np.ndarray:
    """Fill single-pixel gaps the way baltools allows one noise spike.

    BI: a failing pixel is bridged when the next pixel passes and a trough is open
    (the previous pixel passes). AI: also the two pixels before must pass.
    """
    out = expr_pos.copy()
    n = out.size
    for i in range(1, n - 2):
        if expr_pos[i] or not expr_pos[i + 1] or not out[i - 1]:
            continue
        if kind == "AI" and (i < 2 or not (expr_pos[i - 1] and expr_pos[i - 2])):
            continue
        out[i] = True
    return out


def _integrate(
    v: np.ndarray, dv: np.ndarray, f: np.ndarray, s: np.ndarray, lo: int, hi: int, skip: float, from_high: bool
) -> tuple[float, float]:
    """Σ(1 − f/0.9)Δv over pixels lo..hi past *skip* km/s from the trough's start edge."""
    idx = np.arange(lo, hi + 1)
    if from_high:  # counted from the high-speed (most negative v) edge, as baltools
        use = v[idx] - v[lo] >= skip - 1e-9
    else:  # Weymann: counted from the low-speed edge
        use = v[hi] - v[idx] >= skip - 1e-9
    idx = idx[use]
    val = float(np.sum((1.0 - f[idx] / BI_FLUX_THRESHOLD) * dv[idx]))
    err = float(np.sqrt(np.sum((s[idx] / BI_FLUX_THRESHOLD) ** 2 * dv[idx] ** 2)))
    return max(val, 0.0), err if val > 0 else 0.0


def ion_metrics(
    vel: np.ndarray,
    flux_norm: np.ndarray,
    sigma_norm: np.ndarray,
    *,
    ion: str = "CIV",
    mode: Mode = "baltools",
) -> BalResult:
    """BI, AI and troughs of one ion from a continuum-normalised spectrum.

    Parameters
    ----------
    vel
        Velocity grid [km/s] from :func:`velocity` (increasing), negative = outflow.
    flux_norm, sigma_norm
        Flux and its 1σ error divided by the continuum. Pixels with non-finite values or
        ``sigma_norm <= 0`` (masked) are dropped before the search.
    ion
        ``"CIV"`` or ``"SIIV"`` (labels only).
    mode
        ``"baltools"`` or ``"classical"`` (module docstring).

    Returns
    -------
    BalResult
        ``measured=False`` (and zeros) when the window is not covered or, in baltools
        mode, when the median normalised flux is below the median error (baltools'
        S/N gate).
    """
    _check_mode(mode)
    v = np.asarray(vel, dtype=np.float64)
    f = np.asarray(flux_norm, dtype=np.float64)
    s = np.asarray(sigma_norm, dtype=np.float64)
    if not (v.shape == f.shape == s.shape) or v.ndim != 1:
        raise InputError(f"vel/flux/sigma shapes differ: {v.shape}, {f.shape}, {s.shape}", parameter="flux_norm")
    good = np.isfinite(v) & np.isfinite(f) & np.isfinite(s) & (s > 0)
    v, f, s = v[good], f[good], s[good]
    res = BalResult(ion=ion, mode=mode)
    ai_vmin = VMIN_BAL if mode == "baltools" else CLASSICAL_AI_VMIN
    if v.size < 3 or v.min() > ai_vmin + 1000.0 or v.max() < BI_VMAX:
        res.measured = False
        return res
    dv = np.gradient(v)
    for kind in ("AI", "BI"):
        if kind == "BI":
            w = (v >= VMIN_BAL) & (v <= BI_VMAX)
            min_width = BI_MIN_WIDTH
        else:
            w = (v >= ai_vmin) & (v <= AI_VMAX)
            min_width = AI_MIN_WIDTH if mode == "baltools" else CLASSICAL_AI_MIN_WIDTH
        vw, fw, sw, dvw = v[w], f[w], s[w], dv[w]
        if vw.size < 3:
            continue
        if mode == "baltools":
            if np.median(fw) < np.median(sw):  # baltools: too noisy, nothing searched
                res.measured = False
                continue
            inside = (1.0 - fw / BI_FLUX_THRESHOLD) - TROUGH_SIGMA * sw > 0
            inside = _bridge_spikes(inside, kind)
        else:
            inside = fw < BI_FLUX_THRESHOLD
        total, var = 0.0, 0.0
        for lo, hi in _runs(inside):
            width = vw[hi] - vw[lo]
            if width <= min_width - 1e-9 if mode == "baltools" else width < min_width - 1e-9:
                continue
            if mode == "baltools" and kind == "AI":
                npx = hi - lo + 1
                meantest = 1.0 - (fw[lo : hi + 1].mean() + AI_SIGMA_TEST * sw[lo : hi + 1].mean() / np.sqrt(npx)) / 0.9
                if meantest <= 0:
                    continue
            if kind == "BI":
                skip, from_high = BI_MIN_WIDTH, mode == "baltools"
            else:
                skip, from_high = (AI_MIN_WIDTH, True) if mode == "baltools" else (0.0, True)
            val, err = _integrate(vw, dvw, fw, sw, lo, hi, skip, from_high)
            if val <= 0:
                continue
            k = lo + int(np.argmin(fw[lo : hi + 1]))
            res.troughs.append(
                Trough(
                    ion=ion,
                    kind=kind,
                    vmin=float(-vw[hi]),
                    vmax=float(-vw[lo]),
                    posmin=float(-vw[k]),
                    fmin=float(fw[k]),
                    index=val,
                    index_err=err,
                )
            )
            total += val
            var += err**2
        if kind == "BI":
            res.bi, res.bi_err = total, float(np.sqrt(var))
        else:
            res.ai, res.ai_err = total, float(np.sqrt(var))
    return res


def bal_metrics(
    wave_rest: np.ndarray,
    flux_norm: np.ndarray,
    sigma_norm: np.ndarray,
    *,
    mode: Mode = "baltools",
    ions: tuple[str, ...] = ("CIV", "SIIV"),
) -> dict[str, BalResult]:
    """BAL metrics of C IV and Si IV for one continuum-normalised spectrum.

    Parameters
    ----------
    wave_rest
        Rest-frame vacuum wavelengths [Å].
    flux_norm, sigma_norm
        Flux / continuum and its error / continuum.
    mode
        ``"baltools"`` or ``"classical"``.
    ions
        Which ions to measure.

    Returns
    -------
    dict
        Ion → :class:`BalResult`.
    """
    _check_mode(mode)
    return {ion: ion_metrics(velocity(wave_rest, ion, mode), flux_norm, sigma_norm, ion=ion, mode=mode) for ion in ions}


def bal_columns(res: BalResult) -> dict[str, object]:
    """Fixed-width baltools columns (desi-formats.md §5b) for one ion's result.

    The first ``NBI`` (5) BI and ``NAI`` (17) AI troughs fill the VMIN/VMAX/POSMIN/FMIN
    arrays in the order found (high speed first); unused slots are −1.
    """
    ion = res.ion
    out: dict[str, object] = {
        f"BI_{ion}": np.float32(res.bi),
        f"ERR_BI_{ion}": np.float32(res.bi_err),
        f"AI_{ion}": np.float32(res.ai),
        f"ERR_AI_{ion}": np.float32(res.ai_err),
    }
    for kind, tag, nmax in (("BI", "2000", NBI), ("AI", "450", NAI)):
        tr = [t for t in res.troughs if t.kind == kind]
        out[f"N{ion}_{tag}"] = np.int32(len(tr))
        for attr in ("vmin", "vmax", "posmin", "fmin"):
            arr = -np.ones(nmax, dtype=np.float32)
            vals = [getattr(t, attr) for t in tr[:nmax]]
            arr[: len(vals)] = vals
            out[f"{attr.upper()}_{ion}_{tag}"] = arr
    return out
