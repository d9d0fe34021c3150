"""Figures of the outflow pipeline (each saved as PNG and PDF).

* :func:`plot_fit` — one spectrum's complexes with data, total model and components;
* :func:`plot_population` — BI distribution, v_out vs L_bol, Ė_kin/L_bol vs L_bol;
* :func:`qa_worst_fits` — the worst fits by reduced χ² on one page (PNG + PDF + a Markdown
  index);
* :func:`plot_completeness` — injection–recovery maps: completeness in (v_out, S/N) for the
  detector and for the known-shape oracle, and completeness against the wing's expected Δχ²
  with the false-positive rate of both on the nulls.

Plotting only: every number comes from :class:`desilab.outflows.catalog.OutflowResult`.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from desilab.errors import InputError
from desilab.outflows.catalog import OutflowResult
from desilab.outflows.lines import C_KMS, COMPLEXES, SQRT2PI, ComplexFit, prepare_window

__all__ = ["fit_row", "plot_completeness", "plot_fit", "plot_population", "qa_worst_fits", "save"]

EPS_LINES = (0.005, 0.05)


def save(fig: plt.Figure, path_stem: str | Path) -> list[Path]:
    """Save *fig* as ``<stem>.png`` and ``<stem>.pdf``; close it; return both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=110, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None)
        out.append(p)
    plt.close(fig)
    return out


def _components(fit, i: int, lam: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each group's profile for spectrum i (intrinsic + instrument as fitted)."""
    m = fit.model
    p = fit.lm.params[i : i + 1]
    out: dict[str, np.ndarray] = {}
    for gi, _name, lam0, kind, ip, extra in m.terms:
        iv, _isg = m.kin[gi]
        v, s = p[0, iv], m.sigma(p, gi)[0]
        si2 = m._si2[i, : lam.size]
        st = np.sqrt(s * s + si2)
        u = C_KMS * (np.log(lam) - np.log(lam0) - np.log1p(m.z[i]))
        f = m._flux(p, kind, ip, extra)[0][0]
        prof = f * C_KMS / (lam * SQRT2PI * st) * np.exp(-0.5 * ((u - v) / st) ** 2)
        label = m.groups[gi].name
        out[label] = out.get(label, 0.0) + prof
    return list(out.items())


def fit_row(result: OutflowResult, cname: str, i: int) -> tuple[ComplexFit, int, dict[str, Any]]:
    """The chosen fit of complex *cname* for spectrum *i*, its row in that fit, and the
    spectrum's fitted pixels (``lam``, ``flux``, ``ivar``, ``sig_inst``, ``cont``,
    ``npix``), unpadded.

    The pixels come from the window the batch was fitted on, so arrays line up with
    ``fit.lm.model[j]`` whatever the other spectra of the batch (windows are padded to
    the batch's longest row).
    """
    assert result.lines is not None and result.prepared is not None and result.continuum is not None
    choice = result.lines.choice.get(cname)
    if choice is None or choice[i] < 0:
        raise InputError(f"complex {cname} was not fitted for spectrum {i}", parameter="i")
    fit = result.lines.fits[cname][int(choice[i])]
    j = int(np.flatnonzero(np.flatnonzero(choice >= 0) == i)[0])
    if fit.window is not None:
        row: dict[str, Any] = dict(fit.window.row(j))
    else:  # a fit made outside fit_complex: rebuild the window of this spectrum alone
        prep = result.prepared
        win = prepare_window(
            prep.wave,
            prep.flux[i : i + 1] - result.continuum[i : i + 1],
            prep.ivar[i : i + 1],
            prep.z[i : i + 1],
            prep.sig_inst[i : i + 1],
            COMPLEXES[cname].window,
        )
        row = dict(win.row(0))
    row["npix"] = row["lam"].size
    return fit, j, row


def plot_fit(result: OutflowResult, i: int, title: str = "", complexes: tuple[str, ...] | None = None) -> plt.Figure:
    """Data − continuum, model and components of spectrum *i* for each fitted complex."""
    assert result.lines is not None and result.prepared is not None and result.continuum is not None
    prep = result.prepared
    names = [c for c in (complexes or tuple(result.lines.fits)) if c in result.lines.fits]
    names = [c for c in names if result.lines.choice[c][i] >= 0]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5.5 * max(len(names), 1), 3.8), squeeze=False)
    for ax, cname in zip(axes[0], names, strict=False):
        fit, j, row = fit_row(result, cname, i)
        lam = row["lam"]
        m = row["npix"]
        good = row["ivar"] > 0
        rest = lam / (1 + prep.z[i])
        mod = fit.model
        local = fit.lm.params[j, mod.ia] + fit.lm.params[j, mod.ib] * mod._x[j, :m]  # local linear continuum
        ax.plot(rest, np.where(good, row["flux"] - local, np.nan), color="0.3", lw=0.7, label="data − continuum")
        ax.plot(rest, fit.lm.model[j, :m] - local, color="C3", lw=1.3, label=f"model ({fit.label.split(':')[1]})")
        for (label, prof), col in zip(_components(fit, j, lam), ("C0", "C2", "C1", "C4", "C5", "C6"), strict=False):
            ax.plot(rest, prof, color=col, lw=0.9, ls="--", label=label.lower())
        ax.set_xlabel("rest wavelength [Å]")
        ax.set_ylabel(r"$f_\lambda$ [$10^{-17}$ erg s$^{-1}$ cm$^{-2}$ Å$^{-1}$]")
        ax.set_title(f"{cname}  χ²/ν = {result.columns[f'{cname}_RCHI2'][i]:.2f}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title or f"TARGETID {result.columns['TARGETID'][i]}  z_sys = {result.columns['Z_SYS'][i]:.5f}")
    fig.tight_layout()
    return fig


def plot_population(result: OutflowResult) -> plt.Figure:
    """BI distribution; v_out vs L_bol; Ė_kin/L_bol vs L_bol ([O III] and BAL apart)."""
    c = result.columns
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    bi = c["BI_CIV"][c["BI_CIV"] > 0]
    ax[0].hist(bi, bins=np.logspace(1, 4.5, 25) if bi.size else 10, color="C0")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("BI(C IV) [km/s] (baltools)")
    ax[0].set_ylabel("N")
    ax[0].set_title(f"{bi.size} BALs of {int(np.sum(c['BAL_MEASURED']))} searched")
    det = c["OUTFLOW_DETECTED"].astype(bool)
    ax[1].scatter(c["LOGLBOL"][det], c["V_OUT"][det], s=10, color="C3", label="[O III] outflow")
    ax[1].scatter(c["LOGLBOL"], c["BAL_V"], s=10, color="C0", marker="^", label="BAL (BI-weighted)")
    ax[1].set_xlabel(r"log $L_{\rm bol}$ [erg/s]")
    ax[1].set_ylabel(r"$v_{\rm out}$ [km/s]")
    ax[1].legend(fontsize=8)
    ax[2].scatter(c["LOGLBOL"], np.log10(c["OIII_EPS"]), s=10, color="C3", label="[O III] (parametric)")
    ax[2].scatter(c["LOGLBOL"], np.log10(c["OIII_NP_EPS"]), s=10, color="C1", marker="x", label="[O III] (w80)")
    ax[2].scatter(c["LOGLBOL"], np.log10(c["BAL_EPS"]), s=10, color="C0", marker="^", label="BAL (assumed R)")
    for e in EPS_LINES:
        ax[2].axhline(np.log10(e), color="0.5", ls=":", lw=0.8)
    ax[2].set_xlabel(r"log $L_{\rm bol}$ [erg/s]")
    ax[2].set_ylabel(r"log $\dot E_{\rm kin}/L_{\rm bol}$")
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def qa_worst_fits(
    result: OutflowResult, out_dir: str | Path, n_worst: int = 6, complex_name: str = "HB_OIII"
) -> list[Path]:
    """One page (PNG + PDF) of the *n_worst* fits by reduced χ² of a complex, plus qa.md."""
    out = Path(out_dir)
    rchi = result.columns.get(f"{complex_name}_RCHI2")
    if rchi is None or not np.isfinite(rchi).any():
        return []
    order = np.argsort(np.where(np.isfinite(rchi), -rchi, np.inf))[:n_worst]
    order = [int(i) for i in order if np.isfinite(rchi[i])]
    paths: list[Path] = []
    fig, axes = plt.subplots(len(order), 1, figsize=(8, 2.6 * len(order)), squeeze=False)
    assert result.lines is not None and result.prepared is not None and result.continuum is not None
    prep = result.prepared
    lines_md = ["# Outflow fits: worst by reduced χ²", "", "| TARGETID | complex | model | χ²/ν |", "|---|---|---|---|"]
    for ax, i in zip(axes[:, 0], order, strict=True):
        fit, j, row = fit_row(result, complex_name, i)
        rest = row["lam"] / (1 + prep.z[i])
        ax.plot(rest, np.where(row["ivar"] > 0, row["flux"], np.nan), color="0.3", lw=0.6)
        ax.plot(rest, fit.lm.model[j, : row["npix"]], color="C3", lw=1.0)
        tid = result.columns["TARGETID"][i]
        ax.set_title(f"TARGETID {tid}  {fit.label}  χ²/ν = {rchi[i]:.2f}", fontsize=8)
        lines_md.append(f"| {tid} | {complex_name} | {fit.label} | {rchi[i]:.2f} |")
    fig.tight_layout()
    paths += save(fig, out / "qa_worst_fits")
    md = out / "qa_worst_fits.md"
    md.write_text("\n".join([*lines_md, "", "![worst fits](qa_worst_fits.png)", ""]))
    paths.append(md)
    return paths


def plot_completeness(
    v_out: np.ndarray,
    snr: np.ndarray,
    detected: np.ndarray,
    oracle_detected: np.ndarray,
    expected_dchi2: np.ndarray,
    *,
    fpr: float,
    oracle_fpr: float,
    v_edges: tuple[float, ...] = (200.0, 500.0, 1000.0, 2000.0),
    snr_edges: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0, 1e9),
) -> plt.Figure:
    """Completeness maps of an injection–recovery run.

    Parameters
    ----------
    v_out, snr
        ``(N,)`` injected v_out [km/s] and measured total [O III] 5007 S/N of each injection.
    detected, oracle_detected
        ``(N,)`` bool: found by the pipeline; found by the known-shape likelihood-ratio test.
    expected_dchi2
        ``(N,)`` noiseless Δχ² of each wing against the best no-wing fit.
    fpr, oracle_fpr
        False-positive rates of the two on the null spectra (shown in the titles).
    v_edges, snr_edges
        Bin edges of the maps.
    """
    v_out, snr = np.asarray(v_out), np.asarray(snr)
    det, orc = np.asarray(detected, dtype=bool), np.asarray(oracle_detected, dtype=bool)
    if not (v_out.shape == snr.shape == det.shape == orc.shape == np.shape(expected_dchi2)):
        raise InputError("v_out, snr, detected, oracle_detected, expected_dchi2 must have one shape", parameter="v_out")
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    nv, ns = len(v_edges) - 1, len(snr_edges) - 1
    for a, d, name, f in ((ax[0], det, "pipeline", fpr), (ax[1], orc, "known-shape oracle", oracle_fpr)):
        frac = np.full((nv, ns), np.nan)
        cnt = np.zeros((nv, ns), dtype=int)
        for i in range(nv):
            for j in range(ns):
                sel = (
                    (v_out >= v_edges[i]) & (v_out < v_edges[i + 1]) & (snr >= snr_edges[j]) & (snr < snr_edges[j + 1])
                )
                cnt[i, j] = int(sel.sum())
                if sel.any():
                    frac[i, j] = d[sel].mean()
        a.imshow(frac, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i in range(nv):
            for j in range(ns):
                if cnt[i, j]:
                    col = "k" if frac[i, j] > 0.6 else "w"
                    a.text(j, i, f"{frac[i, j]:.2f}\n({cnt[i, j]})", ha="center", va="center", fontsize=8, color=col)
        a.set_xticks(range(ns), [f"{snr_edges[j]:g}–{snr_edges[j + 1]:g}".replace("1e+09", "∞") for j in range(ns)])
        a.set_yticks(range(nv), [f"{v_edges[i]:g}–{v_edges[i + 1]:g}" for i in range(nv)])
        a.set_xlabel("[O III] 5007 S/N (measured)")
        a.set_ylabel(r"injected $v_{\rm out}$ [km/s]")
        a.set_title(f"{name}: completeness (FPR {100 * f:.1f} % on nulls)", fontsize=9)
    e = np.asarray(expected_dchi2)
    edges = np.array([0, 5, 10, 20, 30, 50, 100, 300, 1e5])
    mid = np.sqrt(np.maximum(edges[:-1], 1) * edges[1:])
    for d, name, col in ((det, "pipeline", "C3"), (orc, "known-shape oracle", "C0")):
        y = [d[(e >= lo) & (e < hi)].mean() if ((e >= lo) & (e < hi)).any() else np.nan for lo, hi in pairwise(edges)]
        ax[2].plot(mid, y, "o-", color=col, label=name)
    ax[2].set_xscale("log")
    ax[2].set_ylim(0, 1.02)
    ax[2].axhline(0.95, color="0.5", ls=":", lw=0.8)
    ax[2].set_xlabel(r"expected $\Delta\chi^2$ of the wing")
    ax[2].set_ylabel("completeness")
    ax[2].set_title(f"all {e.size} injections (any v_out, S/N)", fontsize=9)
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    return fig
