"""`desilab anomalies train | score | similar`: quasar anomaly detection.

Thin commands over :mod:`desilab.anomalies`: build (or reuse) the rest-frame cache, train
and calibrate the VAE detector, score objects into the anomaly catalog, and find the
spectra most similar to a TARGETID or an uploaded spectrum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from desilab.errors import InputError
from desilab.ui import console, progress_bar

anomalies_app = typer.Typer(
    name="anomalies",
    help=(
        "Quasar anomaly detection (1D conv VAE, conformal p-values, BH FDR control).\n\n"
        "  desilab anomalies train SKY_OR_COADDS --model model/\n\n"
        "  desilab anomalies score SKY_OR_COADDS --model model/ --out anomalies/ --q 0.05\n\n"
        "  desilab anomalies similar 39627000000000000 --out anomalies/ -k 10"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _load_input(
    ctx: typer.Context, src: Path | None, cache_dir: Path, from_store: bool = False, where: str | None = None
):
    from desilab.anomalies.cache import SpectrumCache
    from desilab.anomalies.data import build_cache, files_from_store, find_coadds
    from desilab.compute import get_executor

    """The rest-frame cache of the input (built or reused; never loaded whole: training and scoring stream it)."""
    if src is not None and (src / "manifest.json").exists():
        return SpectrumCache(src)
    if src is None and not from_store and (cache_dir / "manifest.json").exists():
        return SpectrumCache(cache_dir)
    s = ctx.obj.settings
    if from_store:  # spectra found through the store's spectra_index (issue #4)
        from desilab.store import connect

        with connect(s.store, create=False, read_only=s.store.startswith("duckdb")) as store:
            files = files_from_store(store, where)
        if not files:
            raise InputError("the store's spectra_index has no matching spectra", parameter="--where")
    elif src is None:
        raise InputError("give a folder of coadds, a cache folder, or --from-store", parameter="src")
    else:
        files = find_coadds(src)
    ex = get_executor(s.workers, s.ray)
    try:
        return build_cache(files, cache_dir, executor=ex)  # reused when the inputs are unchanged
    finally:
        ex.close()


_SRC_HELP = "A sample-sky / DR1 folder with coadd-*.fits (+ redrock), or a cache folder; omit with --from-store."
_FROM_STORE_HELP = "Find the spectra through the store's spectra_index (--store / DESILAB_STORE) instead of a folder."
_WHERE_HELP = (
    'With --from-store: SQL condition on spectra_index (alias s), e.g. "s.targetid IN (SELECT targetid FROM quasars)".'
)


@anomalies_app.command("train")
def train_cmd(
    ctx: typer.Context,
    src: Path | None = typer.Argument(None, help=_SRC_HELP),
    model: Path = typer.Option(..., "--model", "-m", help="Folder for the model, its config and checkpoint."),
    epochs: int = typer.Option(60, "--epochs", help="Maximum epochs (early stopping may end sooner)."),
    latent: int = typer.Option(128, "--latent", help="Latent dimension."),
    threads: int = typer.Option(2, "--threads", help="Torch CPU threads."),
    from_store: bool = typer.Option(False, "--from-store", help=_FROM_STORE_HELP),
    where: str | None = typer.Option(None, "--where", help=_WHERE_HELP),
) -> None:
    """Train and calibrate the VAE detector (resumes from the checkpoint in --model)."""
    from desilab.anomalies.stage import train_detector

    cache = _load_input(ctx, src, model / "cache", from_store, where)
    with progress_bar() as prog:
        task = prog.add_task("train VAE", total=epochs)
        det, roles = train_detector(
            cache,
            model,
            seed=ctx.obj.settings.seed,
            epochs=epochs,
            latent_dim=latent,
            threads=threads,
            progress=lambda e, n: prog.update(task, completed=e),
        )
    console.print(
        f"trained on {int((roles == 'train').sum())} spectra ({len(det.history_)} epochs, best {det.best_epoch_}); "
        f"calibrated on {int((roles == 'calibration').sum())}; saved to {model}"
    )


@anomalies_app.command("score")
def score_cmd(
    ctx: typer.Context,
    src: Path | None = typer.Argument(None, help=_SRC_HELP),
    model: Path = typer.Option(..., "--model", "-m", help="A model folder written by `anomalies train`."),
    out: Path = typer.Option(Path("anomalies"), "--out", help="Output folder for the catalog, latents and index."),
    q: float = typer.Option(0.05, "--q", help="Benjamini-Hochberg false-discovery rate."),
    index: str = typer.Option("faiss", "--index", help="Similarity index: faiss, hnswlib, usearch, exact or milvus."),
    milvus_uri: str | None = typer.Option(None, "--milvus-uri", help="Milvus URI or a local .db file (Milvus Lite)."),
    from_store: bool = typer.Option(False, "--from-store", help=_FROM_STORE_HELP),
    where: str | None = typer.Option(None, "--where", help=_WHERE_HELP),
) -> None:
    """Score spectra: p-values, BH discoveries, clusters; write the catalog and a similarity index."""
    from desilab.anomalies.detector import VAEAnomalyDetector
    from desilab.anomalies.index import SimilarityIndex
    from desilab.anomalies.stage import score_to_catalog

    det = VAEAnomalyDetector.load(model)
    cache = _load_input(ctx, src, out / "cache", from_store, where)
    roles = None
    if (model / "split_targetid.npy").exists():
        tids = np.load(model / "split_targetid.npy")
        rl = dict(zip(tids.tolist(), np.load(model / "split_role.npy").tolist(), strict=True))
        scored = cache.column("targetid")[cache.column("valid")]
        roles = np.array([rl.get(t, "test") for t in scored.tolist()], dtype=object)
    res = score_to_catalog(det, cache, out, q=q, roles=roles, seed=ctx.obj.settings.seed)
    SimilarityIndex(index, milvus_uri=milvus_uri).build(res["scores"].latent, res["data"].targetid).save(out / "index")
    s = res["summary"]
    console.print(
        f"scored {s['n_scored']}; flagged {s['n_flagged']} at FDR q={q}; catalog {res['paths']['fits']} (+ .parquet)"
    )


@anomalies_app.command("similar")
def similar_cmd(
    ctx: typer.Context,
    targetid: int | None = typer.Argument(None, help="TARGETID whose neighbours to find."),
    out: Path = typer.Option(Path("anomalies"), "--out", help="Folder written by `anomalies score`."),
    k: int = typer.Option(10, "-k", help="Neighbours to return."),
    spectrum: Path | None = typer.Option(None, "--spectrum", help="A coadd file holding the query spectrum instead."),
    z: float | None = typer.Option(None, "--z", help="Redshift of --spectrum (default: its redrock Z)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model folder (needed with --spectrum)."),
    from_store: bool = typer.Option(
        False,
        "--from-store",
        help="A TARGETID that was not scored: find its spectrum through the store (needs --model).",
    ),
) -> None:
    """The k most similar spectra (nearest latents) to a TARGETID or an uploaded spectrum.

    A TARGETID scored by `anomalies score` uses its stored latent; with --spectrum FILE
    (and a TARGETID: that object's row of the file, else its first row) or --from-store,
    the spectrum is read, preprocessed and encoded with --model.
    """
    from desilab.anomalies.index import SimilarityIndex

    idx = SimilarityIndex.load(out / "index")

    def encode(pre):
        from desilab.anomalies.detector import VAEAnomalyDetector

        if model is None:
            raise InputError("encoding a spectrum needs --model", parameter="model")
        return VAEAnomalyDetector.load(model).score(pre).latent

    if spectrum is not None:
        from desilab.anomalies.data import preprocess_coadd
        from desilab.anomalies.lookup import locate_in_files

        rows = np.arange(1)
        if targetid is not None:
            loc = locate_in_files([spectrum], [targetid])
            if len(loc) == 0:
                raise InputError(f"TARGETID {targetid} is not in {spectrum}", file=str(spectrum), column="TARGETID")
            rows = loc.row
        query = encode(preprocess_coadd(spectrum, z=None if z is None else np.array([z]), rows=rows))
    elif targetid is not None and from_store:
        from desilab.anomalies.lookup import spectra_by_targetid
        from desilab.store import connect

        s = ctx.obj.settings.store
        with connect(s, create=False, read_only=s.startswith("duckdb")) as store:
            query = encode(spectra_by_targetid([targetid], store=store))
    elif targetid is not None:
        tids = np.load(out / "latents_targetid.npy")
        row = np.nonzero(tids == targetid)[0]
        if row.size == 0:
            raise InputError(
                f"TARGETID {targetid} was not scored in {out} (use --from-store --model to encode it)",
                parameter="targetid",
            )
        query = np.load(out / "latents.npy")[row[:1]]
    else:
        raise InputError("give a TARGETID or --spectrum", parameter="targetid")
    ids, dist = idx.query(query, k=k)
    for t, d in zip(ids[0].tolist(), dist[0].tolist(), strict=True):
        console.print(f"{t}\t{d:.4f}")


def register(app: typer.Typer) -> None:
    """Add ``desilab anomalies`` to the CLI."""
    app.add_typer(anomalies_app, name="anomalies")
