"""Bounded-memory, deterministic, resumable iteration over a :class:`SpectrumCache`.

Training on 1.6M spectra (51 GB of flux + ivar) cannot hold the set in memory. A
:class:`ShardStream` yields mini-batches read from the memory-mapped cache shards with a
*block shuffle*:

1. the selected rows are cut into **chunks** of ``chunk_rows`` consecutive rows of one
   shard (a contiguous, fast read from the memory map);
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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from desilab.anomalies.cache import SpectrumCache
from desilab.anomalies.preprocess import Preprocessed
from desilab.errors import InputError

__all__ = ["Batch", "ShardStream", "epoch_rng"]

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
        # recently used shards' memory maps (no file handle is kept; bounded, because a DR1
        # cache has ~10^4 shards x 7 arrays and the kernel caps a process' mappings at ~65k)
        self._open: OrderedDict[int, Preprocessed] = OrderedDict()
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

    def _shard(self, i: int) -> Preprocessed:
        if i in self._open:
            self._open.move_to_end(i)
        else:
            self._open[i] = self.cache.shard(i)
            if len(self._open) > _OPEN_SHARDS:
                self._open.popitem(last=False)
        return self._open[i]

    def _read(self, chunk_ids: np.ndarray, n: int, dest: np.ndarray) -> tuple[Preprocessed, np.ndarray]:
        """Rows of *chunk_ids* written straight to positions *dest* of new (n, ...) arrays (one copy)."""
        sh0 = self._shard(int(self._chunks[chunk_ids[0], 0]))
        fields = list(Preprocessed.__dataclass_fields__)
        out = {f: np.empty((n, *getattr(sh0, f).shape[1:]), dtype=getattr(sh0, f).dtype) for f in fields}
        rows = np.empty(n, dtype=np.int64)
        k = 0
        for c in chunk_ids.tolist():
            s, a, b = (int(x) for x in self._chunks[c])
            g = self._starts[s] + np.arange(a, b)
            m = self.mask[g]
            local = np.nonzero(m)[0] + a
            pos = dest[k : k + local.size]
            sh = self._shard(s)
            for f in fields:
                # a contiguous slice of the memory map, then only the selected rows
                out[f][pos] = np.asarray(getattr(sh, f)[a:b])[local - a]
            rows[pos] = g[m]
            k += local.size
        return Preprocessed(*(out[f] for f in fields)), rows

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
