"""Flat ΛCDM distances in the two conventions DESI products use.

* **h = 1 (Mpc/h)**: DESIVAST void catalogs (``OMEGAM`` = 0.315, ``HP`` = 1) and
  FastSpecFit (LOGMSTAR, SFR, ABSMAG are "h = 1" quantities). Use :data:`DESIVAST`, or
  ``Cosmology(omega_m, h=1.0)`` built from a catalog's own header keywords.
* **a fiducial h for luminosities** (erg/s, L_bol, outflow energetics): :data:`FIDUCIAL`
  is Ω_m = 0.3, Ω_Λ = 0.7, H0 = 70 km/s/Mpc, the convention of the quasar literature
  we compare with (Richards et al. 2006; Shen et al. 2011).

The comoving-distance integral is tabulated once per cosmology (Simpson rule on a
fine grid, then a cubic spline): it is evaluated for millions of galaxies, and on 1M
redshifts this is ~5x faster than ``astropy.cosmology`` (which integrates per call).
Agreement with astropy is better than 1e-9 relative (``tests/sky/test_cosmology.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.integrate import cumulative_simpson
from scipy.interpolate import CubicSpline

__all__ = [
    "C_KM_S",
    "DESIVAST",
    "FIDUCIAL",
    "MPC_CM",
    "Cosmology",
    "log_h_scaling",
]

C_KM_S = 299_792.458
"""Speed of light [km/s] (VAST rounds to 299792; the difference is 1.5e-6 relative)."""

MPC_CM = 3.0856775814913673e24
"""One megaparsec in cm (IAU 2015)."""

_ZMAX = 12.0
_NGRID = 24_001


@dataclass(frozen=True)
class Cosmology:
    """A flat ΛCDM cosmology (Ω_Λ = 1 − Ω_m − Ω_r).

    Parameters
    ----------
    omega_m
        Matter density today.
    h
        H0 / (100 km/s/Mpc). With ``h = 1`` distances are in Mpc/h.
    omega_r
        Radiation density today (0 as VAST assumes; ~9e-5 for Planck 2018 with
        neutrinos as radiation — affects D_c at z = 0.2 by < 1e-4).
    name
        Label used in logs and file headers.
    """

    omega_m: float = 0.315
    h: float = 1.0
    omega_r: float = 0.0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.omega_m <= 1.0:
            raise ValueError(f"omega_m must be in (0, 1], got {self.omega_m}")
        if not self.h > 0:
            raise ValueError(f"h must be positive, got {self.h}")

    @property
    def hubble_distance(self) -> float:
        """c / H0 in Mpc."""
        return C_KM_S / (100.0 * self.h)

    def efunc(self, z: np.ndarray | float) -> np.ndarray:
        """E(z) = H(z)/H0."""
        zp1 = 1.0 + np.asarray(z, dtype=np.float64)
        omega_l = 1.0 - self.omega_m - self.omega_r
        return np.sqrt(self.omega_r * zp1**4 + self.omega_m * zp1**3 + omega_l)

    @cached_property
    def _table(self) -> tuple[CubicSpline, CubicSpline]:
        # Denser sampling at low z where most galaxies live: uniform in log(1+z).
        x = np.linspace(0.0, np.log1p(_ZMAX), _NGRID)
        z = np.expm1(x)
        integrand = (1.0 + z) / self.efunc(z)  # dz = (1+z) dx
        chi = cumulative_simpson(integrand, x=x, initial=0.0)
        return CubicSpline(z, chi), CubicSpline(chi, z)

    def _chi(self, z: np.ndarray | float) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if np.any(z < 0) or np.any(z > _ZMAX):
            bad = z[(z < 0) | (z > _ZMAX)]
            raise ValueError(f"redshift out of the tabulated range [0, {_ZMAX}]: {bad[:3]}")
        return self._table[0](z)

    def comoving_distance(self, z: np.ndarray | float) -> np.ndarray:
        """Line-of-sight comoving distance in Mpc (Mpc/h when ``h == 1``)."""
        return self.hubble_distance * self._chi(z)

    def comoving_distance_mpch(self, z: np.ndarray | float) -> np.ndarray:
        """Comoving distance in Mpc/h, whatever ``h`` is (as DESIVAST and VAST use)."""
        return (C_KM_S / 100.0) * self._chi(z)

    def redshift_at_distance_mpch(self, d: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`comoving_distance_mpch`."""
        chi = np.asarray(d, dtype=np.float64) / (C_KM_S / 100.0)
        return self._table[1](chi)

    def luminosity_distance(self, z: np.ndarray | float) -> np.ndarray:
        """Luminosity distance in Mpc (for this ``h``)."""
        return (1.0 + np.asarray(z, dtype=np.float64)) * self.comoving_distance(z)

    def luminosity_distance_cm(self, z: np.ndarray | float) -> np.ndarray:
        """Luminosity distance in cm, for fluxes → luminosities."""
        return self.luminosity_distance(z) * MPC_CM

    def distance_modulus(self, z: np.ndarray | float) -> np.ndarray:
        """5 log10(D_L / 10 pc); with h = 1 this is "μ − 5 log h" as FastSpecFit uses."""
        return 5.0 * np.log10(self.luminosity_distance(z)) + 25.0

    def comoving_volume_mpch3(self, z: np.ndarray | float, area_deg2: float) -> np.ndarray:
        """Comoving volume [(Mpc/h)^3] from 0 to z over a sky area in deg²."""
        frac = area_deg2 * (np.pi / 180.0) ** 2 / (4.0 * np.pi)
        return frac * 4.0 / 3.0 * np.pi * self.comoving_distance_mpch(z) ** 3


def log_h_scaling(power: float, h: float) -> float:
    """dex to add to an "h = 1" quantity ∝ h^-power to express it for *h*.

    FastSpecFit masses and SFRs scale as d_L² ∝ h⁻², so
    ``LOGMSTAR + log_h_scaling(2, 0.7)`` (= +0.31 dex) is log M* for h = 0.7.
    """
    return -power * float(np.log10(h))


DESIVAST = Cosmology(omega_m=0.315, h=1.0, name="DESIVAST (flat LCDM, Om=0.315, Mpc/h)")
"""The cosmology of the DESIVAST DR1 void catalogs (always re-read it from the header)."""

FIDUCIAL = Cosmology(omega_m=0.3, h=0.7, name="fiducial (flat LCDM, Om=0.3, H0=70)")
"""Fiducial cosmology for luminosities and energetics."""
