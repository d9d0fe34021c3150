"""One tiny sample sky per test session, built through the CLI (shared by the galaxy-half tests)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from desilab.sample.config import Patch, config_for_scale

#: Seed of the shared tiny sky: the settings default (what `desilab sample` uses).
SEED = 20240613

#: A micro footprint for the byte-identity and null-sky tests (~3k galaxies).
MICRO_PATCHES = (Patch("NGC", 181.0, 186.0, 28.0, 32.0), Patch("SGC", 17.0, 20.0, 0.0, 2.5))


def micro_config(**overrides):
    """A very small sky with the tiny scale's settings."""
    return config_for_scale("tiny", patches=MICRO_PATCHES, **overrides)


@functools.lru_cache(maxsize=1)
def tiny_sky() -> Path:
    """Build `desilab sample --scale tiny --no-spectra` once; return its folder."""
    from desilab.cli import main

    out = Path(tempfile.mkdtemp(prefix="desilab-tiny-sky-")) / "sky"
    rc = main(["--workers", "2", "sample", "--scale", "tiny", "--seed", str(SEED), "--out", str(out), "--no-spectra"])
    assert rc == 0, f"desilab sample exited with {rc}"
    return out
