import numpy as np
from astropy.coordinates import SkyCoord

from desilab.sky import angular_separation, radec_to_xyz, wrap_ra, xyz_to_radec


def test_separation_matches_astropy_including_edges():
    rng = np.random.default_rng(1)
    n = 20000
    ra1, ra2 = rng.uniform(0, 360, n), rng.uniform(0, 360, n)
    dec1 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # edge cases: identical points, RA wrap, poles, antipodes
    ra1 = np.r_[ra1, 10.0, 359.9999, 0.0, 45.0, 0.0]
    ra2 = np.r_[ra2, 10.0, 0.0001, 180.0, 225.0, 0.0]
    dec1 = np.r_[dec1, 5.0, 0.0, 90.0, 30.0, 89.99]
    dec2 = np.r_[dec2, 5.0, 0.0, 90.0, -30.0, -89.99]
    ref = SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).deg
    ours = angular_separation(ra1, dec1, ra2, dec2)
    assert np.max(np.abs(ours - ref)) < 1e-10
    assert ours[n] == 0.0
    assert abs(ours[n + 1] - 0.0002) < 1e-9
    assert abs(ours[n + 3] - 180.0) < 1e-9


def test_xyz_roundtrip_and_ra_wrap():
    rng = np.random.default_rng(2)
    ra = rng.uniform(-90, 270, 1000)  # VoidFinder's RA range quirk
    dec = rng.uniform(-89, 89, 1000)
    r = rng.uniform(1, 700, 1000)
    ra2, dec2, r2 = xyz_to_radec(radec_to_xyz(ra, dec, r))
    assert np.allclose(ra2, wrap_ra(ra), atol=1e-9)
    assert np.all((ra2 >= 0) & (ra2 < 360))
    assert np.allclose(dec2, dec, atol=1e-9) and np.allclose(r2, r)
    assert wrap_ra(-1e-15) < 360.0
