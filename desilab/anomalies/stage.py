"""Drivers: train a detector on a cache, score a cache into the catalog, and the ``desilab run`` stage.

Given the on-disk cache (what the stage and the CLI pass), training, calibration and
scoring read it shard by shard through :class:`~desilab.anomalies.stream.ShardStream`:
memory holds one read window of spectra (``STREAM_BUFFER_ROWS`` for training,
``SCORE_ROWS`` for scoring) plus a few numbers per object, never the set. In-memory
:class:`~desilab.anomalies.preprocess.Preprocessed` inputs are accepted too (small runs, tests).

Split of the objects (seeded): ``train`` (70%) fits the VAE and the latent forest,
``calibration`` (15%) holds the conformal calibration sets, ``test`` (15%) only scored.
Every object is scored and gets p-values; they are exact conformal p-values for ``test``
rows and conservative for the others (a calibration row is compared with a set that
contains it; a training row was fitted by the model and so scores lower). On real DR1 the
training and calibration sets contain anomalies themselves, which also makes the p-values
conservative (fewer discoveries, never more false ones).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.catalog import build_catalog, write_catalog
from desilab.anomalies.detector import COMPONENTS, SCAN_LABELS, VAEAnomalyDetector
from desilab.anomalies.preprocess import Preprocessed, rest_grid
from desilab.anomalies.score import benjamini_hochberg, driving_regions
from desilab.anomalies.stream import SCORE_ROWS, RowView, ShardStream, concat_scores, iter_scores
from desilab.errors import InputError
from desilab.run.stage import Check, RunContext, Stage, StageResult

__all__ = ["AnomaliesStage", "calibration_bins", "score_to_catalog", "split_roles", "train_detector"]

log = logging.getLogger("desilab.anomalies")

SCALE_EPOCHS = {"tiny": 12, "small": 40, "full": 60}
STREAM_BUFFER_ROWS = 8192
"""Spectra of one training read window (flux + ivar: 8192 x 4000 x 8 B = 262 MB): the memory bound of
training from the cache, whatever its size."""
STREAM_CHUNK_ROWS = 256
"""Rows of one contiguous cache read: a training batch mixes rows of ~32 random places of the cache."""
_REGION_ROWS = 512


def split_roles(n: int, seed: int, fractions: tuple[float, float] = (0.70, 0.15)) -> np.ndarray:
    """Role of each of *n* objects: 'train', 'calibration' or 'test' (seeded permutation)."""
    perm = np.random.default_rng(seed).permutation(n)
    roles = np.full(n, "test", dtype=object)
    n_tr = round(fractions[0] * n)
    n_cal = round(fractions[1] * n)
    roles[perm[:n_tr]] = "train"
    roles[perm[n_tr : n_tr + n_cal]] = "calibration"
    return roles


def calibration_bins(n_cal: int) -> int:
    """Bins per axis (S/N and redshift) for *n_cal* calibration spectra: ≥ ~1000 per bin, at most 3.

    A conformal p-value cannot be smaller than 1/(n_bin + 1); Benjamini–Hochberg over m
    objects needs p ≤ q k/m, so thin bins make discoveries impossible. Below 4000
    calibration spectra the calibration is pooled (1 × 1).
    """
    return int(np.clip(np.floor(np.sqrt(n_cal / 1000.0)), 1, 3))


def _select(n: int, rows: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


def train_detector(
    data: Preprocessed | SpectrumCache,
    model_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    progress: Any = None,
    buffer_rows: int = STREAM_BUFFER_ROWS,
    **params: Any,
) -> tuple[VAEAnomalyDetector, np.ndarray]:
    """Fit + calibrate a detector on *data* (invalid rows dropped) and save it with its split.

    Parameters
    ----------
    data
        Spectra in memory, or the on-disk cache: then training, the post-training fits
        and the calibration read it shard by shard (:class:`~desilab.anomalies.stream.ShardStream`)
        holding at most *buffer_rows* spectra at once, whatever its size.
    model_dir
        Folder for the model, its checkpoint and the split.
    seed
        Seed of the split and of every draw.
    progress
        Called with (epoch, epochs).
    buffer_rows
        Rows of one read window of the cache (the memory bound of the streaming path).
    **params
        :class:`~desilab.anomalies.detector.VAEAnomalyDetector` parameters.

    Returns
    -------
    detector, roles
        The fitted detector and the role of each valid row (cache order).
    """
    model_dir = Path(model_dir)
    if isinstance(data, SpectrumCache):  # the valid rows in cache order: the in-memory split of the same rows
        rows = np.nonzero(data.column("valid"))[0]
        n_valid = rows.size
    else:
        data = data.subset(np.asarray(data.valid, bool))
        n_valid = len(data)
    if n_valid < 40:
        raise InputError(f"need at least 40 valid spectra to train and calibrate, got {n_valid}", parameter="data")
    roles = split_roles(n_valid, seed)
    if isinstance(data, SpectrumCache):
        n = len(data)
        kw = {"buffer_rows": buffer_rows, "chunk_rows": min(STREAM_CHUNK_ROWS, buffer_rows)}
        train: Any = ShardStream(data, select=_select(n, rows[roles == "train"]), **kw)
        cal: Any = ShardStream(data, select=_select(n, rows[roles == "calibration"]), shuffle=False, **kw)
        targetid = data.column("targetid")[rows]
    else:
        train, cal, targetid = data.subset(roles == "train"), data.subset(roles == "calibration"), data.targetid
    model_dir.mkdir(parents=True, exist_ok=True)
    det = VAEAnomalyDetector(random_state=seed, checkpoint=str(model_dir / "checkpoint.pt"), **params)
    det.fit(train, progress=progress)
    n_cal = int((roles == "calibration").sum())
    nb = calibration_bins(n_cal)
    det.calibrate(cal, n_snr=nb, n_z=nb, min_per_bin=max(10, n_cal // (2 * nb * nb)))
    det.save(model_dir)
    np.save(model_dir / "split_targetid.npy", targetid)
    np.save(model_dir / "split_role.npy", roles.astype("U11"))
    return det, roles


def _score_stream(det: VAEAnomalyDetector, st: ShardStream, out_dir: Path) -> tuple[Any, list[str], Preprocessed]:
    """Score *st* shard by shard: per-row scores and residual-map regions kept, latents written to disk.

    Returns the scores (latents memory-mapped from ``latents.npy``, reconstructions and
    residual maps as per-row views recomputed on access), the driving regions, and a
    row view of the spectra (flux and ivar read from the cache on access).
    """
    grid = rest_grid()
    out_dir.mkdir(parents=True, exist_ok=True)
    lat_path = out_dir / "latents.npy"
    tmp = out_dir / ".latents.npy.tmp"
    n = st.n_rows
    lat = None
    parts, regions, k = [], [], 0
    for b, sc in iter_scores(det, st, keep_resid=True):
        if lat is None:
            lat = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, sc.latent.shape[1]))
        m = len(b.data)
        lat[k : k + m] = sc.latent
        z = np.asarray(b.data.z)
        for i in range(0, m, _REGION_ROWS):  # driving_regions makes float64 temporaries of its rows
            regions.extend(driving_regions(sc.resid2[i : i + _REGION_ROWS], grid, z[i : i + _REGION_ROWS]))
        sc.latent = sc.resid2 = sc.recon = None  # the (m, npix) maps go with the batch
        parts.append(sc)
        k += m
        del b, sc  # before the next window is read: one window resident at a time
    if lat is None:
        raise InputError("no valid spectra to score", parameter="data")
    lat.flush()
    del lat
    os.replace(tmp, lat_path)
    scores = concat_scores(parts)
    scores.latent = np.load(lat_path, mmap_mode="r")
    scores.recon, scores.resid2 = RowView(st, "recon", det), RowView(st, "resid2", det)
    data = Preprocessed(
        RowView(st, "flux"),  # row-indexable views, never the whole (n, npix) arrays
        RowView(st, "ivar"),
        st.z,
        st.column("scale"),
        st.snr,
        np.ones(n, dtype=bool),
        st.targetid,
    )
    return scores, regions, data


def score_to_catalog(
    det: VAEAnomalyDetector,
    data: Preprocessed | SpectrumCache,
    out_dir: str | os.PathLike[str],
    *,
    q: float = 0.05,
    roles: np.ndarray | None = None,
    seed: int = 0,
    reducer: str = "umap",
    keywords: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score *data*, compute p/q-values, cluster the flagged objects and write the catalog.

    *data* in memory, or the on-disk cache: then it is scored shard by shard (at most
    :data:`~desilab.anomalies.stream.SCORE_ROWS` spectra and their residual maps at once),
    the latents are written to ``latents.npy`` as they come, and only the per-object
    scores and regions are held (≈ 1 kB per object). *roles* is per valid row (cache order).

    Returns
    -------
    dict
        ``paths`` (fits, parquet, latents), ``scores`` (:class:`Scores`), ``table``,
        ``data`` and a ``summary``. From a cache, ``data.flux`` / ``data.ivar`` and
        ``scores.recon`` / ``scores.resid2`` are row views (:class:`~desilab.anomalies.stream.RowView`):
        ``x[i]`` reads or recomputes row *i*.
    """
    from desilab.anomalies.cluster import cluster_latents

    out = Path(out_dir)
    lat_path = out / "latents.npy"
    if isinstance(data, SpectrumCache):
        st = ShardStream(data, shuffle=False, batch_size=SCORE_ROWS, buffer_rows=SCORE_ROWS, chunk_rows=SCORE_ROWS)
        n_all = st.n_rows
        if roles is not None and len(roles) != n_all:
            raise InputError(f"roles has {len(roles)} entries, the cache {n_all} valid rows", parameter="roles")
        roles = np.full(n_all, "test", dtype=object) if roles is None else np.asarray(roles, dtype=object)
        sc, regions, data = _score_stream(det, st, out)
    else:
        valid = np.asarray(data.valid, bool)
        data = data.subset(valid)
        roles = np.full(len(data), "test", dtype=object) if roles is None else np.asarray(roles, dtype=object)[valid]
        sc = det.score(data, keep_resid=True)
        regions = driving_regions(sc.resid2, rest_grid(), np.asarray(data.z))
    p = det.pvalues(sc, data.snr, data.z)
    rej, qv = benjamini_hochberg(p["ENSEMBLE"], q)
    cluster = np.full(len(data), -1, dtype=np.int32)
    exemplar = np.zeros(len(data), dtype=np.int16)
    n_flag = int(rej.sum())
    if n_flag >= 10:
        rows = np.nonzero(rej)[0]
        cl = cluster_latents(sc.latent[rows], min_cluster_size=max(3, min(10, n_flag // 5)), seed=seed, reducer=reducer)
        cluster[rows] = cl.labels
        for _lab, r in cl.exemplars.items():
            exemplar[rows[r]] = 1
    cols: dict[str, Any] = {
        "TARGETID": np.asarray(data.targetid, np.int64),
        "Z": np.asarray(data.z, np.float64),
        "SNR": np.asarray(data.snr, np.float32),
        "NPIX_USED": sc.npix_used.astype(np.int32),
        "CHI2_PIX": sc.chi2_pix.astype(np.float32),
        "SCAN": sc.scan.astype(np.float32),
        "SCAN_KIND": np.array([SCAN_LABELS[k] for k in sc.scan_kind], dtype=object),
        "ELBO": sc.elbo.astype(np.float32),
        "IFOREST": sc.iforest.astype(np.float32),
        "ENSEMBLE": sc.ensemble.astype(np.float32),
        **{f"P_{k}": p[k].astype(np.float64) for k in COMPONENTS},
        "Q_ENSEMBLE": qv,
        "FLAGGED": rej.astype(np.int16),
        "CLUSTER": cluster,
        "EXEMPLAR": exemplar,
        "REGIONS": np.array(regions, dtype=object),
        "CALIB_ROLE": roles,
    }
    table = build_catalog(cols)
    keys = {"FDR_Q": q, "NOBJ": len(data), "NFLAG": n_flag, "GRID": "log 800A 2.5e-4 dex 4000px", **(keywords or {})}
    paths = write_catalog(table, out_dir, keys)
    if not isinstance(sc.latent, np.memmap):  # the streaming path wrote it as it went
        np.save(lat_path, sc.latent.astype(np.float32))
    np.save(out / "latents_targetid.npy", np.asarray(data.targetid, np.int64))
    normal = ~rej
    summary = {
        "n_scored": len(data),
        "n_flagged": n_flag,
        "fdr_q": q,
        "median_chi2_pix_unflagged": float(np.nanmedian(sc.chi2_pix[normal])) if normal.any() else None,
        "n_clusters": len(set(cluster.tolist()) - {-1}),
    }
    return {"paths": {**paths, "latents": lat_path}, "scores": sc, "table": table, "summary": summary, "data": data}


class AnomaliesStage(Stage):
    """Quasar anomaly detection on the sample sky's quasar spectra."""

    name = "anomalies"
    description = "Quasar anomalies: rest-frame cache, 1D conv VAE, conformal p-values + BH, clusters"
    inputs = ("sample_sky",)
    outputs = ("anomaly_catalog", "anomaly_model")

    def run(self, ctx: RunContext) -> StageResult:
        """Cache → train → score → catalog + figures, never holding all spectra in memory."""
        from desilab.anomalies.data import build_cache, find_coadds, sample_sky_labels
        from desilab.anomalies.figures import make_figures

        sky = Path(ctx.products["sample_sky"])
        base = ctx.path("anomalies", "x").parent
        cache_dir = base / "cache"
        files = find_coadds(sky)
        # written once; a re-run with the same input files reuses it (an interrupted build resumes)
        cache = build_cache(files, cache_dir, executor=ctx.executor)
        epochs = SCALE_EPOCHS.get(ctx.scale, 40)
        model_dir = base / "model"
        # training, calibration and scoring read the cache shard by shard (bounded memory)
        det, roles = train_detector(cache, model_dir, seed=ctx.settings.seed, epochs=epochs, threads=2)
        res = score_to_catalog(
            det,
            cache,
            base,
            roles=roles,
            seed=ctx.settings.seed,
            reducer="pca" if ctx.scale == "tiny" else "umap",
            keywords={"SCALE": ctx.scale},
        )
        labels = sample_sky_labels(sky)
        figs = make_figures(res, labels, base / "figures", reducer="pca" if ctx.scale == "tiny" else "umap")
        summary = dict(res["summary"])
        summary["epochs_trained"] = len(det.history_)
        summary["best_epoch"] = det.best_epoch_
        if labels is not None:
            summary.update(_truth_summary(res, labels))
        (base / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
        return StageResult(
            outputs={"anomaly_catalog": res["paths"]["fits"], "anomaly_model": model_dir}, summary=summary, figures=figs
        )

    def checks(self, ctx: RunContext, result: StageResult) -> list[Check]:
        """Scores finite, p-values in (0, 1], normal χ²/pixel near 1, flagged fraction sane."""
        import pyarrow.parquet as pq

        t = pq.read_table(Path(result.outputs["anomaly_catalog"]).with_suffix(".parquet"))
        p = t.column("P_ENSEMBLE").to_numpy()
        med = result.summary.get("median_chi2_pix_unflagged")
        frac = result.summary["n_flagged"] / max(result.summary["n_scored"], 1)
        hi = 10.0 if ctx.scale == "tiny" else 3.0
        return [
            Check("p-values in (0, 1]", bool(np.all((p > 0) & (p <= 1))), f"min {p.min():.3g}"),
            # at `tiny` the VAE sees a few hundred spectra for a few epochs and does not reach
            # chi2/pixel ~ 1 (seen: 1.2-5.6 depending on the run); the tight bound holds from `small` up
            Check(
                f"median chi2/pixel of unflagged in [0.5, {hi:g}]",
                med is not None and 0.5 <= med <= hi,
                f"{med}",
            ),
            Check("flagged fraction < 50%", frac < 0.5, f"{frac:.3f}"),
        ]


def _truth_summary(res: dict[str, Any], labels: Any) -> dict[str, Any]:
    """Recall per labelled class and the false-discovery proportion against the sample-sky truth."""
    t = res["table"]
    tid = t.column("TARGETID").to_numpy()
    flagged = t.column("FLAGGED").to_numpy().astype(bool)
    lab_tid = labels.column("TARGETID").to_numpy()
    lab_cls = np.asarray(labels.column("ANOMALY_CLASS").to_pylist(), dtype=object)
    cls_of = dict(zip(lab_tid.tolist(), lab_cls.tolist(), strict=True))
    is_anom = np.array([t_ in cls_of for t_ in tid.tolist()])
    out: dict[str, Any] = {
        "truth_n_anomalous": int(is_anom.sum()),
        "truth_fdp": float((flagged & ~is_anom).sum() / max(flagged.sum(), 1)),
    }
    rec = {}
    for c in sorted(set(lab_cls.tolist())):
        sel = np.array([cls_of.get(t_) == c for t_ in tid.tolist()])
        if sel.any():
            rec[c] = {"n": int(sel.sum()), "recall": float(flagged[sel].mean())}
    out["truth_recall_per_class"] = rec
    return out
