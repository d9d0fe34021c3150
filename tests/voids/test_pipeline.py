"""End to end on a mini sky: `desilab voids classify`, products, bad input, real DR7 positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from desilab.cli import main
from desilab.errors import FormatError, InputError
from desilab.voids.analysis import StatsConfig
from desilab.voids.catalogs import load_void_catalogs
from desilab.voids.classify import classify_galaxies
from desilab.voids.membership import HoleGrid, SurveyMask, holes_brute_force
from desilab.voids.pipeline import read_galaxy_file, run_pipeline
from desilab.voids.vac import datamodel_markdown

REPO = Path(__file__).resolve().parents[2]


def _write_galaxies(path: Path, sky: dict, **extra) -> Path:
    t = pa.table({"TARGETID": sky["tid"], "TARGET_RA": sky["ra"], "TARGET_DEC": sky["dec"], "Z": sky["z"], **extra})
    pq.write_table(t, path)
    return path


def test_cli_classify_equals_brute_force_outside_shell(sky, tmp_path, settings):
    gal = _write_galaxies(tmp_path / "gal.parquet", sky)
    out = tmp_path / "env.parquet"
    rc = main(["voids", "classify", "--galaxies", str(gal), "--voids", str(sky["vf"]), "--voids", str(sky["v2"]),
               "--out", str(out)])
    assert rc == 0 and out.exists()
    t = pq.read_table(out)
    assert t.num_rows == len(sky["tid"])
    hole, shell = holes_brute_force(sky["xyz"], sky["hole_xyz"], sky["hole_r"])
    got_void = t.column("VF_VOID").to_numpy() >= 0
    got_shell = t.column("VF_SHELL").to_numpy()
    assert np.array_equal(got_shell, shell)
    assert np.array_equal(got_void[~shell], (hole >= 0)[~shell])
    flag = t.column("ENV_VOIDFINDER").to_numpy()
    assert np.array_equal(flag == 1, hole >= 0)
    # V2: tracers take their own zone (join), others the nearest tracer's
    v2 = t.column("ENV_V2_VIDE").to_numpy()
    tr = sky["tracer"]
    in_void_tr = sky["void0"][sky["zone"]] >= 0
    ok = np.isin(v2[tr], (0, 1))
    assert np.array_equal((v2[tr] == 1)[ok], in_void_tr[ok])
    assert t.column("V2_VIDE_JOINED").to_numpy()[tr].all()
    meta = pq.read_schema(out).metadata[b"desilab"]
    assert b'"OMEGAM": 0.315' in meta and b'"BNDTOL": 0.01' in meta


def test_vac_identical_for_1_and_2_workers(sky, tmp_path):
    """Heavy steps sharded through desilab.compute: the VAC bytes do not depend on the workers."""
    from desilab.compute import LocalExecutor
    from desilab.voids.vac import write_vac

    vs = load_void_catalogs([sky["vf"], sky["v2"]])
    files = []
    for w in (1, 2):
        with LocalExecutor(w) as ex:  # 1: in this process; 2: forkserver workers (shard_size forces 4 shards)
            t, summ = classify_galaxies(sky["tid"], sky["ra"], sky["dec"], sky["z"], vs, executor=ex, shard_size=1700)
        files.append(write_vac(t, tmp_path / f"w{w}", {})["fits"])
    assert files[0].read_bytes() == files[1].read_bytes()
    assert summ["voidfinder"]["flags"] and sum(summ["voidfinder"]["flags"].values()) == len(sky["tid"])


def test_galaxies_outside_z_range_are_flagged_or_rejected(sky, tmp_path):
    vs = load_void_catalogs([sky["vf"], sky["v2"]])
    z = sky["z"].copy()
    z[:100] = 0.3  # beyond ZLIMU = 0.12
    z[100:105] = -0.001
    t, summ = classify_galaxies(sky["tid"], sky["ra"], sky["dec"], z, vs)
    out_z = t.column("OUT_OF_Z").to_numpy()
    assert out_z[:105].all() and not out_z[105:].any()
    assert np.all(t.column("ENV_VOIDFINDER").to_numpy()[:105] == 9)
    assert summ["out_of_z"] == 105 and summ["bad_z"] == 5
    assert t.column("EXTRAPOLATED").to_numpy()[:105].all()
    with pytest.raises(InputError, match="redshift range"):
        classify_galaxies(sky["tid"], sky["ra"], sky["dec"], np.full(len(z), 0.5), vs)


def test_bad_galaxy_file_names_the_column(sky, tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"TARGETID": sky["tid"], "RA": sky["ra"], "DEC": sky["dec"]}), bad)
    with pytest.raises(FormatError) as ei:
        read_galaxy_file(bad)
    assert ei.value.column == "Z"
    args = ["voids", "classify", "--galaxies", str(bad), "--voids", str(sky["vf"]), "--out", str(tmp_path / "o.fits")]
    rc = main(args)
    assert rc != 0


def test_pipeline_products(sky, tmp_path):
    rng = np.random.default_rng(0)
    n = len(sky["tid"])
    logm = rng.uniform(9.5, 11.5, n)
    vs = load_void_catalogs([sky["vf"], sky["v2"]])
    gal = {
        "TARGETID": sky["tid"], "TARGET_RA": sky["ra"], "TARGET_DEC": sky["dec"], "Z": sky["z"],
        "SURVEY": np.array(["main"] * n), "PROGRAM": np.array(["bright"] * n), "BGS_TARGET": np.full(n, 2),
        "SPECTYPE": np.array(["GALAXY"] * n), "ZWARN": np.zeros(n, int), "DELTACHI2": np.full(n, 100.0),
        "ABSMAG01_SDSS_R": rng.uniform(-23, -20.5, n), "LOGMSTAR": logm,
        "SFR": 10 ** (logm - 10 + rng.normal(-0.5, 1.0, n)),
    }
    s = run_pipeline(gal, vs, tmp_path / "out", seed=1, n_randoms=20_000,
                     stats=StatsConfig(n_regions=16, mass_edges=(9.5, 10.5, 11.5)))
    out = tmp_path / "out"
    for name in ("desilab-void-galaxies.fits", "desilab-void-galaxies.parquet", "voids-summary.json",
                 "voids-quenching.csv", "voids-quenched-fraction.png", "voids-quenched-fraction.pdf",
                 "voids-mass-function.png", "voids-main-sequence.pdf", "voids-slice-map.png"):
        assert (out / name).stat().st_size > 0, name
    import fitsio

    with fitsio.FITS(str(out / "desilab-void-galaxies.fits")) as f:
        assert f["VOIDGAL"].get_nrows() == n
        assert f[0].read_header()["HP"] == 1.0
    import json

    def _no_nan(x):
        raise AssertionError(f"non-strict JSON constant {x}")

    json.loads((out / "voids-summary.json").read_text(), parse_constant=_no_nan)
    st = s["statistics"]["ENV_VOIDFINDER"]
    assert st["jackknife"]["regions"] == 16 and st["h"] == 1.0
    assert st["counts"]["sanity_cuts_all_rows"]["input"] == n
    assert 0 < s["volume_fractions"]["void"] < 1


def test_real_dr7_positions_exact_against_brute_force(real):
    """VAST's DR7 volume-limited sample (Om = 0.26 as VAST's DR7 example) against synthetic holes."""
    import fitsio

    from desilab.sky.cosmology import Cosmology
    from desilab.voids.coords import sky_to_xyz

    path = real("vast", "vollim_dr7_cbp_102709.fits")
    d = fitsio.read(str(path), columns=["ra", "dec", "z"])
    xyz = sky_to_xyz(d["ra"], d["dec"], d["z"], Cosmology(0.26, 1.0))
    rng = np.random.default_rng(0)
    k = rng.choice(len(xyz), 3000, replace=False)
    c = xyz[k] + rng.normal(0, 3, (3000, 3))
    r = rng.uniform(5, 15, 3000)
    # like VoidFinder: a real galaxy lies exactly on each of the first 200 hole surfaces
    on = rng.choice(len(xyz), 200, replace=False)
    r[:200] = np.linalg.norm(xyz[on] - c[:200], axis=1)
    pts = xyz.copy()
    hole, shell = HoleGrid.build(c, r).query(pts)
    assert np.all(shell[on] | (hole[on] >= 0))
    assert np.all(hole[on] != np.arange(200))  # never inside the hole it bounds
    sub = np.concatenate([on, rng.choice(len(pts), 20000, replace=False)])
    ref_hole, ref_shell = holes_brute_force(pts[sub], c, r)
    assert np.array_equal(hole[sub], ref_hole) and np.array_equal(shell[sub], ref_shell)
    survey = SurveyMask.from_points(xyz, 64, 0.0, float(np.linalg.norm(xyz, axis=1).max()) + 1)
    assert survey.contains(xyz).all()


def test_datamodel_page_is_current():
    page = REPO / "docs" / "voids-vac.md"
    assert page.read_text() == datamodel_markdown()
