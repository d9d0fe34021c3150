"""Injections change what they say they change; similarity search (embedded and Milvus Lite); clustering."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.anomalies.cluster import cluster_latents
from desilab.anomalies.index import SimilarityIndex, exact_knn
from desilab.anomalies.inject import INJECTION_CLASSES, inject, inject_one
from desilab.anomalies.preprocess import rest_grid
from desilab.errors import ConfigError, InputError


def _one(pre, zlo, zhi):
    return int(np.nonzero((pre.z > zlo) & (pre.z < zhi))[0][0])


def test_every_class_changes_the_spectrum(pre) -> None:
    i = _one(pre, 1.7, 2.2)
    for cls in INJECTION_CLASSES:
        f, _iv, info = inject_one(cls, pre.flux[i], pre.ivar[i], float(pre.z[i]), np.random.default_rng(1))
        good = pre.ivar[i] > 0
        assert info["CLASS"] == cls
        assert np.abs(f - pre.flux[i])[good].max() > 0.05, cls
    with pytest.raises(InputError, match="unknown injection class"):
        inject_one("nope", pre.flux[i], pre.ivar[i], 1.0, np.random.default_rng(0))


def test_amplitudes_within_documented_ranges(pre) -> None:
    i = _one(pre, 1.7, 2.2)
    lam = rest_grid()
    for seed in range(20):
        rng = np.random.default_rng(seed)
        f, _, info = inject_one("lobal", pre.flux[i], pre.ivar[i], float(pre.z[i]), rng)
        assert 0.3 <= info["DEPTH"] <= 0.9 and 2000 <= info["WIDTH"] <= 20000
        # the C IV trough takes out depth x flux just blueward of 1549 A at vmin + width/2
        v = info["VMIN"] + info["WIDTH"] / 2
        j = int(np.argmin(np.abs(lam - 1549.0 * (1 - v / 299792.458))))
        if info["WIDTH"] > 1500 and pre.ivar[i, j] > 0 and lam[j] > 1420:
            assert f[j] / pre.flux[i, j] == pytest.approx(1 - info["DEPTH"], abs=0.05)
        _, _, wz = inject_one("wrong_redshift", pre.flux[i], pre.ivar[i], float(pre.z[i]), rng)
        assert round(abs(wz["DZ"]), 2) in (0.05, 0.2, 1.0)
        _, _, st = inject_one("stellar_contamination", pre.flux[i], pre.ivar[i], float(pre.z[i]), rng)
        assert 0.1 <= st["STAR_FRAC"] <= 0.5


def test_inject_batch_leaves_normals(pre) -> None:
    sub = pre.subset(np.arange(4))
    out, infos = inject(sub, ["", "hot_pixels", "", "dead_columns"], seed=3)
    np.testing.assert_array_equal(out.flux[0], sub.flux[0])
    assert not np.array_equal(out.flux[1], sub.flux[1])
    assert [d["CLASS"] for d in infos] == ["", "hot_pixels", "", "dead_columns"]


@pytest.mark.parametrize("backend", ["hnswlib", "faiss", "usearch", "exact"])
def test_embedded_index_recall(backend, tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(3000, 32)).astype(np.float32)
    ids = np.arange(3000, dtype=np.int64) * 7 + 100
    idx = SimilarityIndex(backend, ef_search=64).build(data, ids)
    q = data[:50] + 0.01 * rng.normal(size=(50, 32)).astype(np.float32)
    got, dist = idx.query(q, k=10)
    truth, _ = exact_knn(data, q, 10)
    recall = np.mean([len(set(g) & set(ids[t])) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95
    assert np.all(got[:, 0] == ids[:50]) and np.all(np.diff(dist, axis=1) >= -1e-5)
    again = SimilarityIndex.load(idx.save(tmp_path / backend))
    np.testing.assert_array_equal(again.query(q, k=10)[0], got)


@pytest.mark.parametrize("backend", ["hnswlib", "faiss", "usearch"])
def test_query_beam_trades_recall(backend) -> None:
    """Held-out queries in 64-d (a hard set for a 4000-vector graph): a wider beam finds more true neighbours."""
    rng = np.random.default_rng(4)
    data = rng.normal(size=(4000, 64)).astype(np.float32)
    q = rng.normal(size=(200, 64)).astype(np.float32)
    ids = np.arange(4000, dtype=np.int64)
    idx = SimilarityIndex(backend, m=8, ef_construction=40).build(data, ids)
    truth, _ = exact_knn(data, q, 10)

    def recall(ef: int) -> float:
        got, _ = idx.query(q, k=10, ef_search=ef)
        return float(np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)]))

    narrow, wide = recall(10), recall(400)
    assert wide > narrow + 0.05 and wide >= 0.95, (narrow, wide)
    with pytest.raises(InputError, match="dimensions"):
        idx.query(q[:, :10])
    with pytest.raises(InputError, match="k must be"):
        idx.query(q, k=0)


def test_milvus_lite_for_real(tmp_path) -> None:
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500, 16)).astype(np.float32)
    ids = np.arange(500, dtype=np.int64) + 39627000000000000
    idx = SimilarityIndex("milvus", milvus_uri=str(tmp_path / "milvus.db")).build(data, ids)
    got, _dist = idx.query(data[:5], k=5)
    truth, _ = exact_knn(data, data[:5], 5)
    assert np.all(got[:, 0] == ids[:5])
    assert np.mean([len(set(g) & set(ids[t])) / 5 for g, t in zip(got, truth, strict=True)]) >= 0.95
    again = SimilarityIndex.load(idx.save(tmp_path / "milvus_index"))  # settings + ids; the data stay in Milvus
    np.testing.assert_array_equal(again.query(data[:5], k=5)[0], got)
    with pytest.raises(ConfigError, match="URI"):
        SimilarityIndex("milvus")


@pytest.mark.parametrize("reducer", ["pca", pytest.param("umap", marks=pytest.mark.validation)])
def test_clusters_recover_groups(reducer) -> None:
    rng = np.random.default_rng(2)
    centres = rng.normal(scale=6.0, size=(3, 16))
    lat = np.concatenate([c + rng.normal(size=(40, 16)) for c in centres])
    truth = np.repeat(np.arange(3), 40)
    cl = cluster_latents(lat, min_cluster_size=10, seed=0, reducer=reducer)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, cl.labels) > 0.9
    assert len(cl.exemplars) == 3 and sum(cl.sizes.values()) >= 110
    for lab, row in cl.exemplars.items():
        assert cl.labels[row] == lab
    with pytest.raises(InputError):
        cluster_latents(lat[:3])
