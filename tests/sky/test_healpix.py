import healpy as hp
import numpy as np
import pytest

from desilab.sky import pixgroup, query_disc, radec_to_healpix
from desilab.sky.healpix import healpix_to_radec, nside_to_order, order_to_nside, to_order


def test_real_dr1_pixel_from_coadd_header(real):
    """The healpix of the real DR2 coadd's target equals HPXPIXEL in its header."""
    from astropy.io import fits

    path = real("desi_coadd", "coadd-special-dark-27247.fits")
    with fits.open(path) as f:
        hdr = f[0].header
        fm = f["FIBERMAP"].data
        pix = radec_to_healpix(fm["TARGET_RA"], fm["TARGET_DEC"], nside=hdr["HPXNSIDE"])
    assert int(pix[0]) == hdr["HPXPIXEL"] == 27247
    assert int(pixgroup(pix[0])) == 272


def test_nested_and_orders():
    assert order_to_nside(6) == 64 and nside_to_order(64) == 6
    with pytest.raises(ValueError):
        nside_to_order(48)
    ra, dec = healpix_to_radec(np.arange(12 * 64**2))
    assert np.array_equal(radec_to_healpix(ra, dec), np.arange(12 * 64**2))
    fine = radec_to_healpix(ra, dec, nside=1024)
    assert np.array_equal(to_order(fine, 10, 6), np.arange(12 * 64**2))


def test_query_disc_contains_points():
    rng = np.random.default_rng(3)
    for ra0, dec0 in [(0.0, 0.0), (359.99, 10.0), (10.0, 89.9), (200.0, -89.5)]:
        pix = query_disc(ra0, dec0, 1.0)
        vec = hp.ang2vec(ra0 + rng.normal(0, 0.3, 200), np.clip(dec0 + rng.normal(0, 0.3, 200), -90, 90), lonlat=True)
        inside = np.degrees(np.arccos(np.clip(vec @ hp.ang2vec(ra0, dec0, lonlat=True), -1, 1))) < 1.0
        ra_p, dec_p = hp.vec2ang(vec[inside], lonlat=True)
        assert np.isin(radec_to_healpix(ra_p, dec_p), pix).all()
