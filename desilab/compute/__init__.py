"""Run functions over shards with reproducible per-shard random streams.

``get_executor(settings.workers, settings.ray).map(fn, shards, seed=settings.seed)``
is the one call pipelines use; see :mod:`desilab.compute.executor`.
"""

from desilab.compute.executor import (
    Executor,
    LocalExecutor,
    SerialExecutor,
    get_executor,
    iter_chunks,
    shard_rng,
    shard_seed,
)

__all__ = [
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "get_executor",
    "iter_chunks",
    "shard_rng",
    "shard_seed",
]
