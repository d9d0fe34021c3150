"""Shared anomaly-test data: normal quasars rendered as the sample sky renders them."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.anomalies.preprocess import Preprocessed, preprocess
from desilab.anomalies.simulate import ObservedSet, simulate_normal


@pytest.fixture(scope="session")
def observed() -> ObservedSet:
    """360 normal quasars, 0.3 < z < 3.5, 18.5 < r < 21 (≈ 8 s)."""
    return simulate_normal(360, seed=2024)


@pytest.fixture(scope="session")
def pre(observed: ObservedSet) -> Preprocessed:
    """The same, preprocessed onto the rest grid."""
    return preprocess(observed.wave, observed.flux, observed.ivar, observed.z, mask=observed.mask)


@pytest.fixture(scope="session")
def splits(pre: Preprocessed) -> dict[str, Preprocessed]:
    """train 220 / calibration 70 / test 70 (fixed order)."""
    idx = np.arange(len(pre))
    return {"train": pre.subset(idx[:220]), "cal": pre.subset(idx[220:290]), "test": pre.subset(idx[290:])}
