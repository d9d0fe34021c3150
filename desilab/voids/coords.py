"""Sky → comoving Cartesian in a void catalog's own cosmology and units.

A void catalog states the cosmology its distances were computed in through PRIMARY
keywords ``OMEGAM`` and ``HP`` (VAST: flat ΛCDM, H0 = 100·HP km/s/Mpc, no radiation).
With ``HP = 1`` (DESIVAST) distances are in Mpc/h. Nothing here is hard-coded: galaxies
are placed with ``Cosmology(OMEGAM, HP)`` built from the header, and the catalog is
checked against its own declaration — a catalog written in Mpc while declaring Mpc/h
(the classic h-bug) fails :func:`check_catalog_distances` with an error naming the file
and HDU.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from desilab.errors import FormatError, InputError
from desilab.sky.cosmology import Cosmology
from desilab.sky.geometry import radec_to_xyz

__all__ = [
    "CENTRE_TOL",
    "catalog_cosmology",
    "catalog_distance",
    "check_catalog_distances",
    "sky_to_xyz",
]

#: Largest allowed |√(X²+Y²+Z²) − D_c(z)| [catalog units] for void centres.
CENTRE_TOL = 0.05


def catalog_cosmology(header: Mapping[str, Any], *, file: str | Path | None = None) -> Cosmology:
    """The cosmology a void catalog declares (OMEGAM, HP in its PRIMARY header).

    Raises
    ------
    FormatError
        A keyword missing or not a number (naming file, HDU PRIMARY and keyword).
    """
    vals = {}
    for key in ("OMEGAM", "HP"):
        value = header.get(key)
        try:
            vals[key] = float(value)
        except (TypeError, ValueError):
            raise FormatError(
                f"PRIMARY keyword {key}={value!r} missing or not a number: the catalog's cosmology is unknown",
                file=file, hdu="PRIMARY", column=key,
            ) from None
    if not (0.0 < vals["OMEGAM"] < 1.0 and 0.0 < vals["HP"] <= 2.0):
        raise FormatError(f"implausible cosmology OMEGAM={vals['OMEGAM']} HP={vals['HP']}", file=file, hdu="PRIMARY")
    return Cosmology(omega_m=vals["OMEGAM"], h=vals["HP"], name=f"catalog (Om={vals['OMEGAM']}, HP={vals['HP']})")


def catalog_distance(cosmo: Cosmology, z: np.ndarray | float) -> np.ndarray:
    """Comoving distance in the catalog's units (Mpc with H0 = 100·HP; Mpc/h when HP = 1)."""
    return np.asarray(cosmo.comoving_distance(np.asarray(z, dtype=np.float64)), dtype=np.float64)


def sky_to_xyz(ra: np.ndarray, dec: np.ndarray, z: np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """(n, 3) positions x = r cosδ cosα, y = r cosδ sinα, z = r sinδ with r = D_c(z) (catalog units).

    Parameters
    ----------
    ra, dec
        Degrees (any RA range; it enters through cos/sin).
    z
        Redshifts (must be finite and ≥ 0).
    cosmo
        :func:`catalog_cosmology` of the void catalog.
    """
    z = np.asarray(z, dtype=np.float64)
    if np.any(~np.isfinite(z)) or np.any(z < 0):
        raise InputError("redshifts must be finite and >= 0", column="Z")
    return radec_to_xyz(np.asarray(ra, np.float64), np.asarray(dec, np.float64), catalog_distance(cosmo, z))


def check_catalog_distances(
    xyz: np.ndarray,
    cosmo: Cosmology,
    *,
    redshift: np.ndarray | None = None,
    r: np.ndarray | None = None,
    d_max: float | None = None,
    z_max: float | None = None,
    file: str | Path | None = None,
    hdu: str | None = None,
    tol: float = CENTRE_TOL,
) -> None:
    """Check void centres against the catalog's declared cosmology and units.

    Applied checks (each only when its inputs are given):

    * ``|√(X²+Y²+Z²) − D_c(REDSHIFT)| ≤ tol`` (V² VOIDS carry REDSHIFT);
    * ``|√(X²+Y²+Z²) − R| ≤ tol`` (VoidFinder MAXIMALS carry R);
    * ``|DLIMU − D_c(ZLIMU)| ≤ tol`` and every centre within ``DLIMU + tol`` (VoidFinder
      has no per-void redshift, so this is what catches a catalog in Mpc declaring HP = 1).

    Raises
    ------
    FormatError
        Naming file and HDU, with the worst offender and its size.
    """
    p = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    norm = np.sqrt((p * p).sum(axis=1))
    hint = "distances must be in the units the header declares (HP = 1: Mpc/h); was the catalog written in Mpc?"
    if redshift is not None and len(p):
        dev = np.abs(norm - catalog_distance(cosmo, np.asarray(redshift, np.float64)))
        if np.nanmax(dev) > tol or np.any(~np.isfinite(dev)):
            i = int(np.nanargmax(dev))
            raise FormatError(
                f"void centres disagree with the declared cosmology ({cosmo.name}): "
                f"|sqrt(X^2+Y^2+Z^2) - D_c(REDSHIFT)| up to {dev[i]:.3f} > {tol} (row {i})",
                file=file, hdu=hdu, hint=hint,
            )
    if r is not None and len(p):
        dev = np.abs(norm - np.asarray(r, np.float64))
        if np.nanmax(dev) > tol:
            i = int(np.nanargmax(dev))
            raise FormatError(
                f"void centres disagree with their R column: |sqrt(X^2+Y^2+Z^2) - R| = {dev[i]:.3f} > {tol} (row {i})",
                file=file, hdu=hdu,
            )
    if d_max is not None and z_max is not None:
        expect = float(catalog_distance(cosmo, z_max))
        if abs(expect - d_max) > tol:
            raise FormatError(
                f"DLIMU = {d_max:.3f} but D_c(ZLIMU = {z_max}) = {expect:.3f} in the declared cosmology ({cosmo.name})",
                file=file, hdu="PRIMARY", hint=hint,
            )
    if d_max is not None and len(p) and norm.max() > d_max + tol:
        raise FormatError(
            f"a void centre lies at {norm.max():.3f}, beyond DLIMU = {d_max:.3f} of the declared cosmology",
            file=file, hdu=hdu, hint=hint,
        )
