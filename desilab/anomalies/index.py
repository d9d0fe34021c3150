"""Similarity search over VAE latents: an embedded HNSW index, exact search, or Milvus.

Backends (one interface: :meth:`build`, :meth:`query`, :meth:`save`, :meth:`load`):

* ``faiss`` (default) — FAISS ``IndexHNSWFlat``, M 16, efConstruction 100, **efSearch 128**.
  Chosen by ``bench/anomalies.py`` (1000 held-out queries, recall@10 against
  ``faiss.IndexFlatL2``, 2 threads). At 1M 128-d vectors: clustered latents 0.996 at p50
  0.32 ms (0.968 already at efSearch 32); an unclustered power-law Gaussian 0.960 at
  0.71 ms, where efSearch 64 gives only 0.889; uniform vectors (intrinsic dimension 128)
  0.165 — no graph index helps there. At 100k, hnswlib, usearch (M 16 / 32) and FAISS
  IVF-Flat were within noise of it on clustered data, and M 32 / efConstruction 200 cost
  2–4× the build for recall a larger efSearch buys more cheaply; FAISS M 16 built fastest
  of the graphs. Numbers in ``docs/anomalies.md``.
* ``hnswlib`` — the same algorithm through hnswlib.
* ``usearch`` — the same through usearch (``connectivity`` = M, ``expansion_*`` = ef).
* ``exact`` — brute-force L2 with NumPy (the reference for recall; fine below ~1e5 vectors).
* ``milvus`` — a Milvus collection through ``pymilvus`` when a URI is configured; a local
  file path runs Milvus Lite embedded (tested for real).

Distances are squared L2 between latent means.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from desilab.errors import ConfigError, FormatError, InputError

__all__ = ["BACKENDS", "SimilarityIndex", "exact_knn"]

BACKENDS = ("faiss", "hnswlib", "usearch", "exact", "milvus")


def exact_knn(data: np.ndarray, queries: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (squared L2) by brute force, in blocks of queries.

    Parameters
    ----------
    data
        (n, d) vectors.
    queries
        (m, d) or (d,) query vectors.
    k
        Neighbours per query (≤ n).
    block
        Queries per block; default: as many as keep the (block, n) float64 distance
        matrix near 128 MB (1M vectors: 16 queries per block).

    Returns
    -------
    rows, distances
        (m, k) row numbers into *data* and squared distances, nearest first.
    """
    data = np.asarray(data, dtype=np.float32)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if block is None:
        block = int(np.clip(2**24 // max(data.shape[0], 1), 1, 256))
    dn = (data.astype(np.float64) ** 2).sum(axis=1)
    rows = np.empty((queries.shape[0], k), dtype=np.int64)
    dist = np.empty((queries.shape[0], k))
    for i in range(0, queries.shape[0], block):
        q = queries[i : i + block]
        d2 = dn[None, :] - 2.0 * (q @ data.T).astype(np.float64) + (q.astype(np.float64) ** 2).sum(axis=1)[:, None]
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d2, part, axis=1)
        o = np.argsort(pd, axis=1)
        rows[i : i + block] = np.take_along_axis(part, o, axis=1)
        dist[i : i + block] = np.maximum(np.take_along_axis(pd, o, axis=1), 0.0)
    return rows, dist


class SimilarityIndex:
    """k-nearest-neighbour search over latent vectors keyed by TARGETID.

    Parameters
    ----------
    backend
        One of :data:`BACKENDS`.
    m, ef_construction, ef_search
        HNSW graph degree, build beam and query beam (hnswlib/faiss).
    milvus_uri
        Milvus server URI or a local file for Milvus Lite (``backend="milvus"``).
    collection
        Milvus collection name.
    threads
        Build threads.
    """

    def __init__(
        self,
        backend: str = "faiss",
        *,
        m: int = 16,
        ef_construction: int = 100,
        ef_search: int = 128,
        milvus_uri: str | None = None,
        collection: str = "desilab_latents",
        threads: int = 2,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(
                f"unknown index backend {backend!r}; use one of {', '.join(BACKENDS)}", parameter="backend"
            )
        if backend == "milvus" and not milvus_uri:
            raise ConfigError("the milvus backend needs a URI (a server or a local .db file)", parameter="milvus_uri")
        self.backend = backend
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.milvus_uri, self.collection, self.threads = milvus_uri, collection, threads
        self.ids = np.zeros(0, dtype=np.int64)
        self._index = None
        self._data: np.ndarray | None = None
        self.dim = 0

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> SimilarityIndex:
        """Index *vectors* (n, d) under *ids* (n,) TARGETIDs; returns self."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
            raise InputError(f"vectors {vectors.shape} and ids {ids.shape} disagree", parameter="vectors")
        self.ids = ids
        n, d = vectors.shape
        self.dim = d
        if self.backend == "exact":
            self._data = vectors
        elif self.backend == "hnswlib":
            import hnswlib

            idx = hnswlib.Index(space="l2", dim=d)
            idx.init_index(max_elements=n, ef_construction=self.ef_construction, M=self.m, random_seed=0)
            idx.set_num_threads(self.threads)
            idx.add_items(vectors, np.arange(n))
            idx.set_ef(self.ef_search)
            self._index = idx
        elif self.backend == "faiss":
            import faiss

            faiss.omp_set_num_threads(self.threads)
            idx = faiss.IndexHNSWFlat(d, self.m)
            idx.hnsw.efConstruction = self.ef_construction
            idx.add(vectors)
            idx.hnsw.efSearch = self.ef_search
            self._index = idx
        elif self.backend == "usearch":
            from usearch.index import Index

            idx = Index(ndim=d, metric="l2sq", dtype="f32", connectivity=self.m, expansion_add=self.ef_construction)
            # Inserted on one thread: usearch's concurrent insertion built graphs that now and
            # then lose a near-duplicate's own entry (measured: 1-2 of 50 self-queries missed
            # in ~30% of fresh 3000-vector builds; none in 10 single-thread builds).
            idx.add(np.arange(n), vectors, threads=1)
            self._index = idx
        else:
            from pymilvus import MilvusClient

            client = MilvusClient(self.milvus_uri)
            if client.has_collection(self.collection):
                client.drop_collection(self.collection)
            client.create_collection(self.collection, dimension=d, metric_type="L2", auto_id=False)
            for i in range(0, n, 5000):
                rows = [
                    {"id": int(t), "vector": v.tolist()}
                    for t, v in zip(ids[i : i + 5000], vectors[i : i + 5000], strict=True)
                ]
                client.insert(self.collection, rows)
            self._index = client
        return self

    def query(self, vectors: np.ndarray, k: int = 10, ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The *k* nearest TARGETIDs of each query vector and their squared L2 distances.

        Parameters
        ----------
        vectors
            (d,) or (m, d) query latents.
        k
            Neighbours per query (at most the index size).
        ef_search
            Query beam for this call (graph backends); default the index's ``ef_search``.
            Larger: higher recall, slower (see ``docs/anomalies.md`` for the measured trade-off).

        Returns
        -------
        ids, distances
            (m, k) TARGETIDs and squared L2 distances, nearest first.
        """
        q = np.atleast_2d(np.ascontiguousarray(vectors, dtype=np.float32))
        n = self.ids.size
        if n == 0:
            raise InputError("the index is empty", parameter="index")
        if q.shape[1] != self.dim:
            raise InputError(f"query vectors have {q.shape[1]} dimensions, the index {self.dim}", parameter="vectors")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", parameter="k")
        k = min(k, n)
        ef = max(int(ef_search or self.ef_search), k)
        if self.backend == "exact":
            rows, dist = exact_knn(self._data, q, k)
        elif self.backend == "hnswlib":
            self._index.set_ef(ef)
            rows, dist = self._index.knn_query(q, k=k)
        elif self.backend == "faiss":
            import faiss

            self._index.hnsw.efSearch = ef
            # one query uses one thread; an OpenMP team woken for it on busy cores costs
            # milliseconds (measured p95 12-36 ms at 2 threads vs < 1 ms at 1)
            faiss.omp_set_num_threads(1 if q.shape[0] < 4 * self.threads else self.threads)
            try:
                dist, rows = self._index.search(q, k)
            finally:
                faiss.omp_set_num_threads(self.threads)
        elif self.backend == "usearch":
            self._index.expansion_search = ef
            m = self._index.search(q, k, threads=self.threads)
            rows, dist = np.atleast_2d(m.keys), np.atleast_2d(m.distances)
        else:
            res = self._index.search(self.collection, data=q.tolist(), limit=k)
            out_ids = np.array([[h["id"] for h in hits] for hits in res], dtype=np.int64)
            out_d = np.array([[h["distance"] for h in hits] for hits in res], dtype=np.float64)
            return out_ids, out_d
        return self.ids[np.asarray(rows, dtype=np.int64)], np.asarray(dist, dtype=np.float64)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save to a folder (Milvus keeps its own data; only the settings and ids are written)."""
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "backend": self.backend,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "milvus_uri": self.milvus_uri,
            "collection": self.collection,
            "dim": self.dim,
        }
        (d / "index.json").write_text(json.dumps(meta))
        np.save(d / "ids.npy", self.ids)
        if self.backend == "exact":
            np.save(d / "vectors.npy", self._data)
        elif self.backend == "hnswlib":
            self._index.save_index(str(d / "hnsw.bin"))
        elif self.backend == "faiss":
            import faiss

            faiss.write_index(self._index, str(d / "faiss.index"))
        elif self.backend == "usearch":
            self._index.save(str(d / "usearch.index"))
        return d

    @classmethod
    def load(cls, path: str | os.PathLike[str], threads: int = 2) -> SimilarityIndex:
        """Load an index saved by :meth:`save`."""
        d = Path(path)
        try:
            meta = json.loads((d / "index.json").read_text())
            ids = np.load(d / "ids.npy")
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read similarity index: {exc}", file=str(d)) from exc
        obj = cls(
            meta["backend"],
            m=meta["m"],
            ef_construction=meta["ef_construction"],
            ef_search=meta["ef_search"],
            milvus_uri=meta["milvus_uri"],
            collection=meta["collection"],
            threads=threads,
        )
        obj.ids = ids
        obj.dim = int(meta["dim"])
        if obj.backend == "exact":
            obj._data = np.load(d / "vectors.npy")
        elif obj.backend == "hnswlib":
            import hnswlib

            idx = hnswlib.Index(space="l2", dim=int(meta["dim"]))
            idx.load_index(str(d / "hnsw.bin"))
            idx.set_ef(obj.ef_search)
            obj._index = idx
        elif obj.backend == "faiss":
            import faiss

            faiss.omp_set_num_threads(threads)
            obj._index = faiss.read_index(str(d / "faiss.index"))
        elif obj.backend == "usearch":
            from usearch.index import Index

            obj._index = Index.restore(str(d / "usearch.index"))
        else:
            from pymilvus import MilvusClient

            obj._index = MilvusClient(obj.milvus_uri)
        return obj
