"""VoidFinder membership rate: desilab's sharded grid kernel vs scipy cKDTree.query_ball_point.

Usage::

    python bench/voids.py [--holes 100000] [--galaxies 13100000] [--repeat 3] [--threads 2]

Synthetic DR1-like set-up: ``--holes`` holes (DR1 VoidFinder has 101,863 over both caps)
with radii 10 ± 3 Mpc/h (clipped to ≥ 5) placed uniformly in a half-sky shell
0 < r < 677 Mpc/h (the DESIVAST volume-limited depth), and ``--galaxies`` galaxies
uniform in the same volume (default 13.1M: every DR1 galaxy of all programmes). The
survey mask is the northern hemisphere at nside 64 (HEALPix NESTED), d ∈ (0, 677.4) Mpc/h.

Timed (best of ``--repeat`` in this process, after one warm-up call that compiles the
numba kernels), all through :func:`desilab.voids.membership.classify_voidfinder`, which
shards the galaxies (contiguous ranges of ``SHARD_SIZE``) through a
:mod:`desilab.compute` executor:

* ``membership``: hole index + boundary-shell flag, in-process executor (numba threads
  = ``--threads``);
* ``flags_probe``: VAST flags 0/1/2/9 with VAST's six-point edge probe, same executor;
* ``flags_buffer``: same with DESIVAST's 30 Mpc/h buffer;
* ``*_hpx_ordered``: the same on galaxies ordered by HEALPix pixel (nside 64), as DR1
  catalogs are; the default input order is uniformly random (worst case for caches);
* ``*_pool_cold`` / ``*_pool_warm``: flags (probe) through ``LocalExecutor(--threads)``,
  a forkserver process pool, one numba thread per worker, positions and outputs shared
  through memory-mapped files in ``/dev/shm``. *Cold* includes starting the pool (worker
  start-up, imports, loading the cached numba kernels), one call; *warm* is the best of
  ``--repeat`` further calls on the same pool (a pipeline run keeps its executor);
* ``reference``: ``cKDTree(galaxies)`` + ``query_ball_point(hole centres, radii,
  workers=threads)`` + marking the returned indices (what a scipy user writes; tree build
  included, as it is part of the job), membership only, best of ``min(repeat, 2)``.

Checks: our void galaxies equal the reference's outside the boundary shell
(``disagree_outside_shell``), and the in-process and 2-process results are
byte-identical (``identical_serial_vs_pool``).

Memory beyond the inputs (``mem_beyond_inputs_mb``, flags with the probe rule,
in-process; ``mem_beyond_inputs_pool_mb`` for the cold pool run): the peak, sampled every
10 ms by a thread, of the proportional anonymous memory (``Pss_Anon``: copy-on-write pages
shared by forked processes counted once) of this process and all its descendants plus the
files of our ``/dev/shm`` folders, less the same before the call; it includes the outputs
(11 bytes per galaxy) and, for the pool, the forkserver and worker processes themselves.
``peak_rss_mb`` is the whole process's peak RSS (inputs, the reference's
lists). ``load_average_1min`` records how busy the machine was (rates scale with free
cores). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import resource
import sys
import threading
import time

import numba
import numpy as np
from scipy.spatial import cKDTree

from desilab.compute import LocalExecutor
from desilab.voids.membership import HoleGrid, SurveyMask, classify_voidfinder, vec2pix_nest

D_MAX = 677.4


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for f in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(f) as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _anon_kb(pid: int) -> int:
    """Proportional anonymous memory (``Pss_Anon``) of a process in kB.

    Proportional: pages that forked workers share copy-on-write with their parent (imported
    modules) are split among the sharers instead of being counted once per process.
    Falls back to ``RssAnon`` where ``smaps_rollup`` has no ``Pss_Anon``.
    """
    for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss_Anon:"), (f"/proc/{pid}/status", "RssAnon:")):
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1])
        except OSError:
            return 0
    return 0


def used_mb() -> float:
    """Proportional anonymous memory of this process tree + our /dev/shm shard folders, in MB."""
    pids = [os.getpid(), *_descendants(os.getpid())]
    kb = sum(_anon_kb(p) for p in pids)
    shm = 0
    for f in glob.glob("/dev/shm/desilab-voids-*/*"):
        with contextlib.suppress(OSError):
            shm += os.stat(f).st_blocks * 512
    return kb / 1024.0 + shm / 2**20


class MemoryPeak:
    """Context manager: peak of :func:`used_mb` above its value on entry (sampled every 10 ms)."""

    def __enter__(self) -> MemoryPeak:
        self.base = used_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, used_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, used_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak - self.base


def uniform_half_shell(n: int, rng: np.random.Generator, d_max: float) -> np.ndarray:
    """Uniform points in the northern half of a sphere of radius d_max (built in chunks)."""
    out = np.empty((n, 3))
    for s in range(0, n, 1_000_000):
        m = min(n, s + 1_000_000) - s
        v = rng.normal(size=(m, 3))
        v /= np.linalg.norm(v, axis=1)[:, None]
        v[:, 2] = np.abs(v[:, 2])
        out[s : s + m] = v * (d_max * rng.uniform(0, 1, m) ** (1 / 3))[:, None]
    return out


def best(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of *repeat* calls and the last result."""
    t_best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one JSON object last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--holes", type=int, default=100_000)
    ap.add_argument("--galaxies", type=int, default=13_100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    numba.set_num_threads(min(a.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(a.seed)
    centres = uniform_half_shell(a.holes, rng, D_MAX - 20)
    radii = np.clip(rng.normal(10.0, 3.0, a.holes), 5.0, None)
    gals = uniform_half_shell(a.galaxies, rng, D_MAX - 1)
    nside = 64
    import healpy as hp

    mask = hp.pix2vec(nside, np.arange(12 * nside * nside), nest=True)[2] > 0
    survey = SurveyMask(mask, nside, 0.0, D_MAX)
    res: dict[str, object] = {"holes": a.holes, "galaxies": a.galaxies, "threads": a.threads,
                              "load_average_1min_start": os.getloadavg()[0]}

    t0 = time.perf_counter()
    grid = HoleGrid.build(centres, radii)
    res["grid_build_s"] = time.perf_counter() - t0  # includes numba compile on a cold cache
    t0 = time.perf_counter()
    grid = HoleGrid.build(centres, radii)
    res["grid_build_warm_s"] = time.perf_counter() - t0
    res["grid_cells"] = int(np.prod(grid.shape))
    res["grid_entries"] = int(grid.items.size)
    res["grid_mb"] = (grid.items.nbytes + grid.start.nbytes + grid.packed.nbytes) / 2**20
    t0 = time.perf_counter()
    theta = survey.edge_angles()
    res["edge_angles_s"] = time.perf_counter() - t0
    small = gals[:1000]
    for s in (None, "probe", "buffer"):
        classify_voidfinder(small, grid, None if s is None else survey, rule=s or "probe", edge_theta=theta)

    def ours(x: np.ndarray, rule: str | None, executor: object = None):
        sv = None if rule is None else survey
        return classify_voidfinder(x, grid, sv, rule=rule or "probe", edge_theta=theta, executor=executor)

    # memory first: later calls reuse heap pages freed by earlier ones (they would hide the peak)
    with MemoryPeak() as mp_serial:
        ours(gals, "probe")
    t_mem, r_mem = best(lambda: ours(gals, None), a.repeat)
    t_probe, r_probe = best(lambda: ours(gals, "probe"), a.repeat)
    t_buf, _ = best(lambda: ours(gals, "buffer"), a.repeat)
    rss_ours = peak_rss_mb()
    # DR1 catalogs (zpix, fastspec) are ordered by HEALPix pixel: measure that order too
    hpx = gals[np.argsort(vec2pix_nest(64, gals), kind="stable")]
    t_mem_hpx, _ = best(lambda: ours(hpx, None), a.repeat)
    t_probe_hpx, _ = best(lambda: ours(hpx, "probe"), a.repeat)
    hpx = hpx[:0]

    with LocalExecutor(a.threads) as pool:
        with MemoryPeak() as mp_pool:
            t0 = time.perf_counter()
            r_pool = ours(gals, "probe", pool)
            t_pool_cold = time.perf_counter() - t0
        t_pool_warm, r_pool_warm = best(lambda: ours(gals, "probe", pool), a.repeat)
    identical = all(
        np.array_equal(getattr(r_probe, k), getattr(r, k)) and getattr(r_probe, k).dtype == getattr(r, k).dtype
        for r in (r_pool, r_pool_warm) for k in ("flag", "hole", "shell")
    )
    del r_pool, r_pool_warm

    def reference() -> np.ndarray:
        tree = cKDTree(gals)
        lists = tree.query_ball_point(centres, r=radii, workers=a.threads)
        inside = np.zeros(len(gals), dtype=bool)
        for idx in lists:
            if idx:
                inside[idx] = True
        return inside

    t_ref, ref_in = best(reference, max(1, min(a.repeat, 2)))
    ours_in = r_mem.hole >= 0
    # query_ball_point includes |x - c| <= R; ours excludes the tolerance shell
    disagree = int(np.sum((ours_in != ref_in) & ~r_mem.shell))
    n = a.galaxies
    res.update(
        {
            "void_fraction": float(ours_in.mean()),
            "shell_galaxies": int(r_mem.shell.sum()),
            "disagree_outside_shell": disagree,
            "identical_serial_vs_pool": bool(identical),
            "edge_fraction_probe": float(np.mean(r_probe.flag == 2)),
            "membership_s": t_mem,
            "flags_probe_s": t_probe,
            "flags_buffer_s": t_buf,
            "flags_probe_pool_cold_s": t_pool_cold,
            "flags_probe_pool_warm_s": t_pool_warm,
            "reference_s": t_ref,
            "membership_per_s": n / t_mem,
            "membership_hpx_ordered_per_s": n / t_mem_hpx,
            "flags_probe_per_s": n / t_probe,
            "flags_probe_hpx_ordered_per_s": n / t_probe_hpx,
            "flags_buffer_per_s": n / t_buf,
            "flags_probe_pool_cold_per_s": n / t_pool_cold,
            "flags_probe_pool_warm_per_s": n / t_pool_warm,
            "reference_per_s": n / t_ref,
            "ratio_vs_cKDTree_query_ball_point": t_ref / t_mem,
            "ratio_flags_probe_vs_cKDTree_query_ball_point": t_ref / t_probe,
            "mem_beyond_inputs_mb": mp_serial.delta_mb,
            "mem_beyond_inputs_pool_mb": mp_pool.delta_mb,
            "inputs_mb": gals.nbytes / 2**20,
            "peak_rss_mb_after_ours": rss_ours,
            "peak_rss_mb": peak_rss_mb(),
            "load_average_1min": os.getloadavg()[0],
        }
    )
    print(
        f"{n:,} galaxies x {a.holes:,} holes on {a.threads} threads: membership "
        f"{res['membership_per_s'] / 1e6:.2f} M/s, flags(probe) {res['flags_probe_per_s'] / 1e6:.2f} M/s, "
        f"flags(buffer) {res['flags_buffer_per_s'] / 1e6:.2f} M/s, pool cold/warm "
        f"{res['flags_probe_pool_cold_per_s'] / 1e6:.2f}/{res['flags_probe_pool_warm_per_s'] / 1e6:.2f} M/s, "
        f"cKDTree {res['reference_per_s'] / 1e6:.2f} M/s (x{res['ratio_vs_cKDTree_query_ball_point']:.1f}); "
        f"memory beyond inputs {mp_serial.delta_mb:.0f} MB (pool {mp_pool.delta_mb:.0f} MB); "
        f"disagreements outside shell: {disagree}; identical serial vs pool: {identical}",
        file=sys.stderr,
    )
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
    return 0 if disagree == 0 and identical else 1


if __name__ == "__main__":
    sys.exit(main())
