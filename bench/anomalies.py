"""Benchmark of the anomaly pipeline's hot paths (prints one JSON object as its last line).

* preprocessing spectra/s (vectorised, all spectra at once) vs the same function called
  one spectrum at a time (reference ``rowwise``);
* scoring spectra/s with the default model (128-d latent; untrained weights: throughput
  does not depend on them) vs the PCA baseline (reference ``pca``), with FLOPs/spectrum;
* training seconds per epoch, measured on ``--train-n`` spectra and extrapolated linearly
  to 100k (said so in the output: ``train_epoch_100k_s_extrapolated``);
* similarity search on ``--n-vectors`` (default 1M) 128-d vectors: build time, memory,
  p50 latency and recall@10 against exact search, for hnswlib, FAISS HNSW and usearch.
  The vectors are Gaussian with a power-law variance per dimension (σ_i ∝ i^-0.7, like the
  few active dimensions of a VAE latent); isotropic Gaussians would be a harsher case.

Run: ``python bench/anomalies.py [--threads 2] [--n-vectors 1000000] [--skip-index]``.
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
    m = min(n, 200)
    t = time.perf_counter()
    for i in range(m):
        preprocess(o.wave, flux[i : i + 1], ivar[i : i + 1], z[i : i + 1], mask=mask[i : i + 1])
    row = m / (time.perf_counter() - t)
    return {"preprocess_per_s": vec, "preprocess_rowwise_per_s": row, "ratio_vs_rowwise": vec / row}


def bench_score(n: int, threads: int) -> dict:
    from sklearn.ensemble import IsolationForest

    from desilab.anomalies.baselines import PCABaseline
    from desilab.anomalies.detector import VAEAnomalyDetector, _wrap
    from desilab.anomalies.model import SpectrumVAE, flops_per_spectrum

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    flux = rng.normal(1.0, 0.1, (n, 4000)).astype(np.float32)
    ivar = np.full((n, 4000), 100.0, np.float32)
    ivar[:, :1500] = 0.0
    det = VAEAnomalyDetector(threads=threads, device="cpu")
    det.model_ = SpectrumVAE()
    det.model_.eval()
    det.iforest_ = IsolationForest(n_estimators=200, random_state=0).fit(rng.normal(size=(1000, 128)))
    det.standardise_ = {k: (0.0, 1.0) for k in ("CHI2_PIX", "CHI2_PEAK", "ELBO", "IFOREST")}
    det.score(_wrap(flux[:64], ivar[:64]))  # warm-up
    t = time.perf_counter()
    det.score(_wrap(flux, ivar))
    vae = n / (time.perf_counter() - t)
    pca = PCABaseline().fit(_wrap(flux[:2000], ivar[:2000]))
    t = time.perf_counter()
    pca.score_samples(_wrap(flux, ivar))
    pca_rate = n / (time.perf_counter() - t)
    out = {
        "score_per_s": vae,
        "score_pca_per_s": pca_rate,
        "ratio_vs_pca": vae / pca_rate,
        "flops_per_spectrum": flops_per_spectrum(det.model_),
    }
    if torch.cuda.is_available():
        det.device = "cuda"
        big = max(n, 20000)
        fl, iv = np.tile(flux, (big // n + 1, 1))[:big], np.tile(ivar, (big // n + 1, 1))[:big]
        det.score(_wrap(fl[:1024], iv[:1024]))
        t = time.perf_counter()
        det.score(_wrap(fl, iv))
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


def bench_index(
    n: int, threads: int, nq: int = 200, backends: tuple[str, ...] = ("hnswlib", "faiss", "usearch")
) -> dict:
    from desilab.anomalies.index import exact_knn

    rng = np.random.default_rng(2)
    d = 128
    scale = (np.arange(1, d + 1) ** -0.7).astype(np.float32)
    data = (rng.standard_normal((n, d), dtype=np.float32)) * scale
    q = (rng.standard_normal((nq, d), dtype=np.float32)) * scale
    t = time.perf_counter()
    truth, _ = exact_knn(data, q, 10)
    exact_ms = (time.perf_counter() - t) / nq * 1e3
    res: dict = {"n_vectors": n, "exact_p50_ms": exact_ms}

    def measure(name, build, query):
        rss0 = _current_rss_mb()
        t0 = time.perf_counter()
        idx = build()
        bt = time.perf_counter() - t0
        lat = []
        got = []
        for i in range(nq):
            t1 = time.perf_counter()
            got.append(query(idx, q[i : i + 1]))
            lat.append(time.perf_counter() - t1)
        pairs = zip(got, truth, strict=True)
        rec = np.mean([len(set(np.asarray(g).ravel().tolist()) & set(tr.tolist())) / 10 for g, tr in pairs])
        res[name] = {
            "build_s": bt,
            "p50_ms": float(np.median(lat) * 1e3),
            "recall_at_10": float(rec),
            "index_memory_mb": _current_rss_mb() - rss0,
        }
        del idx

    import hnswlib

    def b_hnsw():
        i = hnswlib.Index(space="l2", dim=d)
        i.init_index(max_elements=n, ef_construction=100, M=16, random_seed=0)
        i.set_num_threads(threads)
        i.add_items(data, np.arange(n))
        i.set_ef(64)
        return i

    if "hnswlib" in backends:
        measure("hnswlib", b_hnsw, lambda i, x: i.knn_query(x, k=10)[0])
    try:
        import faiss

        faiss.omp_set_num_threads(threads)

        def b_faiss():
            i = faiss.IndexHNSWFlat(d, 16)
            i.hnsw.efConstruction = 100
            i.add(data)
            i.hnsw.efSearch = 64
            return i

        if "faiss" in backends:
            measure("faiss_hnsw", b_faiss, lambda i, x: i.search(x, 10)[1])
    except ImportError:
        res["faiss_hnsw"] = "not installed"
    try:
        from usearch.index import Index

        def b_us():
            i = Index(ndim=d, metric="l2sq", connectivity=16, expansion_add=100, expansion_search=64)
            i.add(np.arange(n), data, threads=threads)
            return i

        if "usearch" in backends:
            measure("usearch", b_us, lambda i, x: i.search(x[0], 10).keys)
    except ImportError:
        res["usearch"] = "not installed"
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-pre", type=int, default=2000)
    ap.add_argument("--n-score", type=int, default=4096)
    ap.add_argument("--train-n", type=int, default=1024)
    ap.add_argument("--n-vectors", type=int, default=1_000_000)
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--index-backends", default="hnswlib,faiss,usearch")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out: dict = {"threads": a.threads, "cuda": torch.cuda.is_available()}
    out.update(bench_preprocess(a.n_pre))
    print(json.dumps(out), flush=True)
    out.update(bench_score(a.n_score, a.threads))
    print(json.dumps(out), flush=True)
    out.update(bench_train(a.train_n, a.threads))
    print(json.dumps(out), flush=True)
    if not a.skip_index:
        out["index"] = bench_index(a.n_vectors, a.threads, backends=tuple(a.index_backends.split(",")))
    out["peak_rss_mb"] = _rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
