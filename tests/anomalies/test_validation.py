"""Small-scale validation (``desilab validate --scale small``): writes docs/validation/anomalies.json.

3000 normal quasars rendered as the sample sky renders them (0.3 < z < 3.5, 18.5 < r < 21);
train 1500 / calibration 1000 / held-out normal 500. Every injection class goes into the 500
held-out normals with its documented amplitudes (:mod:`desilab.anomalies.inject`).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from desilab.anomalies.baselines import IForestRawBaseline, PCABaseline
from desilab.anomalies.detector import COMPONENTS, VAEAnomalyDetector
from desilab.anomalies.inject import INJECTION_CLASSES, inject
from desilab.anomalies.preprocess import preprocess
from desilab.anomalies.score import BinnedConformal, benjamini_hochberg
from desilab.anomalies.simulate import simulate_normal
from desilab.anomalies.stage import calibration_bins

pytestmark = [pytest.mark.validation, pytest.mark.timeout(5400)]

N_TRAIN, N_CAL, N_TEST = 1500, 1000, 500
Q = 0.05


def test_anomaly_validation(validation_report) -> None:
    t0 = time.time()
    o = simulate_normal(N_TRAIN + N_CAL + N_TEST, seed=77)
    pre = preprocess(o.wave, o.flux, o.ivar, o.z, mask=o.mask)
    idx = np.arange(len(pre))
    tr, cal, te = (
        pre.subset(idx[:N_TRAIN]),
        pre.subset(idx[N_TRAIN : N_TRAIN + N_CAL]),
        pre.subset(idx[N_TRAIN + N_CAL :]),
    )
    det = VAEAnomalyDetector(epochs=25, kl_warmup_epochs=5, patience=6, threads=1, random_state=0).fit(tr)
    t_train = time.time() - t0
    nb = calibration_bins(N_CAL)
    det.calibrate(cal, n_snr=nb, n_z=nb)
    pca, ifr = PCABaseline().fit(tr), IForestRawBaseline().fit(tr)
    s_cal, s_te = det.score(cal), det.score(te)
    lab_te = ("test", te)
    del lab_te
    # ---- normal spectra: chi2/pixel and reconstruction accuracy (pixels within 2 sigma_total)
    full = det.score(te, keep_resid=True)
    used = te.ivar > 0
    within = ((full.resid2 <= 4.0) & used).sum(axis=1) / np.maximum(used.sum(axis=1), 1)
    # ---- ROC per class and overall; baselines on the same ROC
    per_class, anom_scores = {}, {}
    pn, ip = pca.score_samples(te), ifr.score_samples(te)
    for cls in INJECTION_CLASSES:
        inj, _ = inject(te, [cls] * len(te), seed=101)
        s = det.score(inj)
        anom_scores[cls] = (s, inj)
        y = np.r_[np.zeros(len(te)), np.ones(len(te))]
        per_class[cls] = {
            "auc_ensemble": roc_auc_score(y, np.r_[s_te.ensemble, s.ensemble]),
            **{f"auc_{k.lower()}": roc_auc_score(y, np.r_[s_te.anomaly(k), s.anomaly(k)]) for k in COMPONENTS[:-1]},
            "auc_pca": roc_auc_score(y, -np.r_[pn, pca.score_samples(inj)]),
            "auc_iforest_raw": roc_auc_score(y, -np.r_[ip, ifr.score_samples(inj)]),
        }
    overall = {k: float(np.mean([v[k] for v in per_class.values()])) for k in per_class["lobal"]}
    # ---- recall per class at FDR q (10% anomalies in the mixture), per S/N tertile too
    rng = np.random.default_rng(5)
    cal_ens = BinnedConformal(nb, nb, min_per_bin=50).fit(s_cal.ensemble, cal.snr, cal.z)
    p_norm = cal_ens.pvalues(s_te.ensemble, te.snr, te.z)
    snr_edges = np.quantile(te.snr, [0, 1 / 3, 2 / 3, 1])
    for cls, (s, inj) in anom_scores.items():
        p_an = cal_ens.pvalues(s.ensemble, inj.snr, inj.z)
        recs, fdps, rec_snr = [], [], {0: [], 1: [], 2: []}
        for _ in range(20):
            pick = rng.choice(len(te), 50, replace=False)
            rej, _ = benjamini_hochberg(np.r_[p_norm, p_an[pick]], Q)
            recs.append(rej[len(te) :].mean())
            fdps.append(rej[: len(te)].sum() / max(rej.sum(), 1))
            tert = np.clip(np.searchsorted(snr_edges, inj.snr[pick], side="right") - 1, 0, 2)
            for k in range(3):
                if (tert == k).any():
                    rec_snr[k].append(rej[len(te) :][tert == k].mean())
        per_class[cls].update(
            recall_at_fdr5=float(np.mean(recs)),
            fdp=float(np.mean(fdps)),
            recall_by_snr_tertile={
                f"{snr_edges[k]:.1f}-{snr_edges[k + 1]:.1f}": float(np.mean(v)) if v else None
                for k, v in rec_snr.items()
            },
        )
    # ---- FDR over >= 200 resampled calibration/test splits of precomputed scores
    pool_norm = np.r_[s_cal.ensemble, s_te.ensemble]
    pool_snr, pool_z = np.r_[cal.snr, te.snr], np.r_[cal.z, te.z]
    an_all = np.concatenate([s.ensemble for s, _ in anom_scores.values()])
    an_snr = np.concatenate([inj.snr for _, inj in anom_scores.values()])
    an_z = np.concatenate([inj.z for _, inj in anom_scores.values()])
    fdp_mix, any_null, power = [], [], []
    n_splits = 200
    for _ in range(n_splits):
        perm = rng.permutation(pool_norm.size)
        c, t = perm[:1000], perm[1000:]
        bc = BinnedConformal(nb, nb, min_per_bin=50).fit(pool_norm[c], pool_snr[c], pool_z[c])
        pick = rng.choice(an_all.size, 50, replace=False)
        p = np.r_[bc.pvalues(pool_norm[t], pool_snr[t], pool_z[t]), bc.pvalues(an_all[pick], an_snr[pick], an_z[pick])]
        rej, _ = benjamini_hochberg(p, Q)
        fdp_mix.append(rej[: t.size].sum() / max(rej.sum(), 1))
        power.append(rej[t.size :].mean())
        rej0, _ = benjamini_hochberg(p[: t.size], Q)
        any_null.append(rej0.any())
    fdr = float(np.mean(fdp_mix))
    fdr_se = float(np.std(fdp_mix) / np.sqrt(n_splits))
    p_any = float(np.mean(any_null))
    p_any_se = float(np.sqrt(max(p_any * (1 - p_any), Q * (1 - Q)) / n_splits))
    figures = {
        "n_train": N_TRAIN,
        "n_calibration": N_CAL,
        "n_test_normal": N_TEST,
        "model": {
            "latent_dim": det.latent_dim,
            "epochs_run": len(det.history_),
            "best_epoch": det.best_epoch_,
            "train_seconds": t_train,
        },
        "calibration_bins_per_axis": nb,
        "median_chi2_pix_normal": float(np.median(s_te.chi2_pix)),
        "reconstruction_accuracy_median_frac_pixels_within_2sigma": float(np.median(within)),
        "median_snr_test": float(np.median(te.snr)),
        "roc_auc_overall": overall,
        "per_class": per_class,
        "fdr_check": {
            "q": Q,
            "n_splits": n_splits,
            "mean_fdp_mixture": fdr,
            "se": fdr_se,
            "mean_power_mixture": float(np.mean(power)),
            "p_any_discovery_null": p_any,
            "se_null": p_any_se,
        },
        "vae_beats_pca": overall["auc_ensemble"] > overall["auc_pca"],
        "vae_beats_iforest_raw": overall["auc_ensemble"] > overall["auc_iforest_raw"],
    }
    validation_report("anomalies", figures)
    # the guarantees that must hold whatever the model's power
    assert fdr <= Q + 2 * fdr_se
    assert p_any <= Q + 2 * p_any_se
    assert 0.5 < figures["median_chi2_pix_normal"] < 2.0
    assert overall["auc_ensemble"] > overall["auc_iforest_raw"]
