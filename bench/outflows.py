"""Benchmark: batched Hβ+[O III] line fits with covariance errors vs per-spectrum curve_fit.

Fast mode = one model per spectrum (narrow + 1 broad Hβ + [O III] wing, 4 starts for the
wing as extra rows of the batch), Levenberg–Marquardt batched over all spectra, covariance
from JᵀWJ — for both the numba and the numpy backends, in one process, and (``--workers``)
sharded over processes through :mod:`desilab.compute`. Reference: ``scipy.optimize.curve_fit`` of the *same*
model (same parameters, bounds and start values) one spectrum at a time, run in this
process on a subset. Full mode: every candidate model (0–1 broad, ± wing, ± stellar
absorption) with BIC choice (the wing models seeded from the no-wing ones, with the four
fixed wing starts plus the per-spectrum residual start), profile measures and Monte Carlo
errors (``--nmc``), in one process and sharded over ``--workers`` processes.

Rates are wall-clock (``*_per_s``) and per CPU-second of this process (``*_per_cpu_s``,
single-process runs only): on a shared machine the second is the load-independent one.

Usage: ``python bench/outflows.py [--n 2000] [--nref 100] [--nmc 20] [--workers 2]``.
The last line of output is one JSON object.

``--calibrate-nulls N`` instead calibrates the outflow-detection threshold
(``desilab.outflows.measure.DBIC_WING``): N sample-sky quasars without an [O III] wing,
drawn as the validation draws them (``tests/outflows/test_validation.py``: r = 17–21,
z = 0.1–0.5) but from an independent seed (``--calib-seed``, default 777; the validation
uses 20240613 and simulation seeds from 100,000), run through the full pipeline with the
default resources (host decomposition on where the SSP grid is found); prints the
false-positive rate at a range of ΔBIC thresholds with every other detection condition
applied, and the ΔBIC quantiles.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from desilab.compute import get_executor
from desilab.outflows.lines import COMPLEXES, LineModel, fit_complex, prepare_window
from desilab.outflows.measure import fit_lines
from desilab.outflows.synth import synth_hb_oiii


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _fast_shard(shard: tuple) -> int:
    """Fast-mode fit of one shard of windows (runs in a worker process)."""
    win = shard[0]
    fit_complex(win, COMPLEXES["HB_OIII"], nbroad=1, wing=True)
    return int(win.flux.shape[0])


def _full_shard(shard: tuple) -> int:
    """Full-mode fit of one shard of spectra (runs in a worker process)."""
    wave, flux, ivar, cont, z, sig, nmc = shard
    fit_lines(wave, flux, ivar, cont, z, sig, complexes=("HB_OIII",), full=True, max_broad=1, nmc=nmc)
    return int(flux.shape[0])


def _split(win, k: int) -> list:
    """*k* row shards of a window."""
    from dataclasses import replace

    out = []
    for rows in np.array_split(np.arange(win.flux.shape[0]), k):
        out.append(
            (
                replace(
                    win,
                    lam=win.lam[rows],
                    flux=win.flux[rows],
                    ivar=win.ivar[rows],
                    sig_inst=win.sig_inst[rows],
                    z=win.z[rows],
                    cont=win.cont[rows],
                    npix=win.npix[rows],
                ),
            )
        )
    return out


def _torch_normal_eq(model: LineModel, p: np.ndarray, y: np.ndarray, w: np.ndarray):
    """The normal equations (χ², JᵀWJ, JᵀWr) of *model* with dense PyTorch (CPU) tensors.

    The same maths as the numba kernel (every pixel of every term, no sparsity), written
    the way a PyTorch backend would be: (N, k, P) Jacobian, batched einsum reductions.
    """
    import torch

    u = torch.from_numpy(model._u_all)
    si2 = torch.from_numpy(model._si2)
    c_lam = torch.from_numpy(model._c_over_lam_sqrt2pi)
    xc = torch.from_numpy(model._x)
    pt = torch.from_numpy(p)
    flux, dflux = model._flux_arrays(p)
    flux_t, dflux_t = torch.from_numpy(flux), torch.from_numpy(dflux)
    n, npix = si2.shape
    jac = torch.zeros((n, model.k, npix), dtype=torch.float64)
    mod = pt[:, model.ia, None] + pt[:, model.ib, None] * xc
    for t in range(len(model.terms)):
        iv, isg, isg2 = int(model._term_v[t]), int(model._term_s[t]), int(model._term_s2[t])
        v = pt[:, iv, None]
        sg = pt[:, isg, None] + (pt[:, isg2, None] if isg2 >= 0 else 0.0)
        st2 = sg * sg + si2
        d = u[t] - v
        x = d * d / st2
        g = c_lam / torch.sqrt(st2) * torch.exp(-0.5 * x)
        fg = flux_t[:, t, None] * g
        mod = mod + fg
        a = fg / st2
        jac[:, iv] += a * d
        ds = a * (x - 1.0) * sg
        jac[:, isg] += ds
        if isg2 >= 0:
            jac[:, isg2] += ds
        jac += dflux_t[:, t, :, None] * g[:, None, :]
    jac[:, model.ia] = 1.0
    jac[:, model.ib] = xc
    wt, yt = torch.from_numpy(w), torch.from_numpy(y)
    r = yt - mod
    jw = jac * wt[:, None, :]
    return (
        mod.numpy(),
        (wt * r * r).sum(dim=1).numpy(),
        torch.einsum("nkp,nlp->nkl", jw, jac).numpy(),
        torch.einsum("nkp,np->nk", jw, r).numpy(),
    )


def _normal_eq_rates(model: LineModel, p: np.ndarray, y: np.ndarray, w: np.ndarray, reps: int = 5) -> dict:
    """Rows per second of one normal-equation evaluation: numba kernel vs PyTorch (CPU)."""
    out: dict[str, float] = {}
    rows = np.arange(p.shape[0])
    ref = model.normal(p, rows, y, w)
    t0 = time.perf_counter()
    for _ in range(reps):
        model.normal(p, rows, y, w)
    out["normal_eq_numba_rows_per_s"] = reps * p.shape[0] / (time.perf_counter() - t0)
    try:
        import torch
    except ImportError:  # not a hard dependency of desilab
        return out
    # one thread, as the numba kernel: on a shared 2-core machine torch's second thread
    # spin-waits (10x slower measured at load average 9); parallelism comes from processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    got = _torch_normal_eq(model, p, y, w)
    scale = np.abs(ref[2]).max(axis=(1, 2))[:, None, None]
    out["normal_eq_torch_max_rel_diff"] = float(np.max(np.abs(got[2] - ref[2]) / scale))
    t0 = time.perf_counter()
    for _ in range(reps):
        _torch_normal_eq(model, p, y, w)
    out["normal_eq_torch_rows_per_s"] = reps * p.shape[0] / (time.perf_counter() - t0)
    torch.set_num_threads(threads)
    out["torch_threads"] = 1
    out["ratio_normal_eq_vs_torch"] = out["normal_eq_numba_rows_per_s"] / out["normal_eq_torch_rows_per_s"]
    return out


def calibrate_nulls(n: int, seed: int = 777, chunk: int = 100) -> dict:
    """False-positive rate vs ΔBIC threshold on *n* independent null spectra.

    Parameters
    ----------
    n
        Number of null (no-wing) sample-sky quasars.
    seed
        Seed of the draw (parameters and magnitudes); the noise uses ``seed * 1000 + chunk
        start``. Must differ from the validation's (20240613 / 100,000).
    chunk
        Spectra per :func:`~desilab.outflows.catalog.process` call.

    Returns
    -------
    dict
        ``fpr_by_threshold`` (threshold → FPR with the other detection conditions applied),
        ``dbic_quantiles``, ``host_fitted_frac``, timings.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.outflows.test_validation import _draw, _run

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    params, truth, mags = _draw(rng, n, False)
    c = _run(params, truth, mags, seed=seed * 1000, chunk=chunk)
    dt = time.perf_counter() - t0
    dbic = c["OUTFLOW_DBIC"]
    not_red = c["OIII_OUT_V"] - c["OIII_CORE_V"] < 2.0 * c["OIII_OUT_V_ERR"]
    ok = np.isfinite(dbic) & not_red & ~c["OIII_OUT_AT_BOUND"].astype(bool)
    thresholds = (-10.0, -8.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0)
    return {
        "n_null": n,
        "seed": seed,
        "seconds": dt,
        "spectra_per_s": n / dt,
        "host_fitted_frac": float(np.mean(np.isfinite(c["HOST_FRAC5100"]))),
        "fpr_by_threshold": {f"{t:g}": float(np.mean(ok & (dbic > t))) for t in thresholds},
        "n_fp_by_threshold": {f"{t:g}": int(np.sum(ok & (dbic > t))) for t in thresholds},
        "dbic_quantiles": {f"p{q}": float(np.nanpercentile(dbic, q)) for q in (50, 90, 99, 99.5)},
        "dbic_passing_other_conditions_top10": sorted(np.round(dbic[ok], 2).tolist())[-10:],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nref", type=int, default=100)
    ap.add_argument("--nmc", type=int, default=20)
    ap.add_argument("--nfull", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2, help="processes for the sharded runs (desilab.compute)")
    ap.add_argument("--calibrate-nulls", type=int, default=0, help="calibrate DBIC_WING on N nulls instead")
    ap.add_argument("--calib-seed", type=int, default=777, help="seed of the calibration nulls")
    a = ap.parse_args(argv)
    if a.calibrate_nulls:
        cal = calibrate_nulls(a.calibrate_nulls, a.calib_seed)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in cal.items()}))
        return 0
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
        t0, c0 = time.perf_counter(), time.process_time()
        f = fit_complex(win, cplx, nbroad=1, wing=True, backend=backend)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        res[f"fit_{backend}_per_s"] = a.n / dt
        res[f"fit_{backend}_per_cpu_s"] = a.n / dc
        if backend == "numba":
            ours = f
    if a.workers > 1:
        ex = get_executor(a.workers)
        ex.map(_fast_shard, _split(win, a.workers)[:1], ids=[0])  # start-up outside the timing
        t0 = time.perf_counter()
        done = sum(ex.map(_fast_shard, _split(win, a.workers), ids=list(range(a.workers))))
        res[f"fit_numba_{a.workers}proc_per_s"] = done / (time.perf_counter() - t0)
    # reference: curve_fit per spectrum, same model and start
    m = ours.model
    p0 = m.linear_start(win.flux, win.ivar)
    # backend choice: one evaluation of the normal equations, numba vs PyTorch (CPU)
    res.update(_normal_eq_rates(m, ours.lm.params, win.flux, win.ivar))
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
    t0, c0 = time.perf_counter(), time.process_time()
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
    res["full_bic_mc_per_cpu_s"] = nf / (time.process_time() - c0)
    if a.workers > 1:
        parts = np.array_split(np.arange(nf), a.workers)
        shards = [(b.wave, b.flux[r], b.ivar[r], b.cont[r], b.z[r], b.sig_inst[r], a.nmc) for r in parts]
        t0 = time.perf_counter()
        done = sum(get_executor(a.workers).map(_full_shard, shards, ids=list(range(a.workers))))
        res[f"full_bic_mc_{a.workers}proc_per_s"] = done / (time.perf_counter() - t0)
    res["nmc"] = a.nmc
    res["workers"] = a.workers
    res["load_average_1min"] = os.getloadavg()[0]
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
