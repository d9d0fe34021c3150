"""Publication figures of the void-galaxy analysis (PNG and PDF, matplotlib Agg).

Each function takes arrays/summaries (no file reading) and a path stem; it writes
``stem.png`` (200 dpi) and ``stem.pdf`` and returns both paths. Axis labels state h.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["main_sequence_figure", "mass_function_figure", "quenched_fraction_figure", "slice_map_figure"]

_COL = {"void": "#1f77b4", "wall": "#d62728"}


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(out[0], dpi=200, bbox_inches="tight")
    fig.savefig(out[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return out


def _centres(edges: np.ndarray) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    return 0.5 * (e[1:] + e[:-1])


def mass_function_figure(smf: dict[str, Any], edges: np.ndarray, h: float, stem: Path, title: str = "") -> list[Path]:
    """Φ(M*) of void and wall galaxies with jackknife errors."""
    fig, ax = plt.subplots(figsize=(5, 4))
    x = _centres(edges)
    for name in ("void", "wall"):
        d = smf.get(name)
        if not d:
            continue
        phi = np.asarray(d["phi"], dtype=float)
        err = np.asarray(d["phi_err"], dtype=float)
        ok = np.isfinite(phi) & (phi > 0)
        ax.errorbar(x[ok], phi[ok], yerr=err[ok], fmt="o-", color=_COL[name], label=f"{name} (N={int(np.sum(d['n']))})")
    ax.set_yscale("log")
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    ax.set_xlabel(rf"$\log_{{10}} M_*/M_\odot$ ($h={h:g}$)")
    ax.set_ylabel(r"$\Phi$ [$h^3\,\mathrm{Mpc}^{-3}\,\mathrm{dex}^{-1}$]")
    ax.set_title(title or "Stellar mass function by environment")
    ax.legend(frameon=False)
    return _save(fig, stem)


def main_sequence_figure(
    logm: np.ndarray, log_sfr: np.ndarray, is_void: np.ndarray, is_wall: np.ndarray,
    ms: dict[str, Any], edges: np.ndarray, h: float, stem: Path,
) -> list[Path]:
    """log SFR vs log M* (points) with the star-forming medians and scatter per environment."""
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, m in (("wall", is_wall), ("void", is_void)):
        ax.scatter(logm[m], log_sfr[m], s=2, alpha=0.25, color=_COL[name], rasterized=True)
        d = ms.get(name, {})
        med = np.asarray(d.get("median", []), dtype=float)
        sc = np.asarray(d.get("scatter", []), dtype=float)
        if med.size:
            ax.errorbar(_centres(edges), med, yerr=sc, fmt="s-", color=_COL[name], label=f"{name} SF median ± scatter")
    ax.set_xlabel(rf"$\log_{{10}} M_*/M_\odot$ ($h={h:g}$)")
    ax.set_ylabel(rf"$\log_{{10}}$ SFR [$M_\odot$/yr] ($h={h:g}$)")
    ax.set_title("Star-forming main sequence")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _save(fig, stem)


def quenched_fraction_figure(cmp_: Any, stem: Path, title: str = "") -> list[Path]:
    """f_Q vs mass, void vs matched wall, with errors (jackknife by default)."""
    fig, ax = plt.subplots(figsize=(5, 4))
    x = _centres(cmp_.mass_edges)
    ax.errorbar(x - 0.02, cmp_.fq_void, yerr=cmp_.fq_void_err, fmt="o-", color=_COL["void"], label="void")
    ax.errorbar(x + 0.02, cmp_.fq_wall, yerr=cmp_.fq_wall_err, fmt="s-", color=_COL["wall"], label="wall (matched)")
    ax.set_xlabel(rf"$\log_{{10}} M_*/M_\odot$ ($h={cmp_.h:g}$)")
    ax.set_ylabel("quenched fraction")
    ax.set_xlim(float(cmp_.mass_edges[0]), float(cmp_.mass_edges[-1]))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or f"Δf_Q = {cmp_.combined_diff:+.3f} ± {cmp_.combined_diff_err:.3f} ({cmp_.error_method})")
    ax.legend(frameon=False)
    return _save(fig, stem)


def slice_map_figure(xyz_gal: np.ndarray, flag: np.ndarray, holes_xyz: np.ndarray, holes_r: np.ndarray,
                     stem: Path, *, thickness: float = 10.0, units: str = "Mpc/h") -> list[Path]:
    """A slab |z − z0| < thickness/2 (z0 = median galaxy z): hole cross-sections and galaxies by flag."""
    from matplotlib.patches import Circle

    fig, ax = plt.subplots(figsize=(6, 6))
    if len(xyz_gal):
        z0 = float(np.median(xyz_gal[:, 2]))
        g = np.abs(xyz_gal[:, 2] - z0) < thickness / 2
        dz = np.abs(holes_xyz[:, 2] - z0) if len(holes_xyz) else np.zeros(0)
        cut = dz < holes_r
        for c, r, d in zip(holes_xyz[cut], holes_r[cut], dz[cut], strict=False):
            ax.add_patch(Circle((c[0], c[1]), np.sqrt(r * r - d * d), color="#1f77b4", alpha=0.15, lw=0))
        for code, col, lab in ((0, "k", "wall"), (1, "#1f77b4", "void"), (2, "orange", "edge")):
            m = g & (flag == code)
            ax.scatter(xyz_gal[m, 0], xyz_gal[m, 1], s=3, color=col, label=lab)
        ax.set_title(f"slice |Z - {z0:.0f}| < {thickness / 2:g} {units}")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(f"X [{units}]")
    ax.set_ylabel(f"Y [{units}]")
    ax.legend(frameon=False, markerscale=3, loc="upper right")
    return _save(fig, stem)
