"""Spherical geometry: angular separations and sky ↔ Cartesian conversions.

All angles in degrees at the API; RA is returned in [0, 360).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "angle_to_chord",
    "angular_separation",
    "chord_to_angle",
    "radec_to_unit",
    "radec_to_xyz",
    "wrap_ra",
    "xyz_to_radec",
]


def wrap_ra(ra: np.ndarray | float) -> np.ndarray:
    """RA modulo 360 in [0, 360) (VoidFinder writes RA in about −90…270°)."""
    out = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    return np.where(out >= 360.0, 0.0, out)  # mod can round to 360.0 for tiny negatives


def angular_separation(
    ra1: np.ndarray | float, dec1: np.ndarray | float, ra2: np.ndarray | float, dec2: np.ndarray | float
) -> np.ndarray:
    """Great-circle separation in degrees (Vincenty formula: stable at 0 and 180°).

    Same formula as ``astropy.coordinates.angular_separation``, vectorised on
    plain arrays without Quantity overhead.
    """
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (ra1, dec1, ra2, dec2))
    sdlon = np.sin(lon2 - lon1)
    cdlon = np.cos(lon2 - lon1)
    slat1, slat2 = np.sin(lat1), np.sin(lat2)
    clat1, clat2 = np.cos(lat1), np.cos(lat2)
    num1 = clat2 * sdlon
    num2 = clat1 * slat2 - slat1 * clat2 * cdlon
    denom = slat1 * slat2 + clat1 * clat2 * cdlon
    return np.degrees(np.arctan2(np.hypot(num1, num2), denom))


def radec_to_unit(ra: np.ndarray | float, dec: np.ndarray | float) -> np.ndarray:
    """Unit vectors, shape (..., 3)."""
    ra_r = np.radians(np.asarray(ra, dtype=np.float64))
    dec_r = np.radians(np.asarray(dec, dtype=np.float64))
    cd = np.cos(dec_r)
    return np.stack([cd * np.cos(ra_r), cd * np.sin(ra_r), np.sin(dec_r)], axis=-1)


def radec_to_xyz(
    ra: np.ndarray | float, dec: np.ndarray | float, r: np.ndarray | float
) -> np.ndarray:
    """Cartesian x = r cosδ cosα, y = r cosδ sinα, z = r sinδ (as VAST), shape (..., 3)."""
    return radec_to_unit(ra, dec) * np.asarray(r, dtype=np.float64)[..., None]


def xyz_to_radec(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`radec_to_xyz`: (ra [0, 360), dec, r)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r = np.sqrt(x * x + y * y + z * z)
    ra = wrap_ra(np.degrees(np.arctan2(y, x)))
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.degrees(np.arcsin(np.clip(np.where(r > 0, z / r, 0.0), -1.0, 1.0)))
    return ra, dec, r


def angle_to_chord(angle_deg: np.ndarray | float) -> np.ndarray:
    """Chord length on the unit sphere for an angle in degrees (for KD-tree radii)."""
    return 2.0 * np.sin(np.radians(np.asarray(angle_deg, dtype=np.float64)) / 2.0)


def chord_to_angle(chord: np.ndarray | float) -> np.ndarray:
    """Angle in degrees for a chord on the unit sphere."""
    return np.degrees(2.0 * np.arcsin(np.clip(np.asarray(chord, dtype=np.float64) / 2.0, 0.0, 1.0)))
