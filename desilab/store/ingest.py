"""``desilab ingest``: DR1 files into the store — transactional, idempotent, resumable.

Semantics
---------
* **Dispatch**: every file is named by :func:`desilab.io.validate.identify`; a loader
  per product maps its HDUs onto store tables (:data:`LOADERS`). Products the store does
  not hold (``redrock`` — use the redshift catalog —, VAST input tables...) are skipped
  with a reason; in a directory tree, files that are no DR1 product are skipped too.
* **Transactional per file**: all rows of a file, in every table it feeds, and its
  ``ingested_files`` record are written in one transaction. A crash (even SIGKILL) or a
  bad file leaves no partial rows.
* **Idempotent**: a file whose SHA-256 is already recorded is skipped without being
  read; the same content under another path is skipped too. A file at a recorded path
  but with new content *replaces* the old rows (same transaction).
* **Resumable**: files are committed one by one, so re-running an interrupted ingest
  does only what is left.
* **Parallel reading**: checksums and FITS reading run in worker processes (bounded
  look-ahead); the single writer inserts in submission order.
* **After the load**: spatial indexes are built (q3c on PostgreSQL) and statistics
  refreshed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import re
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from desilab.errors import DesilabError, FormatError, InputError
from desilab.store.base import FileOutcome, FileRecord, prepare_tables
from desilab.store.schema import FASTSPEC, FASTSPEC_LINES, TABLES, StoreTable

if TYPE_CHECKING:
    from desilab.store.base import Store

__all__ = ["LOADERS", "IngestReport", "expand_paths", "ingest", "read_product", "sha256_file"]

log = logging.getLogger("desilab.store")

_FITS_RE = re.compile(r"\.(fits|fit|fts)(\.gz|\.fz)?$", re.IGNORECASE)


@dataclass
class IngestReport:
    """What :func:`ingest` did, file by file."""

    files: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """Number of files with this status."""
        return sum(1 for f in self.files if f.status == status)

    @property
    def rows(self) -> int:
        """Rows written."""
        return sum(f.rows for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        """Files that could not be ingested."""
        return [f for f in self.files if f.status == "failed"]

    def table_rows(self) -> dict[str, int]:
        """Rows written per table."""
        out: dict[str, int] = {}
        for f in self.files:
            for k, v in f.table_rows.items():
                out[k] = out.get(k, 0) + v
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "seconds": round(self.seconds, 3),
            "rows": self.rows,
            "ingested": self.count("ingested") + self.count("replaced"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "table_rows": self.table_rows(),
            "files": [f.to_dict() for f in self.files],
        }


def sha256_file(path: str | Path, block: int = 4 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[Path, bool]]:
    """Files to ingest, as ``(absolute path, named explicitly)`` in a stable order.

    Directories are walked recursively for FITS files (``.fits``, ``.fits.gz``...).

    Raises
    ------
    InputError
        A path does not exist (parameter ``PATH``).
    """
    out: list[tuple[Path, bool]] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise InputError("no such file or directory", file=p, parameter="PATH")
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and _FITS_RE.search(q.name))
            items = [(q.resolve(), False) for q in found]
        else:
            items = [(p.resolve(), True)]
        for q, explicit in items:
            if q not in seen:
                seen.add(q)
                out.append((q, explicit))
    return out


# ------------------------------------------------------------------------------ loaders


def _rename_sources(table: pa.Table, tdef: StoreTable) -> pa.Table:
    """Rename source columns whose DR1 name differs from the store name (beyond case)."""
    lower = {n.lower(): n for n in table.column_names}
    names = list(table.column_names)
    for c in tdef.columns:
        if c.source and c.source.lower() != c.name and c.source.lower() in lower:
            names[names.index(lower[c.source.lower()])] = c.name
    return table.rename_columns(names)


def _wanted_columns(tdef: StoreTable, available: Iterable[str]) -> list[str]:
    avail = {a.upper(): a for a in available}
    out = []
    for c in tdef.columns:
        if c.source == "":
            continue
        key = c.source_name.upper()
        if key in avail and avail[key] not in out:
            out.append(avail[key])
    return out


def _colnames(path: Path, extnames: Sequence[str]) -> list[str]:
    from desilab.io.validate import scan_hdus

    for info in scan_hdus(path):
        if info.extname.upper() in extnames and info.is_table:
            n = int(info.header.get("TFIELDS", 0) or 0)
            return [str(info.header.get(f"TTYPE{i}", "")).strip() for i in range(1, n + 1)]
    return []


def _with(table: pa.Table, **constants: Any) -> pa.Table:
    for name, value in constants.items():
        if isinstance(value, np.ndarray):
            table = table.append_column(name, pa.array(value))
        else:
            table = table.append_column(
                name, pa.array([value] * table.num_rows, type=pa.string() if isinstance(value, str) else None)
            )
    return table


def _rows_index(table: pa.Table) -> pa.Table:
    return table.append_column("_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _load_zcatalog(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.zcatalog import read_zcatalog

    tdef = TABLES["zcatalog"]
    cols = _wanted_columns(tdef, _colnames(path, ("ZCATALOG",)))
    table = read_zcatalog(path, cols)
    return {"zcatalog": _rows_index(_rename_sources(table, tdef))}


_FS_FIELDS = [
    c for c in FASTSPEC_LINES.columns if c.name not in {"targetid", "survey", "program", "line", "_file_id", "_row"}
]


def _load_fastspec(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.fastspecfit import read_fastspec

    available = set()
    for ext in ("METADATA", "SPECPHOT", "FASTSPEC", "MORELINES"):
        available.update(c.upper() for c in _colnames(path, (ext,)))
    curated = [c.source_name for c in FASTSPEC.columns if c.source != "" and c.source_name.upper() in available]
    from desilab.store.schema import _FS_LINES

    line_cols = [
        f"{line}_{f.name.upper()}" for line in _FS_LINES for f in _FS_FIELDS if f"{line}_{f.name.upper()}" in available
    ]
    wanted = list(dict.fromkeys(curated + line_cols))
    table = read_fastspec(path, wanted)
    meta = table.schema.metadata or {}
    version = (meta.get(b"desilab.fastspecfit_version") or product.split("-", 1)[-1].encode()).decode()
    n = table.num_rows
    fast = table.select([c for c in curated if c in table.column_names])
    fast = _rows_index(_with(fast, fastspec_version=version))
    # long-form lines: one block of rows per line, keep the lines that were measured
    blocks = []
    keys = {k: table.column(k.upper()) for k in ("targetid", "survey", "program") if k.upper() in table.column_names}
    rows = np.arange(n, dtype=np.int64)
    have = set(table.column_names)
    for line in _FS_LINES:
        present = {f.name: f"{line}_{f.name.upper()}" for f in _FS_FIELDS if f"{line}_{f.name.upper()}" in have}
        if not present:
            continue
        measured = np.zeros(n, dtype=bool)
        for ivar in ("amp_ivar", "flux_ivar", "boxflux_ivar"):
            if ivar in present:
                v = np.asarray(table.column(present[ivar]).to_numpy(zero_copy_only=False), dtype=np.float64)
                measured |= np.nan_to_num(v) > 0
        if not measured.any():
            continue
        idx = pa.array(np.flatnonzero(measured))
        cols = {k: v.take(idx) for k, v in keys.items()}
        cols["line"] = pa.array([line] * len(idx), type=pa.string())
        for name, src in present.items():
            cols[name] = table.column(src).take(idx)
        cols["_row"] = pa.array(rows[np.flatnonzero(measured)])
        blocks.append(pa.table(cols))
    out = {"fastspec": fast}
    if blocks:
        out["fastspec_lines"] = pa.concat_tables(blocks, promote_options="default")
    return out


def _load_qso(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.qso import read_qso_catalog

    name = "bal" if product == "qso-balcat" else "quasars"
    tdef = TABLES[name]
    ext = {"bal": ("BALCAT",), "quasars": ("QSO_CAT", "ZCATALOG")}[name]
    available = _colnames(path, ext)
    from desilab.io.qso import SIV_TO_SIIV

    mapped = [SIV_TO_SIIV.get(a.upper(), a) for a in available]
    cols = _wanted_columns(tdef, mapped)
    table = read_qso_catalog(path, cols)
    return {name: _rows_index(_rename_sources(table, tdef))}


def _cap(path: Path) -> str:
    m = re.search(r"(?:^|[_-])(NGC|SGC)(?:[_.-]|$)", path.name, re.IGNORECASE)
    return m.group(1).upper() if m else ""


def _catalog_name(path: Path) -> str:
    return _FITS_RE.sub("", path.name)


def _derive_sky(table: pa.Table) -> pa.Table:
    from desilab.sky.geometry import xyz_to_radec

    xyz = np.column_stack(
        [np.asarray(table.column(a).to_numpy(zero_copy_only=False), dtype=np.float64) for a in ("X", "Y", "Z")]
    )
    ra, dec, r = xyz_to_radec(xyz)
    names = [n.lower() for n in table.column_names]
    for name, values in (("ra", ra), ("dec", dec), ("r", r)):
        if name in names:
            table = table.remove_column(names.index(name))
            names.pop(names.index(name))
        table = table.append_column(name, pa.array(values))
        names.append(name)
    return table


def _header_json(header: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in header.items() if k}, default=str, sort_keys=True)


def _void_catalog_row(
    path: Path, algorithm: str, pruning: str | None, header: dict[str, Any], omega_m: float, h: float
) -> pa.Table:
    def num(key: str) -> float | None:
        v = header.get(key)
        try:
            return float(v) if v is not None else None
        except (TypeError, ValueError):
            return None

    return pa.table(
        {
            "catalog": [_catalog_name(path)],
            "cap": [_cap(path)],
            "pruning": [pruning or ""],
            "algorithm": [algorithm],
            "omega_m": [float(omega_m)],
            "h": [float(h)],
            "zlim_lo": pa.array([num("ZLIML")], pa.float64()),
            "zlim_hi": pa.array([num("ZLIMU")], pa.float64()),
            "maglim": pa.array([num("MAGLIM")], pa.float64()),
            "header": [_header_json(header)],
            "_row": [0],
        }
    )


def _load_voidfinder(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.desivast import read_voidfinder

    cat = read_voidfinder(path, ra_wrap=True)
    ids = {"catalog": _catalog_name(path), "cap": _cap(path)}
    maximals = _rows_index(_with(cat.maximals, **ids))
    holes = _rows_index(_derive_sky(_with(cat.holes, **ids)))
    holes = holes.append_column("hole", pa.array(np.arange(holes.num_rows, dtype=np.int64)))
    return {
        "void_catalogs": _void_catalog_row(path, "VoidFinder", None, cat.header, cat.omega_m, cat.h),
        "voidfinder_maximals": maximals,
        "voidfinder_holes": holes,
    }


def _load_v2(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.desivast import read_v2

    cat = read_v2(path, ("VOIDS", "ZONEVOID", "GALZONE"), ra_wrap=True)
    ids = {"catalog": _catalog_name(path), "cap": _cap(path), "pruning": (cat.pruning or "").upper()}
    out = {"void_catalogs": _void_catalog_row(path, "V2", cat.pruning, cat.header, cat.omega_m, cat.h)}
    if cat.voids is not None:
        out["v2_voids"] = _rows_index(_with(cat.voids, **ids))
    if cat.zonevoid is not None:
        out["v2_zones"] = _rows_index(_with(cat.zonevoid, **ids))
    if cat.galzone is not None:
        gal = _rename_sources(cat.galzone, TABLES["v2_galaxies"])
        out["v2_galaxies"] = _rows_index(_derive_sky(_with(gal, **ids)))
    return out


def _load_coadd(path: Path, product: str) -> dict[str, pa.Table]:
    from desilab.io.fits import read_table
    from desilab.io.validate import scan_hdus

    infos = scan_hdus(path)
    primary = infos[0].header if infos else {}
    names = {i.extname.upper(): i for i in infos}
    arms = "".join(b.lower() for b in "BRZ" if f"{b}_FLUX" in names)
    nwave = 0
    for b in "BRZ":
        info = names.get(f"{b}_WAVELENGTH")
        if info is not None and info.shape:
            nwave += int(info.shape[-1])
    fm_cols = _colnames(path, ("FIBERMAP",))
    wanted = [
        c
        for c in fm_cols
        if c.upper() in {"TARGETID", "TARGET_RA", "TARGET_DEC", "COADD_FIBERSTATUS", "SURVEY", "PROGRAM"}
    ]
    fm = read_table(path, "FIBERMAP", wanted)
    n = fm.num_rows
    lower = [c.lower() for c in fm.column_names]
    fm = fm.rename_columns(lower)
    healpix = primary.get("HPXPIXEL", primary.get("SPGRPVAL"))
    extra: dict[str, Any] = {
        "file": str(path),
        "arms": arms,
        "row": np.arange(n, dtype=np.int32),
        "nwave": np.full(n, nwave, dtype=np.int32),
        "healpix": np.full(n, -1 if healpix is None else int(healpix), dtype=np.int32),
    }
    for key in ("survey", "program"):
        if key not in lower:
            extra[key] = str(primary.get(key.upper(), "") or "").strip()
    return {"spectra_index": _rows_index(_with(fm, **extra))}


LOADERS: dict[str, Callable[[Path, str], dict[str, pa.Table]]] = {
    "zpix": _load_zcatalog,
    "zall-pix": _load_zcatalog,
    "fastspec-v2.1": _load_fastspec,
    "fastspec-v3.0": _load_fastspec,
    "qso-cat": _load_qso,
    "qso-bal-appended": _load_qso,
    "qso-balcat": _load_qso,
    "desivast-voidfinder": _load_voidfinder,
    "desivast-v2": _load_v2,
    "coadd": _load_coadd,
}
"""Product name (``identify(path).name``) -> loader returning ``{table: rows}``."""

_NOT_STORED = {
    "redrock": "redshifts are ingested from the zcatalog (zpix/zall-pix) files",
    "vast-galaxies": "VAST input tables are not DR1 products",
}


@dataclass
class _Read:
    """Result of reading one file in a worker."""

    path: str
    explicit: bool
    status: str  # read, skipped, failed
    sha256: str = ""
    size: int = 0
    product: str | None = None
    tables: dict[str, pa.Table] = field(default_factory=dict)
    seconds: float = 0.0
    message: str = ""


def read_product(path: str | Path, known: frozenset[str] | set[str] = frozenset(), explicit: bool = True) -> _Read:
    """Checksum, identify and load one file (runs in a worker process; never raises)."""
    t0 = time.perf_counter()
    p = Path(path)
    try:
        size = p.stat().st_size
        sha = sha256_file(p)
        if sha in known:
            return _Read(str(p), explicit, "skipped", sha, size, message="already ingested (same checksum)")
        from desilab.io.validate import identify

        try:
            schema = identify(p)
        except FormatError as exc:
            if not explicit and "not a known DR1 product" in str(exc):
                return _Read(str(p), explicit, "skipped", sha, size, message="not a DR1 product the store holds")
            raise
        product = schema.name
        loader = LOADERS.get(product)
        if loader is None:
            reason = _NOT_STORED.get(product, "no store table for this product")
            return _Read(str(p), explicit, "skipped", sha, size, product, message=f"not stored: {reason}")
        # conformed and sorted here, in the reader process, so that the writer only inserts
        tables = prepare_tables(loader(p, product), file=str(p))
        return _Read(str(p), explicit, "read", sha, size, product, tables, time.perf_counter() - t0)
    except DesilabError as exc:
        return _Read(str(p), explicit, "failed", message=str(exc))
    except Exception as exc:  # a bug or an unexpected file: report it, keep going
        log.debug("reading %s failed:\n%s", p, traceback.format_exc())
        return _Read(str(p), explicit, "failed", message=f"{type(exc).__name__}: {exc}")


def ingest(
    store: Store,
    paths: Sequence[str | Path],
    *,
    workers: int = 1,
    progress: Any = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    lookahead: int | None = None,
) -> IngestReport:
    """Ingest files and directory trees into *store* (see the module docstring).

    Parameters
    ----------
    store
        Target store.
    paths
        Files and/or directories.
    workers
        Reader processes (1 reads in this process).
    progress
        A :class:`rich.progress.Progress` (a files bar is added), True for an own bar,
        or None/False for none.
    on_file
        Called with each file's outcome right after it is committed (or skipped/failed).
    lookahead
        Files read ahead of the writer (default ``2 * workers``); bounds memory.

    Returns
    -------
    IngestReport

    Raises
    ------
    InputError
        A path does not exist. Per-file problems are reported in the result instead.
    """
    t0 = time.perf_counter()
    items = expand_paths(paths)
    known = frozenset(store.known_checksums())
    report = IngestReport()
    owned = None
    if progress is True:
        from desilab.ui import progress_bar

        owned = progress_bar()
        progress = owned.__enter__()
    task = progress.add_task("ingest", total=len(items)) if progress else None
    pool = None
    touched: set[str] = set()
    try:
        if workers > 1 and len(items) > 1:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver"))
        queue: deque[Future | _Read] = deque()
        pending = iter(items)
        ahead = lookahead or max(2, 2 * workers)

        def submit() -> bool:
            nxt = next(pending, None)
            if nxt is None:
                return False
            path, explicit = nxt
            if pool is None:
                queue.append(read_product(path, known, explicit))
            else:
                queue.append(pool.submit(read_product, str(path), known, explicit))
            return True

        while len(queue) < ahead and submit():
            pass
        while queue:
            head = queue.popleft()
            if isinstance(head, Future):
                try:
                    res = head.result()
                except BrokenProcessPool:  # a reader died (e.g. out of memory): read the rest here
                    log.warning("a reader process died; reading the remaining files in this process")
                    pool.shutdown(wait=False, cancel_futures=True)  # type: ignore[union-attr]
                    pool = None
                    redo = [items[len(report.files) + k] for k in range(len(queue) + 1)]
                    queue.clear()
                    queue.extend(read_product(path, known, explicit) for path, explicit in redo)
                    res = queue.popleft()
            else:
                res = head
            submit()
            outcome = _write(store, res)
            touched.update(k for k, v in outcome.table_rows.items() if v)
            report.files.append(outcome)
            if on_file is not None:
                on_file(outcome)
            if progress and task is not None:
                progress.update(task, advance=1, description=f"ingest {Path(res.path).name[:40]}")
        if touched:
            if progress and task is not None:
                progress.update(task, description="ingest: building indexes")
            store.finish_bulk(sorted(touched))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if owned is not None:
            owned.__exit__(None, None, None)
    report.seconds = time.perf_counter() - t0
    return report


def _write(store: Store, res: _Read) -> FileOutcome:
    if res.status != "read":
        return FileOutcome(res.path, res.status, res.product, message=res.message)
    rec = FileRecord(res.path, res.sha256, res.size, res.product or "", res.seconds)
    try:
        return store.ingest_file(rec, res.tables)
    except DesilabError as exc:
        return FileOutcome(res.path, "failed", res.product, message=str(exc))


def available_products() -> list[str]:
    """Products the store ingests."""
    return sorted(LOADERS)
