"""Normal quasar spectra rendered exactly as the sample sky renders them (for tests and benchmarks).

A thin wrapper over :func:`desilab.sample.quasars.simulate_spectra` that draws quasars
without BAL troughs or injected anomalies, observes them, and returns the combined
7781-pixel DESI grid arrays with their redshifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ObservedSet", "simulate_normal"]


@dataclass
class ObservedSet:
    """Observed spectra on the combined DESI grid."""

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    z: np.ndarray
    mag: np.ndarray


def simulate_normal(
    n: int, seed: int = 0, zrange: tuple[float, float] = (0.3, 3.5), magrange: tuple[float, float] = (18.5, 21.0)
) -> ObservedSet:
    """*n* normal (non-BAL, unperturbed) quasars at uniform z and r magnitude.

    Parameters
    ----------
    n
        Number of spectra.
    seed
        Seed of every draw (parameters, noise).
    zrange, magrange
        Uniform ranges of redshift and r-band AB magnitude.

    Returns
    -------
    ObservedSet
    """
    from desilab.sample.qso_population import draw_quasar
    from desilab.sample.quasars import simulate_spectra

    rng = np.random.default_rng(seed)
    z = rng.uniform(*zrange, n)
    mag = rng.uniform(*magrange, n)
    params = [
        draw_quasar(
            rng,
            float(zi),
            float(mi),
            bal_bi_fraction=0.0,
            bal_ai_only_fraction=0.0,
            oiii_outflow_fraction=0.1,
            log_ne_range=(2.0, 4.0),
            te_range=(1.0e4, 1.5e4),
            forest_seed=int(seed * 1_000_003 + i),
            bal_kind="",
        ).params
        for i, (zi, mi) in enumerate(zip(z, mag, strict=True))
    ]
    sim = simulate_spectra(params, mag, seed=seed + 7)
    c = sim.spectra.combined()
    band = c.bands[0]
    return ObservedSet(c.wave[band], c.flux[band], c.ivar[band], c.mask[band], z, mag)
