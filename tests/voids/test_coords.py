"""Coordinates in the catalog's own cosmology; wrong units or cosmology are errors naming file and HDU."""

from __future__ import annotations

import numpy as np
import pytest

from desilab.errors import FormatError
from desilab.sky.cosmology import Cosmology
from desilab.voids.catalogs import load_void_catalogs
from desilab.voids.coords import catalog_cosmology, check_catalog_distances, sky_to_xyz
from tests.voids.conftest import mini_sky


def test_cosmology_read_from_header_not_hardcoded():
    c = catalog_cosmology({"OMEGAM": 0.26, "HP": 1.0})
    assert c.omega_m == 0.26 and c.h == 1.0
    xyz = sky_to_xyz(np.array([0.0]), np.array([0.0]), np.array([0.1]), c)
    # D_c(0.1) for Om = 0.26 in Mpc/h (astropy FlatLambdaCDM(H0=100, Om0=0.26)) = 292.2 Mpc/h
    from astropy.cosmology import FlatLambdaCDM

    ref = FlatLambdaCDM(H0=100, Om0=0.26).comoving_distance(0.1).value
    assert xyz[0, 0] == pytest.approx(ref, rel=1e-6)
    with pytest.raises(FormatError, match="OMEGAM"):
        catalog_cosmology({"HP": 1.0}, file="x.fits")


def test_catalog_in_mpc_is_an_error_naming_file_and_hdu(tmp_path):
    s = mini_sky(tmp_path, h_written=0.674)  # positions in Mpc while the header says HP = 1
    with pytest.raises(FormatError) as ei:
        load_void_catalogs([s["vf"]])
    assert ei.value.file is not None and "VoidFinder" in str(ei.value.file)
    assert ei.value.hdu in ("MAXIMALS", "HOLES", "PRIMARY")
    with pytest.raises(FormatError) as ei:
        load_void_catalogs([s["v2"]])
    assert ei.value.hdu == "VOIDS" and "REDSHIFT" in str(ei.value)


def test_catalog_in_other_cosmology_is_an_error(tmp_path):
    s = mini_sky(tmp_path, omega_written=0.25)
    with pytest.raises(FormatError, match="declared cosmology") as ei:
        load_void_catalogs([s["v2"]])
    assert ei.value.hdu == "VOIDS"


def test_consistent_catalog_loads(tmp_path):
    s = mini_sky(tmp_path)
    vs = load_void_catalogs([s["vf"], s["v2"]])
    assert vs.cosmology.omega_m == 0.315 and vs.z_max == pytest.approx(0.12)
    assert vs.voidfinder.grid is not None and "VIDE" in vs.v2


def test_centre_check_tolerance():
    c = Cosmology(0.315, 1.0)
    z = np.array([0.05, 0.1])
    xyz = sky_to_xyz(np.array([10.0, 20.0]), np.array([5.0, 6.0]), z, c)
    check_catalog_distances(xyz * (1 + 0.04 / 300), c, redshift=z)  # < 0.05 Mpc/h off: fine
    with pytest.raises(FormatError, match=r"0\.05"):
        check_catalog_distances(xyz + np.array([0.1, 0, 0]), c, redshift=z, file="f.fits", hdu="VOIDS")
