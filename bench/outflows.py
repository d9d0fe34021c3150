"""Benchmark: batched Hβ+[O III] line fits with covariance errors vs per-spectrum curve_fit.

Fast mode = one model per spectrum (narrow + 1 broad Hβ + [O III] wing, 2 starts for the
wing), Levenberg–Marquardt batched over all spectra, covariance from JᵀWJ — for both the
numba and the numpy backends. Reference: ``scipy.optimize.curve_fit`` of the *same*
model (same parameters, bounds and start values) one spectrum at a time, run in this
process on a subset. Full mode: every candidate model (0–1 broad, ± wing, ± stellar
absorption) with BIC choice, profile measures and Monte Carlo errors (``--nmc``).

Usage: ``python bench/outflows.py [--n 2000] [--nref 100] [--nmc 20] [--workers 1]``.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
from scipy.optimize import curve_fit

from desilab.outflows.lines import COMPLEXES, LineModel, fit_complex, prepare_window
from desilab.outflows.measure import fit_lines
from desilab.outflows.synth import synth_hb_oiii


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nref", type=int, default=100)
    ap.add_argument("--nmc", type=int, default=20)
    ap.add_argument("--nfull", type=int, default=500)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    b = synth_hb_oiii(a.n, rng, wing_frac=0.3, wing_v=-500.0, oiii_snr=rng.uniform(10, 50, a.n), broad_flux=200.0)
    cplx = COMPLEXES["HB_OIII"]
    win = prepare_window(b.wave, b.flux - b.cont, b.ivar, b.z, b.sig_inst, cplx.window)
    fit_complex(
        prepare_window(b.wave, b.flux[:4] - b.cont[:4], b.ivar[:4], b.z[:4], b.sig_inst[:4], cplx.window),
        cplx,
        nbroad=1,
        wing=True,
    )  # numba compile / cache load outside the timing
    res: dict[str, float | int | str] = {"n": a.n, "npix": int(win.lam.shape[1])}
    for backend in ("numba", "numpy"):
        t0 = time.perf_counter()
        f = fit_complex(win, cplx, nbroad=1, wing=True, backend=backend)
        dt = time.perf_counter() - t0
        res[f"fit_{backend}_per_s"] = a.n / dt
        if backend == "numba":
            ours = f
    # reference: curve_fit per spectrum, same model and start
    m = ours.model
    p0 = m.linear_start(win.flux, win.ivar)
    t0 = time.perf_counter()
    agree = []
    for i in range(a.nref):
        one = LineModel(m.groups, win.lam[i : i + 1], win.z[i : i + 1], win.sig_inst[i : i + 1], backend="numpy")

        def fun(_x: np.ndarray, *p: float, one: LineModel = one) -> np.ndarray:
            return one(np.array([p]))[0][0]

        try:
            popt, _ = curve_fit(
                fun,
                win.lam[i],
                win.flux[i],
                p0=np.clip(p0[i], m.lo, m.hi),
                sigma=1 / np.sqrt(win.ivar[i]),
                absolute_sigma=True,
                bounds=(m.lo, m.hi),
                max_nfev=2000,
            )
            chi_ref = np.sum(win.ivar[i] * (win.flux[i] - fun(None, *popt)) ** 2)
            agree.append(ours.lm.chi2[i] <= chi_ref * (1 + 1e-3) + 0.1)
        except RuntimeError:
            agree.append(True)
    t_ref = (time.perf_counter() - t0) / a.nref
    res["curve_fit_per_s"] = 1.0 / t_ref
    res["ratio_vs_curve_fit"] = res["fit_numba_per_s"] / res["curve_fit_per_s"]
    res["ratio_numpy_vs_curve_fit"] = res["fit_numpy_per_s"] / res["curve_fit_per_s"]
    res["chi2_not_worse_than_curve_fit_frac"] = float(np.mean(agree))
    # full mode: BIC model choice + profile measures + Monte Carlo errors
    nf = min(a.nfull, a.n)
    t0 = time.perf_counter()
    fit_lines(
        b.wave,
        b.flux[:nf],
        b.ivar[:nf],
        b.cont[:nf],
        b.z[:nf],
        b.sig_inst[:nf],
        complexes=("HB_OIII",),
        full=True,
        max_broad=1,
        nmc=a.nmc,
    )
    res["full_bic_mc_per_s"] = nf / (time.perf_counter() - t0)
    res["nmc"] = a.nmc
    res["peak_rss_mb"] = peak_rss_mb()
    print(
        f"{a.n} spectra x {res['npix']} px: numba {res['fit_numba_per_s']:.0f}/s, "
        f"numpy {res['fit_numpy_per_s']:.0f}/s, "
        f"curve_fit {res['curve_fit_per_s']:.1f}/s (x{res['ratio_vs_curve_fit']:.0f}); "
        f"full (BIC + {a.nmc} MC) {res['full_bic_mc_per_s']:.0f}/s",
        file=sys.stderr,
    )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
