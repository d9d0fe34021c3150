"""The sample-sky slice figure: a redshift-space wedge of galaxies with their VoidFinder voids.

``python -m desilab.sample.figure SKY_DIR OUT.png [--cap NGC] [--thickness 10]`` reads the
sky back through :mod:`desilab.io` (zcatalog, DESIVAST) and the truth table (tracer flag),
cuts a slab through the observer, and draws galaxies and the cross-sections of the
VoidFinder holes with the slab's mid-plane, like the wedge plots of redshift surveys.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["plot_slice", "slice_plane"]


def slice_plane(ra_mid: float, dec_mid: float, ra_span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (e1, e2, n): the plane through the observer and the great circle that
    passes through (ra_mid ± ra_span/2, dec_mid); e1 points at the slice centre."""
    from desilab.sky.geometry import radec_to_unit

    a = radec_to_unit(ra_mid - ra_span / 2, dec_mid)
    b = radec_to_unit(ra_mid + ra_span / 2, dec_mid)
    n = np.cross(a, b)
    n /= np.linalg.norm(n)
    e1 = a + b
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return e1, e2, n


def plot_slice(sky: Path, out: Path, *, cap: str = "NGC", thickness: float = 10.0, dpi: int = 150) -> Path:
    """Draw the slice of a sample sky's cap and save it (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    from desilab.io.desivast import read_voidfinder
    from desilab.io.zcatalog import read_zcatalog
    from desilab.sky import Cosmology, radec_to_xyz

    sky = Path(sky)
    zc = read_zcatalog(
        sky / "spectro/redux/iron/zcatalog/v1/zpix-main-bright.fits", ["TARGETID", "TARGET_RA", "TARGET_DEC", "Z"]
    )
    truth = pq.read_table(sky / "truth/galaxies.parquet", columns=["TARGETID", "IS_TRACER", "CAP"]).to_pandas()
    vf = read_voidfinder(sky / f"vac/dr1/desivast/v1.0/DESIVAST_BGS_VOLLIM_VoidFinder_{cap}.fits")
    cosmo = Cosmology(vf.omega_m, vf.h)
    tid = zc.column("TARGETID").to_numpy()
    ra, dec, z = (zc.column(c).to_numpy() for c in ("TARGET_RA", "TARGET_DEC", "Z"))
    incap = (ra > 83) & (ra < 304) if cap == "NGC" else ~((ra > 83) & (ra < 304))
    ok = incap & (z > 0) & (z < 0.26)
    tr_ids = set(truth.TARGETID[truth.IS_TRACER].tolist())
    is_tr = np.fromiter((t in tr_ids for t in tid), bool, len(tid))
    xyz = radec_to_xyz(ra[ok], dec[ok], cosmo.comoving_distance_mpch(z[ok]))
    is_tr = is_tr[ok]
    ra_c = ra[ok]
    # centre the slice on the cap's galaxies
    lo, hi = np.percentile(ra_c, [1, 99])
    e1, e2, n = slice_plane(0.5 * (lo + hi), float(np.median(dec[ok])), hi - lo)
    h = xyz @ n
    sl = np.abs(h) < thickness / 2
    u, v = xyz[sl] @ e1, xyz[sl] @ e2
    c = np.column_stack([vf.holes.column(k).to_numpy() for k in "XYZ"])
    r = vf.holes.column("RADIUS").to_numpy()
    hc = c @ n
    cut = np.abs(hc) < r
    cr = np.sqrt(r[cut] ** 2 - hc[cut] ** 2)
    cu, cv = c[cut] @ e1, c[cut] @ e2
    mc = np.column_stack([vf.maximals.column(k).to_numpy() for k in "XYZ"])
    mr = vf.maximals.column("RADIUS").to_numpy()
    mh = mc @ n
    mcut = np.abs(mh) < mr

    dmax = float(cosmo.comoving_distance_mpch(0.24))
    half = max(float(np.abs(v).max()) if len(v) else 50.0, 50.0) + 20.0
    height = float(np.clip(10.0 * 2 * half / (dmax + 80.0), 3.6, 9.0))
    fig, ax = plt.subplots(figsize=(10.0, height + 0.9))
    ax.add_collection(
        PatchCollection(
            [Circle((a, b), rr) for a, b, rr in zip(cu, cv, cr, strict=True)],
            facecolor="#9ecae1",
            edgecolor="none",
            alpha=0.55,
            zorder=1,
        )
    )
    ax.add_collection(
        PatchCollection(
            [
                Circle((a @ e1, a @ e2), np.sqrt(rr**2 - hh**2))
                for a, rr, hh in zip(mc[mcut], mr[mcut], mh[mcut], strict=True)
            ],
            facecolor="none",
            edgecolor="#08519c",
            linewidth=0.8,
            zorder=2,
        )
    )
    t = is_tr[sl]
    ax.scatter(u[~t], v[~t], s=1.5, c="0.6", lw=0, zorder=3, label="other BGS galaxies")
    ax.scatter(u[t], v[t], s=3.0, c="k", lw=0, zorder=4, label="volume-limited tracers (M_r ≤ −20)")
    ang = np.arctan2(v, u)
    a0, a1 = np.percentile(ang, [0.2, 99.8]) if len(ang) else (-0.2, 0.2)
    for d in (200, 400, 600):
        th = np.linspace(a0, a1, 50)
        ax.plot(d * np.cos(th), d * np.sin(th), color="0.8", lw=0.5, zorder=0)
        ax.text(d * np.cos(a1), d * np.sin(a1) + 4, f"{d}", fontsize=7, color="0.5", ha="center", va="bottom")
    for a in (a0, a1):
        ax.plot([0, (dmax + 20) * np.cos(a)], [0, (dmax + 20) * np.sin(a)], color="0.8", lw=0.5, zorder=0)
    ax.plot(0, 0, marker="*", color="C3", ms=8)
    ax.set_aspect("equal")
    ax.set_xlabel("comoving distance along the slice [Mpc/h]")
    ax.set_ylabel("[Mpc/h]")
    ax.set_title(
        f"Sample sky, {cap}: {thickness:.0f} Mpc/h redshift-space slice with VoidFinder holes "
        "(blue; maximal spheres outlined)",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8, markerscale=4, frameon=False)
    ax.set_xlim(-10, dmax + 60)
    ax.set_ylim(-half, half)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sky", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--cap", default="NGC", choices=("NGC", "SGC"))
    p.add_argument("--thickness", type=float, default=10.0)
    a = p.parse_args(argv)
    plot_slice(a.sky, a.out, cap=a.cap, thickness=a.thickness)


if __name__ == "__main__":
    main()
