"""From a classified galaxy table to the statistics of star formation by environment.

The steps (each reported with counts in the summary):

1. **Tracers only**: statistics use the volume-limited tracer sample (``IS_TRACER``);
   extrapolated galaxies are classified in the VAC but not used here.
2. **Environment labels** from one finder's flag: 1 void, 0 wall; 2 (edge) and 9
   (outside) are dropped; with ``edge="buffer"`` galaxies with ``EDGE_BUFFER`` are
   dropped too (DESIVAST's 30 Mpc/h rule).
3. **Sanity cuts** (:func:`desilab.voids.stats.sanity_cuts`) and the **quenching
   definition** (sSFR or Dn4000).
4. **Mass completeness** per redshift bin (:func:`desilab.voids.stats.mass_completeness`).
5. **Volumes** for the mass function: the survey volume (mask area × shell between
   DLIML and DLIMU) times the fraction of uniform randoms the same classification calls
   void / wall (randoms drawn per shard with :func:`desilab.compute.shard_rng`, so the
   numbers do not depend on the executor).
6. **Jackknife regions**: NESTED HEALPix pixels at the coarsest nside giving ≥ 4 pixels
   per region, grouped into ``n_regions`` (default 64 ≥ 50) equal-count runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from desilab.compute import shard_rng
from desilab.errors import InputError
from desilab.sky.geometry import radec_to_unit
from desilab.voids.membership import HoleGrid, SurveyMask, classify_voidfinder, vec2pix_nest
from desilab.voids.stats import (
    compare_quenching,
    jackknife_regions,
    main_sequence,
    mass_completeness,
    mass_function,
    quenched,
    sanity_cuts,
    to_h,
)

__all__ = [
    "RandomsJob",
    "StatsConfig",
    "jackknife_nside",
    "random_volume_fractions",
    "run_statistics",
    "survey_randoms",
]


@dataclass(frozen=True)
class StatsConfig:
    """Choices of the statistics (all recorded in the summary)."""

    finder: str = "ENV_VOIDFINDER"
    quenched_definition: str = "ssfr"
    edge: str = "probe"
    h: float = 1.0
    mass_edges: tuple[float, ...] = (9.0, 9.5, 10.0, 10.5, 11.0, 11.5, 12.0)
    n_z_bins: int = 6
    n_regions: int = 64
    mag_limit: float = -20.0
    min_per_bin: int = 5


@dataclass(frozen=True)
class RandomsJob:
    """One shard of uniform randoms in the survey volume (picklable)."""

    survey: SurveyMask
    n: int
    shard: int


def survey_randoms(job: RandomsJob, rng: np.random.Generator) -> np.ndarray:
    """Uniform points in the survey volume.

    Angular part: a uniformly chosen in-mask pixel (HEALPix pixels have equal area), then
    a uniform point in the spherical cap of radius ``max_pixrad`` around its centre,
    rejected unless it falls in that pixel (acceptance ≈ 0.5). Radial part: r³ uniform
    between the distance limits.
    """
    import healpy as hp

    sv = job.survey
    pix = np.flatnonzero(sv.mask)
    if len(pix) == 0:
        raise InputError("the survey mask is empty", parameter="survey")
    rad = hp.max_pixrad(sv.nside)
    out = []
    need = job.n
    while need > 0:
        m = 2 * need + 16
        p = pix[rng.integers(0, len(pix), m)]
        c = np.stack(hp.pix2vec(sv.nside, p, nest=True), axis=1)
        # uniform in a cap around the z axis, then rotated to c
        cosr = 1 - rng.uniform(0, 1 - np.cos(rad), m)
        phi = rng.uniform(0, 2 * np.pi, m)
        sinr = np.sqrt(1 - cosr**2)
        a = np.where(np.abs(c[:, 2:3]) < 0.9, np.array([[0.0, 0, 1]]), np.array([[1.0, 0, 0]]))
        e1 = np.cross(c, a)
        e1 /= np.linalg.norm(e1, axis=1)[:, None]
        e2 = np.cross(c, e1)
        v = c * cosr[:, None] + (e1 * np.cos(phi)[:, None] + e2 * np.sin(phi)[:, None]) * sinr[:, None]
        ok = vec2pix_nest(sv.nside, v) == p
        v = v[ok][:need]
        r = np.cbrt(rng.uniform(sv.d_min**3, sv.d_max**3, len(v)))
        out.append(v * r[:, None])
        need -= len(v)
    return np.vstack(out)


def random_volume_fractions(
    survey: SurveyMask, grid: HoleGrid, *, n: int, seed: int, executor: Any = None, shards: int = 4,
    rule: str = "probe", edge_theta: np.ndarray | None = None,
) -> dict[str, float]:
    """Fractions of the survey volume the VoidFinder flags call void / wall / edge, from randoms."""
    jobs = [RandomsJob(survey, n // shards + (1 if i < n % shards else 0), i) for i in range(shards)]
    if executor is None:
        parts = [survey_randoms(j, shard_rng(seed, ("voids-randoms", j.shard))) for j in jobs]
    else:
        parts = list(executor.map(survey_randoms, jobs, seed=seed, ids=[("voids-randoms", j.shard) for j in jobs]))
    pts = np.vstack(parts)
    flag = classify_voidfinder(pts, grid, survey, rule=rule, edge_theta=edge_theta, executor=executor).flag
    area = survey.mask.mean() * 4 * np.pi
    vol = area / 3.0 * (survey.d_max**3 - survey.d_min**3)
    return {
        "n_randoms": len(pts),
        "survey_volume_mpch3": float(vol),
        "void": float(np.mean(flag == 1)),
        "wall": float(np.mean(flag == 0)),
        "edge": float(np.mean(flag == 2)),
    }


def jackknife_nside(ra: np.ndarray, dec: np.ndarray, n_regions: int) -> int:
    """Coarsest NESTED nside with at least 4 occupied pixels per jackknife region (≤ 1024)."""
    u = radec_to_unit(ra, dec)
    nside = 4
    while nside < 1024:
        if len(np.unique(vec2pix_nest(nside, u))) >= 4 * n_regions:
            break
        nside *= 2
    return nside


def _as(x: Any) -> np.ndarray:
    return np.asarray(x)


def run_statistics(
    env: dict[str, np.ndarray],
    props: dict[str, np.ndarray],
    cfg: StatsConfig,
    *,
    volume_fractions: dict[str, float] | None = None,
    bootstrap: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Statistics by environment for one finder.

    Parameters
    ----------
    env
        Columns of the classified table (``IS_TRACER``, ``RA``, ``DEC``, ``Z``,
        ``EDGE_BUFFER`` and ``cfg.finder``).
    props
        Row-matched FastSpecFit values: ``LOGMSTAR``, ``SFR`` (h = 1), ``ABSMAG01_SDSS_R``;
        optional ``DN4000``, ``LOGMSTAR_IVAR``, ``SFR_IVAR``.
    cfg
        :class:`StatsConfig`.
    volume_fractions
        :func:`random_volume_fractions` (needed for the mass function).
    bootstrap
        Optional per-galaxy bootstrap multiplicities over the *selected* galaxies.

    Returns
    -------
    summary, arrays
        JSON-ready summary and the arrays the figures need.
    """
    if cfg.finder not in env:
        raise InputError(f"no column {cfg.finder} in the classified table", column=cfg.finder)
    n = len(env["Z"])
    counts: dict[str, Any] = {"galaxies": n}
    flag = _as(env[cfg.finder])
    sel = _as(env["IS_TRACER"]).astype(bool)
    counts["tracers"] = int(sel.sum())
    sel &= np.isin(flag, (0, 1))
    counts["tracers_void_or_wall"] = int(sel.sum())
    if cfg.edge == "buffer":
        sel &= ~_as(env["EDGE_BUFFER"]).astype(bool)
        counts["after_30mpch_buffer"] = int(sel.sum())
    keep, cut_counts = sanity_cuts(
        _as(props["LOGMSTAR"]), _as(props["SFR"]),
        logmstar_ivar=props.get("LOGMSTAR_IVAR"), sfr_ivar=props.get("SFR_IVAR"),
        dn4000=props.get("DN4000") if cfg.quenched_definition == "dn4000" else None,
    )
    counts["sanity_cuts_all_rows"] = cut_counts
    sel &= keep
    counts["after_sanity_cuts"] = int(sel.sum())
    logm = to_h(_as(props["LOGMSTAR"]), cfg.h)
    log_sfr = np.full(n, np.nan)
    pos = _as(props["SFR"]) > 0
    log_sfr[pos] = to_h(np.log10(_as(props["SFR"])[pos]), cfg.h)
    q = quenched(logm, np.where(pos, 10**log_sfr, 0.0), dn4000=props.get("DN4000"),
                 definition=cfg.quenched_definition)
    z = _as(env["Z"]).astype(np.float64)
    m_r = _as(props["ABSMAG01_SDSS_R"]).astype(np.float64) + 0.97 * (z - 0.1)
    z_edges = np.linspace(0.0, float(np.nanmax(z[sel])) + 1e-9, cfg.n_z_bins + 1) if sel.any() else np.array([0, 1.0])
    if sel.sum() < 20:
        raise InputError(f"only {int(sel.sum())} galaxies left after the cuts; nothing to measure", parameter="sample")
    lim_bins, lim_gal = mass_completeness(
        logm[sel], m_r[sel], z[sel], q[sel], mag_limit=cfg.mag_limit, z_edges=z_edges
    )
    complete = np.zeros(n, dtype=bool)
    complete[np.flatnonzero(sel)] = logm[sel] >= lim_gal
    counts["above_mass_completeness"] = int(complete.sum())
    sel &= complete
    is_void = sel & (flag == 1)
    is_wall = sel & (flag == 0)
    counts["void"] = int(is_void.sum())
    counts["wall"] = int(is_wall.sum())
    ra, dec = _as(env["RA"]), _as(env["DEC"])
    nside = jackknife_nside(ra[sel], dec[sel], cfg.n_regions)
    pix = vec2pix_nest(nside, radec_to_unit(ra[sel], dec[sel]))
    region = np.full(n, -1, dtype=np.int64)
    region[sel] = jackknife_regions(pix, cfg.n_regions)
    nreg = int(region.max()) + 1
    me = np.asarray(cfg.mass_edges, dtype=np.float64)
    idx = np.flatnonzero(sel)
    cmp_ = compare_quenching(
        logm[idx], z[idx], q[idx], is_void[idx], is_wall[idx], region[idx], mass_edges=me, z_edges=z_edges,
        h=cfg.h, bootstrap=bootstrap, min_per_bin=cfg.min_per_bin,
    )
    smf: dict[str, Any] = {}
    if volume_fractions is not None:
        vol = volume_fractions["survey_volume_mpch3"]
        for name, m_env in (("void", is_void), ("wall", is_wall)):
            f = volume_fractions[name]
            if f <= 0:
                smf[name] = None
                continue
            res = mass_function(logm[m_env], f * vol, me, region[m_env], n_regions=nreg)
            # a bin reaching below the highest completeness limit is incomplete: not reported
            incomplete = me[:-1] < np.nanmax(lim_bins)
            res["phi"][incomplete] = np.nan
            res["phi_err"][incomplete] = np.nan
            smf[name] = {k: v.tolist() for k, v in res.items()} | {
                "volume_mpch3": f * vol,
                "incomplete_bins": np.flatnonzero(incomplete).tolist(),
                "empty_bins": np.flatnonzero(res["empty"]).tolist(),
            }
    ms = {}
    for name, m_env in (("void", is_void), ("wall", is_wall)):
        sf = m_env & ~q
        ms[name] = {k: v.tolist() for k, v in main_sequence(logm[sf], log_sfr[sf], me).items()}
    summary = {
        "finder": cfg.finder,
        "h": cfg.h,
        "units": {
            "mass": f"log10 M*/Msun at h = {cfg.h} (FastSpecFit h = 1 values - 2 log10 h)",
            "sfr": f"log10 SFR/(Msun/yr) at h = {cfg.h}",
            "mass_function": f"(Mpc/h)^-3 dex^-1 (distances in the void catalogs' Mpc/h; masses at h = {cfg.h})",
        },
        "quenched_definition": (
            "log10 sSFR < -11 [1/yr]" if cfg.quenched_definition == "ssfr" else "DN4000 > 1.6"
        ),
        "edge_rule": cfg.edge,
        "completeness": {
            "method": "per z bin, 95th percentile of log M* + 0.4 (M_r - M_lim) over quenched galaxies",
            "z_edges": z_edges.tolist(),
            "logm_limit": lim_bins.tolist(),
            "weights": "none: the DESIVAST completeness mask (tracer sample) is the completeness treatment",
        },
        "jackknife": {"nside": nside, "regions": nreg, "kind": "HEALPix NESTED runs of equal galaxy count"},
        "counts": counts,
        "quenching": cmp_.to_dict(),
        "mass_function": smf,
        "main_sequence": ms,
        "volume_fractions": volume_fractions,
    }
    arrays = {
        "mass_edges": me, "comparison": cmp_, "smf": smf, "ms": ms,
        "logm": logm, "log_sfr": log_sfr, "quenched": q, "is_void": is_void, "is_wall": is_wall,
    }
    return summary, arrays


def finders(columns: Sequence[str]) -> list[str]:
    """ENV_* flag columns present in a classified table."""
    return [c for c in columns if c.startswith("ENV_")]
