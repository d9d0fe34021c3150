import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM

from desilab.sky import DESIVAST, FIDUCIAL, Cosmology, log_h_scaling


@pytest.mark.parametrize(("om", "h"), [(0.315, 1.0), (0.3, 0.7), (0.26, 1.0), (0.3153, 0.6736)])
def test_distances_match_astropy(om, h):
    rng = np.random.default_rng(0)
    z = np.concatenate([[0.0, 1e-5, 0.24, 4.0], rng.uniform(0, 6, 5000)])
    ref = FlatLambdaCDM(H0=100 * h, Om0=om, Tcmb0=0)
    ours = Cosmology(om, h)
    dc = ours.comoving_distance(z)
    assert np.allclose(dc, ref.comoving_distance(z).value, rtol=1e-9, atol=1e-9)
    assert np.allclose(ours.luminosity_distance(z), ref.luminosity_distance(z).value, rtol=1e-9, atol=1e-9)
    assert np.allclose(ours.comoving_distance_mpch(z), dc * h, rtol=1e-12)


def test_desivast_edge_and_inverse():
    # DESIVAST's volume-limited sample ends at z = 0.24, D_c = 677.4 Mpc/h (desi-formats.md §4c)
    assert DESIVAST.comoving_distance_mpch(0.24) == pytest.approx(677.4, abs=0.05)
    d = np.linspace(0, 3000, 101)
    assert np.allclose(DESIVAST.comoving_distance_mpch(DESIVAST.redshift_at_distance_mpch(d)), d, atol=1e-6)


def test_h_conventions():
    # an h=1 distance in Mpc/h is the same number whatever h the user prefers
    assert FIDUCIAL.comoving_distance_mpch(0.5) == pytest.approx(Cosmology(0.3, 1.0).comoving_distance(0.5))
    assert log_h_scaling(2, 0.7) == pytest.approx(0.3098, abs=1e-4)
    with pytest.raises(ValueError, match="redshift"):
        DESIVAST.comoving_distance(-0.1)
    with pytest.raises(ValueError):
        Cosmology(omega_m=0, h=1)
