"""The DESIVAST tracer recipe, cut by cut."""

from __future__ import annotations

import numpy as np

from desilab.voids.sample import evolved_absmag, select_tracers


def test_recipe_each_cut():
    n = 9
    base = {
        "targetid": np.array([1, 2, 3, 4, 5, 6, 7, 8, 8]),
        "z": np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.25, 0.1, 0.1, 0.1]),
        "absmag01_r": np.array([-21, -21, -21, -21, -21, -21, -19.95, -21, -21.0]),
        "bgs_target": np.array([2, 1, 2, 2, 2, 2, 2, 2, 2]),
        "spectype": np.array(["GALAXY", "GALAXY", "STAR", "GALAXY", "GALAXY", "GALAXY", "GALAXY", "GALAXY", "GALAXY"]),
        "zwarn": np.array([0, 0, 0, 4, 0, 0, 0, 0, 0]),
        "deltachi2": np.array([100, 100, 100, 100, 30, 100, 100, 100, 100.0]),
        "survey": np.array(["main"] * n),
        "program": np.array(["bright"] * n),
    }
    s = select_tracers(**base)
    assert s.tracer.tolist() == [True, False, False, False, False, False, False, True, False]
    assert s.extrapolated.sum() == 7
    c = s.counts
    assert c["input"] == 9 and c["bgs_bright"] == 8 and c["spectype_galaxy"] == 7
    assert c["zwarn0_deltachi2_gt40"] == 5 and c["unique_targetid"] == 4 and c["z_range"] == 3
    assert c["mag_limit"] == 2 and c["in_mask"] == -1


def test_evolution_correction():
    # M_r = ABSMAG01 + 0.97 (z - 0.1): at z = 0.2 a -19.95 galaxy becomes -19.853 (fainter than -20)
    assert evolved_absmag(np.array([-19.95]), np.array([0.2]))[0] == np.float64(-19.95 + 0.097)
    assert evolved_absmag(np.array([-20.0]), np.array([0.0]))[0] < -20.0
