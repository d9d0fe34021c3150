"""Small, seeded DR1-format files for the store tests, written through desilab.io writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

SURVEYS = (("main", "dark"), ("main", "bright"), ("sv1", "dark"), ("sv3", "bright"))


def sky(
    rng: np.random.Generator, n: int, ra: tuple[float, float] = (0.0, 360.0), dec: tuple[float, float] = (-90.0, 90.0)
):
    """Uniform positions on a sphere patch."""
    r = rng.uniform(*ra, n)
    s = rng.uniform(np.sin(np.radians(dec[0])), np.sin(np.radians(dec[1])), n)
    return np.mod(r, 360.0), np.degrees(np.arcsin(s))


def zcat_table(n: int, seed: int, survey: str = "main", program: str = "dark", first_id: int = 0) -> pa.Table:
    """ZCATALOG-like rows (a handful of columns; the writer fills the rest)."""
    rng = np.random.default_rng(seed)
    ra, dec = sky(rng, n)
    return pa.table(
        {
            "TARGETID": np.arange(first_id, first_id + n, dtype=np.int64),
            "SURVEY": [survey] * n,
            "PROGRAM": [program] * n,
            "Z": rng.uniform(0, 2, n),
            "ZERR": rng.uniform(1e-5, 1e-3, n),
            "ZWARN": rng.integers(0, 2, n).astype(np.int64) * 4,
            "SPECTYPE": rng.choice(["GALAXY", "QSO", "STAR"], n),
            "TARGET_RA": ra,
            "TARGET_DEC": dec,
            "FLUX_R": rng.uniform(0, 50, n).astype(np.float32),
            "BGS_TARGET": rng.integers(0, 4, n).astype(np.int64),
            "ZCAT_PRIMARY": np.ones(n, dtype=bool),
            "ZCAT_NSPEC": np.ones(n, dtype=np.int16),
        }
    )


def write_zpix(path: Path, n: int, seed: int, survey: str = "main", program: str = "dark", first_id: int = 0) -> Path:
    """A zpix-SURVEY-PROGRAM.fits file."""
    from desilab.io.zcatalog import write_zcatalog

    return write_zcatalog(
        path, zcat_table(n, seed, survey, program, first_id), kind="zpix", survey=survey, program=program
    )


def write_fastspec_file(path: Path, zcat: pa.Table, seed: int) -> Path:
    """A FastSpecFit v3.0 file for the rows of *zcat*."""
    from desilab.io.fastspecfit import write_fastspec

    rng = np.random.default_rng(seed)
    n = zcat.num_rows
    halpha_ivar = np.where(rng.uniform(size=n) < 0.5, 0.0, rng.uniform(1, 5, n)).astype(np.float32)
    t = pa.table(
        {
            "TARGETID": zcat["TARGETID"],
            "SURVEY": zcat["SURVEY"],
            "PROGRAM": zcat["PROGRAM"],
            "RA": zcat["TARGET_RA"],
            "DEC": zcat["TARGET_DEC"],
            "Z": zcat["Z"],
            "LOGMSTAR": rng.uniform(8, 12, n).astype(np.float32),
            "SFR": rng.uniform(0, 10, n).astype(np.float32),
            "HALPHA_FLUX": rng.uniform(0, 100, n).astype(np.float32),
            "HALPHA_FLUX_IVAR": halpha_ivar,
            "OIII_5007_FLUX": rng.uniform(0, 100, n).astype(np.float32),
            "OIII_5007_FLUX_IVAR": rng.uniform(1, 5, n).astype(np.float32),
        }
    )
    return write_fastspec(path, t, version="v3.0")


def write_qso_file(path: Path, n: int, seed: int, first_id: int = 10_000_000) -> Path:
    """A QSO catalog with the BAL columns appended."""
    from desilab.io.qso import write_qso_catalog

    rng = np.random.default_rng(seed)
    ra, dec = sky(rng, n)
    t = pa.table(
        {
            "TARGETID": np.arange(first_id, first_id + n, dtype=np.int64),
            "Z": rng.uniform(1.5, 3.5, n),
            "ZERR": rng.uniform(1e-4, 1e-3, n),
            "ZWARN": np.zeros(n, dtype=np.int64),
            "SPECTYPE": ["QSO"] * n,
            "TARGET_RA": ra,
            "TARGET_DEC": dec,
            "SURVEY": ["main"] * n,
            "PROGRAM": ["dark"] * n,
            "BI_CIV": rng.uniform(0, 3000, n).astype(np.float32),
            "C_MgII": rng.uniform(0, 1, n).astype(np.float32),
        }
    )
    return write_qso_catalog(path, t, layout="appended", with_bal=True)


def write_voids(directory: Path, seed: int) -> list[Path]:
    """A VoidFinder and a V² (REVOLVER) catalog for the NGC."""
    from desilab.io.desivast import write_v2, write_voidfinder

    rng = np.random.default_rng(seed)
    nv, nh = 20, 60
    xyz = rng.uniform(-300, 300, (nv, 3))
    r = np.linalg.norm(xyz, axis=1)
    ra = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    dec = np.degrees(np.arcsin(xyz[:, 2] / r))
    maximals = pa.table(
        {
            "X": xyz[:, 0], "Y": xyz[:, 1], "Z": xyz[:, 2], "RADIUS": rng.uniform(10, 20, nv),
            "VOID": np.arange(nv, dtype=np.int64), "EDGE": rng.integers(0, 3, nv).astype(np.int64),
            "R": r, "RA": ra, "DEC": dec, "R_EFF": rng.uniform(10, 25, nv), "R_EFF_UNCERT": rng.uniform(0, 1, nv),
        }
    )  # fmt: skip
    hv = rng.integers(0, nv, nh)
    hxyz = xyz[hv] + rng.normal(0, 5, (nh, 3))
    holes = pa.table(
        {
            "X": hxyz[:, 0],
            "Y": hxyz[:, 1],
            "Z": hxyz[:, 2],
            "RADIUS": rng.uniform(5, 12, nh),
            "VOID": hv.astype(np.int64),
        }
    )
    header = {"OMEGAM": 0.315, "HP": 1.0, "ZLIML": 0.0, "ZLIMU": 0.24, "MAGLIM": -20.0}
    vf = write_voidfinder(directory / "DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits", maximals, holes, header)
    ng = 200
    gxyz = rng.uniform(-300, 300, (ng, 3))
    voids = pa.table(
        {
            "VOID": np.arange(nv, dtype=np.int64), "X": xyz[:, 0], "Y": xyz[:, 1], "Z": xyz[:, 2],
            "REDSHIFT": rng.uniform(0.03, 0.24, nv), "RA": np.mod(ra, 360), "DEC": dec,
            "RADIUS": rng.uniform(10, 30, nv),
            **{f"{a}{k}": rng.normal(0, 5, nv) for k in (1, 2, 3) for a in "XYZ"},
            "TOT_AREA": rng.uniform(100, 200, nv), "EDGE_AREA": rng.uniform(0, 50, nv),
        }
    )  # fmt: skip
    zonevoid = pa.table(
        {"ZONE": np.arange(40, dtype=np.int64), "VOID0": rng.integers(-1, nv, 40), "VOID1": rng.integers(-1, nv, 40)}
    )
    galzone = pa.table(
        {
            "GAL": np.arange(ng, dtype=np.int64), "TARGET": np.arange(ng, dtype=np.int64) + 5_000_000,
            "X": gxyz[:, 0], "Y": gxyz[:, 1], "Z": gxyz[:, 2], "ZONE": rng.integers(-1, 40, ng),
            "DEPTH": rng.integers(0, 5, ng), "EDGE": rng.integers(0, 2, ng), "OUT": rng.integers(0, 2, ng),
        }
    )  # fmt: skip
    v2 = write_v2(
        directory / "DESIVAST_BGS_VOLLIM_V2_REVOLVER_NGC.fits", voids, zonevoid, galzone, header, pruning="REVOLVER"
    )
    return [vf, v2]


def write_coadd_file(path: Path, zcat: pa.Table, survey: str, program: str, healpix: int) -> Path:
    """A tiny healpix coadd (3 arms, 20 pixels each) for the rows of *zcat*."""
    from desilab.io.coadd import healpix_header, write_coadd
    from desilab.io.spectra import Spectra

    n = zcat.num_rows
    bands = ["b", "r", "z"]
    wave = {b: np.linspace(3600 + 2000 * i, 3616 + 2000 * i, 20) for i, b in enumerate(bands)}
    flux = {b: np.ones((n, 20), np.float32) for b in bands}
    ivar = {b: np.ones((n, 20), np.float32) for b in bands}
    fm = pa.table({"TARGETID": zcat["TARGETID"], "TARGET_RA": zcat["TARGET_RA"], "TARGET_DEC": zcat["TARGET_DEC"]})
    sp = Spectra(
        bands=bands, wave=wave, flux=flux, ivar=ivar, fibermap=fm, meta=healpix_header(survey, program, healpix)
    )
    return write_coadd(path, sp)
