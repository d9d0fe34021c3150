"""Benchmark of the anomaly pipeline's hot paths (prints one JSON object as its last line).

* preprocessing spectra/s (vectorised, all spectra at once) vs the same function called
  one spectrum at a time (reference ``rowwise``);
* scoring spectra/s with the default model (128-d latent; untrained weights: throughput
  does not depend on them) vs the PCA baseline (reference ``pca``), with FLOPs/spectrum;
* training seconds per epoch, measured on ``--train-n`` spectra and extrapolated linearly
  to 100k (said so in the output: ``train_epoch_100k_s_extrapolated``);
* reading shuffled mini-batches from an on-disk cache (``ShardStream``) vs gathering
  random rows from the memory maps (reference ``random_access``);
* peak resident memory of training and of scoring a cache of ``--rss-n`` spectra read
  shard by shard (``stream_train_peak_rss_mb``, ``stream_score_peak_rss_mb``) vs the same
  steps with the cache loaded whole (reference ``memory``, ``--rss-memory-n``), each step in
  a fresh process;
* similarity search on ``--n-vectors`` (default 1M) 128-d vectors: for every candidate of
  ``INDEX_CANDIDATES`` (FAISS HNSW, hnswlib, usearch, FAISS IVF-Flat; ``--index-candidates``
  to choose) build time, memory, and for a sweep of query beams (efSearch / expansion /
  nprobe) p50 and p95 latency of single queries and recall@10 on ``--index-queries``
  (default 1000) held-out queries against exact search (``faiss.IndexFlatL2``); datasets
  ``mixture`` (clustered, power-law spread: the realistic case the goal is quoted on),
  ``powerlaw`` (one Gaussian, the same spread) and ``uniform`` (the hard case);
  ``index.best`` names, per dataset, the fastest setting reaching recall@10 ≥ 0.95.

Run: ``python bench/anomalies.py [--threads 2] [--n-vectors 1000000] [--skip-index] [--index-only]
[--rss-n 6000,12000] [--rss-memory-n 12000] [--rss-buffer-rows 1024] [--skip-rss]``.
CUDA numbers (training and scoring) are added when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def _rss_mb() -> float:
    """Peak resident memory of this process [MB]."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    """Current resident memory [MB] (Linux /proc; the peak would hide an index built after a larger temporary)."""
    import os

    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_preprocess(n: int) -> dict:
    """Preprocessing spectra/s: vectorised (500 at a time) vs one spectrum at a time, and into the cache.

    ``preprocess_to_cache_per_s`` adds writing each 500-spectrum block as one cache shard
    (the production path: the 1.6M never sit in memory).
    """
    import tempfile

    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.preprocess import preprocess
    from desilab.anomalies.simulate import simulate_normal

    o = simulate_normal(100, seed=5)
    reps = int(np.ceil(n / 100))
    flux, ivar, mask, z = (np.tile(a, (reps, 1))[:n] for a in (o.flux, o.ivar, o.mask, o.z[:, None]))
    z = z[:, 0]
    t = time.perf_counter()
    for i in range(0, n, 500):
        preprocess(o.wave, flux[i : i + 500], ivar[i : i + 500], z[i : i + 500], mask=mask[i : i + 500])
    vec = n / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SpectrumCache(tmp, create=True)
        t = time.perf_counter()
        for i in range(0, n, 500):
            p = preprocess(o.wave, flux[i : i + 500], ivar[i : i + 500], z[i : i + 500], mask=mask[i : i + 500])
            cache.append(p, source=str(i))
        to_cache = n / (time.perf_counter() - t)
    m = min(n, 200)
    t = time.perf_counter()
    for i in range(m):
        preprocess(o.wave, flux[i : i + 1], ivar[i : i + 1], z[i : i + 1], mask=mask[i : i + 1])
    row = m / (time.perf_counter() - t)
    return {
        "preprocess_per_s": vec,
        "preprocess_to_cache_per_s": to_cache,
        "preprocess_rowwise_per_s": row,
        "ratio_vs_rowwise": vec / row,
        "preprocess_n": n,
    }


def bench_train_stream(threads: int, n_cache: int = 4096, n_steps: int = 24, batch_size: int = 64) -> dict:
    """Training steps fed by ``ShardStream`` from an on-disk cache; 100k-spectrum epoch **estimated**.

    Times *n_steps* optimiser steps (after 2 warm-up steps) of the default model on
    shuffled batches read from a cache, and scales the time per step to the
    ceil(90 000 / batch) steps of a 100k-spectrum epoch with a 10% validation split (the
    validation forward passes, ~1/3 of a step per spectrum, are not included).
    """
    import tempfile

    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.model import SpectrumVAE, gaussian_terms, kl_divergence
    from desilab.anomalies.preprocess import REST_NPIX, Preprocessed
    from desilab.anomalies.stream import ShardStream

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    model = SpectrumVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SpectrumCache(tmp, create=True)
        for i in range(0, n_cache, 1024):
            k = min(1024, n_cache - i)
            iv = np.full((k, REST_NPIX), 100.0, np.float32)
            iv[:, :1500] = 0.0
            flux = rng.normal(1.0, 0.1, (k, REST_NPIX)).astype(np.float32)
            cache.append(
                Preprocessed(flux, iv, np.ones(k), np.ones(k), np.ones(k), np.ones(k, bool), np.arange(i, i + k))
            )
        st = ShardStream(cache, batch_size=batch_size, seed=0, buffer_rows=2048, chunk_rows=128)
        times = []
        for j, bt in enumerate(st.epoch(0)):
            if j >= n_steps + 2:
                break
            t = time.perf_counter()
            f, iv = torch.from_numpy(bt.data.flux), torch.from_numpy(bt.data.ivar)
            recon, mu, logvar = model(f, iv, generator=gen, sample=True)
            _, loglik, _ = gaussian_terms(f, iv, recon, model.model_sigma())
            loss = ((-loglik + kl_divergence(mu, logvar)) / model.npix).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
    step = float(np.median(times[2:]))
    steps = int(np.ceil(90_000 / batch_size))
    return {
        "train_stream_per_s": batch_size / step,
        "train_stream_step_s": step,
        "train_epoch_100k_s_estimated_stream": step * steps,
        "train_stream_steps_measured": len(times) - 2,
    }


def bench_stream(n: int, batch_size: int = 64, buffer_rows: int = 4096) -> dict:
    """Shuffled mini-batches read from an on-disk cache of *n* spectra (ShardStream), spectra/s.

    The cache is written first (so the page cache is warm: this is the CPU cost of the
    block shuffle and copies, the part that must stay far below a training step's cost);
    reference: batches of a fully random order gathered row by row from the memory maps
    (``ratio_vs_random_access``; with a warm page cache this is the reference's best case:
    on a cold 51 GB cache each of its rows is a random disk read, the stream's are
    ``chunk_rows``-long sequential reads).
    """
    import tempfile
    import tracemalloc

    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.preprocess import REST_NPIX, Preprocessed
    from desilab.anomalies.stream import ShardStream

    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory() as tmp:
        cache = SpectrumCache(tmp, create=True)
        shard = 2000
        for i in range(0, n, shard):
            k = min(shard, n - i)
            cache.append(
                Preprocessed(
                    rng.normal(1, 0.1, (k, REST_NPIX)).astype(np.float32),
                    np.full((k, REST_NPIX), 4.0, np.float32),
                    np.ones(k),
                    np.ones(k),
                    np.ones(k),
                    np.ones(k, bool),
                    np.arange(i, i + k),
                )
            )
        st = ShardStream(cache, batch_size=batch_size, seed=0, buffer_rows=buffer_rows, chunk_rows=256)
        sum(len(b.data) for b in st.epoch(1))  # warm-up (first touch of the pages)
        t = time.perf_counter()
        rows = sum(len(b.data) for b in st.epoch(0))
        s = time.perf_counter() - t
        tracemalloc.start()
        sum(len(b.data) for b in st.epoch(2))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # reference: a fully random order, each batch gathered row by row from the memory maps
        shards = [cache.shard(i) for i in range(cache.n_shards)]
        perm = np.random.default_rng(0).permutation(n)
        t = time.perf_counter()
        for j in range(0, n, batch_size):
            rr = perm[j : j + batch_size].tolist()
            _ = [np.stack([getattr(shards[r // shard], f)[r % shard] for r in rr]) for f in ("flux", "ivar")]
        ra = n / (time.perf_counter() - t)
    per_s = rows / s
    return {
        "stream_read_per_s": per_s,
        "stream_random_access_per_s": ra,
        "ratio_vs_random_access": per_s / ra,
        "stream_n": n,
        "stream_buffer_rows": buffer_rows,
        "stream_peak_heap_mb": peak / 2**20,
        "stream_cache_mb": n * REST_NPIX * 8 / 2**20,
    }


def bench_score(n: int, threads: int) -> dict:
    """Scoring throughput of the default detector (every component: VAE forward pass, χ², ELBO,
    matched-filter scan, latent Isolation Forest, ensemble) vs the PCA baseline's scoring."""
    from desilab.anomalies.baselines import PCABaseline
    from desilab.anomalies.detector import VAEAnomalyDetector, _wrap
    from desilab.anomalies.model import SpectrumVAE, flops_per_spectrum

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    flux = rng.normal(1.0, 0.1, (n, 4000)).astype(np.float32)
    ivar = np.full((n, 4000), 100.0, np.float32)
    ivar[:, :1500] = 0.0
    det = VAEAnomalyDetector(threads=threads, device="cpu")
    det.model_ = SpectrumVAE()  # untrained weights: the cost does not depend on them
    det.model_.eval()
    det._fit_scores(flux[:1024], ivar[:1024])  # scan weights, latent forest, standardisation
    det.score(_wrap(flux[:64], ivar[:64]))  # warm-up
    t = time.perf_counter()
    det.score(_wrap(flux, ivar))
    vae = n / (time.perf_counter() - t)
    # the same with one torch thread: on a shared machine OpenMP threads that wait for each
    # other can make two threads slower than one (reported side by side, never hidden)
    det.threads = 1
    t = time.perf_counter()
    det.score(_wrap(flux, ivar))
    vae1 = n / (time.perf_counter() - t)
    det.threads = threads
    torch.set_num_threads(threads)
    x = torch.from_numpy(flux[:512])
    iv = torch.from_numpy(ivar[:512])
    with torch.inference_mode():
        t = time.perf_counter()
        det.model_(x, iv, sample=False)
        fwd = 512 / (time.perf_counter() - t)
    pca = PCABaseline().fit(_wrap(flux[:2000], ivar[:2000]))
    t = time.perf_counter()
    pca.score_samples(_wrap(flux, ivar))
    pca_rate = n / (time.perf_counter() - t)
    out = {
        "score_per_s": vae,
        "score_threads1_per_s": vae1,
        "score_forward_only_per_s": fwd,
        "score_pca_per_s": pca_rate,
        "ratio_vs_pca": vae / pca_rate,
        "flops_per_spectrum": flops_per_spectrum(det.model_),
    }
    if torch.cuda.is_available():
        det.device = "cuda"
        big = max(n, 20000)
        fl, iv2 = np.tile(flux, (big // n + 1, 1))[:big], np.tile(ivar, (big // n + 1, 1))[:big]
        det.score(_wrap(fl[:1024], iv2[:1024]))
        t = time.perf_counter()
        det.score(_wrap(fl, iv2))
        out["score_cuda_per_s"] = big / (time.perf_counter() - t)
    return out


def bench_train(n: int, threads: int) -> dict:
    from desilab.anomalies.preprocess import Preprocessed
    from desilab.anomalies.train import TrainConfig, train_vae

    rng = np.random.default_rng(1)
    flux = rng.normal(1.0, 0.1, (n, 4000)).astype(np.float32)
    ivar = np.full((n, 4000), 100.0, np.float32)
    ivar[:, :1500] = 0.0
    pre = Preprocessed(flux, ivar, np.ones(n), np.ones(n), np.ones(n), np.ones(n, bool), np.arange(n))
    out = {}
    for dev in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        cfg = TrainConfig(epochs=1, threads=threads, device=dev, val_fraction=0.02, batch_size=64)
        t = time.perf_counter()
        train_vae(pre, cfg)
        s = time.perf_counter() - t
        out[f"train_{dev}_per_s"] = n / s
        out[f"train_epoch_100k_s_extrapolated_{dev}"] = s * 100_000 / n
    out["train_measured_on_n"] = n
    return out


def _synthetic_cache(path: str, n: int, shard: int = 1000, seed: int = 6) -> None:
    """Write *n* synthetic rest-frame spectra straight into a cache (shards of *shard* rows).

    Continuum-like flux with noise and a used band of ~1900 pixels whose start follows a
    redshift drawn per spectrum (so scoring crops as on real data); valid, unit scale.
    """
    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.preprocess import REST_NPIX, Preprocessed

    rng = np.random.default_rng(seed)
    cache = SpectrumCache(path, create=True)
    x = np.linspace(0.0, 1.0, REST_NPIX, dtype=np.float32)
    for i in range(0, n, shard):
        k = min(shard, n - i)
        z = rng.uniform(0.5, 3.0, k)
        start = (np.log10(3600.0 / (1 + z) / 800.0) / 2.5e-4).astype(np.int64).clip(0, REST_NPIX - 1900)
        cols = np.arange(REST_NPIX)[None, :]
        used = (cols >= start[:, None]) & (cols < start[:, None] + 1900)
        snr = rng.uniform(2.0, 20.0, k).astype(np.float32)
        ivar = np.where(used, snr[:, None] ** 2, 0.0).astype(np.float32)
        slope = rng.normal(0.0, 0.3, k).astype(np.float32)
        noise = rng.standard_normal((k, REST_NPIX), np.float32) / snr[:, None]
        flux = 1.0 + slope[:, None] * (x[None, :] - 0.5) + noise
        flux = np.where(used, flux, 0.0).astype(np.float32)
        cache.append(
            Preprocessed(flux, ivar, z, np.ones(k), snr.astype(np.float64), np.ones(k, bool), np.arange(i, i + k)),
            save_manifest=False,
        )
    cache.save_manifest()


_RSS_MODEL = {"latent_dim": 16, "hidden": 32, "epochs": 1, "n_estimators": 50}
"""A small model for the memory measurement: resident memory is set by the spectra held, not the weights."""


def _rss_child(mode: str, path: str, work: str, threads: int, buffer_rows: int) -> dict:
    """One measured step in a fresh process: ``train`` or ``score``, from the cache streamed or loaded whole."""
    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.detector import VAEAnomalyDetector
    from desilab.anomalies.stage import score_to_catalog, train_detector

    step, how = mode.split("-")
    cache = SpectrumCache(path)
    t = time.perf_counter()
    data = cache if how == "stream" else cache.load()
    if step == "train":
        train_detector(data, work, seed=0, threads=threads, device="cpu", buffer_rows=buffer_rows, **_RSS_MODEL)
    else:
        det = VAEAnomalyDetector.load(work)
        score_to_catalog(det, data, f"{work}/out-{how}", reducer="pca")
    return {"seconds": time.perf_counter() - t, "peak_rss_mb": _rss_mb(), "n": len(cache)}


def bench_stream_rss(
    ns: tuple[int, ...], memory_ns: tuple[int, ...], threads: int, buffer_rows: int | None = None
) -> dict:
    """Peak RSS of training (+ calibration) and of scoring a cache of *n* spectra: streamed vs loaded whole.

    Each step runs in a fresh process (``ru_maxrss`` is a high-water mark), on a cache
    written straight from synthetic spectra, with a small model (``_RSS_MODEL``, one
    epoch): the streamed path should stay flat in *n* (one window of *buffer_rows* for
    training, ``SCORE_ROWS`` for scoring, the post-training fits' fixed subsample, plus
    ~1 kB per object of scores), the loaded path grows by 32 kB per spectrum (flux + ivar)
    times its copies.
    ``*_peak_rss_mb`` keys are for the largest *n*; per-size values are under ``rss``.
    The base process (interpreter, torch, sklearn) is ``rss_baseline_mb``. *buffer_rows*
    (default ``STREAM_BUFFER_ROWS``) is the training read window: the streamed peaks are
    flat in *n* once the training rows (63% of *n*) fill a window.
    """
    import subprocess
    import sys
    import tempfile

    from desilab.anomalies.stage import STREAM_BUFFER_ROWS

    buffer_rows = buffer_rows or STREAM_BUFFER_ROWS

    def child(args: list[str]) -> dict:
        opts = ["--threads", str(threads), "--rss-buffer-rows", str(buffer_rows)]
        proc = subprocess.run(
            [sys.executable, __file__, "--rss-child", *args, *opts], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"peak-RSS step {args[0]} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    res: dict = {"rss": {}, "stream_rss_buffer_rows": buffer_rows}
    with tempfile.TemporaryDirectory() as tmp:
        res["rss_baseline_mb"] = child(["baseline", tmp, tmp])["peak_rss_mb"]
        for n in sorted(set(ns) | set(memory_ns)):
            cache = f"{tmp}/cache{n}"
            _synthetic_cache(cache, n)
            row: dict = {"cache_mb": n * 4000 * 8 / 2**20}
            for how in ("stream",) * (n in ns) + ("memory",) * (n in memory_ns):
                work = f"{tmp}/model{n}-{how}"
                for step in ("train", "score"):
                    r = child([f"{step}-{how}", cache, work])
                    row[f"{how}_{step}_peak_rss_mb"] = r["peak_rss_mb"]
                    row[f"{how}_{step}_s"] = r["seconds"]
            res["rss"][str(n)] = row
    for how, sizes in (("stream", ns), ("memory", memory_ns)):
        if sizes:
            top = res["rss"][str(max(sizes))]
            res[f"{how}_train_peak_rss_mb"] = top[f"{how}_train_peak_rss_mb"]
            res[f"{how}_score_peak_rss_mb"] = top[f"{how}_score_peak_rss_mb"]
            res[f"{how}_rss_n"] = max(sizes)
    return res


def latent_like(n: int, d: int, kind: str, seed: int) -> np.ndarray:
    """Synthetic 128-d "latents": ``mixture`` (realistic), ``powerlaw`` or ``uniform`` (the hard case).

    ``mixture``: 512 Gaussian clusters whose centres and spreads fall off as a power law
    per dimension (σ_i ∝ i^-0.7, within-cluster spread 0.35 of the centre spread): latents
    of real spectra are clustered (quasar sub-populations, redshift coverage) and use few
    effective dimensions (a VAE's KL term collapses most latent means towards 0).
    ``powerlaw``: one Gaussian with the same power-law spread (no clusters; the set the
    earlier benchmark used). ``uniform``: i.i.d. U(-1, 1) in every dimension (intrinsic
    dimension 128: the worst case for graph and partition indexes).
    The same *seed* gives the same distribution (cluster centres); a different
    *draw_seed* in :func:`_draw` gives new points from it (queries are never in the data).
    """
    return _draw(n, d, kind, seed, seed + 1000)


def _draw(n: int, d: int, kind: str, seed: int, draw_seed: int) -> np.ndarray:
    rng = np.random.default_rng(draw_seed)
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, (n, d)).astype(np.float32)
    scale = (np.arange(1, d + 1) ** -0.7).astype(np.float32)
    if kind == "powerlaw":
        return rng.standard_normal((n, d), dtype=np.float32) * scale
    if kind != "mixture":
        raise ValueError(f"unknown vector distribution {kind!r}")
    crng = np.random.default_rng(seed)
    k = 512
    centres = crng.standard_normal((k, d), dtype=np.float32) * scale
    weights = crng.dirichlet(np.full(k, 2.0))
    lab = rng.choice(k, size=n, p=weights)
    out = np.empty((n, d), np.float32)
    for i in range(0, n, 100_000):  # bounded temporaries
        sl = slice(i, min(n, i + 100_000))
        out[sl] = centres[lab[sl]] + 0.35 * scale * rng.standard_normal((sl.stop - sl.start, d), dtype=np.float32)
    return out


# (name, backend, build parameters, query-beam values swept after one build)
INDEX_CANDIDATES: list[tuple[str, str, dict, tuple[int, ...]]] = [
    ("faiss_hnsw_m16_efc100", "faiss", {"m": 16, "ef_construction": 100}, (32, 64, 128, 256, 512)),
    ("faiss_hnsw_m32_efc200", "faiss", {"m": 32, "ef_construction": 200}, (32, 64, 128, 256, 512)),
    ("hnswlib_m16_efc200", "hnswlib", {"m": 16, "ef_construction": 200}, (32, 64, 128, 256, 512)),
    ("usearch_m16_efc128", "usearch", {"m": 16, "ef_construction": 128}, (32, 64, 128, 256, 512)),
    ("usearch_m32_efc200", "usearch", {"m": 32, "ef_construction": 200}, (32, 64, 128, 256, 512)),
    ("faiss_ivf4096_flat", "faiss_ivf", {"nlist": 4096}, (8, 16, 32, 64, 128)),
]


def _index_build(backend: str, p: dict, data: np.ndarray, threads: int):
    n, d = data.shape
    if backend == "faiss":
        import faiss

        faiss.omp_set_num_threads(threads)
        i = faiss.IndexHNSWFlat(d, p["m"])
        i.hnsw.efConstruction = p["ef_construction"]
        i.add(data)
        return i
    if backend == "faiss_ivf":
        import faiss

        faiss.omp_set_num_threads(threads)
        q = faiss.IndexFlatL2(d)
        i = faiss.IndexIVFFlat(q, d, p["nlist"])
        rng = np.random.default_rng(0)
        i.train(data[rng.choice(n, size=min(n, 64 * p["nlist"]), replace=False)])
        i.add(data)
        return i
    if backend == "hnswlib":
        import hnswlib

        i = hnswlib.Index(space="l2", dim=d)
        i.init_index(max_elements=n, ef_construction=p["ef_construction"], M=p["m"], random_seed=0)
        i.set_num_threads(threads)
        i.add_items(data, np.arange(n))
        return i
    from usearch.index import Index

    i = Index(ndim=d, metric="l2sq", dtype="f32", connectivity=p["m"], expansion_add=p["ef_construction"])
    i.add(np.arange(n), data, threads=threads)
    return i


def _index_query(backend: str, i, ef: int, x: np.ndarray, k: int) -> np.ndarray:
    # FAISS queries run with 1 OpenMP thread (set in bench_index, as SimilarityIndex.query does
    # for small batches): one query cannot use two, and an OpenMP team on busy cores costs
    # milliseconds of wake-up
    if backend == "faiss":
        i.hnsw.efSearch = ef
        return i.search(x, k)[1][0]
    if backend == "faiss_ivf":
        i.nprobe = ef
        return i.search(x, k)[1][0]
    if backend == "hnswlib":
        i.set_ef(ef)
        return i.knn_query(x, k=k)[0][0]
    i.expansion_search = ef
    return np.asarray(i.search(x[0], k, threads=1).keys)


def bench_index(
    n: int,
    threads: int,
    nq: int = 1000,
    kinds: tuple[str, ...] = ("mixture", "powerlaw", "uniform"),
    candidates: tuple[str, ...] | None = None,
    uniform_candidates: tuple[str, ...] | None = None,
    k: int = 10,
) -> dict:
    """Build every candidate index on *n* 128-d vectors; p50 latency and recall@k vs exact search.

    Exact neighbours come from ``faiss.IndexFlatL2`` (brute force). Latency is per single
    query (batch of 1, the interactive case), median over *nq* queries drawn from the same
    distribution as the data but not in it. Memory is the growth of the process' resident
    set while the index is built (the index holds its own copy of the vectors).
    *uniform_candidates* limits the candidates built on the ``uniform`` set (1M-vector
    builds take minutes each on 2 cores).
    """
    import faiss

    faiss.omp_set_num_threads(threads)
    d = 128
    names = [c[0] for c in INDEX_CANDIDATES]
    chosen = set(candidates or names)
    res: dict = {"n_vectors": n, "n_queries": nq, "k": k, "dim": d, "threads": threads, "datasets": {}}
    for kind in kinds:
        data = _draw(n, d, kind, seed=7, draw_seed=8)
        q = _draw(nq, d, kind, seed=7, draw_seed=9)
        flat = faiss.IndexFlatL2(d)
        flat.add(data)
        t = time.perf_counter()
        _, truth = flat.search(q, k)
        out: dict = {"exact_faiss_flat_ms_per_query_batched": (time.perf_counter() - t) / nq * 1e3}
        del flat
        use = chosen if kind != "uniform" or uniform_candidates is None else set(uniform_candidates)
        for name, backend, p, efs in INDEX_CANDIDATES:
            if name not in use:
                continue
            rss0 = _current_rss_mb()
            t0 = time.perf_counter()
            idx = _index_build(backend, p, data, threads)
            bt = time.perf_counter() - t0
            mem = _current_rss_mb() - rss0
            faiss.omp_set_num_threads(1)
            sweep = []
            for ef in efs:
                lat = np.empty(nq)
                rec = np.empty(nq)
                _index_query(backend, idx, ef, q[:1], k)  # warm-up
                for j in range(nq):
                    t1 = time.perf_counter()
                    got = _index_query(backend, idx, ef, q[j : j + 1], k)
                    lat[j] = time.perf_counter() - t1
                    rec[j] = len(set(np.asarray(got).tolist()) & set(truth[j].tolist())) / k
                sweep.append(
                    {
                        "ef_search": ef,
                        "p50_ms": float(np.median(lat) * 1e3),
                        "p95_ms": float(np.quantile(lat, 0.95) * 1e3),
                        f"recall_at_{k}": float(rec.mean()),
                    }
                )
                print(json.dumps({"dataset": kind, "candidate": name, "build_s": bt, **sweep[-1]}), flush=True)
            faiss.omp_set_num_threads(threads)
            out[name] = {"backend": backend, **p, "build_s": bt, "index_memory_mb": mem, "sweep": sweep}
            del idx
        res["datasets"][kind] = out
    res["best"] = _pick_best(res, k)
    return res


def _pick_best(res: dict, k: int, min_recall: float = 0.95) -> dict:
    """Per dataset: the (candidate, ef) with the lowest p50 among those reaching *min_recall*."""
    best: dict = {}
    for kind, out in res["datasets"].items():
        cands = [
            (s["p50_ms"], name, s)
            for name, v in out.items()
            if isinstance(v, dict)
            for s in v["sweep"]
            if s[f"recall_at_{k}"] >= min_recall
        ]
        if cands:
            _, name, s = min(cands, key=lambda c: c[0])
            best[kind] = {
                "candidate": name,
                **s,
                "build_s": out[name]["build_s"],
                "memory_mb": out[name]["index_memory_mb"],
            }
        else:
            best[kind] = None
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-pre", type=int, default=2000)
    ap.add_argument("--n-score", type=int, default=4096)
    ap.add_argument("--train-n", type=int, default=1024)
    ap.add_argument("--stream-n", type=int, default=20000, help="spectra in the cache read by ShardStream")
    ap.add_argument("--n-vectors", type=int, default=1_000_000)
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--index-queries", type=int, default=1000)
    ap.add_argument(
        "--index-kinds", default="mixture,powerlaw,uniform", help="vector distributions: mixture, powerlaw, uniform"
    )
    ap.add_argument("--index-candidates", default="", help="comma-separated candidate names (default: all)")
    ap.add_argument(
        "--uniform-candidates",
        default="faiss_hnsw_m16_efc100",
        help="candidates built on the uniform set (default: the default index only; '' = all)",
    )
    ap.add_argument("--index-only", action="store_true")
    ap.add_argument("--rss-n", default="6000,12000", help="cache sizes for the streamed peak-RSS measurement")
    ap.add_argument("--rss-memory-n", default="12000", help="cache sizes for the loaded-whole peak-RSS measurement")
    ap.add_argument(
        "--rss-buffer-rows", type=int, default=1024, help="training read window of the streamed RSS measurement"
    )
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-child", nargs=3, metavar=("MODE", "CACHE", "WORK"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss_child:
        mode, cache, work = a.rss_child
        if mode == "baseline":
            import desilab.anomalies.stage  # noqa: F401 - the imports a measured step pays

            print(json.dumps({"peak_rss_mb": _rss_mb()}))
        else:
            print(json.dumps(_rss_child(mode, cache, work, a.threads, a.rss_buffer_rows)))
        return
    out: dict = {"threads": a.threads, "cuda": torch.cuda.is_available()}
    if not a.index_only:
        out.update(bench_preprocess(a.n_pre))
        print(json.dumps(out), flush=True)
        out.update(bench_score(a.n_score, a.threads))
        print(json.dumps(out), flush=True)
        out.update(bench_train(a.train_n, a.threads))
        print(json.dumps(out), flush=True)
        out.update(bench_stream(a.stream_n))
        print(json.dumps(out), flush=True)
        for th in sorted({1, a.threads}):  # 1 thread too: OpenMP teams on busy shared cores can be far slower
            out.update({f"{k}_threads{th}": v for k, v in bench_train_stream(th).items()})
            print(json.dumps(out), flush=True)
        if not a.skip_rss:
            ns = tuple(int(x) for x in a.rss_n.split(",") if x)
            mem = tuple(int(x) for x in a.rss_memory_n.split(",") if x)
            out.update(bench_stream_rss(ns, mem, a.threads, a.rss_buffer_rows))
            print(json.dumps(out), flush=True)
    if not a.skip_index:
        out["index"] = bench_index(
            a.n_vectors,
            a.threads,
            nq=a.index_queries,
            kinds=tuple(a.index_kinds.split(",")),
            candidates=tuple(a.index_candidates.split(",")) if a.index_candidates else None,
            uniform_candidates=tuple(a.uniform_candidates.split(",")) if a.uniform_candidates else None,
        )
    out["peak_rss_mb"] = _rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
