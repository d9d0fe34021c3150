"""Small-scale validation (``desilab validate --scale small``): writes docs/validation/anomalies.json.

Normal quasars rendered as the sample sky renders them (0.3 < z < 3.5, 18.5 < r < 21):
3000 with seed 77 (training 1500 / calibration 1000 / held-out normal 500) plus 1500 more
training spectra with seed 79 — training 3000 in all. Every injection class goes into the
500 held-out normals with its documented amplitudes (:mod:`desilab.anomalies.inject`);
injections that touch no used pixel (outside the spectrum's coverage) are not anomalies
and are left out of recall, with their count reported.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from desilab.anomalies.baselines import IForestRawBaseline, PCABaseline
from desilab.anomalies.detector import COMPONENTS, ENSEMBLE_MEMBERS, SCAN_LABELS, VAEAnomalyDetector
from desilab.anomalies.inject import INJECTION_CLASSES, inject
from desilab.anomalies.model import flops_per_spectrum
from desilab.anomalies.preprocess import Preprocessed, preprocess
from desilab.anomalies.score import BinnedConformal, benjamini_hochberg
from desilab.anomalies.simulate import simulate_normal
from desilab.anomalies.stage import calibration_bins

pytestmark = [pytest.mark.validation, pytest.mark.timeout(5400)]

N_TRAIN_A, N_CAL, N_TEST, N_TRAIN_B = 1500, 1000, 500, 1500
Q = 0.05
N_MIX = 50  # anomalies per mixture (10% of the 550 tested)
N_REPEAT = 20


def _sim(n: int, seed: int) -> Preprocessed:
    o = simulate_normal(n, seed=seed)
    return preprocess(o.wave, o.flux, o.ivar, o.z, mask=o.mask)


def test_anomaly_validation(validation_report) -> None:
    t0 = time.time()
    pre = _sim(N_TRAIN_A + N_CAL + N_TEST, 77)
    idx = np.arange(len(pre))
    tr = Preprocessed.concat([pre.subset(idx[:N_TRAIN_A]), _sim(N_TRAIN_B, 79)])
    cal = pre.subset(idx[N_TRAIN_A : N_TRAIN_A + N_CAL])
    te = pre.subset(idx[N_TRAIN_A + N_CAL :])
    t_sim = time.time() - t0
    det = VAEAnomalyDetector(epochs=80, batch_size=16, kl_warmup_epochs=5, patience=10, threads=1, random_state=0)
    det.fit(tr)
    t_train = time.time() - t0 - t_sim
    nb = calibration_bins(N_CAL)
    det.calibrate(cal, n_snr=nb, n_z=nb)
    pca, ifr = PCABaseline().fit(tr), IForestRawBaseline().fit(tr)
    s_cal = det.score(cal)
    t1 = time.time()
    full = det.score(te, keep_resid=True)
    t_score = time.time() - t1
    s_te = full
    # ---- normal spectra: chi2/pixel and reconstruction accuracy (pixels within 2 sigma_total)
    used = te.ivar > 0
    within = ((full.resid2 <= 4.0) & used).sum(axis=1) / np.maximum(used.sum(axis=1), 1)
    # ---- ROC per class and overall; baselines on the same ROC
    per_class, anom = {}, {}
    pn, ip = pca.score_samples(te), ifr.score_samples(te)
    for cls in INJECTION_CLASSES:
        inj, info = inject(te, [cls] * len(te), seed=101)
        covered = np.array([i["NPIX_AFFECTED"] > 0 for i in info])
        s = det.score(inj)
        anom[cls] = (s, inj, covered)
        yc = np.r_[np.zeros(len(te)), np.ones(covered.sum())]
        per_class[cls] = {
            "n_outside_coverage": int((~covered).sum()),
            "auc_ensemble": roc_auc_score(yc, np.r_[s_te.ensemble, s.ensemble[covered]]),
            **{
                f"auc_{k.lower()}": roc_auc_score(yc, np.r_[s_te.anomaly(k), s.anomaly(k)[covered]])
                for k in COMPONENTS[:-1]
            },
            "auc_pca": roc_auc_score(yc, -np.r_[pn, pca.score_samples(inj)[covered]]),
            "auc_iforest_raw": roc_auc_score(yc, -np.r_[ip, ifr.score_samples(inj)[covered]]),
            "scan_kind_counts": {
                SCAN_LABELS[k]: int(c)
                for k, c in enumerate(np.bincount(s.scan_kind[covered], minlength=len(SCAN_LABELS)))
                if c
            },
        }
    overall = {k: float(np.mean([v[k] for v in per_class.values()])) for k in per_class["lobal"] if k.startswith("auc")}
    # ---- recall per class at FDR q (mixtures of the 500 normals + 50 anomalies), by S/N tertile too
    rng = np.random.default_rng(5)
    cal_ens = det.calibration_["ENSEMBLE"]  # the ensemble's own calibration
    p_norm = cal_ens.pvalues(s_te.ensemble, te.snr, te.z)
    snr_edges = np.quantile(te.snr, [0, 1 / 3, 2 / 3, 1])
    prec_at = {}
    for cls, (s, inj, covered) in anom.items():
        p_an = cal_ens.pvalues(s.ensemble, inj.snr, inj.z)
        pool = np.flatnonzero(covered)
        recs, fdps, rec_snr, p10, p50 = [], [], {0: [], 1: [], 2: []}, [], []
        for _ in range(N_REPEAT):
            pick = rng.choice(pool, N_MIX, replace=False)
            p = np.r_[p_norm, p_an[pick]]
            rej, _ = benjamini_hochberg(p, Q)
            recs.append(rej[len(te) :].mean())
            fdps.append(rej[: len(te)].sum() / max(rej.sum(), 1))
            tert = np.clip(np.searchsorted(snr_edges, inj.snr[pick], side="right") - 1, 0, 2)
            for k in range(3):
                if (tert == k).any():
                    rec_snr[k].append(rej[len(te) :][tert == k].mean())
            # precision at k: fraction of anomalies among the k highest ENSEMBLE scores
            sc = np.r_[s_te.ensemble, s.ensemble[pick]]
            top = np.argsort(-sc, kind="stable")
            p10.append((top[:10] >= len(te)).mean())
            p50.append((top[:50] >= len(te)).mean())
        per_class[cls].update(
            recall_at_fdr5=float(np.mean(recs)),
            fdp=float(np.mean(fdps)),
            recall_by_snr_tertile={
                f"{snr_edges[k]:.1f}-{snr_edges[k + 1]:.1f}": float(np.mean(v)) if v else None
                for k, v in rec_snr.items()
            },
            precision_at_10=float(np.mean(p10)),
            precision_at_50=float(np.mean(p50)),
        )
        prec_at[cls] = float(np.mean(p50))
    # ---- FDR over >= 200 resampled calibration/test splits of precomputed scores
    pool_norm = np.r_[s_cal.ensemble, s_te.ensemble]
    pool_snr, pool_z = np.r_[cal.snr, te.snr], np.r_[cal.z, te.z]
    an_all = np.concatenate([s.ensemble[c] for s, _, c in anom.values()])
    an_snr = np.concatenate([inj.snr[c] for _, inj, c in anom.values()])
    an_z = np.concatenate([inj.z[c] for _, inj, c in anom.values()])
    fdp_mix, any_null, power = [], [], []
    n_splits = 200
    for _ in range(n_splits):
        perm = rng.permutation(pool_norm.size)
        c, t = perm[:N_CAL], perm[N_CAL:]
        bc = BinnedConformal(nb, nb, min_per_bin=50).fit(pool_norm[c], pool_snr[c], pool_z[c])
        pick = rng.choice(an_all.size, N_MIX, replace=False)
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
    hist = det.history_
    figures = {
        "n_train": len(tr),
        "n_calibration": N_CAL,
        "n_test_normal": N_TEST,
        "model": {
            "latent_dim": det.latent_dim,
            "batch_size": det.batch_size,
            "epochs_run": len(hist),
            "best_epoch": det.best_epoch_,
            "train_seconds": t_train,
            "simulate_seconds": t_sim,
            "flops_per_spectrum": flops_per_spectrum(det.model_),
            "score_per_s_this_run": N_TEST / t_score,
            "loss_curve": [
                {"epoch": int(h["epoch"]), "train": round(h["train_loss"], 4), "val": round(h["val_loss"], 4)}
                for h in hist
            ],
        },
        "ensemble_members": list(ENSEMBLE_MEMBERS),
        "calibration_bins_per_axis": nb,
        "median_chi2_pix_normal": float(np.median(s_te.chi2_pix)),
        "median_chi2_pix_train": float(np.median(det.score(tr.subset(np.arange(min(500, len(tr))))).chi2_pix)),
        "reconstruction_accuracy_median_frac_pixels_within_2sigma": float(np.median(within)),
        "median_snr_test": float(np.median(te.snr)),
        "roc_auc_overall": overall,
        "recall_at_fdr5_mean_over_classes": float(np.mean([v["recall_at_fdr5"] for v in per_class.values()])),
        "classes_with_recall_ge_0.8": [k for k, v in per_class.items() if v["recall_at_fdr5"] >= 0.8],
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
