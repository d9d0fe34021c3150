"""Validation at `small` scale (run by `desilab validate --scale small`; not in CI).

Writes docs/validation/voids.json with:

* exactness: VoidFinder membership equals a float64 brute-force reference outside the
  boundary-tolerance shell (all shell galaxies plus a random subset are checked); the
  number of shell galaxies; the whole classification sharded over a 2-process
  ``desilab.compute`` pool equals the in-process one, column for column;
* agreement of our flags with the mock's truth classification, and between finders;
* injection recovery: the void − wall quenched-fraction difference measured with our
  labels and FastSpecFit values vs the same statistic with the truth labels
  (truth ENV_VOIDFINDER) and true masses and SFRs; must agree within 2σ;
* null: 200 random rotations of the VoidFinder catalogue about the polar axis, wrapped
  within each footprint patch (RA shifted by 5° … width − 5°), over the one galaxy set:
  the false-positive rate of the combined test at α = 0.05 must be 0.05 within 2
  binomial standard errors.

The small sample sky is built once (seed 1) unless ``DESILAB_VOIDS_SKY`` points at one
already built with the same scale and seed.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from desilab.io.fastspecfit import read_fastspec
from desilab.voids.analysis import StatsConfig, run_statistics
from desilab.voids.catalogs import load_void_catalogs
from desilab.voids.classify import classify_galaxies
from desilab.voids.coords import sky_to_xyz
from desilab.voids.membership import classify_voidfinder, holes_brute_force
from desilab.voids.sample import select_tracers

N_NULL = 200
COLS = ["TARGETID", "SURVEY", "PROGRAM", "RA", "DEC", "Z", "ZWARN", "DELTACHI2", "SPECTYPE", "BGS_TARGET",
        "LOGMSTAR", "LOGMSTAR_IVAR", "SFR", "SFR_IVAR", "DN4000", "ABSMAG01_SDSS_R"]


@pytest.fixture(scope="module")
def small_sky(tmp_path_factory) -> Path:
    given = os.environ.get("DESILAB_VOIDS_SKY")
    if given:
        return Path(given)
    from desilab.sample.build import build_sample_sky
    from desilab.sample.config import config_for_scale

    out = tmp_path_factory.mktemp("voids-small") / "sky"
    build_sample_sky(config_for_scale("small"), out, seed=1, spectra=False, quasars=False)
    return out


@pytest.mark.validation
def test_voids_validation(small_sky, validation_report):
    t0 = time.perf_counter()
    files = sorted(glob.glob(str(small_sky / "vac/dr1/fastspecfit/iron/v3.0/catalogs/*.fits")))
    fs = pa.concat_tables([read_fastspec(f, COLS) for f in files])
    g = {k: fs[k].to_numpy(zero_copy_only=False) for k in fs.column_names}
    vs = load_void_catalogs(sorted(glob.glob(str(small_sky / "vac/dr1/desivast/v1.0/*.fits"))))
    sel = select_tracers(targetid=g["TARGETID"], z=g["Z"], absmag01_r=g["ABSMAG01_SDSS_R"],
                         bgs_target=g["BGS_TARGET"], spectype=g["SPECTYPE"], zwarn=g["ZWARN"],
                         deltachi2=g["DELTACHI2"], survey=g["SURVEY"], program=g["PROGRAM"])
    tab, summ = classify_galaxies(g["TARGETID"], g["RA"], g["DEC"], g["Z"], vs, is_tracer=sel.tracer, workers=2)
    env = {k: tab.column(k).to_numpy(zero_copy_only=False) for k in tab.column_names}
    n = len(env["Z"])
    report: dict = {"n_galaxies": n, "tracers": summ["tracers"], "holes": summ["voidfinder"]["holes"],
                    "voids": summ["voidfinder"]["voids"], "boundary_tol_mpch": summ["voidfinder"]["boundary_tol"]}

    # 1. exactness against brute force outside the shell
    xyz = np.stack([env["X"], env["Y"], env["ZC"]], axis=1)
    shell = env["VF_SHELL"]
    rng = np.random.default_rng(0)
    check = np.unique(np.concatenate([np.flatnonzero(shell), rng.choice(n, min(n, 40_000), replace=False)]))
    ref_hole, ref_shell = holes_brute_force(xyz[check], vs.voidfinder.hole_xyz, vs.voidfinder.hole_radius)
    ours_void = env["VF_VOID"][check] >= 0
    mism = int(np.sum((ours_void != (ref_hole >= 0)) & ~ref_shell))
    report["exactness"] = {
        "checked": len(check), "mismatches_outside_shell": mism,
        "shell_galaxies_total": int(shell.sum()), "shell_flags_equal": bool(np.array_equal(ref_shell, shell[check])),
    }
    assert mism == 0 and report["exactness"]["shell_flags_equal"]

    # 1b. sharded through a 2-process desilab.compute pool: the same table, column for column
    from desilab.compute import LocalExecutor

    with LocalExecutor(2) as ex:
        tab2, _ = classify_galaxies(g["TARGETID"], g["RA"], g["DEC"], g["Z"], vs, is_tracer=sel.tracer, workers=2,
                                    executor=ex, shard_size=max(1, n // 5))
    same = [c for c in tab.column_names if tab.column(c).equals(tab2.column(c))]
    report["sharding"] = {"workers": 2, "shards": 2 * -(-n // (2 * max(1, n // 5))),
                          "identical_columns": len(same), "columns": tab.num_columns}
    assert len(same) == tab.num_columns

    # 2. agreement with the truth table and between finders
    truth = pq.read_table(small_sky / "truth" / "galaxies.parquet").to_pandas().drop_duplicates("TARGETID")
    truth = truth.set_index("TARGETID").loc[env["TARGETID"]]
    agree = {}
    for col in ("ENV_VOIDFINDER", "ENV_V2_REVOLVER", "ENV_V2_VIDE"):
        if col in env:
            a, b = env[col], truth[col].to_numpy()
            agree[col] = {"same_flag": float(np.mean(a == b)), "same_void_label": float(np.mean((a == 1) == (b == 1)))}
    report["agreement_with_truth"] = agree
    report["agreement_between_finders"] = summ["agreement"]
    report["tracer_recipe_vs_truth"] = float(np.mean(env["IS_TRACER"] == truth["IS_TRACER"].to_numpy()))

    # 3. injection recovery
    cfg = StatsConfig(finder="ENV_VOIDFINDER")
    meas, _ = run_statistics(env, g, cfg)
    env_t = dict(env)
    env_t["ENV_VOIDFINDER"] = truth["ENV_VOIDFINDER"].to_numpy().astype(np.int16)
    g_t = dict(g)
    g_t["LOGMSTAR"] = truth["LOGMSTAR_TRUE"].to_numpy()
    g_t["SFR"] = truth["SFR_TRUE"].to_numpy()
    g_t["ABSMAG01_SDSS_R"] = truth["ABSMAG01_SDSS_R_TRUE"].to_numpy()
    g_t.pop("LOGMSTAR_IVAR", None)
    g_t.pop("SFR_IVAR", None)
    true_, _ = run_statistics(env_t, g_t, cfg)
    env_w = dict(env)
    env_w["ENV_WEB"] = np.where(truth["ENV_TRUE"].to_numpy() == 0, 1, 0).astype(np.int16)
    web, _ = run_statistics(env_w, g_t, StatsConfig(finder="ENV_WEB"))
    qm, qt, qw = meas["quenching"], true_["quenching"], web["quenching"]
    dev = (qm["combined_diff"] - qt["combined_diff"]) / qm["combined_diff_err"]
    report["injection"] = {
        "env_quenching_injected": float(pq.read_schema(small_sky / "truth" / "galaxies.parquet").metadata[b"desilab"]
                                        .decode().split('"env_quenching": ')[1].split(",")[0].split("}")[0]),
        "measured": {k: qm[k] for k in ("combined_diff", "combined_diff_err", "combined_z", "ratio", "ratio_ci95")},
        "true_labels_true_sfr": {k: qt[k] for k in ("combined_diff", "combined_diff_err", "combined_z", "ratio")},
        "web_void_true_sfr": {k: qw[k] for k in ("combined_diff", "combined_diff_err", "combined_z", "ratio")},
        "deviation_sigma": float(dev),
        "counts_measured": meas["counts"],
        "completeness_logm_limit": meas["completeness"]["logm_limit"],
        "jackknife": meas["jackknife"],
    }
    assert abs(dev) < 2.0

    # 4. null: RA rotations of the void catalogue within each patch
    from desilab.sample.config import config_for_scale

    patches = config_for_scale("small").patches
    ra = env["RA"]
    # wrap interval of each patch: the RA span of its galaxies (tiles overhang the rectangle)
    spans = []
    for p in patches:
        near = (ra > p.ra_min - 4) & (ra < p.ra_max + 4)
        spans.append((float(ra[near].min()), float(ra[near].max())))
    pvals = []
    zs = []
    for i in range(N_NULL):
        r = np.random.default_rng(1000 + i)
        ra2 = ra.copy()
        for lo, hi in spans:
            inside = (ra >= lo) & (ra <= hi)
            w = hi - lo + 1e-9
            shift = r.uniform(5.0, w - 5.0)
            ra2[inside] = lo + (ra[inside] - lo + shift) % w
        x2 = sky_to_xyz(ra2, env["DEC"], np.where(np.isfinite(env["Z"]) & (env["Z"] >= 0), env["Z"], 0.0),
                        vs.cosmology)
        flag = classify_voidfinder(x2, vs.voidfinder.grid, vs.survey).flag
        e2 = dict(env)
        e2["ENV_VOIDFINDER"] = flag
        s2, _ = run_statistics(e2, g, cfg)
        pvals.append(s2["quenching"]["combined_p"])
        zs.append(s2["quenching"]["combined_z"])
    pvals = np.asarray(pvals, dtype=float)
    fpr = float(np.mean(pvals < 0.05))
    se = float(np.sqrt(0.05 * 0.95 / N_NULL))
    report["null"] = {
        "method": "RA rotation of the void catalogue within each footprint patch (5 deg .. width - 5 deg)",
        "realisations": N_NULL, "false_positive_rate": fpr, "binomial_se": se,
        "z_mean": float(np.nanmean(zs)), "z_std": float(np.nanstd(zs)),
    }
    report["seconds"] = round(time.perf_counter() - t0, 1)
    validation_report("voids", report)
    assert abs(fpr - 0.05) <= 2 * se
