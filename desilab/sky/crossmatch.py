"""In-memory sky crossmatch of two catalogs (numpy only, no IO).

:func:`match_sky` returns every pair closer than a radius, or only the nearest
counterpart of each source. It gives **the same pairs as**
``astropy.coordinates.search_around_sky``: the acceptance test is astropy's own — the
squared Euclidean distance between unit vectors (``x = cos δ cos α``, ...) compared with
the squared chord ``(2 sin(r/2))²`` — so the two differ only for pairs whose separation
is within floating-point noise (≲ 1e-9″) of the radius. Separations are returned with
the Vincenty formula, as astropy's ``SkyCoord.separation``.

Why hand-written rather than calling astropy or a KD-tree: **speed**. astropy builds
two KD-trees, walks ``query_ball_tree``'s Python lists and computes separations through
``SkyCoord`` objects; on 1M × 1M sources at 1″ that is ~6 s on one laptop core. This
kernel uses the *zones* algorithm (Gray, Nieto-Santisteban & Szalay 2006,
arXiv:cs/0701171): sources of the second catalog are sorted once by (declination zone,
RA); each source of the first catalog finds its candidates with two binary searches per
zone it touches, and the exact test runs on the candidates only. Everything is
vectorised numpy, memory is bounded by processing the first catalog in chunks, and the
same inputs give the same output on every machine; large inputs are cut into two halves
matched on two threads. ``bench/store.py`` measures the
ratio against astropy in the same run (≥ 3× is the goal; see ``docs/store.md``).

Conventions: RA and Dec in degrees (RA is wrapped to [0, 360) like astropy's
``Longitude``); radius in arcseconds; rows with a non-finite coordinate never match.
RA 0/360 and the poles are handled exactly (a disc reaching a pole takes the whole
zone; RA windows wrap).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from desilab.sky.geometry import angular_separation, wrap_ra

__all__ = ["Matches", "match_sky"]

_ARCSEC_RAD = np.pi / 648000.0
_RA_BITS = 32
_RA_SCALE = float(1 << _RA_BITS) / 360.0  # quantised RA units per degree
_MIN_ZONE_DEG = 1.0 / 3600.0  # zones no thinner than 1″ (radius 0 still works)
_THREADS = 2  # threads for the chunks (numpy releases the GIL in the heavy steps)
_MAX_CANDIDATES = 20_000_000  # per chunk, bounds memory (~0.5 GB of temporaries)


@dataclass(frozen=True)
class Matches:
    """Pairs found by :func:`match_sky`.

    Attributes
    ----------
    idx1, idx2
        Row indices (int64) into the first and the second catalog, sorted by
        ``(idx1, idx2)``.
    sep_arcsec
        Great-circle separation of each pair [arcsec] (Vincenty formula).
    """

    idx1: np.ndarray
    idx2: np.ndarray
    sep_arcsec: np.ndarray

    def __len__(self) -> int:
        return int(self.idx1.size)


def _unit(ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-vector components, computed exactly as astropy's ``UnitSphericalRepresentation.to_cartesian``."""
    lon = np.radians(ra)
    lat = np.radians(dec)
    clat = np.cos(lat)
    return clat * np.cos(lon), clat * np.sin(lon), np.sin(lat)


def _clean(ra: np.ndarray | float, dec: np.ndarray | float, which: str) -> tuple[np.ndarray, np.ndarray]:
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"{which}: RA and Dec must be 1-D arrays of the same length, got {ra.shape} and {dec.shape}")
    bad = np.abs(dec) > 90.0
    if np.any(bad):
        raise ValueError(f"{which}: declination outside [-90, 90] deg: {dec[bad][:3]}")
    return wrap_ra(ra), dec


def _empty() -> Matches:
    z = np.zeros(0, dtype=np.int64)
    return Matches(z, z.copy(), np.zeros(0, dtype=np.float64))


def match_sky(
    ra1: np.ndarray | float,
    dec1: np.ndarray | float,
    ra2: np.ndarray | float,
    dec2: np.ndarray | float,
    radius_arcsec: float,
    *,
    nearest: bool = False,
    chunk_size: int = 1_000_000,
) -> Matches:
    """All pairs (or nearest counterparts) within a radius on the sky.

    Parameters
    ----------
    ra1, dec1
        First catalog [deg].
    ra2, dec2
        Second catalog [deg].
    radius_arcsec
        Matching radius [arcsec], 0 ≤ radius ≤ 648000 (180°). With 0, only exactly
        coincident positions match (as astropy).
    nearest
        If True, keep for each row of the first catalog only its nearest counterpart
        (ties go to the lower ``idx2``), like ``match_coordinates_sky`` restricted to
        the radius.
    chunk_size
        Rows of the first catalog processed at a time (bounds memory).

    Returns
    -------
    Matches

    Raises
    ------
    ValueError
        Negative or non-finite radius, mismatched or non-1-D inputs, |Dec| > 90.

    Examples
    --------
    >>> m = match_sky([10.0, 359.9999], [0.0, 0.0], [10.0001, 0.0001], [0.0, 0.0], 1.0)
    >>> m.idx1.tolist(), m.idx2.tolist()
    ([0, 1], [0, 1])
    """
    radius = float(radius_arcsec)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0 arcsec, got {radius_arcsec!r}")
    radius = min(radius, 648000.0)
    ra1, dec1 = _clean(ra1, dec1, "catalog 1")
    ra2, dec2 = _clean(ra2, dec2, "catalog 2")
    if ra1.size == 0 or ra2.size == 0:
        return _empty()

    # astropy's criterion: |u1 - u2|² <= (2 sin(r/2))², with r converted as astropy does.
    chord = 2.0 * np.sin(0.5 * radius * _ARCSEC_RAD)
    chord2 = chord * chord
    r_deg = radius / 3600.0
    # Search windows are padded so that rounding never hides a pair the exact test accepts.
    r_search = r_deg * (1.0 + 1e-9) + 1e-9

    ok2 = np.isfinite(ra2) & np.isfinite(dec2)
    keep2 = np.flatnonzero(ok2)
    zone_h = max(r_search, _MIN_ZONE_DEG)
    nzones = int(np.floor(180.0 / zone_h)) + 1
    zone2 = np.minimum(np.floor((dec2[keep2] + 90.0) / zone_h).astype(np.int64), nzones - 1)
    q2 = np.floor(ra2[keep2] * _RA_SCALE).astype(np.int64)
    key2 = (zone2 << _RA_BITS) | q2
    order = np.argsort(key2)
    key2 = key2[order]
    rows2 = keep2[order]
    u2 = _unit(ra2[rows2], dec2[rows2])  # in sorted order: candidate gathers are near-sequential

    n1 = ra1.size
    args = (ra1, dec1, key2, rows2, u2, r_search, zone_h, nzones, chord2, nearest)
    step = max(1, int(chunk_size))
    # Half-chunks run on two threads: numpy releases the GIL in the sorts, binary searches,
    # gathers and arithmetic that make up a chunk (~1.6x on 2 cores for 1M x 1M at 1").
    bounds = [(a, min(n1, a + step)) for a in range(0, n1, step)]
    if len(bounds) == 1 and n1 >= 200_000:
        half = (n1 + 1) // 2
        bounds = [(0, half), (half, n1)]
    if len(bounds) > 1:
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            parts = list(pool.map(lambda ab: _match_range(*ab, *args), bounds))
    else:
        parts = [_match_range(*bounds[0], *args)]
    out1 = [p[0] for p in parts]
    out2 = [p[1] for p in parts]
    i1 = np.concatenate(out1)
    i2 = np.concatenate(out2)
    if i1.size == 0:
        return _empty()
    o = np.argsort(i1 * np.int64(ra2.size) + i2)
    i1, i2 = i1[o], i2[o]
    sep = angular_separation(ra1[i1], dec1[i1], ra2[i2], dec2[i2]) * 3600.0
    return Matches(i1, i2, sep)


def _match_range(
    start: int,
    stop: int,
    ra1: np.ndarray,
    dec1: np.ndarray,
    key2: np.ndarray,
    rows2: np.ndarray,
    u2: tuple[np.ndarray, np.ndarray, np.ndarray],
    r_search: float,
    zone_h: float,
    nzones: int,
    chord2: float,
    nearest: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows ``start:stop`` of catalog 1, halving the chunk when it has too many
    candidates (memory bound); with ``nearest``, one counterpart per source."""
    out1, out2 = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    step = stop - start
    while start < stop:
        end = min(stop, start + step)
        res = _match_chunk(ra1, dec1, start, end, key2, rows2, u2, r_search, zone_h, nzones, chord2)
        if res is None:  # too many candidates for one chunk: halve it and retry
            if end - start == 1:
                raise MemoryError("a single source has more than 20 million candidates; use a smaller radius")
            step = max(1, (end - start) // 2)
            continue
        i1, i2, d2 = res
        if nearest and i1.size:
            o = np.lexsort((i2, d2, i1))
            i1, i2, d2 = i1[o], i2[o], d2[o]
            first = np.ones(i1.size, dtype=bool)
            first[1:] = i1[1:] != i1[:-1]
            i1, i2 = i1[first], i2[first]
        out1.append(i1)
        out2.append(i2)
        start = end
    return np.concatenate(out1), np.concatenate(out2)


def _match_chunk(
    ra1: np.ndarray,
    dec1: np.ndarray,
    start: int,
    stop: int,
    key2: np.ndarray,
    rows2: np.ndarray,
    u2: tuple[np.ndarray, np.ndarray, np.ndarray],
    r_search: float,
    zone_h: float,
    nzones: int,
    chord2: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Candidates and exact test for rows ``start:stop`` of catalog 1 (None: too many)."""
    idx = np.arange(start, stop, dtype=np.int64)
    ra = ra1[start:stop]
    dec = dec1[start:stop]
    good = np.isfinite(ra) & np.isfinite(dec)
    idx, ra, dec = idx[good], ra[good], dec[good]
    if idx.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    # Visit sources in (zone, RA) order: the binary searches then walk the sorted keys of
    # catalog 2 almost sequentially, which is several times faster than random order.
    key1 = (np.floor((dec + 90.0) / zone_h).astype(np.int64) << _RA_BITS) | np.floor(ra * _RA_SCALE).astype(np.int64)
    o = np.argsort(key1)
    idx, ra, dec = idx[o], ra[o], dec[o]
    local_pos = np.arange(idx.size, dtype=np.int64)

    # Half-width in RA of the disc: asin(sin r / cos|δ|max); the whole circle near a pole.
    dmax = np.abs(dec) + r_search
    polar = dmax >= 90.0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.sin(np.radians(min(r_search, 90.0))) / np.cos(np.radians(np.where(polar, 0.0, dmax)))
        half = np.where(polar | (ratio >= 1.0), 360.0, np.degrees(np.arcsin(np.minimum(ratio, 1.0))))
    half = half * (1.0 + 1e-9) + 1e-9
    full = half >= 180.0
    lo = np.floor((ra - half) * _RA_SCALE).astype(np.int64)
    hi = np.floor((ra + half) * _RA_SCALE).astype(np.int64)
    qmax = np.int64(1 << _RA_BITS)
    zlo = np.maximum(np.floor((dec - r_search + 90.0) / zone_h).astype(np.int64), 0)
    zhi = np.minimum(np.floor((dec + r_search + 90.0) / zone_h).astype(np.int64), nzones - 1)

    # Intervals [a, b) of the sorted key array, at most 2 RA windows per zone.
    starts, stops, owners = [], [], []
    nz = int((zhi - zlo).max()) + 1 if idx.size else 0
    for dz in range(nz):
        z = zlo + dz
        inz = z <= zhi
        if not np.any(inz):
            continue
        zk = z << _RA_BITS
        # window 1: [max(lo,0), min(hi, qmax-1)] or the whole zone
        a = np.where(full, 0, np.maximum(lo, 0))
        b = np.where(full, qmax - 1, np.minimum(hi, qmax - 1))
        starts.append(np.searchsorted(key2, zk + a, side="left"))
        stops.append(np.searchsorted(key2, zk + b, side="right"))
        owners.append(np.where(inz, local_pos, -1))
        # window 2: the wrapped part, below 0 or above 360
        wrap_lo = ~full & (lo < 0)
        wrap_hi = ~full & (hi >= qmax)
        a2 = np.where(wrap_lo, lo + qmax, np.where(wrap_hi, 0, 1))
        b2 = np.where(wrap_lo, qmax - 1, np.where(wrap_hi, hi - qmax, 0))
        has2 = np.flatnonzero(inz & (wrap_lo | wrap_hi))
        if has2.size:
            starts.append(np.searchsorted(key2, zk[has2] + a2[has2], side="left"))
            stops.append(np.searchsorted(key2, zk[has2] + b2[has2], side="right"))
            owners.append(has2)
    a = np.concatenate(starts)
    b = np.concatenate(stops)
    own = np.concatenate(owners)
    counts = np.where(own >= 0, np.maximum(b - a, 0), 0)
    total = int(counts.sum())
    if total > _MAX_CANDIDATES and stop - start > 1:
        return None
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    nonzero = counts > 0
    a, counts, own = a[nonzero], counts[nonzero], own[nonzero]
    # Expand intervals into candidate positions: a_k, a_k+1, ..., a_k+counts_k-1.
    offsets = np.cumsum(counts) - counts
    pos = np.arange(total, dtype=np.int64) - np.repeat(offsets - a, counts)
    local = np.repeat(own, counts)  # position in this chunk's sorted order
    x1, y1, z1 = _unit(ra, dec)
    x2, y2, z2 = u2
    dx = x1[local] - x2[pos]
    dy = y1[local] - y2[pos]
    dz_ = z1[local] - z2[pos]
    dist2 = dx * dx + dy * dy + dz_ * dz_
    hit = dist2 <= chord2
    return idx[local[hit]], rows2[pos[hit]], dist2[hit]
