"""HEALPix index ranges for spatial prefilters (NESTED, pure maths, no IO).

Every sky table in the catalog store carries ``hpx14``: the NESTED HEALPix pixel of its
position at :data:`SKY_ORDER` = 14 (nside 16384, pixels of 12.9″). In the NESTED
scheme a pixel of a coarser order ``o`` is the contiguous block of its order-14
children ``[p·4^(14−o), (p+1)·4^(14−o) − 1]``, so any area is a short list of index
ranges. A cone search asks the database for rows inside those ranges (a cheap
prefilter on a sorted integer column) and then applies the exact great-circle distance.

Order 14 was chosen because it is the deepest order whose pixels stay larger than the
astrometric matching radii used with DESI (≈1″) while keeping every index in a
64-bit integer with room to spare (12·4^14 ≈ 3.2e9), and because at 1′ a disc spans
only tens of order-14 pixels (few ranges) while at 1° a coarser search order keeps the
range list short.
"""

from __future__ import annotations

import healpy as hp
import numpy as np

__all__ = [
    "SKY_NSIDE",
    "SKY_ORDER",
    "covering_ranges",
    "disc_ranges",
    "merge_ranges",
    "sky_index",
]

SKY_ORDER = 14
"""HEALPix order of the ``hpx14`` column (NESTED)."""

SKY_NSIDE = 1 << SKY_ORDER
"""nside of the ``hpx14`` column (16384)."""

_NPIX = 12 * SKY_NSIDE * SKY_NSIDE


def sky_index(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """The ``hpx14`` value (NESTED pixel at order 14) of each position, int64.

    Non-finite positions get -1 (they never match a spatial query).
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    out = np.full(ra.shape, -1, dtype=np.int64)
    ok = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    if np.any(ok):
        out[ok] = hp.ang2pix(SKY_NSIDE, np.mod(ra[ok], 360.0), dec[ok], nest=True, lonlat=True)
    return out


def merge_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sort inclusive ranges ``[lo, hi]`` and merge overlapping or adjacent ones; shape (k, 2)."""
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    if lo.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    o = np.lexsort((hi, lo))
    lo, hi = lo[o], hi[o]
    run_hi = np.maximum.accumulate(hi)
    new = np.ones(lo.size, dtype=bool)
    new[1:] = lo[1:] > run_hi[:-1] + 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], lo.size) - 1
    return np.column_stack([lo[starts], run_hi[ends]])


def _search_order(radius_deg: float, order: int) -> int:
    """Coarsest order whose pixels are ≤ radius/3 (a disc then spans ~10²  pixels)."""
    if radius_deg <= 0:
        return order
    nside_needed = 3.0 * np.sqrt(np.pi / 3.0) / np.radians(radius_deg)
    o = int(np.ceil(np.log2(max(nside_needed, 1.0))))
    return int(min(max(o, 0), order))


def disc_ranges(ra: float, dec: float, radius_deg: float, order: int = SKY_ORDER) -> np.ndarray:
    """Inclusive ranges of order-*order* NESTED pixels that cover a disc (a superset).

    Parameters
    ----------
    ra, dec
        Centre [deg].
    radius_deg
        Radius [deg] (0 gives the centre's pixel and any pixel touching it within
        rounding).
    order
        Order of the indices returned (default 14, the store's ``hpx14``).

    Returns
    -------
    numpy.ndarray
        Shape (k, 2), int64, sorted, non-overlapping ``[lo, hi]`` rows.
    """
    npix = 12 * (1 << (2 * order))
    if radius_deg >= 90.0:
        return np.array([[0, npix - 1]], dtype=np.int64)
    pad = radius_deg * (1.0 + 1e-6) + 1e-7  # rounding margin; the exact test comes later
    o = _search_order(radius_deg, order)
    nside = 1 << o
    vec = hp.ang2vec(float(np.mod(ra, 360.0)), float(dec), lonlat=True)
    pix = hp.query_disc(nside, vec, np.radians(pad), inclusive=True, nest=True)
    centre = hp.ang2pix(nside, float(np.mod(ra, 360.0)), float(dec), nest=True, lonlat=True)
    pix = np.union1d(np.asarray(pix, dtype=np.int64), [int(centre)])
    shift = 2 * (order - o)
    return merge_ranges(pix << shift, ((pix + 1) << shift) - 1)


def covering_ranges(ra: np.ndarray, dec: np.ndarray, radius_deg: float, order: int = SKY_ORDER) -> np.ndarray | None:
    """Ranges of order-*order* pixels covering discs of *radius_deg* around many points.

    Each point contributes its pixel and that pixel's neighbours at the coarsest order
    whose pixels are at least four radii wide, which contains the whole disc (verified
    against ``query_disc`` in ``tests/sky/test_crossmatch.py``).

    Returns
    -------
    numpy.ndarray or None
        Shape (k, 2) inclusive ranges, or None when the discs are too large for a
        useful prefilter (radius above ~14°): scan everything.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    ok = np.isfinite(ra) & np.isfinite(dec)
    ra, dec = ra[ok], dec[ok]
    if ra.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    o = order
    while o > 0 and hp.nside2resol(1 << o, arcmin=False) < 4.0 * np.radians(radius_deg):
        o -= 1
    if hp.nside2resol(1 << o) < 4.0 * np.radians(radius_deg):
        return None
    nside = 1 << o
    pix = hp.ang2pix(nside, np.mod(ra, 360.0), dec, nest=True, lonlat=True)
    pix = np.unique(pix)
    neigh = hp.get_all_neighbours(nside, pix, nest=True).ravel()
    allpix = np.unique(np.concatenate([pix, neigh[neigh >= 0]])).astype(np.int64)
    shift = 2 * (order - o)
    return merge_ranges(allpix << shift, ((allpix + 1) << shift) - 1)
