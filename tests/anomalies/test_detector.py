"""The detector on normal + injected spectra at tiny scale: contract, thresholds, baselines, products."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from desilab.anomalies.baselines import IForestRawBaseline, PCABaseline
from desilab.anomalies.detector import COMPONENTS, VAEAnomalyDetector
from desilab.anomalies.inject import INJECTION_CLASSES, inject
from desilab.anomalies.score import benjamini_hochberg
from desilab.errors import InputError

# a small model: 32-d latent, 14 epochs on 220 spectra (~20-40 s on one core)
SMALL = dict(
    latent_dim=32,
    hidden=128,
    epochs=14,
    batch_size=32,
    kl_warmup_epochs=4,
    patience=4,
    threads=1,
    n_estimators=100,
    random_state=3,
)


@pytest.fixture(scope="module")
def det(splits) -> VAEAnomalyDetector:
    return VAEAnomalyDetector(**SMALL).fit(splits["train"]).calibrate(splits["cal"], min_per_bin=20)


def test_sklearn_outlier_contract(det, splits) -> None:
    fresh = VAEAnomalyDetector(**SMALL)
    assert not any(k.endswith("_") for k in vars(fresh))  # __init__ stores hyperparameters only
    assert clone(fresh).get_params() == fresh.get_params()
    te = splits["test"]
    s = det.score_samples(te)
    assert s.shape == (len(te),)
    np.testing.assert_allclose(s, -det.score(te).ensemble)
    pred = det.predict(te)
    assert set(np.unique(pred)) <= {-1, 1}
    np.testing.assert_array_equal(pred == -1, det.decision_function(te) < 0)
    # the (n, 2, npix) array form gives the same scores
    arr = np.stack([te.flux, te.ivar], axis=1)
    np.testing.assert_allclose(det.score_samples(arr), s, rtol=1e-5)
    with pytest.raises(InputError, match="shaped"):
        det.score_samples(te.flux)


def test_normal_spectra_fit_and_pvalues(det, splits) -> None:
    te = splits["test"]
    sc = det.score(te)
    # the model-error term is re-measured on the training spectra so that their mean chi2 per
    # pixel is 1; held-out normals sit a little above (the network fits its training set better)
    chi2_train = det.score(splits["train"]).chi2_pix
    assert 0.7 < np.median(chi2_train) < 1.2, np.median(chi2_train)
    assert 0.7 < np.median(sc.chi2_pix) < 3.0
    # the learned model-error term weakens the chi2-brightness link that a pure-noise likelihood has
    import torch
    from scipy.stats import spearmanr

    from desilab.anomalies.model import gaussian_terms

    full = det.score(te, keep_resid=True)
    f, iv = torch.from_numpy(te.flux), torch.from_numpy(te.ivar)
    chi2_noise, _, npx = gaussian_terms(f, iv, torch.from_numpy(full.recon), torch.zeros(f.shape[1]))
    rho_floor = spearmanr(sc.chi2_pix, te.snr).statistic
    rho_noise = spearmanr((chi2_noise / npx).numpy(), te.snr).statistic
    assert rho_floor < rho_noise - 0.1, (rho_floor, rho_noise)
    assert np.median((chi2_noise / npx).numpy()) > np.median(sc.chi2_pix)
    p = det.pvalues(sc, te.snr, te.z)
    assert set(p) == set(COMPONENTS)
    for v in p.values():
        assert np.all((v > 0) & (v <= 1))
    rej, _ = benjamini_hochberg(p["ENSEMBLE"], 0.05)
    assert rej.sum() <= 3  # nulls: at most a few discoveries


@pytest.fixture(scope="module")
def injected(splits):
    te = splits["test"]
    out = {}
    for cls in INJECTION_CLASSES:
        out[cls] = inject(te, [cls] * len(te), seed=11)[0]
    return out


def test_injected_anomalies_found_and_vae_beats_baselines(det, splits, injected) -> None:
    tr, te = splits["train"], splits["test"]
    pca, ifr = PCABaseline().fit(tr), IForestRawBaseline(n_estimators=100).fit(tr)
    s0 = det.score(te)
    lab = np.r_[np.zeros(len(te)), np.ones(len(te))]
    auc_vae, auc_pca, auc_if = {}, {}, {}
    for cls, inj in injected.items():
        auc_vae[cls] = roc_auc_score(lab, np.r_[s0.ensemble, det.score(inj).ensemble])
        auc_pca[cls] = roc_auc_score(lab, -np.r_[pca.score_samples(te), pca.score_samples(inj)])
        auc_if[cls] = roc_auc_score(lab, -np.r_[ifr.score_samples(te), ifr.score_samples(inj)])
    overall = np.mean(list(auc_vae.values()))
    # tiny-scale thresholds for a 14-epoch model on 220 spectra (validation: docs/validation/anomalies.json)
    assert overall > 0.65, auc_vae
    assert auc_vae["hot_pixels"] > 0.9, auc_vae
    for cls in ("wrong_redshift", "felobal", "stellar_contamination"):
        assert auc_vae[cls] > 0.7, (cls, auc_vae[cls])
    assert overall > np.mean(list(auc_if.values())), (auc_vae, auc_if)
    # PCA is competitive at this training-set size (see docs/anomalies.md); recorded, not asserted


def test_save_load_roundtrip(det, splits, tmp_path) -> None:
    det.save(tmp_path / "m")
    again = VAEAnomalyDetector.load(tmp_path / "m")
    te = splits["test"]
    np.testing.assert_allclose(again.score_samples(te), det.score_samples(te), rtol=1e-6)
    a, b = det.score(te), again.score(te)
    pa, pb = det.pvalues(a, te.snr, te.z), again.pvalues(b, te.snr, te.z)
    for k in COMPONENTS:
        np.testing.assert_array_equal(pa[k], pb[k])


def test_model_from_an_older_scan_set_asks_for_retraining(det, tmp_path) -> None:
    """A saved model whose scan weights predate the current SCAN_LABELS is refused by name, not mis-scored."""
    from desilab.anomalies.detector import SCAN_LABELS
    from desilab.errors import FormatError

    det.save(tmp_path / "m")
    npz = tmp_path / "m" / "detector.npz"
    arrays = dict(np.load(npz))
    del arrays[f"scan_inv_sigma_{len(SCAN_LABELS) - 1}"]  # as written before the shape scans
    np.savez(npz, **arrays)
    with pytest.raises(FormatError, match="retrain"):
        VAEAnomalyDetector.load(tmp_path / "m")


def test_real_vanden_berk_composite_looks_normal(det, real) -> None:
    """The Vanden Berk et al. (2001) composite, redshifted onto the DESI grid with noise, sits among normal latents.

    The claim is made of the latent position (IFOREST), not of the ENSEMBLE: the residual
    scans see the real composite's broad-band shape differ from the *simulated* training
    quasars at 14,000-42,000 km/s scales. Measured on the small-scale validation model
    (3000 spectra, 80 epochs), ENSEMBLE p = 0.002-0.02 already with the scans before the
    shape scans (box81 fires), while IFOREST p = 0.55-0.99; this tiny model with the shape
    scans gives ENSEMBLE p = 0.014-0.23 (dob81/dob243 fire).
    """
    from desilab.anomalies.preprocess import preprocess
    from desilab.io.spectra import combined_wave

    path = real("qso_templates", "VandenBerk2001.dat")
    tab = np.loadtxt(path, comments="#", usecols=(0, 1))
    wave = combined_wave()
    rng = np.random.default_rng(0)
    zs = np.array([1.0, 1.6, 2.2, 2.8])
    flux = np.array([np.interp(wave / (1 + z), tab[:, 0], tab[:, 1]) for z in zs])
    flux /= np.median(flux, axis=1, keepdims=True)
    sigma = 0.1  # S/N 10 per pixel at the median
    ivar = np.full_like(flux, 1 / sigma**2)
    pre = preprocess(wave, flux + rng.normal(0, sigma, flux.shape), ivar, zs)
    sc = det.score(pre)
    p = det.pvalues(sc, pre.snr, pre.z)["IFOREST"]
    assert np.all(np.isfinite(sc.ensemble))
    assert np.median(p) > 0.05, p  # the average quasar lies among normal quasars in latent space
    # the same composite with a deep, wide C IV trough is more anomalous
    from desilab.anomalies.inject import inject

    bal, _ = inject(pre, ["felobal"] * len(pre), seed=1)
    assert np.mean(det.score(bal).ensemble > sc.ensemble) >= 0.5


def test_real_desi_coadd_sky_fibres_stand_out(det, real) -> None:
    """25 real DESI spectra (no fibermap, no redshifts: z = 1.5 assumed): sky-like fibres are unusable or odd."""
    from desilab.anomalies.preprocess import preprocess
    from desilab.io.coadd import read_coadd

    sp = read_coadd(real("desi_qnp", "test_coadd.fits"), resolution=False, redrock=False)
    c = sp.combined()
    b = c.bands[0]
    f, iv = c.flux[b], c.ivar[b]
    pre = preprocess(c.wave[b], f, iv, np.full(f.shape[0], 1.5), mask=c.mask[b])
    sky = np.median(f * np.sqrt(iv), axis=1) < 0.5  # no source continuum
    assert sky.sum() >= 5 and (~sky).sum() >= 10
    sc = det.score(pre)
    odd = ~pre.valid | (sc.ensemble > np.nanmedian(sc.ensemble[pre.valid & ~sky]))
    assert odd[sky].mean() >= 0.8, (pre.valid[sky], sc.ensemble[sky])
    assert pre.valid[~sky].mean() >= 0.9
