"""DESIVAST void catalogs (VoidFinder, V²) and VAST galaxy input tables."""

from __future__ import annotations

import hashlib
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
import pytest
from astropy.io import fits as afits
from astropy.table import Table

from desilab.errors import FormatError, SchemaError
from desilab.io import desivast as dv
from desilab.io.schema import PRODUCTS, parse_tform
from tests.conftest import real_path

HEADER = {
    "INFILE": "DESIVAST_BGS_VOLLIM_Y1_NGC.fits",
    "METRIC": "comoving",
    "DLIML": 0.0,
    "DLIMU": 677.4,
    "ZLIML": 0.0,
    "ZLIMU": 0.24,
    "OMEGAM": 0.315,
    "HP": 1.0,
    "MAGCUT": True,
    "MAGLIM": -20.0,
    "GALAXY": 364058,
    "COVDEG": 2446.0,
}


def _maximals(n: int = 7, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    x, y, z = rng.uniform(-300, 300, (3, n))
    r = np.sqrt(x**2 + y**2 + z**2)
    ra = np.degrees(np.arctan(y / x)) + np.where(x < 0, 180.0, 0.0)  # VAST's RA: about -90..270
    return pa.table(
        {
            "X": x,
            "Y": y,
            "Z": z,
            "RADIUS": rng.uniform(10, 30, n),
            "VOID": np.arange(n, dtype=np.int64),
            "EDGE": rng.integers(0, 3, n).astype(np.int64),
            "R": r,
            "RA": ra,
            "DEC": np.degrees(np.arcsin(z / r)),
            "R_EFF": rng.uniform(12, 35, n),
            "R_EFF_UNCERT": rng.uniform(0.1, 1, n),
        }
    )


def _holes(n: int = 20, nvoid: int = 7, seed: int = 2) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "X": rng.normal(size=n),
            "Y": rng.normal(size=n),
            "Z": rng.normal(size=n),
            "RADIUS": rng.uniform(5, 20, n),
            "VOID": rng.integers(0, nvoid, n).astype(np.int64),
        }
    )


def _v2_tables(seed: int = 3) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    nv, nz, ng, nt = 4, 6, 30, 9
    voids = {"VOID": np.arange(nv, dtype=np.int64)}
    for c in ("X", "Y", "Z", "REDSHIFT", "RA", "DEC", "RADIUS"):
        voids[c] = rng.uniform(0, 100, nv)
    for i in (1, 2, 3):
        for c in "XYZ":
            voids[f"{c}{i}"] = rng.normal(size=nv)
    voids["TOT_AREA"] = rng.uniform(100, 900, nv)
    voids["EDGE_AREA"] = rng.uniform(0, 50, nv)
    zonevoid = {
        "ZONE": np.arange(nz, dtype=np.int64),
        "VOID0": np.array([0, 1, -1, 2, 3, -1], dtype=np.int64),
        "VOID1": np.array([0, 1, -1, 2, 3, -1], dtype=np.int64),
    }
    galzone = {
        "GAL": np.arange(ng, dtype=np.int64),
        "TARGET": 39627000000000000 + np.arange(ng, dtype=np.int64) * 7,
        "X": rng.normal(size=ng),
        "Y": rng.normal(size=ng),
        "Z": rng.normal(size=ng),
        "ZONE": rng.integers(-1, nz, ng).astype(np.int64),
        "DEPTH": rng.integers(0, 4, ng).astype(np.int64),
        "EDGE": rng.integers(0, 2, ng).astype(np.int64),
        "OUT": rng.integers(0, 2, ng).astype(np.int64),
    }
    triangle = {"VOID": rng.integers(0, nv, nt).astype(np.int64)}
    for c in ("N_X", "N_Y", "N_Z", *(f"P{i}_{a}" for i in (1, 2, 3) for a in "XYZ")):
        triangle[c] = rng.normal(size=nt)
    galviz = {
        "GID": np.arange(ng, dtype=np.int64),
        "G2V": rng.integers(-1, nv, ng).astype(np.int64),
        "G2V2": rng.integers(-1, nv, ng).astype(np.int64),
    }
    return {k: pa.table(v) for k, v in dict(voids=voids, zonevoid=zonevoid, galzone=galzone,
                                               triangle=triangle, galviz=galviz).items()}  # fmt: skip


V2_HEADER = {"INFILE": "gal.fits", "HP": 1.0, "OMEGAM": 0.315, "ZLIML": 0.0, "ZLIMU": 0.24, "NSIDE": 64,
             "MINR": 10.0, "MAGLIM": None}  # fmt: skip


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _assert_tables_equal(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    for name in a.column_names:
        np.testing.assert_array_equal(a.column(name).to_numpy(), b.column(name).to_numpy(), err_msg=name)


def _assert_golden(path: Path, spec, extnum: int) -> None:
    """Header TTYPE/TFORM/TUNIT of HDU *extnum* equal the schema (for the columns written)."""
    hdr = afits.getheader(path, extnum)
    assert hdr["EXTNAME"] == spec.extname
    for i in range(1, hdr["TFIELDS"] + 1):
        col = spec.column(hdr[f"TTYPE{i}"])
        assert parse_tform(hdr[f"TFORM{i}"]) == parse_tform(col.tform), col.name
        assert hdr.get(f"TUNIT{i}") == col.unit, col.name


# ----------------------------------------------------------------------------- VoidFinder


def test_voidfinder_round_trip_and_golden_layout(tmp_path: Path) -> None:
    path = tmp_path / "DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits"
    maximals, holes = _maximals(), _holes()
    dv.write_voidfinder(path, maximals, holes, HEADER)

    cat = dv.read_voidfinder(path)
    _assert_tables_equal(cat.maximals, maximals)
    _assert_tables_equal(cat.holes, holes)
    assert (cat.omega_m, cat.h) == (0.315, 1.0)
    assert cat.header["MAGCUT"] is True and cat.header["GALAXY"] == 364058
    assert cat.maximals.schema.field("RADIUS").metadata[b"unit"] == b"Mpc h-1"

    with fitsio.FITS(str(path)) as f:
        assert [h.get_extname() for h in f] == ["", "MAXIMALS", "HOLES"]
        assert f["MAXIMALS"].read_header()["VOID"] == 7
        assert f["HOLES"].read_header()["HOLE"] == 20 and f["HOLES"].read_header()["VOID"] == 7
    _assert_golden(path, dv.MAXIMALS, 1)
    _assert_golden(path, dv.HOLES, 2)
    assert afits.getheader(path, 1)["TFIELDS"] == 11 and afits.getheader(path, 2)["TFIELDS"] == 5


def test_voidfinder_written_file_matches_astropy(tmp_path: Path) -> None:
    path = tmp_path / "vf.fits"
    maximals = _maximals()
    dv.write_voidfinder(path, maximals, _holes(), HEADER)
    with afits.open(path) as hdul:
        assert hdul[0].header["OMEGAM"] == 0.315
        data = hdul["MAXIMALS"].data
        for name in maximals.column_names:
            np.testing.assert_array_equal(data[name], maximals.column(name).to_numpy())
        assert hdul["MAXIMALS"].columns["X"].unit == "Mpc h-1"
        assert hdul["MAXIMALS"].columns["RA"].unit == "deg"


def test_voidfinder_bytes_are_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "x_VoidFinder_NGC.fits", tmp_path / "b" / "x_VoidFinder_NGC.fits"
    dv.write_voidfinder(a, _maximals(), _holes(), HEADER)
    dv.write_voidfinder(b, _maximals(), _holes(), HEADER)
    assert _md5(a) == _md5(b)
    assert b"DATE" not in a.read_bytes()[:2880]
    # a different input gives different bytes (the comparison can fail)
    dv.write_voidfinder(b, _maximals(seed=9), _holes(), HEADER)
    assert _md5(a) != _md5(b)


def test_voidfinder_ra_quirk_kept_unless_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "vf.fits"
    maximals = _maximals(n=40)
    dv.write_voidfinder(path, maximals, _holes(), HEADER)
    raw = dv.read_voidfinder(path).maximals.column("RA").to_numpy()
    assert raw.min() < 0  # stored RA of x<0,y<0 / x>0,y<0 spheres is negative
    np.testing.assert_array_equal(raw, maximals.column("RA").to_numpy())
    wrapped = dv.read_voidfinder(path, ra_wrap=True).maximals
    ra = wrapped.column("RA").to_numpy()
    assert ra.min() >= 0 and ra.max() < 360
    np.testing.assert_allclose(ra, np.mod(raw, 360.0))
    assert wrapped.schema.field("RA").metadata[b"unit"] == b"deg"
    np.testing.assert_array_equal(dv.wrap_ra(maximals).column("RA").to_numpy(), np.mod(raw, 360.0))


def test_voidfinder_reads_only_asked_columns(tmp_path: Path) -> None:
    path = tmp_path / "vf.fits"
    dv.write_voidfinder(path, _maximals(), _holes(), HEADER)
    cat = dv.read_voidfinder(path, columns={"maximals": ["ra", "DEC", "Void"], "HOLES": ["VOID"]})
    assert cat.maximals.column_names == ["RA", "DEC", "VOID"]
    assert cat.holes.column_names == ["VOID"]


def test_voidfinder_without_omegam_names_file_and_keyword(tmp_path: Path) -> None:
    path = tmp_path / "nocosmo_VoidFinder.fits"
    header = {k: v for k, v in HEADER.items() if k != "OMEGAM"}
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(None, header=[{"name": k, "value": v} for k, v in header.items()])
        f.write_table(dv.arrow_to_numpy(_maximals()), extname="MAXIMALS")
        f.write_table(dv.arrow_to_numpy(_holes()), extname="HOLES")
    with pytest.raises(FormatError) as err:
        dv.read_voidfinder(path)
    assert "OMEGAM" in str(err.value) and str(path) in str(err.value)
    assert err.value.file == str(path)
    cat = dv.read_voidfinder(path, omega_m=0.3)  # explicit value rescues it
    assert (cat.omega_m, cat.h) == (0.3, 1.0)


def test_voidfinder_missing_column_names_file_hdu_column(tmp_path: Path) -> None:
    path = tmp_path / "broken_VoidFinder.fits"
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(None, header=[{"name": "OMEGAM", "value": 0.3}, {"name": "HP", "value": 1.0}])
        f.write_table(dv.arrow_to_numpy(_maximals()), extname="MAXIMALS")
        f.write_table(dv.arrow_to_numpy(_holes().drop(["RADIUS"])), extname="HOLES")
    with pytest.raises(FormatError) as err:
        dv.read_voidfinder(path)
    assert (err.value.file, err.value.hdu, err.value.column) == (str(path), "HOLES", "RADIUS")


def test_voidfinder_reads_vast_style_lowercase_astropy_file(tmp_path: Path) -> None:
    """A file written the way VAST writes it (astropy, lower-case names, 'Mpc/h' units)."""
    path = tmp_path / "DR7_VoidFinder_Output.fits"
    maximals = _maximals()
    t = Table({n.lower(): maximals.column(n).to_numpy() for n in maximals.column_names})
    for c in ("x", "y", "z", "radius", "r", "r_eff", "r_eff_uncert"):
        t[c].unit = "Mpc/h"
    t["ra"].unit = t["dec"].unit = "deg"
    holes = Table({n.lower(): _holes().column(n).to_numpy() for n in _holes().column_names})
    prim = afits.PrimaryHDU()
    prim.header["OMEGAM"] = (0.26, "Matter Density")
    prim.header["HP"] = (1, "Reduced Hubble Parameter h (((km/s)/Mpc)/100)")
    prim.header["MAGLIM"] = (None, "R-Band Magnitude Limit")
    hm, hh = afits.BinTableHDU(t, name="MAXIMALS"), afits.BinTableHDU(holes, name="HOLES")
    afits.HDUList([prim, hm, hh]).writeto(path)

    cat = dv.read_voidfinder(path)
    assert cat.maximals.column_names == dv.MAXIMALS.names
    assert cat.maximals.schema.field("X").metadata[b"unit"] == b"Mpc h-1"
    np.testing.assert_array_equal(cat.maximals.column("R_EFF").to_numpy(), maximals.column("R_EFF").to_numpy())
    assert cat.omega_m == 0.26 and cat.header["MAGLIM"] is None
    # our writer reproduces the DR1 upper-case layout from it, keeping the undefined MAGLIM
    out = tmp_path / "copy_VoidFinder.fits"
    dv.write_voidfinder(out, cat.maximals, cat.holes, cat.header)
    assert afits.getheader(out)["MAGLIM"] is None
    _assert_golden(out, dv.MAXIMALS, 1)


def test_voidfinder_writer_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="OMEGAM"):
        dv.write_voidfinder(tmp_path / "a.fits", _maximals(), _holes(), {"HP": 1.0})
    with pytest.raises(SchemaError) as err:
        dv.write_voidfinder(tmp_path / "a.fits", _maximals().drop(["EDGE"]), _holes(), HEADER)
    assert (err.value.hdu, err.value.column) == ("MAXIMALS", "EDGE")
    with pytest.raises(SchemaError, match="FOO"):
        dv.write_voidfinder(tmp_path / "a.fits", _maximals().append_column("FOO", pa.array(np.zeros(7))), _holes(),
                            HEADER)  # fmt: skip
    assert not list(tmp_path.iterdir())  # nothing half-written


# ----------------------------------------------------------------------------- V²


@pytest.mark.parametrize("pruning", ["REVOLVER", "VIDE", "ZOBOV"])
def test_v2_round_trip_all_prunings(tmp_path: Path, pruning: str) -> None:
    t = _v2_tables()
    path = tmp_path / f"DESIVAST_BGS_VOLLIM_V2_{pruning}_SGC.fits"
    viz = {} if pruning == "ZOBOV" else {"triangle": t["triangle"], "galviz": t["galviz"]}
    dv.write_v2(path, t["voids"], t["zonevoid"], t["galzone"], V2_HEADER, pruning=pruning, **viz)

    cat = dv.read_v2(path)
    assert cat.pruning == pruning and (cat.omega_m, cat.h) == (0.315, 1.0)
    assert cat.triangle is None and cat.galviz is None  # never read unless asked
    for key in ("voids", "zonevoid", "galzone"):
        _assert_tables_equal(getattr(cat, key), t[key])
    assert cat.header["MAGLIM"] is None and cat.header["NSIDE"] == 64

    expected = ["", "VOIDS", "ZONEVOID", "GALZONE"] + ([] if pruning == "ZOBOV" else ["TRIANGLE", "GALVIZ"])
    with fitsio.FITS(str(path)) as f:
        assert [h.get_extname() for h in f] == expected
        assert f["VOIDS"].read_header()["VOID"] == 4
        assert f["GALZONE"].read_header()["COUNT"] == 30
    for i, spec in enumerate((dv.VOIDS, dv.ZONEVOID, dv.GALZONE), start=1):
        _assert_golden(path, spec, i)
    assert afits.getheader(path, 1)["TFIELDS"] == 19 and afits.getheader(path, 3)["TFIELDS"] == 9


def test_v2_reads_viz_hdus_only_when_asked(tmp_path: Path) -> None:
    t = _v2_tables()
    path = tmp_path / "x_V2_REVOLVER_NGC.fits"
    dv.write_v2(path, t["voids"], t["zonevoid"], t["galzone"], V2_HEADER, pruning="revolver",
                triangle=t["triangle"], galviz=t["galviz"])  # fmt: skip
    cat = dv.read_v2(path, hdus=("triangle", "GALVIZ"))
    assert cat.voids is None and cat.galzone is None
    _assert_tables_equal(cat.triangle, t["triangle"])
    _assert_tables_equal(cat.galviz, t["galviz"])
    _assert_golden(path, dv.TRIANGLE, 4)

    zobov = tmp_path / "x_V2_ZOBOV_NGC.fits"
    dv.write_v2(zobov, t["voids"], t["zonevoid"], t["galzone"], V2_HEADER, pruning="ZOBOV")
    with pytest.raises(FormatError) as err:
        dv.read_v2(zobov, hdus=("VOIDS", "TRIANGLE"))
    assert err.value.hdu == "TRIANGLE" and err.value.file == str(zobov)
    with pytest.raises(FormatError, match="not a V2 HDU"):
        dv.read_v2(zobov, hdus=("HOLES",))


def test_v2_rows_by_targetid_and_columns(tmp_path: Path) -> None:
    t = _v2_tables()
    path = tmp_path / "x_V2_VIDE_NGC.fits"
    dv.write_v2(path, t["voids"], t["zonevoid"], t["galzone"], V2_HEADER, pruning="VIDE")
    tids = t["galzone"].column("TARGET").to_numpy()
    want = [tids[17], tids[3], 12345]  # one absent id; file order is kept
    cat = dv.read_v2(path, hdus=("GALZONE",), columns={"GALZONE": ["target", "zone", "out"]}, targetids=want)
    assert cat.galzone.column_names == ["TARGET", "ZONE", "OUT"]
    np.testing.assert_array_equal(cat.galzone.column("TARGET").to_numpy(), [tids[3], tids[17]])
    zone = t["galzone"].column("ZONE").to_numpy()
    np.testing.assert_array_equal(cat.galzone.column("ZONE").to_numpy(), zone[[3, 17]])


def test_v2_pruning_from_file_name_when_header_silent(tmp_path: Path) -> None:
    """A VAST-written V² file (astropy, lower case, no PRUNING keyword, EDGE instead of areas)."""
    t = _v2_tables()
    path = tmp_path / "DESIVAST_BGS_VOLLIM_V2_VIDE_SGC.fits"
    voids = Table({n.lower(): t["voids"].column(n).to_numpy() for n in t["voids"].column_names
                   if n not in ("TOT_AREA", "EDGE_AREA")})  # fmt: skip
    voids["edge"] = np.array([0, 1, 0, 1])
    prim = afits.PrimaryHDU()
    prim.header["HP"] = 1.0
    prim.header["OMEGAM"] = 0.3
    hdus = [prim, afits.ImageHDU(np.ones((180, 360), dtype=np.int64), name="MASK"),
            afits.BinTableHDU(voids, name="VOIDS")]  # fmt: skip
    for key in ("zonevoid", "galzone"):
        hdus.append(afits.BinTableHDU(Table({n.lower(): t[key].column(n).to_numpy() for n in t[key].column_names}),
                                      name=key.upper()))  # fmt: skip
    afits.HDUList(hdus).writeto(path)

    cat = dv.read_v2(path, hdus=("VOIDS", "ZONEVOID", "GALZONE", "MASK"))
    assert cat.pruning == "VIDE" and cat.omega_m == 0.3
    assert "EDGE" in cat.voids.column_names and "TOT_AREA" not in cat.voids.column_names
    assert cat.mask.shape == (180, 360)
    assert dv.pruning_from_name("DESIVAST_BGS_VOLLIM_V2_REVOLVER_NGC.fits") == "REVOLVER"
    assert dv.pruning_from_name("DR7_V2_ZOBOV_Output.fits") == "ZOBOV"
    assert dv.pruning_from_name("DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits") is None


def test_v2_bytes_deterministic_and_mask(tmp_path: Path) -> None:
    t = _v2_tables()
    mask = np.zeros((180, 360), dtype=bool)
    mask[100:150, 120:260] = True
    paths = [tmp_path / f"{i}_V2_REVOLVER.fits" for i in range(2)]
    for p in paths:
        dv.write_v2(p, t["voids"], t["zonevoid"], t["galzone"], {**V2_HEADER, "COVSTR": 0.74}, pruning="REVOLVER",
                    triangle=t["triangle"], galviz=t["galviz"], mask=mask)  # fmt: skip
    assert _md5(paths[0]) == _md5(paths[1])
    cat = dv.read_v2(paths[0], hdus=("MASK", "VOIDS"))
    np.testing.assert_array_equal(cat.mask, mask.astype(np.int64))
    with fitsio.FITS(str(paths[0])) as f:
        assert [h.get_extname() for h in f][:3] == ["", "MASK", "VOIDS"]


def test_v2_writer_checks(tmp_path: Path) -> None:
    t = _v2_tables()
    with pytest.raises(SchemaError, match="pruning"):
        dv.write_v2(tmp_path / "a.fits", t["voids"], t["zonevoid"], t["galzone"], V2_HEADER, pruning="WATERSHED")
    bad = t["galzone"].set_column(3, "Y", pa.array(["a"] * 30))
    with pytest.raises(SchemaError) as err:
        dv.write_v2(tmp_path / "a.fits", t["voids"], t["zonevoid"], bad, V2_HEADER, pruning="VIDE")
    assert (err.value.hdu, err.value.column) == ("GALZONE", "Y")


# ----------------------------------------------------------------------------- registry


def test_schemas_registered_and_identify() -> None:
    vf, v2, gal = PRODUCTS["desivast-voidfinder"], PRODUCTS["desivast-v2"], PRODUCTS["vast-galaxies"]
    assert "DESI-UR/VAST @ 0339f1a" in vf.source
    assert vf.matches_name("DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits")
    assert not vf.matches_name("DESIVAST_BGS_VOLLIM_V2_REVOLVER_SGC.fits")
    for name in ("DESIVAST_BGS_VOLLIM_V2_REVOLVER_SGC.fits", "DESIVAST_BGS_VOLLIM_V2_VIDE_NGC.fits",
                 "DESIVAST_BGS_VOLLIM_V2_ZOBOV_NGC.fits"):  # fmt: skip
        assert v2.matches_name(name) and not vf.matches_name(name)
    assert gal.matches_name("vollim_dr7_cbp_102709.fits") and gal.matches_name("test_data.fits")
    assert vf.identify(["PRIMARY", "MAXIMALS", "HOLES"], {})
    assert not vf.identify(["PRIMARY", "VOIDS", "ZONEVOID", "GALZONE"], {})
    assert v2.identify(["PRIMARY", "MASK", "VOIDS", "ZONEVOID", "GALZONE"], {})
    assert not v2.identify(["PRIMARY", "MAXIMALS", "HOLES"], {})
    assert [c.name for c in dv.VOIDS.columns if c.name != "EDGE"] == [
        "VOID", "X", "Y", "Z", "REDSHIFT", "RA", "DEC", "RADIUS", "X1", "Y1", "Z1", "X2", "Y2", "Z2",
        "X3", "Y3", "Z3", "TOT_AREA", "EDGE_AREA",
    ]  # fmt: skip
    assert len(dv.MAXIMALS.columns) == 11 and len(dv.GALZONE.columns) == 9


# ----------------------------------------------------------------------------- VAST galaxies (real files)


@pytest.mark.parametrize(
    ("name", "nrows", "zmin"), [("vollim_dr7_cbp_102709.fits", 120606, 1e-4), ("test_data.fits", 10000, 0.0069)]
)
def test_real_vast_galaxy_tables(name: str, nrows: int, zmin: float) -> None:
    path = real_path("vast", name)
    table = dv.read_vast_galaxies(path)
    assert table.column_names == ["ra", "dec", "z", "weight"]  # no rabsmag in these files
    assert table.num_rows == nrows
    z, ra, dec = (table.column(c).to_numpy() for c in ("z", "ra", "dec"))
    assert z.dtype == np.float32
    assert zmin - 1e-4 <= z.min() and z.max() <= 0.107 + 1e-6
    assert ra.min() > 109.9 and ra.max() < 261.0
    assert dec.min() > -3.75 and dec.max() < 69.9
    np.testing.assert_array_equal(table.column("weight").to_numpy(), 1.0)
    with afits.open(path) as hdul:  # array for array equal to astropy
        for col in ("ra", "dec", "z", "weight"):
            np.testing.assert_array_equal(table.column(col).to_numpy(), hdul[1].data[col])
    # the golden schema describes the stored layout
    hdr = afits.getheader(path, 1)
    spec = dv.GALAXY_SCHEMA.hdus[0]
    for i in range(1, hdr["TFIELDS"] + 1):
        assert spec.column(hdr[f"TTYPE{i}"]).tform == hdr[f"TFORM{i}"]


def test_real_vast_galaxies_subsets_and_errors() -> None:
    path = real_path("vast", "test_data.fits")
    sub = dv.read_vast_galaxies(path, columns=["Z", "RA"])
    assert sub.column_names == ["z", "ra"] and sub.num_rows == 10000
    with pytest.raises(FormatError) as err:
        dv.read_vast_galaxies(path, columns=["ra", "rabsmag"])
    assert (err.value.file, err.value.hdu, err.value.column) == (str(path), "HDU1", "rabsmag")


def test_vast_galaxies_ascii_twin_matches_fits(tmp_path: Path) -> None:
    path = real_path("vast", "test_data.fits")
    fits_table = dv.read_vast_galaxies(path)
    t = Table.read(path)[:500]
    t["rabsmag"] = np.linspace(-22, -20, 500)
    t.rename_column("z", "redshift")
    dat = tmp_path / "vollim_twin.dat"
    t.write(dat, format="ascii.commented_header")
    text = dv.read_vast_galaxies(dat)
    assert text.column_names == ["ra", "dec", "z", "rabsmag", "weight"]
    np.testing.assert_allclose(text.column("z").to_numpy(), fits_table.column("z").to_numpy()[:500], rtol=1e-6)
    np.testing.assert_allclose(text.column("ra").to_numpy(), fits_table.column("ra").to_numpy()[:500], rtol=1e-6)


def test_format_doc_is_up_to_date() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "formats" / "desivast.md"
    assert doc.read_text(encoding="utf-8") == dv.format_doc(), (
        'regenerate: python -c "from desilab.io import desivast; '
        "open('docs/formats/desivast.md', 'w').write(desivast.format_doc())\""
    )


def test_writer_refuses_non_integer_ids(tmp_path: Path) -> None:
    holes = _holes().set_column(4, "VOID", pa.array(np.linspace(0, 3, 20)))
    with pytest.raises(SchemaError) as err:
        dv.write_voidfinder(tmp_path / "a.fits", _maximals(), holes, HEADER)
    assert (err.value.hdu, err.value.column) == ("HOLES", "VOID")
    # integral floats are fine and stored as int64
    holes = _holes().set_column(4, "VOID", pa.array(np.arange(20, dtype=np.float64) % 7))
    dv.write_voidfinder(tmp_path / "a.fits", _maximals(), holes, HEADER)
    assert dv.read_voidfinder(tmp_path / "a.fits").holes.schema.field("VOID").type == pa.int64()
