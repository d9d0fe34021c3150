"""HEALPix helpers, NESTED ordering throughout (as DESI).

DR1 spectra are grouped by HEALPix pixel at ``nside = 64`` (order 6), NESTED, computed
from TARGET_RA/TARGET_DEC; directories use ``PIXGROUP = HEALPIX // 100``. healpy does
the pixel maths; this module fixes the conventions so nobody passes ``nest=False``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

__all__ = [
    "DR1_NSIDE",
    "healpix_to_radec",
    "nside_to_order",
    "order_to_nside",
    "pixel_area_deg2",
    "pixgroup",
    "query_disc",
    "radec_to_healpix",
    "to_order",
]

DR1_NSIDE = 64
"""HEALPix nside of the DR1 healpix spectra tree (NESTED)."""


def _hp() -> ModuleType:
    """healpy, imported on first use: its import pulls in matplotlib and astropy
    (seconds per worker process), which many callers of this module never need."""
    import healpy

    return healpy


def order_to_nside(order: int) -> int:
    """nside = 2**order."""
    if not 0 <= order <= 29:
        raise ValueError(f"HEALPix order must be in 0..29, got {order}")
    return 1 << order


def nside_to_order(nside: int) -> int:
    """order = log2(nside); raises for a non-power of two."""
    order = int(nside).bit_length() - 1
    if nside <= 0 or (1 << order) != nside:
        raise ValueError(f"nside must be a power of two, got {nside}")
    return order


def radec_to_healpix(
    ra: np.ndarray | float, dec: np.ndarray | float, nside: int = DR1_NSIDE
) -> np.ndarray:
    """NESTED pixel index of each (RA, Dec) in degrees (int64)."""
    return np.asarray(_hp().ang2pix(nside, ra, dec, nest=True, lonlat=True), dtype=np.int64)


def healpix_to_radec(pix: np.ndarray | int, nside: int = DR1_NSIDE) -> tuple[np.ndarray, np.ndarray]:
    """Centre (RA, Dec) in degrees of NESTED pixels."""
    ra, dec = _hp().pix2ang(nside, pix, nest=True, lonlat=True)
    return np.asarray(ra), np.asarray(dec)


def pixgroup(pix: np.ndarray | int) -> np.ndarray:
    """DR1 directory group ``HEALPIX // 100``."""
    return np.asarray(pix, dtype=np.int64) // 100


def pixel_area_deg2(nside: int) -> float:
    """Area of one pixel in deg²."""
    return float(_hp().nside2pixarea(nside, degrees=True))


def query_disc(
    ra: float, dec: float, radius_deg: float, nside: int = DR1_NSIDE, inclusive: bool = True
) -> np.ndarray:
    """NESTED pixels overlapping a disc (``inclusive=True`` never misses one)."""
    hp = _hp()
    vec = hp.ang2vec(ra, dec, lonlat=True)
    return np.sort(hp.query_disc(nside, vec, np.radians(radius_deg), inclusive=inclusive, nest=True))


def to_order(pix: np.ndarray | int, from_order: int, to_order_: int) -> np.ndarray:
    """Parent (coarser) or first-child (finer) NESTED index at another order.

    For ``to_order_ < from_order`` this is the parent pixel; for a finer order it is the
    first child, and the children span ``[first, first + 4**(to−from))``.
    """
    pix = np.asarray(pix, dtype=np.int64)
    shift = 2 * (from_order - to_order_)
    return pix >> shift if shift >= 0 else pix << (-shift)
