"""Anomalies injected into held-out *normal* preprocessed spectra, with fixed amplitudes.

Injection happens on the rest-frame grid (after preprocessing), so every class is
applied identically whatever the instrument; the sample sky (:mod:`desilab.sample.anomalies`)
injects the same classes upstream, before observation, and is used where available.

Classes and their fixed amplitude ranges (drawn uniformly per spectrum from the given
generator; widths log-uniform):

=========================  =======================================================================
``lobal``                  troughs of C IV, Al III and Mg II (Si IV, N V where covered) at
                           outflow speeds from v_min ∈ [500, 5000] km/s over a width
                           2,000–20,000 km/s, depth 0.3–0.9 (flux × (1 − depth))
``felobal``                a ``lobal`` plus Fe II UV troughs (2344, 2382, 2600 Å) at 0.8 × depth
``double_peaked``          Mg II, Hβ, Hα (and C III], C IV) broad lines split in two peaks
                           2,000–6,000 km/s apart, each half the flux at 0.55 × the width
``vanishing_broad_lines``  line flux above a local linear continuum × 0.05 (all broad lines)
``stellar_contamination``  an F/K/M star (blackbody 6500/5000/3500 K with Ca H&K, Mg b, Na D,
                           Hα and, for M, TiO absorption) with 10–50% of the observed r-band flux
``wrong_redshift``         redshift off by Δz ∈ {0.05, 0.2, 1} (sign random, z > 0.05 kept)
``hot_pixels``             2–6 pixels 20–100 σ high (σ of the rest pixel)
``dead_columns``           1–3 runs of 3–25 pixels at flux 0 (ivar left as if fine)
``spurious_8600``          a Gaussian at observed 8560–8640 Å, FWHM 3–15 Å, ±5–15 σ (per rest pixel)
=========================  =======================================================================

Coverage: an injection can fall where a spectrum has no data (a Mg II trough at z = 0.3
lies blueward of 3600 Å; the Hα line is not observed above z ≈ 0.5). Such a spectrum is
not anomalous, so every ``info`` records ``NPIX_AFFECTED``, the number of *used* pixels
(``ivar > 0`` after injection) whose normalised flux changed by at least
:data:`AFFECTED_MIN` (1% of the continuum level); recall is computed over injections with
``NPIX_AFFECTED > 0`` and the excluded count is reported.
"""

from __future__ import annotations

import numpy as np

from desilab.anomalies.preprocess import LYA, REST_DLOGLAM, Preprocessed, rest_grid
from desilab.errors import InputError

__all__ = ["AFFECTED_MIN", "INJECTION_CLASSES", "inject", "inject_one"]

AFFECTED_MIN = 0.01
"""Smallest change of normalised flux that counts a pixel as affected by an injection."""

C_KMS = 299792.458
INJECTION_CLASSES = (
    "lobal",
    "felobal",
    "double_peaked",
    "vanishing_broad_lines",
    "stellar_contamination",
    "wrong_redshift",
    "hot_pixels",
    "dead_columns",
    "spurious_8600",
)
"""Classes :func:`inject` knows."""

_BROAD = {  # name: (centre, half-window) [Å]
    "CIV": (1549.0, 60.0),
    "CIII]": (1909.0, 50.0),
    "MgII": (2799.0, 90.0),
    "Hbeta": (4862.0, 110.0),
    "Halpha": (6563.0, 150.0),
    "Lya": (1216.0, 40.0),
    "SiIV": (1400.0, 35.0),
}
_DP_LINES = ("CIV", "CIII]", "MgII", "Hbeta", "Halpha")


def _continuum_and_line(lam: np.ndarray, f: np.ndarray, good: np.ndarray, c: float, hw: float):
    """Linear continuum through the median of side bands and the in-window indices."""
    win = np.nonzero((lam > c - hw) & (lam < c + hw))[0]
    lo = good & (lam > c - 1.6 * hw) & (lam <= c - hw)
    hi = good & (lam >= c + hw) & (lam < c + 1.6 * hw)
    if win.size < 5 or lo.sum() < 3 or hi.sum() < 3:
        return None, None
    x0, y0 = np.median(lam[lo]), np.median(f[lo])
    x1, y1 = np.median(lam[hi]), np.median(f[hi])
    cont = y0 + (y1 - y0) * (lam[win] - x0) / (x1 - x0)
    return win, cont


def _vshift_pix(v_kms: float) -> float:
    return np.log10(1.0 + v_kms / C_KMS) / REST_DLOGLAM


def _trough(lam: np.ndarray, centre: float, vmin: float, width: float, depth: float, edge: float = 300.0):
    v = C_KMS * (centre - lam) / centre  # outflow speed (blueward positive)
    inner = np.clip((v - vmin) / edge, 0, 1) * np.clip((vmin + width - v) / edge, 0, 1)
    return 1.0 - depth * inner


def _star(lam_obs: np.ndarray, kind: str) -> np.ndarray:
    temp = {"F": 6500.0, "K": 5000.0, "M": 3500.0}[kind]
    x = 1.4388e8 / (lam_obs * temp)  # hc/(λkT) with λ in Å
    bb = 1.0 / (lam_obs**5 * np.expm1(np.clip(x, 1e-6, 700)))
    lines = [(3934.0, 0.5, 8.0), (3969.0, 0.5, 8.0), (5175.0, 0.25, 10.0), (5893.0, 0.3, 6.0)]
    if kind == "F":
        lines += [(6563.0, 0.4, 10.0), (4861.0, 0.4, 10.0), (4340.0, 0.35, 10.0)]
    for c, d, s in lines:
        bb = bb * (1 - d * np.exp(-0.5 * ((lam_obs - c) / s) ** 2))
    if kind == "M":
        for start, d in ((7054.0, 0.4), (6159.0, 0.3), (7589.0, 0.3), (8432.0, 0.3)):
            bb = bb * np.where((lam_obs > start) & (lam_obs < start + 150.0), 1 - d, 1.0)
    return bb


def inject_one(
    name: str, flux: np.ndarray, ivar: np.ndarray, z: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float | str]]:
    """Inject anomaly *name* into one preprocessed spectrum (copies are returned).

    Parameters
    ----------
    name
        One of :data:`INJECTION_CLASSES`.
    flux, ivar
        (npix,) normalised rest-frame flux and weight.
    z
        Redshift of the spectrum.
    rng
        Generator for the amplitudes.

    Returns
    -------
    flux, ivar, info
        The perturbed arrays and the amplitudes used.
    """
    lam = rest_grid()
    f = np.array(flux, dtype=np.float64)
    iv = np.array(ivar, dtype=np.float64)
    good = iv > 0
    sig = np.where(good, 1.0 / np.sqrt(np.where(good, iv, 1.0)), 0.0)
    info: dict[str, float | str] = {"CLASS": name}
    if name in ("lobal", "felobal"):
        vmin = rng.uniform(500.0, 5000.0)
        width = float(10 ** rng.uniform(np.log10(2000.0), np.log10(20000.0)))
        depth = rng.uniform(0.3, 0.9)
        t = np.ones_like(lam)
        for c, scale in ((1549.0, 1.0), (1857.0, 0.8), (2799.0, 0.9), (1398.0, 0.8), (1240.0, 0.9)):
            t *= _trough(lam, c, vmin, width, depth * scale)
        if name == "felobal":
            for c in (2344.0, 2382.0, 2600.0):
                t *= _trough(lam, c, vmin, width, 0.8 * depth)
        f *= t
        info.update(VMIN=vmin, WIDTH=width, DEPTH=depth)
    elif name == "double_peaked":
        sep = rng.uniform(2000.0, 6000.0)
        pix = np.arange(lam.size, dtype=np.float64)
        for key in _DP_LINES:
            c, hw = _BROAD[key]
            win, cont = _continuum_and_line(lam, f, good, c, hw)
            if win is None:
                continue
            line = f[win] - cont
            pc = np.log10(c / lam[0]) / REST_DLOGLAM
            new = np.zeros_like(line)
            for sgn in (-1.0, 1.0):
                centre = pc + sgn * _vshift_pix(sep / 2)
                # a copy narrowed to 0.55 of the width about the shifted centre, half the flux
                src = pc + (pix[win] - centre) / 0.55
                new += 0.5 / 0.55 * np.interp(src, pix[win], line, left=0.0, right=0.0)
            f[win] = cont + new
        info.update(SEPARATION=sep)
    elif name == "vanishing_broad_lines":
        for c, hw in _BROAD.values():
            win, cont = _continuum_and_line(lam, f, good, c, hw)
            if win is not None:
                f[win] = cont + 0.05 * (f[win] - cont)
        info.update(BROAD_SCALE=0.05)
    elif name == "stellar_contamination":
        kind = "FKM"[int(rng.integers(0, 3))]
        frac = rng.uniform(0.1, 0.5)
        lam_obs = lam * (1 + z)
        star = _star(lam_obs, kind)
        rband = good & (lam_obs > 5600) & (lam_obs < 7200)
        if rband.sum() >= 5:
            qso_r = np.median(f[rband])
            star_r = np.median(star[rband])
            star = star * (frac / (1 - frac)) * qso_r / star_r
            f = f + np.where(good, star, 0.0)
        info.update(STAR=kind, STAR_FRAC=frac)
    elif name == "wrong_redshift":
        dz = float((0.05, 0.2, 1.0)[int(rng.integers(0, 3))])
        sgn = 1.0 if rng.random() < 0.5 else -1.0
        zc = z + sgn * dz
        if zc < 0.05:
            zc = z + dz
        shift = np.log10((1 + z) / (1 + zc)) / REST_DLOGLAM  # features move by this many pixels
        pix = np.arange(lam.size, dtype=np.float64)
        f = np.interp(pix - shift, pix, f, left=0.0, right=0.0)
        iv = np.interp(pix - shift, pix, iv, left=0.0, right=0.0)
        iv[lam < LYA - 10.0] = 0.0  # the forest mask follows the (wrong) catalog redshift
        # what was forest under the true redshift is now redward of the mask: keep it, as a pipeline would
        info.update(DZ=zc - z)
    elif name == "hot_pixels":
        idx = rng.choice(np.nonzero(good)[0], size=int(rng.integers(2, 7)), replace=False)
        amp = rng.uniform(20.0, 100.0, idx.size)
        f[idx] += amp * sig[idx]
        info.update(N=float(idx.size), SIGMA_MIN=float(amp.min()))
    elif name == "dead_columns":
        gidx = np.nonzero(good)[0]
        nrun = int(rng.integers(1, 4))
        for _ in range(nrun):
            start = int(rng.choice(gidx))
            f[start : start + int(rng.integers(3, 26))] = 0.0
        info.update(NRUN=float(nrun))
    elif name == "spurious_8600":
        lam_c = rng.uniform(8560.0, 8640.0) / (1 + z)
        fwhm = rng.uniform(3.0, 15.0) / (1 + z)
        j = int(np.argmin(np.abs(lam - lam_c)))
        amp = rng.uniform(5.0, 15.0) * (1 if rng.random() < 0.5 else -1)
        prof = np.exp(-0.5 * ((lam - lam_c) / (fwhm / 2.3548)) ** 2)
        prof /= max(prof.max(), 1e-12)
        f += amp * sig[j] * prof * good
        info.update(WAVE_OBS=lam_c * (1 + z), FWHM_OBS=fwhm * (1 + z), SIGMA=amp)
    else:
        raise InputError(f"unknown injection class {name!r}; known: {', '.join(INJECTION_CLASSES)}", parameter="name")
    return f.astype(np.float32), iv.astype(np.float32), info


def inject(
    pre: Preprocessed, classes: list[str] | np.ndarray, seed: int = 0
) -> tuple[Preprocessed, list[dict[str, float | str]]]:
    """Inject ``classes[i]`` (``""`` = none) into spectrum i of *pre*.

    Returns
    -------
    injected, infos
        A new set, and per spectrum the amplitudes used plus ``NPIX_AFFECTED`` (used pixels
        whose flux changed by ≥ :data:`AFFECTED_MIN`; 0 = the injection fell outside coverage).
    """
    if len(classes) != len(pre):
        raise InputError(f"{len(classes)} classes for {len(pre)} spectra", parameter="classes")
    flux = np.array(pre.flux, dtype=np.float32)
    ivar = np.array(pre.ivar, dtype=np.float32)
    infos: list[dict[str, float | str]] = []
    for i, name in enumerate(classes):
        if not name:
            infos.append({"CLASS": ""})
            continue
        rng = np.random.default_rng([seed, i])
        f0 = flux[i].copy()
        flux[i], ivar[i], info = inject_one(str(name), flux[i], ivar[i], float(pre.z[i]), rng)
        info["NPIX_AFFECTED"] = float(np.count_nonzero((ivar[i] > 0) & (np.abs(flux[i] - f0) >= AFFECTED_MIN)))
        infos.append(info)
    out = Preprocessed(
        flux, ivar, np.array(pre.z), np.array(pre.scale), np.array(pre.snr), np.array(pre.valid), np.array(pre.targetid)
    )
    return out, infos
