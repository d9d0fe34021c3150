"""Spectral models of the sample-sky quasars (pure functions, no files).

Tolerances are stated in each test; they are set by what the definition allows (e.g.
"one pixel × depth" for pixel-based BAL indices) rather than by what the code happens
to give.
"""

from __future__ import annotations

import numpy as np
import pytest

from desilab.sample import anomalies as an
from desilab.sample import builtin_templates as bt
from desilab.sample import qso_spectra as qs
from desilab.sample.qso_population import draw_quasar, fine_bal_truth
from desilab.sample.quasar_config import QuasarConfig

C = bt.C_KMS
WAVE = bt.combined_wave()
DRAW = dict(oiii_outflow_fraction=0.5, log_ne_range=(1.0, 4.5), te_range=(9000.0, 20000.0))


def _box(z: float, f: float = 0.5, v1: float = -15000.0, v2: float = -5000.0) -> np.ndarray:
    v = C * (WAVE / ((1 + z) * 1549.0) - 1)
    return np.where((v > v1) & (v < v2), f, 1.0)


# --- BAL indices ---------------------------------------------------------------------


def test_bal_worked_example_both_modes():
    """Issue #6 worked example: box f = 0.5 from −15000 to −5000 km/s: BI = 3556,
    AI(baltools) = 4244, AI(classical) = 4444. baltools' stepping rules drop the first and
    last pixel of a trough (1.5 pixels on average), so the pixel values may fall short by
    up to 2 pixels × depth; the classical integrals by at most 1 pixel × depth; the
    10 km/s fine-grid truth by at most 10 km/s × depth."""
    z = 2.5
    depth = 1 - 0.5 / 0.9
    pix = C * 0.8 / (1549.0 * (1 + z))  # km/s per pixel at C IV
    b = qs.bal_indices(WAVE, _box(z), z, mode="baltools")
    c = qs.bal_indices(WAVE, _box(z), z, mode="classical")
    assert abs(b["BI"] - 3555.6) <= 2 * pix * depth
    assert abs(b["AI"] - 4244.4) <= 2 * pix * depth
    assert abs(c["BI"] - 3555.6) <= pix * depth
    assert abs(c["AI"] - 4444.4) <= pix * depth
    fine = fine_bal_truth([qs.Trough("CIV", 5000.0, 15000.0, 0.5, 1.0)], "CIV")
    assert abs(fine["BI"] - 3555.6) <= 10 * depth * 2
    assert abs(fine["AI"] - 4244.4) <= 10 * depth * 2
    vmin, vmax, _pos, fmin = b["BI_TROUGHS"][0]
    assert 5000 <= vmin <= 5000 + pix and 15000 - pix <= vmax <= 15000  # positive speeds
    assert fmin == pytest.approx(0.5)


def _reference_runs(expr, speed, min_width, ai, flux, sig):
    """Step-by-step transcription of the baltools trough rules (desi-formats.md §5b, issue #6)."""
    out, width, start, n = [], 0.0, 0, len(expr)
    for i in range(n):
        if expr[i] > 0:
            if i == n - 1:
                width += speed[i] - speed[i - 1]
                if width > min_width:
                    out.append((start, i))
            if width == 0:
                start, width = i, 1e-4
            else:
                width += speed[i] - speed[i - 1]
        else:
            bridge = i < n - 2 and expr[i + 1] > 0
            if ai:
                bridge = bridge and expr[i - 1] > 0 and expr[i - 2] > 0
            if bridge:
                if width != 0:
                    width += speed[i] - speed[i - 1]
            else:
                if width > min_width:
                    if ai:
                        m = np.mean(flux[start : i - 1])
                        s = np.mean(sig[start : i - 1]) / np.sqrt(i - 1 - start)
                        if 1 - (m + 3 * s) / 0.9 > 0:
                            out.append((start, i - 1))
                    else:
                        out.append((start, i - 1))
                width = 0.0
    return out


@pytest.mark.parametrize("ai", [False, True])
def test_vectorised_trough_finder_matches_stepwise_rules(ai):
    rng = np.random.default_rng(1)
    for trial in range(60):
        n = 400
        speed = np.linspace(-25000, 0, n)
        flux = 1 + rng.normal(0, 0.15 + 0.1 * (trial % 3), n)
        for _ in range(rng.integers(0, 4)):
            a = rng.integers(0, n - 20)
            flux[a : a + rng.integers(5, 120)] -= rng.uniform(0.2, 0.8)
        sig = np.full(n, 0.1 + 0.05 * (trial % 4))
        expr = (1 - flux / 0.9) - 0.5 * sig
        got = qs._runs_baltools(expr, speed, 450.0 if ai else 2000.0, ai, flux, sig)
        want = _reference_runs(expr.tolist(), speed.tolist(), 450.0 if ai else 2000.0, ai, flux, sig)
        assert got == want


def test_noiseless_injected_trough_measures_its_truth():
    """A BAL rendered, convolved with the DESI resolution and divided by the unabsorbed
    model (convolved alike) gives back the truth BI/AI within 2 pixels × depth plus the
    resolution's smoothing of the trough edges (≤ 1.5%)."""
    from desilab.sample.quasars import simulate_spectra

    rng = np.random.default_rng(5)
    d = draw_quasar(rng, 2.3, 20.0, bal_bi_fraction=1, bal_ai_only_fraction=0, bal_kind="BI", **DRAW)
    truth = fine_bal_truth(d.params.troughs, "CIV")
    sim = simulate_spectra([d.params], [20.0], seed=1)
    norm = np.zeros(WAVE.size)
    for arm in "brz":
        sl = bt.arm_slice(arm)
        norm[sl] = sim.model[arm][0] / sim.unabsorbed[arm][0]
    measured = qs.bal_indices(WAVE, norm, 2.3)
    pix = C * 0.8 / (1549.0 * 3.3)
    assert truth["BI"] > 0
    assert abs(measured["BI"] - truth["BI"]) <= 2 * pix * len(truth["BI_TROUGHS"]) + 0.015 * truth["BI"]
    assert abs(measured["AI"] - truth["AI"]) <= 2 * pix * len(truth["AI_TROUGHS"]) + 0.015 * truth["AI"]


# --- resolution matrix, lines, forest, extinction --------------------------------------


def test_resolution_storage_matches_desispec():
    """Our diagonals, read the desispec way, give the same convolution as our own code."""
    from desispec.resolution import Resolution

    wave = bt.arm_wave("r")
    rdata = qs.resolution_data("r", wave, np.array([1.02]))
    flux = np.random.default_rng(0).normal(1, 0.3, wave.size)
    ours = qs.apply_resolution(flux[None, :], rdata)[0]
    theirs = Resolution(rdata[0]).dot(flux)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # DESI-like kernel: central weight 0.42-0.49, next 0.22-0.25 (real coadd diagonals)
    mid = rdata[0, :, wave.size // 2]
    assert 0.42 < mid[5] < 0.49 and 0.20 < mid[4] < 0.26
    np.testing.assert_allclose(rdata[0].sum(axis=0), 1.0, rtol=1e-5)


def test_narrow_line_flux_is_conserved():
    """A 60 km/s line (1.3 pixels) integrates to its flux to 1e-4 (pixel-integrated Gaussian)."""
    p = qs.QuasarParams(
        z=0.5,
        components=[qs.Component("OIII_5007", "narrow", 5008.24, 7.0, 60.0)],
        feii_uv_ew=0,
        feii_opt_ew=0,
        balmer_frac=0,
        forest=False,
    )
    parts = qs.render_intrinsic(p, WAVE, bt.feii_templates())
    assert np.sum(parts.lines) * 0.8 == pytest.approx(7.0, rel=1e-4)


def test_profile_stats():
    one = qs.profile_stats([qs.Component("X", "broad", 5000.0, 1.0, 1000.0, -200.0)])
    assert one["FWHM"] == pytest.approx(2354.82, rel=2e-3)
    assert one["V50"] == pytest.approx(-200.0, abs=3.0)
    assert one["W80"] == pytest.approx(2 * 1.28155 * 1000.0, rel=3e-3)
    two = [qs.Component("X", "narrow", 5000.0, 1.0, 150.0), qs.Component("X", "outflow", 5000.0, 0.5, 500.0, -400.0)]
    st = qs.profile_stats(two)
    v = np.linspace(-5000, 5000, 200001)
    prof = sum(c.flux / c.sigma_kms * np.exp(-0.5 * ((v - c.vshift_kms) / c.sigma_kms) ** 2) for c in two)
    above = v[prof >= prof.max() / 2]
    assert st["FWHM"] == pytest.approx(above[-1] - above[0], rel=2e-3)
    cdf = np.cumsum(prof) / prof.sum()
    assert st["V10"] == pytest.approx(v[np.searchsorted(cdf, 0.1)], abs=5.0)


def test_forest_mean_transmission():
    """Mean Lyα-forest transmission within 3% of exp(−τ_eff) (Faucher-Giguère et al. 2008)."""
    z = 3.0
    sel = (WAVE / (1 + z) > 1080) & (WAVE / (1 + z) < 1180)
    zabs = WAVE[sel] / 1215.67 - 1
    means = [qs.forest_transmission(WAVE, z, seed)[sel].mean() for seed in range(40)]
    assert np.mean(means) == pytest.approx(np.mean(np.exp(-qs.tau_eff(zabs))), rel=0.03)
    assert np.all(qs.forest_transmission(WAVE, z, 1)[WAVE / (1 + z) > 1216] == 1.0)


def test_fitzpatrick99_anchors():
    """F99 R_V = 3.1: A(V)/E(B−V) = 3.05 at 5470 Å, A(B)/E(B−V) ≈ 4.1 at 4400 Å."""
    k = bt.fitzpatrick99(np.array([5470.0, 4400.0, 6000.0]))
    assert k[0] == pytest.approx(3.0546, abs=1e-3)
    assert k[1] == pytest.approx(4.06, abs=0.05)
    assert k[2] == pytest.approx(2.6876, abs=1e-3)


def test_nebular_tables_against_pyneb():
    """The shipped [S II]/[O II]/[O III] ratio tables agree with PyNeb to 0.1% (1% for 4363)."""
    pn = pytest.importorskip("pyneb")
    tab = bt.nebular_tables()
    s2, o2, o3 = pn.Atom("S", 2), pn.Atom("O", 2), pn.Atom("O", 3)
    for lg in (1.0, 2.5, 3.3, 4.0):
        ne = 10.0**lg
        want = s2.getEmissivity(1e4, ne, wave=6716) / s2.getEmissivity(1e4, ne, wave=6731)
        assert tab.sii_ratio(lg) == pytest.approx(want, rel=1e-3)
        want = o2.getEmissivity(1e4, ne, wave=3729) / o2.getEmissivity(1e4, ne, wave=3726)
        assert tab.oii_ratio(lg) == pytest.approx(want, rel=1e-3)
    for tem, lg in ((12000.0, 2.0), (15500.0, 3.2)):
        e = [o3.getEmissivity(tem, 10.0**lg, wave=w) for w in (4363, 4959, 5007)]
        assert tab.oiii_4363_ratio(tem, lg) == pytest.approx(e[0] / (e[1] + e[2]), rel=0.01)


def test_doublets_follow_density():
    """Drawn [S II] and [O II] doublets have the ratio of the drawn n_e (exactly, by construction)."""
    tab = bt.nebular_tables()
    rng = np.random.default_rng(3)
    for _ in range(5):
        d = draw_quasar(rng, 0.3, 19.0, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", **DRAW)
        f = {c.line: c.flux for c in d.params.components if c.kind == "narrow"}
        assert f["SII_6716"] / f["SII_6731"] == pytest.approx(float(tab.sii_ratio(d.truth["LOG_NE"])), rel=1e-9)
        assert f["OII_3729"] / f["OII_3726"] == pytest.approx(float(tab.oii_ratio(d.truth["LOG_NE"])), rel=1e-9)
        assert f["OIII_5007"] / f["OIII_4959"] == pytest.approx(2.98)
        assert f["NII_6584"] / f["NII_6548"] == pytest.approx(3.05)


# --- noise -------------------------------------------------------------------------------


def test_noise_matches_ivar_between_sky_lines():
    """(flux − model)·√ivar has unit variance (±5%) where the sky has no lines; sky-line
    residuals are systematic and make it larger on bright sky lines."""
    rng = np.random.default_rng(2)
    wave = bt.arm_wave("z")
    model = np.full((200, wave.size + 10), 2.0)
    o = qs.observe("z", wave, model, np.full(200, 1000.0), rng, pad=5)
    chi = (o.flux - o.model) * np.sqrt(o.ivar)
    cont, lines = bt.sky_spectrum(wave, bt.arm_sigma_pix("z", wave))
    clean = lines < 0.01 * cont
    good = o.ivar > 0
    assert np.std(chi[:, clean][good[:, clean]]) == pytest.approx(1.0, abs=0.05)
    bright = lines > 50 * cont
    assert np.std(chi[:, bright][good[:, bright]]) > 1.1


# --- anomalies ---------------------------------------------------------------------------


def test_instrumental_anomalies_change_what_they_say():
    rng = np.random.default_rng(4)
    wave = {a: bt.arm_wave(a) for a in "brz"}
    for cls in ("dead_columns", "hot_pixels", "bad_sky_subtraction", "spurious_8600"):
        flux = {a: np.ones(w.size) for a, w in wave.items()}
        sig = {a: np.full(w.size, 0.1) for a, w in wave.items()}
        sky = {a: sum(bt.sky_spectrum(w)) for a, w in wave.items()}
        info = an.inject_instrumental(cls, flux, sig, sky, wave, rng)
        changed = sum(int(np.sum(flux[a] != 1.0)) for a in flux)
        assert changed > 0, cls
        if cls == "spurious_8600":
            assert 8560 <= info["WAVE"] <= 8640 and 5 <= abs(info["AMPLITUDE_SIGMA"]) <= 15
            peak = np.argmax(np.abs(flux["z"] - 1.0))
            assert abs(wave["z"][peak] - info["WAVE"]) < 2.0
        if cls == "dead_columns":
            assert min(np.min(np.abs(f)) for f in flux.values()) < 0.05


def test_wrong_redshift_offsets():
    rng = np.random.default_rng(0)
    dz = {abs(an.wrong_redshift(rng, 1.0)["DZ"]) for _ in range(50)}
    assert dz == {0.05, 0.2, 1.0}
    assert all(an.wrong_redshift(rng, 0.06)["Z_WRONG"] > 0.05 for _ in range(20))


def test_anomaly_eligibility_and_rate():
    cfg = QuasarConfig()
    rng = np.random.default_rng(9)
    picks = [an.choose_anomaly(rng, 0.3, 0.5, cfg.anomaly_weights) for _ in range(2000)]
    assert 0.45 < np.mean([p != "" for p in picks]) < 0.55
    assert "lobal" not in picks and "redshifted_trough" not in picks  # not visible at z = 0.3


def test_physical_anomalies_modify_params():
    rng = np.random.default_rng(8)
    for cls in (
        "lobal",
        "felobal",
        "overlapping_troughs",
        "redshifted_trough",
        "double_peaked",
        "vanishing_broad_lines",
        "odd_line_ratios",
        "stellar_contamination",
    ):
        d = draw_quasar(rng, 2.0, 20.0, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", **DRAW)
        before = qs.render_intrinsic(d.params, WAVE, bt.feii_templates()).total.copy()
        an.inject_physical(cls, d.params, rng)
        after = qs.render_intrinsic(d.params, WAVE, bt.feii_templates()).total
        assert np.max(np.abs(after / before - 1)) > 0.05, cls
    d = draw_quasar(rng, 2.0, 20.0, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", **DRAW)
    an.inject_physical("lobal", d.params, rng)
    assert {"MGII", "ALIII", "CIV"} <= {t.ion for t in d.params.troughs}


def test_composite_matches_vanden_berk(real):
    """The median of 150 normal quasar models (no host, no forest) follows the Vanden Berk
    et al. (2001) composite within 15% in line-free windows from 1300 to 5000 Å."""
    folder = real("qso_templates", "VandenBerk2001.dat").parent
    vw, vf = bt.load_real_templates(folder)["vandenberk"]
    lam = np.arange(1250.0, 5100.0, 2.0)
    rng = np.random.default_rng(1)
    stack = []
    for _ in range(150):
        d = draw_quasar(rng, 1.0, 20.5, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", **DRAW)
        d.params.z, d.params.forest = 0.0, False
        f = qs.render_intrinsic(d.params, lam, bt.feii_templates()).total
        stack.append(f / np.median(f[(lam > 3000) & (lam < 3100)]))
    comp = np.exp(np.median(np.log(stack), axis=0))
    ref = np.interp(lam, vw, vf)
    ref /= np.median(ref[(lam > 3000) & (lam < 3100)])
    for lo, hi in ((1270, 1290), (1440, 1470), (1690, 1710), (2150, 2250), (3000, 3100), (4150, 4250)):
        m = (lam > lo) & (lam < hi)
        assert np.mean(comp[m] / ref[m]) == pytest.approx(1.0, abs=0.15), (lo, hi)
