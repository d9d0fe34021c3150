"""Geometry shared by every layer: cosmology, HEALPix (NESTED), angular separations."""

from desilab.sky.cosmology import C_KM_S, DESIVAST, FIDUCIAL, Cosmology, log_h_scaling
from desilab.sky.geometry import (
    angular_separation,
    radec_to_unit,
    radec_to_xyz,
    wrap_ra,
    xyz_to_radec,
)
from desilab.sky.healpix import DR1_NSIDE, pixgroup, query_disc, radec_to_healpix

__all__ = [
    "C_KM_S",
    "DESIVAST",
    "DR1_NSIDE",
    "FIDUCIAL",
    "Cosmology",
    "angular_separation",
    "log_h_scaling",
    "pixgroup",
    "query_disc",
    "radec_to_healpix",
    "radec_to_unit",
    "radec_to_xyz",
    "wrap_ra",
    "xyz_to_radec",
]
