"""Draw ``docs/figures/sample-sky-quasars.png``: sample-sky quasar spectra next to their models.

Three quasars made by the same code path as ``desilab sample`` (draw → render → observe):
a C IV BAL, a low-z quasar with an [O III] outflow, and an anomaly (an FeLoBAL). Each
panel shows the three DESI arms (lightly smoothed, as DESI's spectrum viewer does) and the
noiseless model after the resolution matrix.

Run: ``.venv/bin/python scripts/make_quasar_figure.py [OUT.png]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from desilab.sample import anomalies as an
from desilab.sample.qso_population import draw_quasar, fine_bal_truth
from desilab.sample.qso_spectra import Component
from desilab.sample.quasars import simulate_spectra

ARM_COLOURS = {"b": "#3b6fd6", "r": "#2e9e4a", "z": "#c8372d"}
COMMON = dict(oiii_outflow_fraction=0.0, log_ne_range=(2.0, 3.5), te_range=(10000.0, 14000.0))


def _smooth(y: np.ndarray, n: int = 3) -> np.ndarray:
    k = np.ones(n) / n
    return np.convolve(y, k, mode="same")


def _panel(ax, sim, i: int, title: str, xlim=None, lines=()) -> None:
    sp = sim.spectra
    lo, hi = [], []
    for arm in "brz":
        w = sp.wave[arm]
        f = sp.flux[arm][i]
        good = sp.ivar[arm][i] > 0
        sel = good if xlim is None else good & (w > xlim[0]) & (w < xlim[1])
        ax.plot(w, np.where(good, _smooth(f), np.nan), color=ARM_COLOURS[arm], lw=0.6, alpha=0.8)
        ax.plot(w, sim.model[arm][i], color="k", lw=0.7, alpha=0.9)
        if np.any(sel):
            lo.append(np.percentile(f[sel], 1))
            hi.append(np.percentile(sim.model[arm][i][sel], 99.5))
    ymin, ymax = min(lo), max(hi)
    ax.set_ylim(min(ymin, -0.1 * ymax), ymax * 1.35)
    if xlim:
        ax.set_xlim(*xlim)
    else:
        ax.set_xlim(3550, 9880)
    for name, lam in lines:
        ax.axvline(lam, color="0.5", lw=0.5, ls=":")
        ax.text(lam, ax.get_ylim()[1] * 0.97, name, rotation=90, va="top", ha="right", fontsize=7, color="0.3")
    ax.set_title(title, fontsize=9, loc="left")
    ax.set_ylabel(r"$F_\lambda$ [$10^{-17}$ erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]", fontsize=7)


def main(out: Path) -> None:
    rng = np.random.default_rng(2024)
    # 1. a C IV BAL quasar
    z1 = 2.42
    bal = draw_quasar(
        rng, z1, 19.9, bal_bi_fraction=1, bal_ai_only_fraction=0, bal_kind="BI", ebv_mw=0.03, forest_seed=11, **COMMON
    )
    bi = fine_bal_truth(bal.params.troughs, "CIV")
    # 2. a low-z quasar with an [O III] outflow of known velocity and flux
    z2 = 0.31
    out_q = draw_quasar(
        rng, z2, 18.8, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", ebv_mw=0.02, forest_seed=12, **COMMON
    )
    core = [c for c in out_q.params.components if c.line in ("OIII_5007", "OIII_4959") and c.kind == "narrow"]
    v_off, sig_out, ratio = -650.0, 520.0, 0.6
    pl5007 = (5008.24 / 3000.0) ** out_q.params.alpha_lambda
    for c in core:  # a typical [O III] strength: EW(5007 core) = 20 Å against the power law
        c.flux = 20.0 * pl5007 / (1.0 if c.line == "OIII_5007" else 2.98)
        out_q.params.components.append(Component(c.line, "outflow", c.wave, c.flux * ratio, sig_out, v_off))
    # 3. an anomaly: an FeLoBAL
    z3 = 1.62
    fel = draw_quasar(
        rng, z3, 19.4, bal_bi_fraction=0, bal_ai_only_fraction=0, bal_kind="", ebv_mw=0.04, forest_seed=13, **COMMON
    )
    info = an.inject_physical("felobal", fel.params, np.random.default_rng(5))
    sim = simulate_spectra(
        [bal.params, out_q.params, fel.params], [19.9, 18.8, 19.4], seed=7, exptime=[2000.0, 1000.0, 1000.0]
    )

    fig = plt.figure(figsize=(11, 11))
    gs = fig.add_gridspec(4, 2, height_ratios=[1, 1, 1, 1], hspace=0.45, wspace=0.18)
    ax1 = fig.add_subplot(gs[0, :])
    ax2 = fig.add_subplot(gs[1, :])
    ax2z = fig.add_subplot(gs[2, 0])
    ax2s = fig.add_subplot(gs[2, 1])
    ax3 = fig.add_subplot(gs[3, :])
    zl = 1 + z1
    _panel(
        ax1,
        sim,
        0,
        f"C IV BAL, z = {z1}, r = 19.9, 2 exposures — truth BI(C IV) = {bi['BI']:.0f} km/s, AI = {bi['AI']:.0f} km/s",
        lines=(
            ("Lyα", 1215.67 * zl),
            ("N V", 1240.8 * zl),
            ("Si IV", 1397.0 * zl),
            ("C IV", 1549.1 * zl),
            ("C III]", 1908.7 * zl),
            ("Mg II", 2799.1 * zl),
        ),
    )
    zl = 1 + z2
    _panel(
        ax2,
        sim,
        1,
        f"[O III] outflow, z = {z2}, r = 18.8, 1 exposure",
        lines=(
            ("Mg II", 2799.1 * zl),
            ("[O II]", 3728.5 * zl),
            ("Hγ", 4341.7 * zl),
            ("Hβ", 4862.7 * zl),
            ("[O III]", 5008.2 * zl),
            ("Hα", 6564.6 * zl),
            ("[S II]", 6725.0 * zl),
        ),
    )
    _panel(
        ax2z,
        sim,
        1,
        f"Hβ–[O III]: outflow Δv = {v_off:.0f} km/s, σ = {sig_out:.0f} km/s, F_out/F_core = {ratio}",
        xlim=(4780 * zl, 5060 * zl),
        lines=(("Hβ", 4862.7 * zl), ("4959", 4960.3 * zl), ("5007", 5008.2 * zl)),
    )
    _panel(
        ax2s,
        sim,
        1,
        f"Hα–[N II]–[S II]: n_e = {10 ** out_q.truth['LOG_NE']:.0f} cm$^{{-3}}$, "
        f"[S II] 6716/6731 = {out_q.truth['SII_RATIO']:.2f}",
        xlim=(6500 * zl, 6780 * zl),
        lines=(("Hα", 6564.6 * zl), ("[S II]", 6718.3 * zl), ("", 6732.7 * zl)),
    )
    zl = 1 + z3
    _panel(
        ax3,
        sim,
        2,
        f"Anomaly: FeLoBAL, z = {z3}, r = 19.4 — troughs {info['VMIN']:.0f}–{info['VMAX']:.0f} km/s in "
        "C IV, Si IV, Al III, Mg II and Fe II UV",
        lines=(
            ("C IV", 1549.1 * zl),
            ("Al III", 1857.4 * zl),
            ("C III]", 1908.7 * zl),
            ("Fe II", 2382.8 * zl),
            ("Fe II", 2600.2 * zl),
            ("Mg II", 2799.1 * zl),
        ),
    )
    for ax in (ax1, ax2, ax3, ax2z, ax2s):
        ax.tick_params(labelsize=7)
    ax3.set_xlabel("observed wavelength [Å] (vacuum)", fontsize=8)
    handles = [plt.Line2D([], [], color=ARM_COLOURS[a], lw=1) for a in "brz"] + [plt.Line2D([], [], color="k", lw=1)]
    fig.legend(
        handles,
        ["b arm", "r arm", "z arm", "noiseless model (after resolution)"],
        loc="upper center",
        ncol=4,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.955),
    )
    fig.suptitle(
        "desilab sample sky — mock DESI quasar coadds (3-pixel boxcar) and their noiseless models", fontsize=10, y=0.975
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).resolve().parents[1] / "docs" / "figures" / "sample-sky-quasars.png"
    )
