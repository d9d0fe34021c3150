"""Groups of flagged objects: UMAP (umap-learn) of the latents, then HDBSCAN, with exemplars.

UMAP reduces the 128-d latent means to ``n_components`` dimensions (seeded, so the embedding
is reproducible); HDBSCAN (scikit-learn's implementation) finds groups of any shape and
leaves the rest as noise (label −1). Each group's exemplar is the member closest to the
group's medoid in the embedding — a real spectrum a person can look at first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desilab.errors import InputError

__all__ = ["Clusters", "cluster_latents", "embed_2d"]


@dataclass
class Clusters:
    """Result of :func:`cluster_latents`.

    Attributes
    ----------
    labels
        (n,) group of each object (−1 = noise).
    embedding
        (n, n_components) UMAP coordinates.
    exemplars
        Group label → row index of its exemplar.
    sizes
        Group label → number of members.
    """

    labels: np.ndarray
    embedding: np.ndarray
    exemplars: dict[int, int]
    sizes: dict[int, int]


def embed_2d(latents: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-d UMAP embedding of latents (for figures)."""
    import umap

    lat = np.asarray(latents, dtype=np.float32)
    nn = max(2, min(n_neighbors, lat.shape[0] - 1))
    return umap.UMAP(n_components=2, n_neighbors=nn, random_state=seed, n_jobs=1).fit_transform(lat)


def cluster_latents(
    latents: np.ndarray,
    *,
    n_components: int = 5,
    n_neighbors: int = 15,
    min_cluster_size: int = 5,
    seed: int = 0,
    reducer: str = "umap",
) -> Clusters:
    """UMAP + HDBSCAN on latent vectors.

    Parameters
    ----------
    latents
        (n, d) latent means of the objects to group (typically the flagged ones).
    n_components
        UMAP output dimension used for clustering.
    n_neighbors
        UMAP neighbourhood size (capped at n − 1).
    min_cluster_size
        Smallest HDBSCAN group.
    seed
        UMAP seed.
    reducer
        ``"umap"`` (default) or ``"pca"`` (no numba compilation: for quick looks and tests).

    Returns
    -------
    Clusters
    """
    from sklearn.cluster import HDBSCAN

    lat = np.asarray(latents, dtype=np.float32)
    n = lat.shape[0]
    if lat.ndim != 2 or n < max(min_cluster_size, 4):
        raise InputError(f"need at least {max(min_cluster_size, 4)} latent vectors, got {n}", parameter="latents")
    k = min(n_components, n - 2)
    if reducer == "umap":
        import umap

        emb = umap.UMAP(
            n_components=k, n_neighbors=max(2, min(n_neighbors, n - 1)), min_dist=0.0, random_state=seed, n_jobs=1
        ).fit_transform(lat)
    elif reducer == "pca":
        from sklearn.decomposition import PCA

        emb = PCA(n_components=k, random_state=seed).fit_transform(lat)
    else:
        raise InputError(f"reducer must be 'umap' or 'pca', got {reducer!r}", parameter="reducer")
    labels = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(emb)
    exemplars: dict[int, int] = {}
    sizes: dict[int, int] = {}
    for lab in sorted(set(labels.tolist()) - {-1}):
        rows = np.nonzero(labels == lab)[0]
        centre = np.median(emb[rows], axis=0)
        exemplars[lab] = int(rows[np.argmin(((emb[rows] - centre) ** 2).sum(axis=1))])
        sizes[lab] = int(rows.size)
    return Clusters(labels, emb, exemplars, sizes)
