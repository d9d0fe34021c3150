"""Module-level shard functions (worker processes import them by name)."""

import os

import numpy as np

from desilab.errors import FormatError


def draw(shard, rng):
    return (shard, rng.integers(0, 2**62, 3).tolist(), os.getpid())


def square(x):
    return x * x


def fail_on_three(x):
    if x == 3:
        raise ZeroDivisionError("boom")
    return x


def user_error(x):
    raise FormatError("bad file", file=f"f{x}.fits", hdu="FIBERMAP")


def mean_normal(shard, rng):
    return float(np.mean(rng.normal(size=shard)))
