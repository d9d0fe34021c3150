"""Seeded synthetic Hβ + [O III] spectra for tests and benchmarks (public generator).

Each spectrum: a flat continuum, narrow Hβ and [O III] λλ4959,5007 (5007/4959 = 2.98),
an optional blueshifted [O III] wing and an optional broad Hβ, on an SDSS-like log-λ grid
(1e-4 dex) with a constant instrumental σ, Gaussian noise at a requested [O III] S/N.
Truth is returned alongside (the same parametrisation as :mod:`desilab.outflows.lines`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desilab.outflows.lines import WAVE

__all__ = ["SynthBatch", "synth_hb_oiii"]

C_KMS = 299792.458


@dataclass
class SynthBatch:
    """Synthetic spectra and their truth (arrays of length N unless noted)."""

    wave: np.ndarray  # (npix,)
    flux: np.ndarray  # (N, npix)
    ivar: np.ndarray
    cont: np.ndarray
    sig_inst: np.ndarray  # (N, npix)
    z: np.ndarray
    truth: dict[str, np.ndarray]


def _gauss(
    wave: np.ndarray, lam0: float, z: np.ndarray, flux: np.ndarray, v: np.ndarray, sig: np.ndarray
) -> np.ndarray:
    u = C_KMS * (np.log(wave)[None, :] - np.log(lam0) - np.log1p(z)[:, None])
    s = sig[:, None]
    return flux[:, None] * C_KMS / (wave[None, :] * np.sqrt(2 * np.pi) * s) * np.exp(-0.5 * ((u - v[:, None]) / s) ** 2)


def synth_hb_oiii(
    n: int,
    rng: np.random.Generator,
    *,
    z: float | np.ndarray = 0.1,
    oiii_flux: float | np.ndarray = 100.0,
    oiii_snr: float | np.ndarray = 30.0,
    core_sigma: float | np.ndarray = 150.0,
    wing_frac: float | np.ndarray = 0.0,
    wing_v: float | np.ndarray = -500.0,
    wing_sigma: float | np.ndarray = 400.0,
    broad_flux: float | np.ndarray = 0.0,
    broad_sigma: float | np.ndarray = 2000.0,
    hb_narrow_ratio: float = 0.1,
    sig_inst: float = 65.0,
    cont_level: float = 5.0,
) -> SynthBatch:
    """N synthetic spectra around Hβ+[O III] (rest 4700–5120 Å).

    The noise σ is constant per spectrum, set so that the total [O III] λ5007 flux has
    S/N = *oiii_snr* when measured with an optimal (matched) weight over its profile.
    """
    zz = np.broadcast_to(np.asarray(z, dtype=np.float64), (n,)).copy()
    b = {
        k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
        for k, v in dict(
            oiii_flux=oiii_flux,
            snr=oiii_snr,
            core_sigma=core_sigma,
            wing_frac=wing_frac,
            wing_v=wing_v,
            wing_sigma=wing_sigma,
            broad_flux=broad_flux,
            broad_sigma=broad_sigma,
        ).items()
    }
    lo = 4700.0 * (1 + zz.min())
    hi = 5120.0 * (1 + zz.max())
    wave = 10 ** np.arange(np.log10(lo), np.log10(hi), 1e-4)
    si = np.full((n, wave.size), sig_inst)
    tot = lambda s: np.sqrt(s**2 + sig_inst**2)  # noqa: E731
    f_wing = b["oiii_flux"] * b["wing_frac"]
    f_core = b["oiii_flux"] - f_wing
    zero = np.zeros(n)
    model = np.full((n, wave.size), cont_level)
    cont = model.copy()
    core = _gauss(wave, WAVE["OIII_5007"], zz, f_core, zero, tot(b["core_sigma"]))
    wing = _gauss(wave, WAVE["OIII_5007"], zz, f_wing, b["wing_v"], tot(b["wing_sigma"]))
    model += core + wing
    model += _gauss(wave, WAVE["OIII_4959"], zz, f_core / 2.98, zero, tot(b["core_sigma"]))
    model += _gauss(wave, WAVE["OIII_4959"], zz, f_wing / 2.98, b["wing_v"], tot(b["wing_sigma"]))
    model += _gauss(wave, WAVE["HB"], zz, hb_narrow_ratio * f_core, zero, tot(b["core_sigma"]))
    model += _gauss(wave, WAVE["HB"], zz, b["broad_flux"], zero, tot(b["broad_sigma"]))
    # noise: matched-filter S/N of the 5007 profile = sqrt(Σ p²)/σ · F  (p = profile per unit flux)
    prof = (core + wing) / np.maximum(b["oiii_flux"], 1e-30)[:, None]
    sigma = b["oiii_flux"] * np.sqrt((prof**2).sum(axis=1)) / b["snr"]
    flux = model + rng.standard_normal(model.shape) * sigma[:, None]
    ivar = np.broadcast_to((1.0 / sigma**2)[:, None], model.shape).copy()
    truth = {
        "OIII_FLUX": b["oiii_flux"],
        "CORE_SIGMA": b["core_sigma"],
        "WING_FLUX": f_wing,
        "WING_V": b["wing_v"],
        "WING_SIGMA": b["wing_sigma"],
        "BROAD_FLUX": b["broad_flux"],
        "V_OUT": np.where(f_wing > 0, np.abs(b["wing_v"]) + 2 * b["wing_sigma"], 0.0),
    }
    return SynthBatch(wave=wave, flux=flux, ivar=ivar, cont=cont, sig_inst=si, z=zz, truth=truth)
