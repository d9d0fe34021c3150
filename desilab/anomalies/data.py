"""Thin driver: quasar spectra from files (a sample-sky folder or DR1 coadds) into the cache.

Reads go through :mod:`desilab.io` only; the arrays are handed to the pure
:func:`~desilab.anomalies.preprocess.preprocess`, one coadd file (≈ one HEALPix pixel) per
shard, mapped with :mod:`desilab.compute` so the result does not depend on scheduling.
One spectrum per object: a TARGETID that appears in several files keeps its first
occurrence (files in sorted order).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.preprocess import Preprocessed, preprocess
from desilab.errors import InputError

__all__ = ["build_cache", "find_coadds", "preprocess_coadd", "sample_sky_labels"]


def find_coadds(folder: str | os.PathLike[str]) -> list[Path]:
    """Every ``coadd-*.fits`` under *folder* (sorted); a file is returned as itself."""
    p = Path(folder)
    if p.is_file():
        return [p]
    files = sorted(p.rglob("coadd-*.fits"))
    if not files:
        raise InputError(f"no coadd-*.fits files under {p}", file=str(p))
    return files


def preprocess_coadd(path: str | os.PathLike[str], z: np.ndarray | None = None, **kwargs: Any) -> Preprocessed:
    """Read one coadd (with its redrock file) and preprocess every spectrum in it.

    Parameters
    ----------
    path
        Coadd FITS file.
    z
        Redshifts per row; default: ``Z`` of the redrock file next to the coadd.
    **kwargs
        Passed to :func:`~desilab.anomalies.preprocess.preprocess`.
    """
    from desilab.io.coadd import read_coadd

    sp = read_coadd(path, resolution=False, redrock="auto" if z is None else False)
    c = sp.combined()
    band = c.bands[0]
    tid = np.asarray(sp.fibermap.column("TARGETID").to_numpy(), dtype=np.int64)
    if z is None:
        if sp.redshifts is None or "Z" not in sp.redshifts.column_names:
            raise InputError("no redrock redshifts next to this coadd; pass z", file=str(path), column="Z")
        z = np.asarray(sp.redshifts.column("Z").to_numpy(), dtype=np.float64)
    return preprocess(c.wave[band], c.flux[band], c.ivar[band], z, mask=c.mask[band], targetid=tid, **kwargs)


def _shard(path: str) -> Preprocessed:
    return preprocess_coadd(path)


def build_cache(files: list[Path], cache_dir: str | os.PathLike[str], executor: Any = None) -> SpectrumCache:
    """Preprocess *files* (one shard each, deterministic: no random draws) into a new cache; duplicates dropped."""
    from desilab.compute import SerialExecutor

    ex = executor or SerialExecutor()
    parts = ex.map(_shard, [str(f) for f in files], ids=list(range(len(files))), desc="preprocess spectra")
    cache = SpectrumCache(cache_dir, create=True)
    seen: set[int] = set()
    for p in parts:
        keep = np.array([t not in seen for t in p.targetid.tolist()], dtype=bool)
        seen.update(p.targetid.tolist())
        if keep.any():
            cache.append(p.subset(keep))
    return cache


def sample_sky_labels(folder: str | os.PathLike[str]) -> pa.Table | None:
    """``truth/qso_anomalies.parquet`` of a sample-sky folder (TARGETID, ANOMALY_CLASS, ...), if present."""
    import pyarrow.parquet as pq

    for cand in (Path(folder) / "truth" / "qso_anomalies.parquet", Path(folder) / "qso_anomalies.parquet"):
        if cand.exists():
            return pq.read_table(cand)
    return None
