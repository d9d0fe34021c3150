"""The in-memory crossmatch kernel against astropy, and the HEALPix range prefilters.

Pairs whose separation is within 1e-9 arcsec of the radius may differ from astropy
(rounding); the comparisons below would report them, and none occur in these fields.
"""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky, search_around_sky

from desilab.sky.crossmatch import match_sky
from desilab.sky.hpxrange import SKY_NSIDE, covering_ranges, disc_ranges, merge_ranges, sky_index


def _sphere(rng, n, dec=(-90.0, 90.0), ra=(0.0, 360.0)):
    s = rng.uniform(np.sin(np.radians(dec[0])), np.sin(np.radians(dec[1])), n)
    return np.mod(rng.uniform(*ra, n), 360.0), np.degrees(np.arcsin(s))


def _astropy(ra1, dec1, ra2, dec2, r):
    c1, c2 = SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg)
    i1, i2, d2, _ = search_around_sky(c1, c2, r * u.arcsec)
    return i1, i2, d2.to_value(u.arcsec)


def _same(ra1, dec1, ra2, dec2, r):
    m = match_sky(ra1, dec1, ra2, dec2, r)
    i1, i2, d2 = _astropy(ra1, dec1, ra2, dec2, r)
    ours = set(zip(m.idx1.tolist(), m.idx2.tolist(), strict=True))
    theirs = set(zip(i1.tolist(), i2.tolist(), strict=True))
    assert ours == theirs
    # separations agree too (both Vincenty)
    if len(m):
        ref = dict(zip(zip(i1.tolist(), i2.tolist(), strict=True), d2.tolist(), strict=True))
        got = np.array([ref[(a, b)] for a, b in zip(m.idx1.tolist(), m.idx2.tolist(), strict=True)])
        np.testing.assert_allclose(m.sep_arcsec, got, rtol=0, atol=1e-9)
    return m


@pytest.mark.parametrize(
    ("seed", "n1", "n2", "radius"), [(1, 3000, 3000, 60.0), (2, 20000, 20000, 5.0), (3, 500, 4000, 3600.0)]
)
def test_random_fields_equal_astropy(seed, n1, n2, radius):
    rng = np.random.default_rng(seed)
    ra1, dec1 = _sphere(rng, n1)
    ra2, dec2 = _sphere(rng, n2)
    # a third of catalog 1 has a close counterpart in catalog 2
    k = n1 // 3
    ra2[:k] = np.mod(ra1[:k] + rng.normal(0, radius / 7200, k) / np.cos(np.radians(dec1[:k])), 360)
    dec2[:k] = np.clip(dec1[:k] + rng.normal(0, radius / 7200, k), -90, 90)
    m = _same(ra1, dec1, ra2, dec2, radius)
    assert len(m) >= k * 0.5


def test_ra_wrap():
    rng = np.random.default_rng(4)
    ra1 = np.mod(rng.uniform(-0.01, 0.01, 4000), 360.0)
    dec1 = rng.uniform(-0.01, 0.01, 4000)
    ra2 = np.mod(rng.uniform(-0.01, 0.01, 4000), 360.0)
    dec2 = rng.uniform(-0.01, 0.01, 4000)
    m = _same(ra1, dec1, ra2, dec2, 3.0)
    assert np.any((ra1[m.idx1] > 359) & (ra2[m.idx2] < 1))  # pairs across 0/360 exist
    # RA given as 360 or negative is the same place
    assert len(match_sky([360.0], [10.0], [0.0], [10.0], 0.0)) == 1
    assert len(match_sky([-0.5], [10.0], [359.5], [10.0], 0.0)) == 1


@pytest.mark.parametrize("pole", [90.0, -90.0])
def test_poles(pole):
    rng = np.random.default_rng(5)
    lo, hi = (89.9, 90.0) if pole > 0 else (-90.0, -89.9)
    ra1, dec1 = _sphere(rng, 3000, dec=(lo, hi))
    ra2, dec2 = _sphere(rng, 3000, dec=(lo, hi))
    ra1[0], dec1[0], ra2[0], dec2[0] = 0.0, pole, 123.0, pole  # the pole under two RAs
    m = _same(ra1, dec1, ra2, dec2, 20.0)
    assert (0, 0) in set(zip(m.idx1.tolist(), m.idx2.tolist(), strict=True))


def test_radius_zero_matches_identical_positions_only():
    rng = np.random.default_rng(6)
    ra1, dec1 = _sphere(rng, 2000)
    ra2, dec2 = _sphere(rng, 2000)
    ra2[:100], dec2[:100] = ra1[:100], dec1[:100]
    ra2[100] = np.nextafter(ra1[100], 400)  # one ulp away: no match at radius 0
    dec2[100] = dec1[100]
    m = _same(ra1, dec1, ra2, dec2, 0.0)
    assert len(m) == 100 and np.all(m.sep_arcsec == 0)


def test_nearest_equals_match_coordinates_sky():
    rng = np.random.default_rng(7)
    ra1, dec1 = _sphere(rng, 5000)
    ra2, dec2 = _sphere(rng, 20000)
    r = 300.0
    m = match_sky(ra1, dec1, ra2, dec2, r, nearest=True)
    idx, d2, _ = match_coordinates_sky(SkyCoord(ra1 * u.deg, dec1 * u.deg), SkyCoord(ra2 * u.deg, dec2 * u.deg))
    ok = d2.to_value(u.arcsec) <= r
    assert m.idx1.tolist() == np.flatnonzero(ok).tolist()
    assert m.idx2.tolist() == idx[ok].tolist()


def test_edge_cases():
    assert len(match_sky([], [], [1.0], [1.0], 1.0)) == 0
    m = match_sky([np.nan, 1.0], [0.0, 1.0], [1.0, np.nan], [1.0, 1.0], 1.0)
    assert m.idx1.tolist() == [1] and m.idx2.tolist() == [0]
    with pytest.raises(ValueError):
        match_sky([1.0], [1.0], [1.0], [1.0], -1.0)
    with pytest.raises(ValueError):
        match_sky([1.0], [91.0], [1.0], [1.0], 1.0)
    # chunking gives the same answer
    rng = np.random.default_rng(8)
    ra, dec = _sphere(rng, 3000)
    a = match_sky(ra, dec, ra, dec, 600.0)
    b = match_sky(ra, dec, ra, dec, 600.0, chunk_size=7)
    assert a.idx1.tolist() == b.idx1.tolist() and a.idx2.tolist() == b.idx2.tolist()


def _on_circle(ra, dec, r_deg, n=720):
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    d = np.radians(r_deg)
    lat1, lon1 = np.radians(dec), np.radians(ra)
    lat2 = np.arcsin(np.clip(np.sin(lat1) * np.cos(d) + np.cos(lat1) * np.sin(d) * np.cos(th), -1, 1))
    lon2 = lon1 + np.arctan2(np.sin(th) * np.sin(d) * np.cos(lat1), np.cos(d) - np.sin(lat1) * np.sin(lat2))
    return np.mod(np.degrees(lon2), 360.0), np.degrees(lat2)


def _inside(h, ranges):
    ok = np.zeros(h.size, dtype=bool)
    for lo, hi in ranges:
        ok |= (h >= lo) & (h <= hi)
    return ok


@pytest.mark.parametrize("seed", range(6))
def test_range_prefilters_cover_the_disc(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        ra = rng.uniform(0, 360)
        dec = rng.choice([rng.uniform(-90, 90), rng.uniform(88, 90), rng.uniform(-90, -88), rng.uniform(-0.1, 0.1)])
        r = float(10 ** rng.uniform(-4, 1.2))
        edge_ra, edge_dec = _on_circle(ra, dec, r)
        h = sky_index(np.r_[edge_ra, ra], np.r_[edge_dec, dec])
        assert _inside(h, disc_ranges(ra, dec, r)).all()
        cov = covering_ranges(np.array([ra]), np.array([dec]), r)
        if cov is not None:
            assert _inside(h, cov).all()


def test_sky_index_and_merge():
    assert sky_index(np.array([np.nan, 10.0]), np.array([0.0, 100.0])).tolist() == [-1, -1]
    h = sky_index(np.array([360.0]), np.array([0.0]))
    assert h[0] == hp.ang2pix(SKY_NSIDE, 0.0, 0.0, nest=True, lonlat=True)
    assert merge_ranges(np.array([5, 0, 3]), np.array([6, 2, 3])).tolist() == [[0, 3], [5, 6]]
    assert merge_ranges(np.array([4, 0]), np.array([9, 3])).tolist() == [[0, 9]]
    assert disc_ranges(1.0, 2.0, 120.0).tolist() == [[0, 12 * SKY_NSIDE**2 - 1]]
