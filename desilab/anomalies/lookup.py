"""Find quasar spectra by TARGETID: through the store's spectra index, or straight from files.

With a store (issue #4), ``spectra_index`` says where each coadded spectrum is (file,
row); only those rows are read (``read_coadd(rows=...)``: FIBERMAP and image rows, no
resolution matrices). Without one, the FIBERMAP TARGETID column of every given coadd is
scanned (one column per file) to find them. Either way the arrays go through the same
:func:`~desilab.anomalies.preprocess.preprocess`, so a spectrum found through the store is
bit-identical to the one the file path gives (tested).

One spectrum per object: a TARGETID with several coadds (several survey/program
combinations) takes the one the store's ``zcatalog`` marks ``zcat_primary`` when it is
ingested, else the first by (survey, program, file): a documented, deterministic choice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from desilab.anomalies.preprocess import Preprocessed
from desilab.errors import InputError

__all__ = ["SpectrumLocation", "locate_in_files", "locate_in_store", "read_located", "spectra_by_targetid"]

_CHUNK = 1000  # TARGETIDs per IN (...) list: keeps every statement short on both backends


class SpectrumLocation:
    """Where the spectra of some TARGETIDs are: parallel arrays ``targetid``, ``file``, ``row``."""

    def __init__(self, targetid: np.ndarray, file: Sequence[str], row: np.ndarray) -> None:
        self.targetid = np.asarray(targetid, dtype=np.int64)
        self.file = [str(f) for f in file]
        self.row = np.asarray(row, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.targetid.size)

    def by_file(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{file: (rows, targetids)} with rows sorted within each file (files sorted)."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        files = np.array(self.file, dtype=object)
        for f in sorted(set(self.file)):
            sel = np.nonzero(files == f)[0]
            o = np.argsort(self.row[sel], kind="stable")
            out[f] = (self.row[sel][o], self.targetid[sel][o])
        return out


def _unique_ids(targetids: Sequence[int] | np.ndarray) -> np.ndarray:
    t = np.asarray(targetids)
    if t.size == 0:
        return np.zeros(0, dtype=np.int64)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise InputError("TARGETIDs must be a 1-d sequence of integers", parameter="targetids")
    return np.unique(t.astype(np.int64))


def _location_sql(cond: str) -> str:
    # zcat_primary first (NULL when no zcatalog row), then a fixed order
    return (
        'SELECT s.targetid, s.file, s."row" AS row, '
        "CASE WHEN z.zcat_primary THEN 0 ELSE 1 END AS pref, s.survey, s.program "
        "FROM spectra_index AS s LEFT JOIN zcatalog AS z "
        "ON z.targetid = s.targetid AND z.survey = s.survey AND z.program = s.program"
        + (f" WHERE {cond}" if cond else "")
        + " ORDER BY s.targetid, pref, s.survey, s.program, s.file"
    )


def locate_in_store(
    store: Any, targetids: Sequence[int] | np.ndarray | None, *, where: str | None = None
) -> SpectrumLocation:
    """Look spectra up in the store's ``spectra_index`` (unknown TARGETIDs are left out).

    Parameters
    ----------
    store
        An open :class:`desilab.store.base.Store`.
    targetids
        The objects; ``None``: every object matching *where*.
    where
        Optional SQL condition on ``spectra_index`` (alias ``s``), e.g.
        ``"s.targetid IN (SELECT targetid FROM quasars)"``.

    Returns
    -------
    SpectrumLocation
        One (file, row) per found TARGETID, sorted by TARGETID (see the module docstring
        for objects with several coadds).
    """
    extra = f"({where})" if where else ""
    parts: list[pa.Table] = []
    if targetids is None:
        parts.append(store.query(_location_sql(extra)))
    else:
        ids = _unique_ids(targetids)
        for i in range(0, ids.size, _CHUNK):
            lst = ", ".join(str(int(t)) for t in ids[i : i + _CHUNK])
            cond = f"s.targetid IN ({lst})" + (f" AND {extra}" if extra else "")
            parts.append(store.query(_location_sql(cond)))
    if not parts:
        return SpectrumLocation(np.zeros(0, np.int64), [], np.zeros(0, np.int64))
    t = pa.concat_tables(parts)
    tid = t.column("targetid").to_numpy()
    first = np.ones(tid.size, dtype=bool)
    first[1:] = tid[1:] != tid[:-1]
    return SpectrumLocation(
        tid[first],
        np.array(t.column("file").to_pylist(), dtype=object)[first].tolist(),
        t.column("row").to_numpy()[first],
    )


def locate_in_files(files: Sequence[str | os.PathLike[str]], targetids: Sequence[int] | np.ndarray) -> SpectrumLocation:
    """Find TARGETIDs by reading the FIBERMAP TARGETID column of each coadd (first file wins).

    Parameters
    ----------
    files
        Coadd files, searched in the order given.
    targetids
        The objects (unknown ones are left out).
    """
    from desilab.io.fits import read_table

    ids = _unique_ids(targetids)
    left = set(ids.tolist())
    out_t: list[int] = []
    out_f: list[str] = []
    out_r: list[int] = []
    for f in files:
        if not left:
            break
        col = read_table(f, "FIBERMAP", columns=["TARGETID"]).column("TARGETID").to_numpy()
        for r, t in enumerate(col.tolist()):
            if t in left:
                left.discard(t)
                out_t.append(t)
                out_f.append(str(f))
                out_r.append(r)
    o = np.argsort(np.asarray(out_t, dtype=np.int64), kind="stable")
    return SpectrumLocation(np.asarray(out_t, np.int64)[o], [out_f[i] for i in o], np.asarray(out_r, np.int64)[o])


def read_located(loc: SpectrumLocation, **kwargs: Any) -> Preprocessed:
    """Read and preprocess the located spectra, file by file (only their rows).

    Parameters
    ----------
    loc
        Where they are (:func:`locate_in_store`, :func:`locate_in_files`).
    **kwargs
        Passed to :func:`~desilab.anomalies.preprocess.preprocess`.

    Returns
    -------
    Preprocessed
        Rows in the order of ``loc.targetid`` (sorted TARGETIDs).
    """
    from desilab.anomalies.data import preprocess_coadd

    if len(loc) == 0:
        raise InputError("no spectra to read", parameter="targetids")
    parts: list[Preprocessed] = []
    for f, (rows, _tids) in loc.by_file().items():
        if not Path(f).exists():
            raise InputError(f"the store points at a missing coadd file {f}: re-ingest or fix the path", file=f)
        parts.append(preprocess_coadd(f, rows=rows, **kwargs))
    pre = Preprocessed.concat(parts)
    order = np.argsort(pre.targetid, kind="stable")
    return pre.subset(order)


def spectra_by_targetid(
    targetids: Sequence[int] | np.ndarray,
    *,
    store: Any = None,
    files: Sequence[str | os.PathLike[str]] | None = None,
    missing: str = "raise",
) -> Preprocessed:
    """Preprocessed spectra of *targetids*, found through *store* or by scanning *files*.

    Parameters
    ----------
    targetids
        The objects.
    store
        An open store (its ``spectra_index``); takes precedence over *files*.
    files
        Coadd files to scan when no store is given.
    missing
        ``"raise"``: an InputError naming (up to 10 of) the TARGETIDs not found;
        ``"skip"``: leave them out.

    Returns
    -------
    Preprocessed
        Sorted by TARGETID.
    """
    if missing not in ("raise", "skip"):
        raise InputError(f"missing must be 'raise' or 'skip', got {missing!r}", parameter="missing")
    if store is not None:
        loc = locate_in_store(store, targetids)
        where = "the store's spectra_index"
    elif files is not None:
        loc = locate_in_files(files, targetids)
        where = f"{len(files)} coadd file(s)"
    else:
        raise InputError("give a store or coadd files to find the spectra in", parameter="store")
    lost = np.setdiff1d(_unique_ids(targetids), loc.targetid)
    if lost.size and missing == "raise":
        shown = ", ".join(str(t) for t in lost[:10].tolist())
        raise InputError(
            f"{lost.size} TARGETID(s) not found in {where}: {shown}{' ...' if lost.size > 10 else ''}",
            parameter="targetids",
        )
    return read_located(loc)
