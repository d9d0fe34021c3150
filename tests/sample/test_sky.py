"""The tiny sample sky, read back through desilab.io: formats, void consistency, calibration.

One tiny sky is built per session through the CLI (``tests/sample/_sky.py``). Tolerances
are stated where they are checked; calibration targets are Pan et al. (2012) and DESIVAST.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from desilab.compute import LocalExecutor, SerialExecutor
from desilab.io.desivast import read_v2, read_voidfinder
from desilab.io.fastspecfit import read_fastspec
from desilab.io.validate import validate
from desilab.io.zcatalog import read_zcatalog
from desilab.sample import build_sample_sky
from desilab.sample.config import config_for_scale
from desilab.sample.footprint import build_footprint
from desilab.sample.galaxies import smf, tracer_selection
from desilab.sample.truth import BOUNDARY_TOL
from desilab.sample.voids import Survey, wall_field_split
from desilab.sky import Cosmology, radec_to_xyz
from tests.sample._sky import SEED, micro_config, tiny_sky

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sample-sky.md"


@pytest.fixture(scope="module")
def sky() -> Path:
    return tiny_sky()


@pytest.fixture(scope="module")
def summary(sky: Path) -> dict:
    return json.loads((sky / "truth" / "summary.json").read_text())


@pytest.fixture(scope="module")
def truth(sky: Path):
    return pq.read_table(sky / "truth" / "galaxies.parquet")


@pytest.fixture(scope="module")
def tracers(sky: Path) -> dict:
    """The DESIVAST recipe applied to the catalogue values read back from the files."""
    zcat = read_zcatalog(
        sky / "spectro/redux/iron/zcatalog/v1/zpix-main-bright.fits",
        ["TARGETID", "TARGET_RA", "TARGET_DEC", "Z", "ZWARN", "DELTACHI2", "SPECTYPE", "BGS_TARGET"],
    )
    fs = [
        read_fastspec(p, ["TARGETID", "ABSMAG01_SDSS_R"])
        for p in sorted((sky / "vac/dr1/fastspecfit/iron/v3.0/catalogs").glob("fastspec-*.fits"))
    ]
    tid_fs = np.concatenate([t.column("TARGETID").to_numpy() for t in fs])
    absmag = np.concatenate([t.column("ABSMAG01_SDSS_R").to_numpy() for t in fs])
    tid = zcat.column("TARGETID").to_numpy()
    order = np.argsort(tid_fs)
    m = absmag[order][np.searchsorted(tid_fs[order], tid)]
    cfg = config_for_scale("tiny")
    fp = build_footprint(cfg, __import__("desilab.compute", fromlist=["shard_rng"]).shard_rng(SEED, "footprint"))
    ra, dec, z = (zcat.column(c).to_numpy() for c in ("TARGET_RA", "TARGET_DEC", "Z"))
    sel = tracer_selection(
        z,
        m,
        zcat.column("BGS_TARGET").to_numpy(),
        np.array(zcat.column("SPECTYPE").to_pylist()),
        zcat.column("ZWARN").to_numpy(),
        zcat.column("DELTACHI2").to_numpy(),
        fp.in_mask(ra, dec),
        cfg,
    )
    return {"tid": tid[sel], "ra": ra[sel], "dec": dec[sel], "z": z[sel], "fp": fp, "cfg": cfg}


def _cap_of(ra: np.ndarray) -> np.ndarray:
    return np.where((ra > 83) & (ra < 304), "NGC", "SGC")


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def test_every_file_passes_validation(sky: Path):
    fits = sorted(sky.rglob("*.fits"))
    names = {p.name for p in fits}
    for want in (
        "zpix-main-bright.fits",
        "zpix-main-dark.fits",
        "zpix-sv3-bright.fits",
        "zall-pix-iron.fits",
        "DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits",
        "DESIVAST_BGS_VOLLIM_VoidFinder_SGC.fits",
        "DESIVAST_BGS_VOLLIM_V2_REVOLVER_NGC.fits",
        "DESIVAST_BGS_VOLLIM_V2_VIDE_SGC.fits",
    ):
        assert want in names
    assert any(n.startswith("fastspec-iron-main-bright-nside1-hp") for n in names)
    assert not list(sky.rglob("coadd-*.fits")), "--no-spectra wrote spectra"
    errors = [str(p) for f in fits for p in validate(f) if p.severity == "error"]
    assert errors == []


def test_truth_tables_are_documented(sky: Path):
    text = DOCS.read_text()
    for name in ("galaxies", "voidfinder_holes", "v2_zones", "v2_void_zones"):
        table = pq.read_table(sky / "truth" / f"{name}.parquet")
        missing = [c for c in table.column_names if f"`{c}`" not in text]
        assert not missing, f"{name}.parquet columns not in docs/sample-sky.md: {missing}"


def test_voidfinder_header_cosmology_and_units(sky: Path):
    vf = read_voidfinder(sky / "vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_VoidFinder_NGC.fits")
    assert vf.omega_m == 0.315 and vf.h == 1.0
    assert vf.header["MAGLIM"] == -20.0 and vf.header["ZLIMU"] == 0.24
    cosmo = Cosmology(vf.omega_m, vf.h)
    x, y, z = (vf.maximals.column(c).to_numpy() for c in ("X", "Y", "Z"))
    r = vf.maximals.column("R").to_numpy()
    assert np.allclose(np.sqrt(x * x + y * y + z * z), r)
    assert r.max() < cosmo.comoving_distance_mpch(0.24)
    ra = vf.maximals.column("RA").to_numpy()
    assert ra.min() > -90 and ra.max() < 270  # VAST's atan(y/x) quirk, as the real files


# ---------------------------------------------------------------------------------------
# Void catalogues consistent with the galaxies
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", ["NGC", "SGC"])
def test_voidfinder_holes_are_empty_and_bounded(sky: Path, tracers: dict, cap: str):
    """No wall tracer strictly inside any hole (1e-6 Mpc/h); >= 4 tracers on each surface."""
    vf = read_voidfinder(sky / f"vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_VoidFinder_{cap}.fits")
    cosmo = Cosmology(vf.omega_m, vf.h)
    m = _cap_of(tracers["ra"]) == cap
    xyz = radec_to_xyz(tracers["ra"][m], tracers["dec"][m], cosmo.comoving_distance_mpch(tracers["z"][m]))
    is_field, _, _ = wall_field_split(xyz)
    c = np.column_stack([vf.holes.column(k).to_numpy() for k in "XYZ"])
    r = vf.holes.column("RADIUS").to_numpy()
    assert len(r) == vf.header.get("HOLE", len(r)) or len(r) > 0
    from scipy.spatial import cKDTree

    tree = cKDTree(xyz)
    on_surface = np.array(tree.query_ball_point(c, r + 1e-6, return_length=True)) - np.array(
        tree.query_ball_point(c, np.maximum(r - 1e-6, 0), return_length=True)
    )
    assert on_surface.min() >= 4
    inside_wall = tree.query_ball_point(c, np.maximum(r - BOUNDARY_TOL, 0))
    bad = [j for lst in inside_wall for j in lst if not is_field[j]]
    assert bad == []
    # the galaxies strictly inside holes are the void galaxies: all field galaxies
    inside = np.unique(np.concatenate([np.asarray(lst, dtype=int) for lst in inside_wall]))
    assert is_field[inside].all()
    # every hole belongs to a void, maximals first
    void = vf.holes.column("VOID").to_numpy()
    assert set(void) == set(vf.maximals.column("VOID").to_numpy())
    assert vf.maximals.column("RADIUS").to_numpy().min() > 10.0


@pytest.mark.parametrize("prune", ["REVOLVER", "VIDE"])
@pytest.mark.parametrize("cap", ["NGC", "SGC"])
def test_v2_zone_volumes_sum_to_void_volumes(sky: Path, cap: str, prune: str):
    """Within 1%: (4/3) pi RADIUS^3 = sum of the void's zone volumes; ZONEVOID consistent."""
    cat = read_v2(sky / f"vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_V2_{prune}_{cap}.fits")
    zones = pq.read_table(sky / "truth" / "v2_zones.parquet").to_pandas()
    zones = zones[cap == zones.CAP].set_index("ZONE")
    mem = pq.read_table(sky / "truth" / "v2_void_zones.parquet").to_pandas()
    mem = mem[(cap == mem.CAP) & (prune == mem.PRUNING)]
    zv = cat.zonevoid.to_pandas().set_index("ZONE")
    voids = cat.voids.to_pandas()
    assert len(voids) > 3
    assert set(mem.VOID) == set(voids.VOID)
    for v, radius in zip(voids.VOID, voids.RADIUS, strict=True):
        members = mem.ZONE[v == mem.VOID].to_numpy()
        vol = zones.loc[members, "ZONE_VOLUME"].sum()
        assert 4 / 3 * np.pi * radius**3 == pytest.approx(vol, rel=0.01)
        # the void is between the smallest (VOID0) and the largest (VOID1) void of each zone
        assert (zv.loc[members, "VOID0"] >= 0).all()
    # zone volumes are sums of the galaxies' Voronoi cells
    g = pq.read_table(sky / "truth" / "galaxies.parquet", columns=["CAP", "CELL_VOLUME"]).to_pandas()
    cells = g.CELL_VOLUME[(cap == g.CAP) & (g.CELL_VOLUME > 0)].sum()
    assert zones.ZONE_VOLUME.sum() == pytest.approx(cells, rel=1e-9)
    if prune == "REVOLVER":
        assert (zv.VOID0 == zv.VOID1).all()
        assert (mem.groupby("VOID").size() == 1).all()


def test_galzone_holds_the_tracers(sky: Path, tracers: dict):
    for cap in ("NGC", "SGC"):
        cat = read_v2(sky / f"vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_V2_VIDE_{cap}.fits", ["GALZONE"])
        gz = cat.galzone
        target = gz.column("TARGET").to_numpy()
        out = gz.column("OUT").to_numpy()
        mine = tracers["tid"][_cap_of(tracers["ra"]) == cap]
        assert np.isin(mine, target[out == 0]).mean() > 0.99
        assert out.max() == 1  # galaxies outside the completeness mask are listed, flagged
        assert (gz.column("ZONE").to_numpy()[out == 1] == -1).all()


# ---------------------------------------------------------------------------------------
# Calibration (tolerances of the issue)
# ---------------------------------------------------------------------------------------


def test_void_volume_and_galaxy_fractions(summary: dict, truth):
    """Interior of the survey (VAST's 10 Mpc/h six-point edge probe): 0.55-0.65 and 5-9%."""
    s = summary["statistics"]
    assert 0.55 <= s["void_volume_fraction_interior"] <= 0.65
    assert 0.05 <= s["void_galaxy_fraction_interior"] <= 0.09
    # density contrast inside voids
    assert -0.92 <= s["void_density_contrast"] <= -0.78
    # recompute the galaxy fraction from the truth table (ENV_VOIDFINDER == 1)
    env = truth.column("ENV_VOIDFINDER").to_numpy()
    tr = truth.column("IS_TRACER").to_numpy()
    frac_all = (env[tr] == 1).mean()
    assert frac_all == pytest.approx(s["void_galaxy_fraction"], abs=1e-12)


def test_tracer_density_is_desivast_like(summary: dict):
    """DESIVAST NGC: 364,058 tracers in 2,446 deg^2 (~4.7e-3 (Mpc/h)^-3); here within 20%."""
    c = summary["counts"]
    density = c["n_tracers"] / c["survey_volume"]
    assert density == pytest.approx(364_058 / (2446 / 41252.96 * 4 / 3 * np.pi * 677.4**3), rel=0.2)


def test_mass_function_shape(truth):
    """Massive population at z < 0.1 (complete): shape of the input SMF mixture within 15%."""
    cfg = config_for_scale("tiny")
    t = truth.to_pandas()
    sel = t.MASSIVE_POP & (t.Z_TRUE < 0.1)
    logm, w = t.LOGMSTAR_TRUE[sel].to_numpy(), t.SAMPLING_WEIGHT[sel].to_numpy()
    bins = np.array([9.8, 10.1, 10.4, 10.7, 11.0, 11.4])
    counts, _ = np.histogram(logm, bins, weights=w)
    grid = np.linspace(cfg.mass_split, 13.0, 4001)
    mix = np.zeros_like(grid)
    for f, shift in ((cfg.frac_void, cfg.smf_shift_void), (cfg.frac_wall, 0), (cfg.frac_filament, 0),
                     (cfg.frac_node, cfg.smf_shift_node)):  # fmt: skip
        phi = smf(grid, cfg, shift)
        mix += f * phi / np.trapezoid(phi, grid)
    expected = np.array([np.trapezoid(mix[(grid >= a) & (grid < b)], grid[(grid >= a) & (grid < b)])
                         for a, b in itertools.pairwise(bins)])  # fmt: skip
    frac = counts / counts.sum()
    expected /= expected.sum()
    assert np.allclose(frac[:4], expected[:4], rtol=0.15)
    assert frac[-1] < frac[0] / 5  # exponential cut-off above M*


def test_quenched_fraction_vs_mass_matches_injection(truth, summary: dict):
    """f_Q(void) / f_Q(other) = 1 - env_quenching in every mass bin, within 3 sigma."""
    amp = summary["env_quenching"]
    assert amp == pytest.approx(0.25)
    t = truth.to_pandas()
    logm, q, void = t.LOGMSTAR_TRUE.to_numpy(), t.QUENCHED_TRUE.to_numpy(), (t.ENV_TRUE == 0).to_numpy()
    # the injected probability is exactly the documented function
    from scipy.special import expit

    cfg = config_for_scale("tiny")
    fq = expit((logm - cfg.quench_centre) / cfg.quench_width)
    assert np.allclose(t.P_QUENCHED, np.where(void, (1 - amp) * fq, fq))
    # complete (flux-limit-free) sample: z < 0.1; weights undo the documented sub-sampling
    w = t.SAMPLING_WEIGHT.to_numpy()
    near = (t.Z_TRUE < 0.1).to_numpy()
    for lo, hi in ((9.8, 10.1), (10.1, 10.4), (10.4, 10.8)):
        b = (logm >= lo) & (logm < hi) & near
        fv = np.average(q[b & void], weights=w[b & void])
        fo = np.average(q[b & ~void], weights=w[b & ~void])
        n_eff = w[b & void].sum() ** 2 / (w[b & void] ** 2).sum()
        expect = (1 - amp) * fo
        sigma = np.sqrt(expect * (1 - expect) / n_eff)
        assert abs(fv - expect) < 3 * sigma + 0.01, (lo, fv, expect, sigma)
    # quenched fraction rises with mass
    assert q[logm > 10.8].mean() > q[(logm > 9.8) & (logm < 10.0)].mean() + 0.3


def test_fastspecfit_failure_modes_and_redshift_quality(sky: Path, truth):
    fs = [read_fastspec(p, ["LOGMSTAR", "LOGMSTAR_IVAR", "SFR", "ZWARN", "DELTACHI2", "BGS_TARGET"])
          for p in sorted((sky / "vac/dr1/fastspecfit/iron/v3.0/catalogs").glob("fastspec-*.fits"))]  # fmt: skip
    logm = np.concatenate([t.column("LOGMSTAR").to_numpy() for t in fs])
    ivar = np.concatenate([t.column("LOGMSTAR_IVAR").to_numpy() for t in fs])
    sfr = np.concatenate([t.column("SFR").to_numpy() for t in fs])
    junk = (logm < 6) | (logm > 13)
    assert 0.001 < junk.mean() < 0.01  # real v3.0: LOGMSTAR spans -12.1 ... 15.6
    assert (ivar[junk] == 0).all()
    assert logm.min() < 0 and logm.max() > 13
    assert 0.05 < (sfr == 0).mean() < 0.5  # SFR floored at 0 for quiescent galaxies
    zwarn = np.concatenate([t.column("ZWARN").to_numpy() for t in fs])
    dchi2 = np.concatenate([t.column("DELTACHI2").to_numpy() for t in fs])
    bright = (np.concatenate([t.column("BGS_TARGET").to_numpy() for t in fs]) & 2) > 0
    good = (zwarn == 0) & (dchi2 > 40)
    assert 0.97 < good[bright].mean() < 0.999  # BGS Bright success ~98-99% (Hahn et al. 2023)
    assert good[~bright].mean() < good[bright].mean()


def test_fibre_incompleteness_is_higher_in_dense_regions(truth):
    t = truth.to_pandas()
    assert 0.75 < t.OBSERVED.mean() < 0.95
    dense = t.ENV_TRUE == 3
    sparse = t.ENV_TRUE == 0
    assert t.P_OBS[dense].mean() < t.P_OBS[sparse].mean() - 0.02


# ---------------------------------------------------------------------------------------
# Determinism and the null sky
# ---------------------------------------------------------------------------------------


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def null_sky(tmp_path_factory) -> Path:
    """A micro sky with no injected environmental quenching (seed 11, serial)."""
    out = tmp_path_factory.mktemp("null") / "sky"
    build_sample_sky(micro_config(env_quenching=0.0), out, seed=11, executor=SerialExecutor(), quasars=False)
    return out


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path: Path, null_sky: Path):
    """Same seed and options: same bytes, serial or on two processes."""
    with LocalExecutor(2) as ex:
        b = build_sample_sky(micro_config(env_quenching=0.0), tmp_path / "b", seed=11, executor=ex, quasars=False)
    ha, hb = _hashes(null_sky), _hashes(b.out_dir)
    assert len(ha) >= 12
    assert ha == hb
    # another seed gives another sky (the shared tiny sky has seed 20240613)
    tiny = _hashes(tiny_sky())
    assert tiny["truth/galaxies.parquet"] != ha["truth/galaxies.parquet"]


def test_null_sky_has_no_environmental_quenching(null_sky: Path):
    cfg = micro_config(env_quenching=0.0)
    t = pq.read_table(null_sky / "truth" / "galaxies.parquet").to_pandas()
    from scipy.special import expit

    fq = expit((t.LOGMSTAR_TRUE - cfg.quench_centre) / cfg.quench_width)
    assert np.allclose(t.P_QUENCHED, fq)
    assert json.loads((null_sky / "truth" / "summary.json").read_text())["env_quenching"] == 0.0


def test_cli_help_teaches(capsys):
    from desilab.cli import main

    assert main(["sample", "--help"]) == 0
    text = capsys.readouterr().out
    for word in ("--scale", "--seed", "--no-spectra", "--templates", "truth/", "byte-identical"):
        assert word in text
    assert main(["sample", "--scale", "huge"]) != 0


def test_survey_helper_matches_mask():
    cfg = micro_config()
    fp = build_footprint(cfg, __import__("desilab.compute", fromlist=["shard_rng"]).shard_rng(1, "footprint"))
    s = Survey(fp.mask_map, fp.nside, 0.0, 600.0)
    ra = np.array([183.5, 10.0])
    dec = np.array([30.0, -40.0])
    xyz = radec_to_xyz(ra, dec, np.array([300.0, 300.0]))
    assert list(s.contains(xyz)) == list(fp.in_mask(ra, dec))
