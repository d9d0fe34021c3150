"""The preprocessed-spectrum cache: a folder of memory-mapped ``.npy`` shards.

Layout::

    CACHE/manifest.json            {"format": "desilab-anomaly-cache", "version": 1,
                                    "grid": {...}, "inputs": fingerprint,
                                    "shards": [{"name", "rows", "source"}]}
    CACHE/shard_000000/flux.npy    (rows, 4000) float32
    CACHE/shard_000000/ivar.npy    (rows, 4000) float32  (weights included)
    CACHE/shard_000000/{z,scale,snr}.npy float64, valid.npy bool, targetid.npy int64

Why memory-mapped ``.npy`` rather than zarr: the arrays are float32 noise-dominated spectra
that compress poorly (zstd gains ~10% on them), so a chunked, compressed store would spend
CPU in the codec on every epoch for little disk; ``np.load(mmap_mode="r")`` reads a shard
at disk speed with no extra dependency, any shard can be read independently (workers map
over shards), and a shard is written once, atomically (a temporary folder renamed into
place), so an interrupted build never leaves a half shard. Full DR1 (1.6M × 4000 × 2 ×
4 bytes) is 51 GB on disk and is never loaded whole: training and scoring iterate it in bounded memory with
:class:`~desilab.anomalies.stream.ShardStream` (block shuffle, deterministic, resumable).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from desilab.anomalies.preprocess import REST_DLOGLAM, REST_LAMBDA_MIN, REST_NPIX, Preprocessed
from desilab.errors import FormatError, InputError

__all__ = ["SpectrumCache", "write_cache"]

_FIELDS = ("flux", "ivar", "z", "scale", "snr", "valid", "targetid")
_FORMAT = "desilab-anomaly-cache"


def _grid() -> dict[str, float]:
    return {"lambda_min": REST_LAMBDA_MIN, "dloglam": REST_DLOGLAM, "npix": REST_NPIX}


class SpectrumCache:
    """Read (and append to) a preprocessed-spectrum cache folder.

    Parameters
    ----------
    path
        The cache folder; created (empty) when *create* is true and it does not exist.
    create
        Allow a new, empty cache.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        man = self.path / "manifest.json"
        if man.exists():
            try:
                self.manifest = json.loads(man.read_text())
            except json.JSONDecodeError as exc:
                raise FormatError(f"unreadable cache manifest: {exc}", file=str(man)) from exc
            if self.manifest.get("format") != _FORMAT:
                raise FormatError("not a desilab anomaly cache", file=str(man))
            if self.manifest.get("grid") != _grid():
                raise FormatError(
                    f"cache grid {self.manifest.get('grid')} differs from this version's {_grid()}: rebuild it",
                    file=str(man),
                )
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": _FORMAT, "version": 1, "grid": _grid(), "shards": []}
            self._save()
        else:
            raise InputError(f"no anomaly cache at {self.path} (manifest.json missing)", file=str(self.path))

    def _save(self) -> None:
        tmp = self.path / ".manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, self.path / "manifest.json")

    def __len__(self) -> int:
        return int(sum(s["rows"] for s in self.manifest["shards"]))

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return len(self.manifest["shards"])

    def append(self, pre: Preprocessed, source: str | None = None, *, save_manifest: bool = True) -> str:
        """Write *pre* as one new shard (atomically) and return its name.

        *source* (e.g. the coadd file it came from) is recorded in the manifest, so an
        interrupted build can resume with the sources not yet cached. With
        *save_manifest* false the manifest is written later by :meth:`save_manifest`
        (a DR1 build appends ~10^4 shards: rewriting the manifest after each would write
        O(n²) bytes); a shard folder left without a manifest entry by a crash is replaced.
        """
        name = f"shard_{self.n_shards:06d}"
        tmp = self.path / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for k in _FIELDS:
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(getattr(pre, k)))
        if (self.path / name).exists():  # an orphan of an interrupted build (not in the manifest)
            shutil.rmtree(self.path / name)
        os.replace(tmp, self.path / name)
        entry: dict[str, object] = {"name": name, "rows": len(pre)}
        if source is not None:
            entry["source"] = str(source)
        self.manifest["shards"].append(entry)
        if save_manifest:
            self._save()
        return name

    @property
    def inputs(self) -> str | None:
        """Fingerprint of the inputs the cache was built from (None when not recorded)."""
        return self.manifest.get("inputs")

    def reset(self, inputs: str | None = None) -> None:
        """Drop every shard and start empty, recording the fingerprint *inputs* of what will be cached."""
        for entry in self.manifest["shards"]:
            shutil.rmtree(self.path / entry["name"], ignore_errors=True)
        self.manifest["shards"] = []
        self.manifest["inputs"] = inputs
        self._save()

    def save_manifest(self) -> None:
        """Write the manifest (atomically): after :meth:`append` calls with ``save_manifest=False``."""
        self._save()

    def shard(self, i: int) -> Preprocessed:
        """Shard *i*, memory-mapped (arrays are read lazily)."""
        entry = self.manifest["shards"][i]
        d = self.path / entry["name"]
        try:
            arrays = [np.load(d / f"{k}.npy", mmap_mode="r") for k in _FIELDS]
        except (OSError, ValueError) as exc:
            raise FormatError(f"broken cache shard: {exc}", file=str(d)) from exc
        return Preprocessed(*arrays)

    @property
    def sources(self) -> list[str | None]:
        """The source recorded with each shard (None where none was)."""
        return [s.get("source") for s in self.manifest["shards"]]

    def column(self, name: str) -> np.ndarray:
        """One per-row column (``targetid``, ``z``, ``scale``, ``snr``, ``valid``) over all shards, in memory.

        At most 8 bytes per row (13 MB for 1.6M spectra): what row selections (roles,
        TARGETID look-ups) are computed from without touching the spectra.
        """
        if name not in ("z", "scale", "snr", "valid", "targetid"):
            raise InputError(f"{name!r} is not a per-row cache column", parameter="name")
        parts = [np.array(getattr(s, name)) for s in self.shards()]
        if not parts:
            return np.zeros(0, dtype=bool if name == "valid" else np.int64 if name == "targetid" else np.float64)
        return np.concatenate(parts)

    def shards(self) -> Iterator[Preprocessed]:
        """Every shard in order, memory-mapped."""
        for i in range(self.n_shards):
            yield self.shard(i)

    def load(self, only_valid: bool = True) -> Preprocessed:
        """Every row in memory (small caches only; large ones: :class:`~desilab.anomalies.stream.ShardStream`)."""
        parts = [s.subset(np.asarray(s.valid)) if only_valid else s for s in self.shards()]
        if not parts:
            raise InputError(f"anomaly cache {self.path} is empty", file=str(self.path))
        return Preprocessed.concat([Preprocessed(*(np.array(getattr(p, k)) for k in _FIELDS)) for p in parts])


def write_cache(path: str | os.PathLike[str], parts: list[Preprocessed] | Iterator[Preprocessed]) -> SpectrumCache:
    """Create a cache at *path* holding *parts* (one shard each)."""
    cache = SpectrumCache(path, create=True)
    for p in parts:
        cache.append(p)
    return cache
