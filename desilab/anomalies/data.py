"""Thin driver: quasar spectra from files (a sample-sky folder or DR1 coadds) into the cache.

Reads go through :mod:`desilab.io` only; the arrays are handed to the pure
:func:`~desilab.anomalies.preprocess.preprocess`, one coadd file (≈ one HEALPix pixel) per
shard, mapped with :mod:`desilab.compute` so the result does not depend on scheduling.
One spectrum per object: a TARGETID that appears in several files keeps its first
occurrence (files in sorted order).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.preprocess import Preprocessed, preprocess
from desilab.errors import InputError

__all__ = [
    "build_cache",
    "files_from_store",
    "find_coadds",
    "inputs_fingerprint",
    "preprocess_coadd",
    "sample_sky_labels",
]

log = logging.getLogger("desilab.anomalies")


def find_coadds(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``coadd-*.fits`` under *folder* (sorted); a file is returned as itself."""
    p = Path(folder)
    if p.is_file():
        return [p]
    files = sorted(p.rglob("coadd-*.fits"))
    if not files:
        raise InputError(f"no coadd-*.fits files under {p}", file=str(p))
    return files


def preprocess_coadd(
    path: str | os.PathLike[str], z: np.ndarray | None = None, *, rows: np.ndarray | None = None, **kwargs: Any
) -> Preprocessed:
    """Read one coadd (with its redrock file) and preprocess every spectrum in it (or *rows*).

    Parameters
    ----------
    path
        Coadd FITS file.
    z
        Redshifts per (read) row; default: ``Z`` of the redrock file next to the coadd.
    rows
        Read only these rows (FIBERMAP/image row numbers, e.g. from the store's spectra index).
    **kwargs
        Passed to :func:`~desilab.anomalies.preprocess.preprocess`.
    """
    from desilab.io.coadd import read_coadd

    sp = read_coadd(path, rows=rows, resolution=False, redrock="auto" if z is None else False)
    c = sp.combined()
    band = c.bands[0]
    tid = np.asarray(sp.fibermap.column("TARGETID").to_numpy(), dtype=np.int64)
    if z is None:
        if sp.redshifts is None or "Z" not in sp.redshifts.column_names:
            raise InputError("no redrock redshifts next to this coadd; pass z", file=str(path), column="Z")
        z = np.asarray(sp.redshifts.column("Z").to_numpy(), dtype=np.float64)
    return preprocess(c.wave[band], c.flux[band], c.ivar[band], z, mask=c.mask[band], targetid=tid, **kwargs)


def _shard(item: tuple[str, np.ndarray | None]) -> Preprocessed:
    path, rows = item
    return preprocess_coadd(path, rows=rows)


def build_cache(
    files: list[Path] | list[tuple[str, np.ndarray | None]],
    cache_dir: str | os.PathLike[str],
    executor: Any = None,
    *,
    group: int | None = None,
    progress: Any = None,
) -> SpectrumCache:
    """Preprocess *files* (one shard each) into the cache at *cache_dir*, in bounded memory.

    Files are mapped in groups of *group* (default: 2 × the executor's workers), and each
    group's shards are written before the next group is read, so at most one group of
    preprocessed files is in memory (never the whole set). Deterministic (no random
    draws; results in file order). Resumable: every shard records its source file, and a
    cache that already holds some of *files* (an interrupted build) continues with the
    others. Reused: the manifest records a fingerprint of the inputs
    (:func:`inputs_fingerprint`: file names, sizes, modification times, selected rows, and
    those of the redrock files beside them); a cache built from other inputs is emptied and
    rebuilt, one built from the same inputs is returned as it is (after finishing an
    interrupted build). One spectrum per object: a TARGETID already in the cache is dropped.

    Parameters
    ----------
    files
        Coadd files (with their redrock files next to them), or (file, rows) pairs to read
        only those rows (:func:`files_from_store`).
    cache_dir
        Cache folder (created when missing).
    executor
        A :mod:`desilab.compute` executor (default serial).
    group
        Files per mapped group.
    progress
        Called with (files done, files total).
    """
    from desilab.compute import SerialExecutor

    ex = executor or SerialExecutor()
    items: dict[str, np.ndarray | None] = {}
    for f in files:  # each file once, first place kept
        path, rows = (str(f[0]), f[1]) if isinstance(f, tuple) else (str(f), None)
        items.setdefault(path, None if rows is None else np.asarray(rows, dtype=np.int64))
    cache = SpectrumCache(cache_dir, create=True)
    fp = inputs_fingerprint(items)
    if cache.inputs != fp:
        if cache.n_shards:
            log.info("anomaly cache %s was built from other inputs: rebuilding it", cache.path)
        cache.reset(fp)
    done = {s for s in cache.sources if s is not None}
    pos = {f: j for j, f in enumerate(items)}
    todo = [f for f in items if f not in done]
    # one Python int per cached object (~60 B): 100 MB at 1.6M objects, a bounded cost of dedup
    seen: set[int] = set(cache.column("targetid").tolist())
    g = group or max(1, 2 * int(getattr(ex, "workers", 1) or 1))
    n_done = len(items) - len(todo)
    for i in range(0, len(todo), g):
        chunk = todo[i : i + g]
        parts = ex.map(_shard, [(f, items[f]) for f in chunk], ids=[pos[f] for f in chunk], desc="preprocess spectra")
        for f, p in zip(chunk, parts, strict=True):
            keep = np.array([t not in seen for t in p.targetid.tolist()], dtype=bool)
            seen.update(p.targetid.tolist())
            # a shard is written even when empty, so the file counts as done on resume
            cache.append(p.subset(keep), source=f, save_manifest=False)
        cache.save_manifest()  # once per group: the group's shards become visible together
        n_done += len(chunk)
        if progress is not None:
            progress(n_done, len(items))
    return cache


def inputs_fingerprint(items: dict[str, np.ndarray | None]) -> str:
    """SHA-256 of what a cache is built from: per file (in order) its name, size and mtime, the rows read,
    and the same of the ``redrock-*`` file beside it (the redshifts the spectra are de-redshifted with)."""
    from desilab.io.coadd import redrock_path_for

    h = hashlib.sha256()
    for path, rows in items.items():
        stats = []
        for p in (Path(path), _redrock_or_none(path, redrock_path_for)):
            if p is not None and p.exists():
                st = p.stat()
                stats.append([str(p), st.st_size, st.st_mtime_ns])
        rows_hash = None if rows is None else hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()
        h.update(json.dumps([path, stats, rows_hash]).encode())
    return h.hexdigest()


def _redrock_or_none(path: str, locate: Any) -> Path | None:
    try:
        return locate(path)
    except InputError:  # not a coadd-*/spectra-* name: no redrock file beside it
        return None


def files_from_store(store: Any, where: str | None = None) -> list[tuple[str, np.ndarray]]:
    """(coadd file, rows) of the spectra the store's ``spectra_index`` lists (one per TARGETID).

    Parameters
    ----------
    store
        An open store.
    where
        Optional SQL condition on ``spectra_index`` columns (alias ``s``), e.g.
        ``"s.targetid IN (SELECT targetid FROM quasars)"``.
    """
    from desilab.anomalies.lookup import locate_in_store

    loc = locate_in_store(store, None, where=where)
    return [(f, rows) for f, (rows, _t) in loc.by_file().items()]


def sample_sky_labels(folder: str | os.PathLike[str]) -> pa.Table | None:
    """``truth/qso_anomalies.parquet`` of a sample-sky folder (TARGETID, ANOMALY_CLASS, ...), if present."""
    import pyarrow.parquet as pq

    for cand in (Path(folder) / "truth" / "qso_anomalies.parquet", Path(folder) / "qso_anomalies.parquet"):
        if cand.exists():
            return pq.read_table(cand)
    return None
