"""Run a function over shards: locally in processes today, on Ray with the same call later.

The contract every executor keeps:

* ``executor.map(fn, shards, seed=..., progress=...)`` returns results **in shard order**;
* with ``seed`` given, ``fn(shard, rng)`` receives a ``numpy.random.Generator`` spawned
  from one :class:`numpy.random.SeedSequence` by the *shard id* (not by the order in
  which workers pick shards up), so results never depend on scheduling or on the number
  of workers;
* a :class:`~desilab.errors.DesilabError` raised inside a shard reaches the caller
  unchanged; any other exception becomes a :class:`~desilab.errors.ComputeError` naming
  the shard, with the original chained.

No scheduler is written here: local work uses :class:`concurrent.futures.ProcessPoolExecutor`
and distributed work will use Ray tasks.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

import numpy as np
from rich.progress import Progress

from desilab.errors import ComputeError, ConfigError, DesilabError
from desilab.ui import progress_bar

__all__ = [
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "get_executor",
    "shard_rng",
    "shard_seed",
]

T = TypeVar("T")
R = TypeVar("R")


def _id_key(shard_id: Hashable) -> tuple[int, ...]:
    """Turn a shard id into SeedSequence spawn-key integers.

    Integers (HEALPix pixels, row-block numbers) map to themselves; tuples of integers
    are used element-wise; strings are hashed stably (UTF-8 bytes as a big integer).
    """
    if isinstance(shard_id, bool):
        raise TypeError("shard id must not be a bool")
    if isinstance(shard_id, int | np.integer):
        if shard_id < 0:
            raise ValueError(f"shard id must be non-negative, got {shard_id}")
        return (int(shard_id),)
    if isinstance(shard_id, tuple):
        return tuple(k for part in shard_id for k in _id_key(part))
    if isinstance(shard_id, str):
        return (int.from_bytes(shard_id.encode("utf-8"), "big"),)
    raise TypeError(f"shard id must be an int, str or tuple of those, got {type(shard_id).__name__}")


def shard_seed(seed: int, shard_id: Hashable) -> np.random.SeedSequence:
    """The SeedSequence of one shard: child ``shard_id`` of ``SeedSequence(seed)``.

    Equivalent to ``SeedSequence(seed).spawn(n)[k]`` for integer ``k`` — but computed
    directly from the id, so it is the same whichever worker runs the shard and
    however many shards there are.
    """
    return np.random.SeedSequence(entropy=seed, spawn_key=_id_key(shard_id))


def shard_rng(seed: int, shard_id: Hashable) -> np.random.Generator:
    """A PCG64 Generator for one shard (see :func:`shard_seed`)."""
    return np.random.Generator(np.random.PCG64(shard_seed(seed, shard_id)))


class Executor(Protocol):
    """What every executor offers (local processes, serial, Ray)."""

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[T],
        *,
        seed: int | None = None,
        ids: Sequence[Hashable] | None = None,
        progress: bool | Progress | None = None,
        desc: str = "",
    ) -> list[R]:
        """Apply *fn* to every shard; results in shard order."""
        ...

    def close(self) -> None:
        """Release workers."""
        ...


def _resolve_ids(shards: Sequence[Any], ids: Sequence[Hashable] | None) -> list[Hashable]:
    if ids is None:
        ids = [getattr(s, "shard_id", i) for i, s in enumerate(shards)]
    ids = list(ids)
    if len(ids) != len(shards):
        raise ValueError(f"{len(ids)} ids for {len(shards)} shards")
    if len(set(ids)) != len(ids):
        raise ValueError("shard ids must be unique (they define the random streams)")
    return ids


def _call(fn: Callable[..., R], shard: Any, shard_id: Hashable, seed: int | None) -> R:
    """Run one shard (in whatever process) and normalise its errors."""
    try:
        if seed is None:
            return fn(shard)
        return fn(shard, shard_rng(seed, shard_id))
    except DesilabError:
        raise
    except Exception as exc:
        raise ComputeError(
            f"shard {shard_id!r} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        ) from exc


class _ProgressTask:
    """Adapter over an optional rich Progress."""

    def __init__(self, progress: bool | Progress | None, desc: str, total: int) -> None:
        self._owned = None
        self._progress: Progress | None = None
        if isinstance(progress, Progress):
            self._progress = progress
        elif progress:
            self._owned = progress_bar()
            self._progress = self._owned.__enter__()
        self._task = self._progress.add_task(desc or "shards", total=total) if self._progress else None

    def advance(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.__exit__(None, None, None)


class SerialExecutor:
    """Runs shards one after another in this process (debugging, tiny inputs)."""

    workers = 1

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[T],
        *,
        seed: int | None = None,
        ids: Sequence[Hashable] | None = None,
        progress: bool | Progress | None = None,
        desc: str = "",
    ) -> list[R]:
        """Apply *fn* to every shard in order; see the module docstring for the contract."""
        shards = list(shards)
        shard_ids = _resolve_ids(shards, ids)
        task = _ProgressTask(progress, desc, len(shards))
        try:
            out = []
            for shard, sid in zip(shards, shard_ids, strict=True):
                out.append(_call(fn, shard, sid, seed))
                task.advance()
            return out
        finally:
            task.close()

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor:
    """A local process pool (``concurrent.futures.ProcessPoolExecutor``).

    Parameters
    ----------
    workers
        Number of worker processes (default: all cores).
    start_method
        multiprocessing start method. ``"forkserver"`` (default) is safe when the parent
        holds threads (DuckDB, BLAS, torch) — plain ``fork`` can deadlock there.
    max_tasks_per_child
        Recycle workers after this many shards (bounds leaks in long runs).
    """

    def __init__(
        self, workers: int | None = None, start_method: str = "forkserver", max_tasks_per_child: int | None = None
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._ctx = mp.get_context(start_method)
        self._max_tasks = max_tasks_per_child
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=self._ctx, max_tasks_per_child=self._max_tasks
            )
        return self._pool

    def map(
        self,
        fn: Callable[..., R],
        shards: Sequence[T],
        *,
        seed: int | None = None,
        ids: Sequence[Hashable] | None = None,
        progress: bool | Progress | None = None,
        desc: str = "",
    ) -> list[R]:
        """Apply *fn* to every shard in worker processes; results in shard order.

        With one worker or one shard the work runs in this process (no pickling, and
        a debugger works), with identical results.
        """
        shards = list(shards)
        if self.workers == 1 or len(shards) <= 1:
            return SerialExecutor().map(fn, shards, seed=seed, ids=ids, progress=progress, desc=desc)
        shard_ids = _resolve_ids(shards, ids)
        pool = self._get_pool()
        task = _ProgressTask(progress, desc, len(shards))
        futures: list[Future[R]] = []
        try:
            futures = [pool.submit(_call, fn, s, sid, seed) for s, sid in zip(shards, shard_ids, strict=True)]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        raise exc
                    task.advance()
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            task.close()

    def close(self) -> None:
        """Shut the pool down (waits for running shards)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get_executor(workers: int, ray: str | None = None) -> Executor:
    """The executor the settings ask for.

    Parameters
    ----------
    workers
        Local processes (``Settings.workers``).
    ray
        ``Settings.ray``: ``None`` for local processes.

    Raises
    ------
    ConfigError
        When a Ray address is configured but this installation has no Ray executor.
    """
    if ray is None:
        return LocalExecutor(workers)
    try:
        from desilab.compute.ray_executor import RayExecutor  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "a Ray cluster is configured but the Ray executor is not installed in this version",
            parameter="DESILAB_RAY",
            hint="unset DESILAB_RAY to use local processes",
        ) from exc
    return RayExecutor(address=ray)


def iter_chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    """Row ranges ``(start, stop)`` covering ``range(n)`` in blocks of *size*."""
    for start in range(0, n, size):
        yield start, min(n, start + size)
