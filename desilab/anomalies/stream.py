"""Bounded-memory, deterministic, resumable iteration over a :class:`SpectrumCache`.

Training on 1.6M spectra (51 GB of flux + ivar) cannot hold the set in memory. A
:class:`ShardStream` yields mini-batches read from the cache shards with a
*block shuffle*:

1. the selected rows are cut into **chunks** of ``chunk_rows`` consecutive rows of one
   shard (one contiguous file read per array);
2. each epoch, the chunk order is permuted with a generator seeded by
   ``(seed, epoch)``;
3. consecutive chunks of that order are grouped into **windows** of at most
   ``buffer_rows`` rows; a window is read into memory, its rows are permuted (same
   generator) and cut into batches.

So a batch mixes rows of ``buffer_rows / chunk_rows`` random places of the whole cache,
memory holds one window plus one batch (bounded by ``buffer_rows`` whatever the cache
size), and the order of every epoch is a pure function of (seed, epoch, cache manifest,
selection): no state has to be saved to resume. ``epoch(e, start_batch=b)`` jumps
straight to batch *b* (the windows before it are skipped without being read), so a run
killed mid-epoch resumes with exactly the batches it had not yet seen.

Why hand-written rather than ``torch.utils.data.DataLoader`` with a shuffle buffer: the
DataLoader's shuffle draws from the global order (random access over 51 GB of memory
maps, i.e. random disk reads) and ``torchdata``'s shuffle buffers are not resumable
mid-epoch; the block shuffle reads contiguous chunks and its order is recomputable.
Batches are NumPy arrays (``torch.from_numpy`` shares their memory).

The second half of the module runs a :class:`~desilab.anomalies.detector.VAEAnomalyDetector`
over a stream (what its ``fit`` and ``score`` do when given one): training, the
post-training fits and scoring in bounded memory, with results equal to the in-memory
path's given the same VAE weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desilab.anomalies.cache import _FIELDS, SpectrumCache
from desilab.anomalies.preprocess import Preprocessed
from desilab.errors import FormatError, InputError

__all__ = [
    "SCORE_ROWS",
    "Batch",
    "RowView",
    "ShardStream",
    "concat_scores",
    "epoch_rng",
    "fit_detector",
    "iter_scores",
    "raw_scores",
    "score_stream",
    "scoring_stream",
]

_OPEN_SHARDS = 256


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch *epoch* (child ``epoch`` of ``SeedSequence(seed)``: independent streams)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=int(seed), spawn_key=(int(epoch),))))


@dataclass
class Batch:
    """One mini-batch: the spectra and where they are in the cache.

    Attributes
    ----------
    data
        The rows (in memory, not memory-mapped), as a :class:`Preprocessed` set.
    rows
        Their global row numbers in the cache (shard order, then row order).
    index
        0-based number of this batch within its epoch.
    """

    data: Preprocessed
    rows: np.ndarray
    index: int


class ShardStream:
    """Mini-batches of selected cache rows in bounded memory.

    Parameters
    ----------
    cache
        The cache (or its folder).
    batch_size
        Rows per batch (the last batch of an epoch may be smaller unless *drop_last*).
    seed
        Seed of the shuffle; epoch *e* uses :func:`epoch_rng` ``(seed, e)``.
    select
        Boolean mask over all cache rows (global order, length ``len(cache)``) of the rows
        to use (e.g. the training role); default all.
    only_valid
        Also drop rows whose ``valid`` flag is false.
    shuffle
        Block shuffle (training); ``False`` gives the selected rows in cache order
        (scoring), read window by window.
    buffer_rows
        Rows held in memory at once (one window); the memory bound is about
        ``(buffer_rows + batch_size + chunk_rows) × npix × 8`` bytes (flux + ivar), ≈ 2 GB
        for the default 65 536 rows of 4000 pixels (tested: peak < 1.5 windows).
    chunk_rows
        Rows of one contiguous read (shuffle granularity).
    drop_last
        Batches never span windows, so each window's last batch may be short; with
        *drop_last* those short batches are dropped (every batch full).
    """

    def __init__(
        self,
        cache: SpectrumCache | str,
        batch_size: int = 64,
        *,
        seed: int = 0,
        select: np.ndarray | None = None,
        only_valid: bool = True,
        shuffle: bool = True,
        buffer_rows: int = 65_536,
        chunk_rows: int = 1024,
        drop_last: bool = False,
    ) -> None:
        self.cache = cache if isinstance(cache, SpectrumCache) else SpectrumCache(cache)
        for name, v in (("batch_size", batch_size), ("buffer_rows", buffer_rows), ("chunk_rows", chunk_rows)):
            if int(v) < 1:
                raise InputError(f"{name} must be >= 1, got {v}", parameter=name)
        if buffer_rows < batch_size:
            raise InputError(
                f"buffer_rows ({buffer_rows}) must hold at least one batch ({batch_size})", parameter="buffer_rows"
            )
        self.batch_size, self.seed, self.shuffle, self.drop_last = int(batch_size), int(seed), shuffle, drop_last
        self.buffer_rows = int(buffer_rows)
        self.chunk_rows = int(min(chunk_rows, buffer_rows))
        sizes = np.array([s["rows"] for s in self.cache.manifest["shards"]], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        n = int(self._starts[-1])
        if select is None:
            mask = np.ones(n, dtype=bool)
        else:
            mask = np.asarray(select, dtype=bool)
            if mask.shape != (n,):
                raise InputError(f"select has shape {mask.shape}, the cache has {n} rows", parameter="select")
            mask = mask.copy()
        if only_valid:
            for i in range(self.cache.n_shards):  # 1 byte per row: cheap even for 1.6M rows
                mask[self._starts[i] : self._starts[i + 1]] &= np.asarray(self.cache.shard(i).valid, dtype=bool)
        self.mask = mask
        # headers (file, dtype, shape, offset) of recently read cache arrays; bounded: a DR1
        # cache has ~10^4 shards x 7 arrays
        self._open: OrderedDict[tuple[int, str], tuple[Path, np.dtype, tuple[int, ...], int]] = OrderedDict()
        # chunks: (shard, first row, stop row) of consecutive rows within one shard, with their selected counts
        chunks: list[tuple[int, int, int]] = []
        for i, size in enumerate(sizes.tolist()):
            for a in range(0, size, self.chunk_rows):
                chunks.append((i, a, min(size, a + self.chunk_rows)))
        self._chunks = np.array(chunks, dtype=np.int64).reshape(-1, 3)
        g0 = self._starts[self._chunks[:, 0]] + self._chunks[:, 1]
        cs = np.concatenate([[0], np.cumsum(mask)])
        self._chunk_sel = cs[g0 + (self._chunks[:, 2] - self._chunks[:, 1])] - cs[g0]
        keep = self._chunk_sel > 0
        self._chunks, self._chunk_sel = self._chunks[keep], self._chunk_sel[keep]

    @property
    def n_rows(self) -> int:
        """Selected rows per epoch."""
        return int(self.mask.sum())

    def _windows(self, epoch: int) -> tuple[np.random.Generator, list[np.ndarray]]:
        """The epoch's generator and its windows (arrays of chunk numbers), in order."""
        rng = epoch_rng(self.seed, epoch)
        order = rng.permutation(len(self._chunks)) if self.shuffle else np.arange(len(self._chunks))
        windows: list[np.ndarray] = []
        cur: list[int] = []
        rows = 0
        for c in order.tolist():
            k = int(self._chunk_sel[c])
            if cur and rows + k > self.buffer_rows:
                windows.append(np.array(cur, dtype=np.int64))
                cur, rows = [], 0
            cur.append(c)
            rows += k
        if cur:
            windows.append(np.array(cur, dtype=np.int64))
        return rng, windows

    def _window_batches(self, n: int) -> int:
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def n_batches(self, epoch: int = 0) -> int:
        """Batches in epoch *epoch* (windows are cut into batches separately)."""
        _, windows = self._windows(epoch)
        return sum(self._window_batches(int(self._chunk_sel[w].sum())) for w in windows)

    def _header(self, shard: int, field: str) -> tuple[Path, np.dtype, tuple[int, ...], int]:
        """(file, dtype, shape, data offset) of one ``.npy`` file of the cache (headers kept, bounded)."""
        key = (shard, field)
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        path = self.cache.path / self.cache.manifest["shards"][shard]["name"] / f"{field}.npy"
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                offset = fh.tell()
        except (OSError, ValueError) as exc:
            raise FormatError(f"broken cache shard: {exc}", file=str(path)) from exc
        if fortran and len(shape) > 1:
            raise FormatError("cache arrays must be C-ordered", file=str(path))
        self._open[key] = (path, dtype, tuple(shape), offset)
        if len(self._open) > _OPEN_SHARDS * len(_FIELDS):
            self._open.popitem(last=False)
        return self._open[key]

    def _rows_of(self, shard: int, field: str, a: int, b: int) -> np.ndarray:
        """Rows [a, b) of one cache array, read from the file (not memory-mapped).

        A plain read rather than a slice of a memory map: pages of a memory map stay in the
        process' resident set until it is unmapped, so a stream that keeps shards mapped
        would grow its RSS with the cache (up to the whole cache in page cache) although
        it never holds more than a window; a read leaves them in the kernel's page cache only.
        """
        path, dtype, shape, offset = self._header(shard, field)
        inner = int(np.prod(shape[1:], dtype=np.int64))
        with open(path, "rb") as fh:
            fh.seek(offset + a * inner * dtype.itemsize)
            out = np.fromfile(fh, dtype=dtype, count=(b - a) * inner)
        if out.size != (b - a) * inner:
            raise FormatError(f"cache array truncated (rows {a}:{b} of {shape[0]})", file=str(path))
        return out.reshape((b - a, *shape[1:]))

    def _read(self, chunk_ids: np.ndarray, n: int, dest: np.ndarray) -> tuple[Preprocessed, np.ndarray]:
        """Rows of *chunk_ids* written straight to positions *dest* of new (n, ...) arrays (one copy)."""
        s0 = int(self._chunks[chunk_ids[0], 0])
        out = {}
        for f in _FIELDS:
            _, dtype, shape, _ = self._header(s0, f)
            out[f] = np.empty((n, *shape[1:]), dtype=dtype)
        rows = np.empty(n, dtype=np.int64)
        k = 0
        for c in chunk_ids.tolist():
            s, a, b = (int(x) for x in self._chunks[c])
            g = self._starts[s] + np.arange(a, b)
            m = self.mask[g]
            local = np.nonzero(m)[0]
            pos = dest[k : k + local.size]
            for f in _FIELDS:
                # one contiguous read of the chunk, then only the selected rows
                block = self._rows_of(s, f, a, b)
                out[f][pos] = block if local.size == b - a else block[local]
                del block
            rows[pos] = g[m]
            k += local.size
        return Preprocessed(*(out[f] for f in _FIELDS)), rows

    def read_rows(self, rows: np.ndarray) -> Preprocessed:
        """Cache rows *rows* (global row numbers, any order, selected or not) in memory, in that order.

        For small row sets (a subsample, the rows of a figure): reads one contiguous run per
        shard touched, so keep *rows* to what fits in memory.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = int(self._starts[-1])
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise InputError(f"row numbers must be in [0, {n})", parameter="rows")
        shard = np.searchsorted(self._starts, rows, side="right") - 1
        out: dict[str, np.ndarray] = {}
        for s in np.unique(shard).tolist():
            at = np.nonzero(shard == s)[0]
            local = rows[at] - self._starts[s]
            a, b = int(local.min()), int(local.max()) + 1
            for f in _FIELDS:
                block = self._rows_of(s, f, a, b)
                if f not in out:
                    out[f] = np.empty((rows.size, *block.shape[1:]), dtype=block.dtype)
                out[f][at] = block[local - a]
                del block
        if not out:
            return Preprocessed(
                np.zeros((0, self.npix), np.float32),
                np.zeros((0, self.npix), np.float32),
                *(np.zeros(0, t) for t in (np.float64, np.float64, np.float64, bool, np.int64)),
            )
        return Preprocessed(*(out[f] for f in _FIELDS))

    @property
    def rows(self) -> np.ndarray:
        """Global row numbers of the selected rows, in cache order (the order of an unshuffled epoch)."""
        return np.nonzero(self.mask)[0]

    def column(self, name: str) -> np.ndarray:
        """Per-row column *name* of the selected rows, in cache order (see :meth:`SpectrumCache.column`)."""
        return self.cache.column(name)[self.mask]

    @property
    def z(self) -> np.ndarray:
        """Redshifts of the selected rows (cache order)."""
        return self.column("z")

    @property
    def snr(self) -> np.ndarray:
        """S/N of the selected rows (cache order)."""
        return self.column("snr")

    @property
    def targetid(self) -> np.ndarray:
        """TARGETIDs of the selected rows (cache order)."""
        return self.column("targetid")

    @property
    def npix(self) -> int:
        """Pixels per spectrum (the cache's grid)."""
        return int(self.cache.manifest["grid"]["npix"])

    def derive(self, **changes: Any) -> ShardStream:
        """A stream over the same cache with some parameters changed (``select`` defaults to this stream's rows).

        Rows already excluded (unselected or invalid) stay excluded unless *select* is given.
        """
        kw: dict[str, Any] = {
            "batch_size": self.batch_size,
            "seed": self.seed,
            "select": self.mask,
            "only_valid": True,
            "shuffle": self.shuffle,
            "buffer_rows": self.buffer_rows,
            "chunk_rows": self.chunk_rows,
            "drop_last": self.drop_last,
        }
        kw.update(changes)
        return ShardStream(self.cache, **kw)

    def epoch(self, epoch: int = 0, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of epoch *epoch*, from batch *start_batch* on (resume).

        Parameters
        ----------
        epoch
            Epoch number (seeds the order).
        start_batch
            Skip the first *start_batch* batches without reading their windows.

        Yields
        ------
        Batch
        """
        if start_batch < 0:
            raise InputError(f"start_batch must be >= 0, got {start_batch}", parameter="start_batch")
        rng, windows = self._windows(epoch)
        done = 0
        for w in windows:
            n = int(self._chunk_sel[w].sum())
            # draw the row permutation even for a skipped window, so the generator state
            # (and thus every later window) is the same as in an uninterrupted epoch
            perm = rng.permutation(n) if self.shuffle else np.arange(n)
            nb = self._window_batches(n)
            if done + nb <= start_batch:
                done += nb
                continue
            dest = np.empty(n, dtype=np.int64)
            dest[perm] = np.arange(n)  # row j of the window goes to position dest[j]
            data, rows = self._read(w, n, dest)
            if nb == 1 and start_batch <= done:  # the whole window is the batch: no copy
                yield Batch(data, rows, done)
                done += 1
                del data, rows
                continue
            for j in range(nb):
                if done >= start_batch:
                    # a copy, not a view: a batch the caller keeps does not pin the window
                    sl = np.arange(j * self.batch_size, min(n, (j + 1) * self.batch_size))
                    yield Batch(data.subset(sl), rows[sl], done)
                done += 1
            del data, rows

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)

    def __len__(self) -> int:
        return self.n_batches(0)


# ---- the detector over a stream -----------------------------------------------------------------
# Helpers behind ``VAEAnomalyDetector.fit`` / ``score`` when they are given a ShardStream: the
# detector's own methods run on in-memory batches, these feed them shard by shard.

SCORE_ROWS = 4096
"""Rows scored per call of the detector (one read window): a few hundred MB with the residuals."""


def scoring_stream(stream: ShardStream, rows: int = SCORE_ROWS) -> ShardStream:
    """The selected rows of *stream* in cache order, one window of at most *rows* rows per batch."""
    b = max(1, min(int(rows), stream.buffer_rows))
    return stream.derive(
        shuffle=False, batch_size=b, buffer_rows=b, chunk_rows=min(stream.chunk_rows, b), drop_last=False
    )


def iter_scores(det: Any, stream: ShardStream, keep_resid: bool = False) -> Iterator[tuple[Batch, Any]]:
    """(batch, :class:`~desilab.anomalies.detector.Scores`) for the selected rows of *stream*, in cache order.

    A row's scores do not depend on the other rows of its batch (measured: bit-identical to
    an in-memory call for batches of several rows; a batch of a single row goes through
    another convolution path and can differ at float32 rounding), so per-batch results may
    be written out as they come and the residual arrays of *keep_resid* dropped after
    each batch.
    """
    it = scoring_stream(stream).epoch(0)
    while (b := next(it, None)) is not None:
        item = (b, det.score(b.data, keep_resid=keep_resid))
        del b
        yield item
        # drop this window before the next is read (the caller should drop its references too):
        # otherwise two windows are resident at once
        del item


def concat_scores(parts: list[Any]) -> Any:
    """One :class:`~desilab.anomalies.detector.Scores` from per-batch ones (fields that are None stay None)."""
    import dataclasses

    from desilab.anomalies.detector import Scores

    if not parts:
        raise InputError("no rows to score", parameter="stream")
    vals = {}
    for f in dataclasses.fields(Scores):
        arrs = [getattr(p, f.name) for p in parts]
        vals[f.name] = None if any(a is None for a in arrs) else np.concatenate(arrs)
    return Scores(**vals)


def score_stream(det: Any, stream: ShardStream, keep_resid: bool = False) -> Any:
    """Every score of the selected rows of *stream* (cache order), read shard by shard.

    The per-row scores and latents are concatenated (small: ~0.6 kB per spectrum); the
    per-pixel residual maps of *keep_resid* would be (n, npix) arrays, so a stream refuses
    them: use :func:`iter_scores` and reduce each batch instead.
    """
    if keep_resid:
        raise InputError(
            "keep_resid over a stream would hold (n, npix) residual arrays in memory; use iter_scores",
            parameter="keep_resid",
        )
    parts = []
    for b, sc in iter_scores(det, stream):
        parts.append(sc)
        del b, sc  # before the next window is read
    return concat_scores(parts)


def raw_scores(det: Any, stream: ShardStream) -> dict[str, Any]:
    """The detector's raw per-row quantities (``_vae_scores``) over *stream*, batch by batch, concatenated."""
    parts = []
    for b in scoring_stream(stream).epoch(0):
        parts.append(det._vae_scores(np.asarray(b.data.flux), np.asarray(b.data.ivar)))
        del b  # before the next window is read
    out: dict[str, Any] = {}
    for k in parts[0]:
        out[k] = None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
    return out


def fit_detector(det: Any, stream: ShardStream, progress: Any = None) -> Any:
    """``det.fit`` on the selected (valid) rows of *stream*, never holding them all in memory.

    The VAE is trained by :func:`~desilab.anomalies.train.train_vae` on the stream; the
    model-error term and the scan weights are fitted on the same evenly spaced subsample
    of at most ~``SCAN_FIT_MAX`` training spectra as the in-memory path (read from the
    cache alone); the Isolation Forest and the standardisations on the raw scores of all
    training rows, computed shard by shard (latents and per-row scores only). Given the
    same VAE weights, the fitted detector equals the in-memory one (tested).
    """
    from desilab.anomalies.detector import SCAN_FIT_MAX
    from desilab.anomalies.train import train_vae

    stream = stream.derive(only_valid=True)  # invalid rows never enter a fit
    det._adopt(train_vae(stream, det._config(), checkpoint=det.checkpoint, progress=progress), stream.npix)
    rows = stream.rows
    sub = stream.read_rows(rows[:: max(1, rows.size // SCAN_FIT_MAX)])
    det._fit_scores(sub.flux, sub.ivar, raw=lambda: raw_scores(det, stream))
    det.n_train_ = int(rows.size)
    return det


class RowView:
    """Read-only, row-indexable view of a per-pixel array that lives in the cache or is computed per row.

    ``view[i]`` is row *i* of the stream's selection (cache order) as a 1-d array; the
    whole (n, npix) array never exists. Used where a few rows of a large set are looked
    at (figures of the top anomalies).

    Parameters
    ----------
    stream
        The rows (its selection, cache order).
    field
        ``flux`` or ``ivar`` (read from the cache), or ``recon`` / ``resid2`` (the
        detector's reconstruction and squared normalised residual, recomputed for the row).
    det
        The fitted detector (for ``recon`` and ``resid2``).
    """

    def __init__(self, stream: ShardStream, field: str, det: Any = None) -> None:
        if field not in ("flux", "ivar", "recon", "resid2"):
            raise InputError(f"no row view of {field!r}", parameter="field")
        if field in ("recon", "resid2") and det is None:
            raise InputError(f"a {field} view needs the detector", parameter="det")
        self.stream, self.field, self.det = stream, field, det
        self._rows = stream.rows
        self._memo: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, npix)."""
        return (int(self._rows.size), self.stream.npix)

    def __len__(self) -> int:
        return int(self._rows.size)

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if i < 0:
            i += self._rows.size
        if i in self._memo:
            return self._memo[i]
        pre = self.stream.read_rows(self._rows[i : i + 1])
        if self.field in ("flux", "ivar"):
            row = np.asarray(getattr(pre, self.field))[0]
        else:
            sc = self.det.score(pre, keep_resid=True)
            row = np.asarray(getattr(sc, self.field))[0]
        self._memo[i] = row
        if len(self._memo) > 64:
            self._memo.popitem(last=False)
        return row
