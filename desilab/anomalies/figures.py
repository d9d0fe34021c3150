"""Figures of an anomaly run: latent map, example anomalies with reconstructions, ROC per class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_figures"]


def make_figures(
    res: dict[str, Any], labels: Any, out_dir: str | os.PathLike[str], reducer: str = "umap"
) -> list[Path]:
    """Write PNG figures for the result of :func:`~desilab.anomalies.stage.score_to_catalog`.

    Parameters
    ----------
    res
        The scoring result (scores, data, table).
    labels
        Sample-sky ``qso_anomalies`` truth table, or ``None`` (then no ROC figure).
    out_dir
        Folder for the PNGs.
    reducer
        ``umap`` or ``pca`` for the 2-d latent map.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from desilab.anomalies.preprocess import rest_grid

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sc, data = res["scores"], res["data"]
    tid = np.asarray(data.targetid)
    flagged = np.isin(
        tid, res["table"].filter(res["table"].column("FLAGGED").to_numpy() == 1).column("TARGETID").to_numpy()
    )
    paths: list[Path] = []

    # 1. latent map
    if reducer == "umap" and len(tid) > 20:
        from desilab.anomalies.cluster import embed_2d

        emb = embed_2d(sc.latent)
    else:
        from sklearn.decomposition import PCA

        emb = PCA(n_components=2, random_state=0).fit_transform(sc.latent)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.5))
    s = ax[0].scatter(emb[:, 0], emb[:, 1], c=np.clip(sc.ensemble, -3, 10), s=6, cmap="viridis")
    fig.colorbar(s, ax=ax[0], label="ENSEMBLE (higher = more anomalous)")
    ax[0].scatter(emb[flagged, 0], emb[flagged, 1], s=30, facecolors="none", edgecolors="r", label="flagged (BH)")
    ax[0].legend(loc="best", fontsize=8)
    ax[0].set_title(f"latent map ({reducer.upper()})")
    cl = dict(zip(res["table"].column("TARGETID").to_pylist(), res["table"].column("CLUSTER").to_pylist(), strict=True))
    cvals = np.array([cl[t] for t in tid.tolist()])
    ax[1].scatter(emb[:, 0], emb[:, 1], c="0.85", s=4)
    for lab in sorted(set(cvals.tolist()) - {-1}):
        m = cvals == lab
        ax[1].scatter(emb[m, 0], emb[m, 1], s=14, label=f"cluster {lab} ({m.sum()})")
    ax[1].set_title("clusters of flagged objects")
    if (cvals >= 0).any():
        ax[1].legend(fontsize=7)
    fig.tight_layout()
    p = out / "anomalies-latent-map.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    # 2. examples with reconstructions and residuals
    lam = rest_grid()
    top = np.argsort(-np.nan_to_num(sc.ensemble, nan=-1e30))[:4]
    fig, axes = plt.subplots(len(top), 1, figsize=(10, 2.6 * len(top)), squeeze=False)
    for ax_, i in zip(axes[:, 0], top, strict=True):
        used = data.ivar[i] > 0
        ax_.plot(lam[used], data.flux[i][used], lw=0.5, color="k", label="data")
        ax_.plot(lam[used], sc.recon[i][used], lw=0.9, color="C1", label="VAE reconstruction")
        r = np.sqrt(sc.resid2[i])
        ax_.fill_between(
            lam,
            0,
            np.where(used, r / max(r.max(), 1e-9), 0) * np.nanmax(data.flux[i][used]) * 0.3,
            color="C3",
            alpha=0.4,
            label="|residual| (scaled)",
        )
        ax_.set_xscale("log")
        ax_.set_title(f"TARGETID {tid[i]}  z={data.z[i]:.2f}  ENSEMBLE={sc.ensemble[i]:.1f}", fontsize=9)
        ax_.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("rest wavelength [Å]")
    fig.tight_layout()
    p = out / "anomalies-examples.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    # 3. ROC per labelled class
    if labels is not None and labels.num_rows:
        from sklearn.metrics import roc_curve

        cls_of = dict(
            zip(labels.column("TARGETID").to_pylist(), labels.column("ANOMALY_CLASS").to_pylist(), strict=True)
        )
        c_arr = np.array([cls_of.get(t, "") for t in tid.tolist()], dtype=object)
        normal = c_arr == ""
        fig, ax = plt.subplots(figsize=(6, 5))
        for c in sorted(set(c_arr.tolist()) - {""}):
            m = (c_arr == c) | normal
            if (c_arr == c).sum() < 2:
                continue
            fpr, tpr, _ = roc_curve((c_arr[m] == c).astype(int), np.nan_to_num(sc.ensemble[m], nan=0.0))
            ax.plot(fpr, tpr, label=f"{c} ({(c_arr == c).sum()})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(fontsize=7)
        fig.tight_layout()
        p = out / "anomalies-roc.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
