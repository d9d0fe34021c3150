"""Synthetic DESIVAST-format catalogs for the void tests (written with desilab.io writers)."""

from __future__ import annotations

from pathlib import Path

import healpy as hp
import numpy as np
import pyarrow as pa
import pytest

from desilab.io.desivast import write_v2, write_voidfinder
from desilab.sky.cosmology import Cosmology
from desilab.sky.geometry import radec_to_xyz, xyz_to_radec

OM = 0.315
Z_MAX = 0.12
NSIDE = 32


def mini_sky(tmp: Path, *, seed: int = 0, n_gal: int = 6000, n_holes: int = 150, h_written: float = 1.0,
             omega_written: float = OM) -> dict:
    """A patch of sky (RA 150-190, Dec 0-40) with galaxies, VoidFinder holes and a V2 file.

    ``h_written``/``omega_written`` set the cosmology the *positions* are computed in while
    the header always declares OMEGAM = 0.315, HP = 1 (to make deliberately wrong files).
    """
    rng = np.random.default_rng(seed)
    cos = Cosmology(OM, 1.0)
    wrong = Cosmology(omega_written, h_written)
    d_max = float(cos.comoving_distance(Z_MAX))
    ra = rng.uniform(150, 190, n_gal)
    dec = np.degrees(np.arcsin(rng.uniform(0, np.sin(np.radians(40)), n_gal)))
    z = rng.uniform(0.01, Z_MAX, n_gal)
    tid = np.arange(n_gal, dtype=np.int64) + 39627000000000000
    xyz = radec_to_xyz(ra, dec, cos.comoving_distance(z))
    # holes: centred on random galaxies, radius 5-12 Mpc/h
    k = rng.choice(n_gal, n_holes, replace=False)
    hc_true = xyz[k] + rng.normal(0, 2, (n_holes, 3))
    _, _, rr = xyz_to_radec(hc_true)
    hra, hdec, _ = xyz_to_radec(hc_true)
    zc = cos.redshift_at_distance_mpch(np.clip(rr, 20.0, d_max - 1.0))
    hc = radec_to_xyz(hra, hdec, wrong.comoving_distance(zc))
    hrad = rng.uniform(5, 12, n_holes)
    void = np.repeat(np.arange(n_holes // 3), 3)[:n_holes]
    first = np.r_[True, void[1:] != void[:-1]]
    mra, mdec, mr = xyz_to_radec(hc[first])
    maximals = pa.table({
        "X": hc[first, 0], "Y": hc[first, 1], "Z": hc[first, 2], "RADIUS": hrad[first],
        "VOID": np.arange(first.sum()), "EDGE": np.zeros(first.sum(), np.int64), "R": mr,
        "RA": np.where(mra > 270, mra - 360, mra), "DEC": mdec, "R_EFF": hrad[first] * 1.2,
        "R_EFF_UNCERT": np.full(first.sum(), 0.1),
    })
    holes = pa.table({"X": hc[:, 0], "Y": hc[:, 1], "Z": hc[:, 2], "RADIUS": hrad, "VOID": void})
    header = {"OMEGAM": OM, "HP": 1.0, "DLIML": 0.0, "DLIMU": d_max, "ZLIML": 0.0, "ZLIMU": Z_MAX,
              "MSKRES": NSIDE, "MAGLIM": -20.0}
    vf_path = write_voidfinder(tmp / "DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits", maximals, holes, header)
    # V2: zones = nearest of 40 seeds; zones with even id in a void
    seeds = xyz[rng.choice(n_gal, 40, replace=False)]
    from scipy.spatial import cKDTree

    tracer = rng.uniform(size=n_gal) < 0.7
    _, zone = cKDTree(seeds).query(xyz[tracer])
    nz = 40
    void0 = np.where(np.arange(nz) % 2 == 0, np.arange(nz) // 2, -1)
    galzone = pa.table({
        "GAL": np.arange(tracer.sum()), "TARGET": tid[tracer], "X": xyz[tracer, 0], "Y": xyz[tracer, 1],
        "Z": xyz[tracer, 2], "ZONE": zone.astype(np.int64), "DEPTH": np.zeros(tracer.sum(), np.int64),
        "EDGE": np.zeros(tracer.sum(), np.int64), "OUT": np.zeros(tracer.sum(), np.int64),
    })
    zonevoid = pa.table({"ZONE": np.arange(nz), "VOID0": void0, "VOID1": void0})
    vc = seeds[::2]
    vra, vdec, vr = xyz_to_radec(vc)
    vz = cos.redshift_at_distance_mpch(np.clip(vr, 20.0, d_max - 1.0))
    vcw = radec_to_xyz(vra, vdec, wrong.comoving_distance(vz))
    nv = len(vc)
    voids = pa.table({
        "VOID": np.arange(nv), "X": vcw[:, 0], "Y": vcw[:, 1], "Z": vcw[:, 2], "REDSHIFT": vz, "RA": vra, "DEC": vdec,
        "RADIUS": np.full(nv, 15.0), **{f"{a}{i}": np.zeros(nv) for i in (1, 2, 3) for a in "XYZ"},
        "TOT_AREA": np.ones(nv), "EDGE_AREA": np.zeros(nv),
    })
    v2hdr = {"OMEGAM": OM, "HP": 1.0, "ZLIML": 0.0, "ZLIMU": Z_MAX, "DLIML": 0.0, "DLIMU": d_max, "NSIDE": NSIDE}
    v2_path = write_v2(tmp / "DESIVAST_BGS_VOLLIM_V2_VIDE_NGC.fits", voids, zonevoid, galzone, v2hdr, pruning="VIDE")
    mask = np.zeros(12 * NSIDE**2, bool)
    mask[hp.vec2pix(NSIDE, *xyz[tracer].T, nest=True)] = True
    return {"tid": tid, "ra": ra, "dec": dec, "z": z, "xyz": xyz, "hole_xyz": hc, "hole_r": hrad,
            "vf": vf_path, "v2": v2_path, "tracer": tracer, "zone": zone, "void0": void0, "d_max": d_max}


@pytest.fixture
def sky(tmp_path: Path) -> dict:
    """A consistent mini sky (see :func:`mini_sky`)."""
    return mini_sky(tmp_path)
