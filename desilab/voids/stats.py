"""Star formation by environment: mass functions, main sequence, quenched fractions.

Pure functions on arrays. Conventions stated once and repeated in every output:

* **Units, h.** FastSpecFit masses and SFRs are h = 1 quantities (distances in Mpc/h):
  ``log M*(h) = LOGMSTAR − 2 log10 h`` and likewise for SFR (:func:`to_h`). Everything
  here is computed at the ``h`` passed in (default 1, i.e. "log M* [M☉ h⁻²]" and
  volumes in (Mpc/h)³); sSFR does not depend on h.
* **Sanity cuts** (:func:`sanity_cuts`; real FastSpecFit v3.0 has LOGMSTAR −12…15.6 and
  SFR floored at 0): finite LOGMSTAR with 6 < LOGMSTAR < 13; finite SFR > 0 (a floored
  SFR carries no sSFR); positive LOGMSTAR_IVAR / SFR_IVAR when those v3 columns are
  given; with the Dn4000 definition, finite 0.5 < DN4000 < 3. Counts are returned.
* **Quenched**: ``log10(SFR / M*) < −11`` [yr⁻¹] (default) or ``DN4000 > 1.6``.
* **Completeness** (:func:`mass_completeness`): in a luminosity-limited sample the
  red (high M/L) galaxies drop out first, and void galaxies are bluer, so without a
  stellar-mass limit a quenching difference appears by itself. Per redshift bin, each
  galaxy's limiting mass ``log M_lim = log M* + 0.4 (M_r − M_r,lim)`` is the mass it
  would have at the magnitude limit; the bin's limit is the 95th percentile of
  ``log M_lim`` among its quenched galaxies (Pozzetti et al. 2010 use the faintest 20%;
  the quenched ones are the highest-M/L population), and galaxies below the limit of
  their bin are dropped. The published void catalogs are built on the DESIVAST
  volume-limited tracer sample and its completeness mask; no fibre-incompleteness
  weights are applied (the mask is the completeness treatment — stated in every summary).
* **Errors** default to a spatial **jackknife** over ≥ 50 HEALPix regions
  (:func:`jackknife_regions`: NESTED pixels grouped into contiguous runs of equal galaxy
  count): galaxies of one void are correlated, and a per-galaxy bootstrap
  (:func:`bootstrap_replicates`, offered) underestimates the error.
* **Matching**: wall galaxies are reweighted so that their joint (log M*, z) histogram
  equals that of the void galaxies (:func:`matching_weights`); quenched fractions are
  compared per mass bin and combined (inverse-variance weights from the jackknife,
  the combined statistic recomputed inside the jackknife so bin covariances count).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from desilab.errors import InputError

__all__ = [
    "DN4000_QUENCHED",
    "LOG_SSFR_QUENCHED",
    "EnvironmentComparison",
    "bootstrap_replicates",
    "compare_quenching",
    "jackknife_regions",
    "jackknife_variance",
    "main_sequence",
    "mass_completeness",
    "mass_function",
    "matching_weights",
    "quenched",
    "sanity_cuts",
    "to_h",
]

#: Default quenching threshold on log10 sSFR [1/yr].
LOG_SSFR_QUENCHED = -11.0
#: Alternative threshold on Dn4000.
DN4000_QUENCHED = 1.6


def to_h(log_value_h1: np.ndarray, h: float) -> np.ndarray:
    """Convert a log mass or log SFR given for h = 1 (FastSpecFit) to Hubble parameter h.

    ``log X(h) = log X(h=1) − 2 log10 h`` (both scale with d_L²).
    """
    if not h > 0:
        raise InputError(f"h must be positive, got {h}", parameter="h")
    return np.asarray(log_value_h1, dtype=np.float64) - 2.0 * np.log10(h)


def sanity_cuts(
    logmstar: np.ndarray,
    sfr: np.ndarray,
    *,
    logmstar_ivar: np.ndarray | None = None,
    sfr_ivar: np.ndarray | None = None,
    dn4000: np.ndarray | None = None,
    mass_range: tuple[float, float] = (6.0, 13.0),
) -> tuple[np.ndarray, dict[str, int]]:
    """FastSpecFit failure cuts (module docstring). Returns (keep, counts removed by each rule)."""
    m = np.asarray(logmstar, dtype=np.float64)
    s = np.asarray(sfr, dtype=np.float64)
    keep = np.ones(len(m), dtype=bool)
    counts: dict[str, int] = {"input": len(m)}

    def rule(name: str, ok: np.ndarray) -> None:
        nonlocal keep
        bad = keep & ~ok
        counts[name] = int(bad.sum())
        keep &= ok

    with np.errstate(invalid="ignore"):
        rule("logmstar_nonfinite_or_outside_6_13", np.isfinite(m) & (m > mass_range[0]) & (m < mass_range[1]))
        rule("sfr_nonfinite_or_floored_le_0", np.isfinite(s) & (s > 0))
        if logmstar_ivar is not None:
            rule("logmstar_ivar_le_0", np.asarray(logmstar_ivar, dtype=np.float64) > 0)
        if sfr_ivar is not None:
            rule("sfr_ivar_le_0", np.asarray(sfr_ivar, dtype=np.float64) > 0)
        if dn4000 is not None:
            d = np.asarray(dn4000, dtype=np.float64)
            rule("dn4000_nonfinite_or_outside_0.5_3", np.isfinite(d) & (d > 0.5) & (d < 3.0))
    counts["kept"] = int(keep.sum())
    return keep, counts


def quenched(
    logmstar: np.ndarray, sfr: np.ndarray | None = None, *, dn4000: np.ndarray | None = None,
    definition: str = "ssfr", log_ssfr_cut: float = LOG_SSFR_QUENCHED, dn4000_cut: float = DN4000_QUENCHED,
) -> np.ndarray:
    """Quenched flag: ``log10(SFR) − log M* < log_ssfr_cut`` or ``DN4000 > dn4000_cut``."""
    if definition == "ssfr":
        if sfr is None:
            raise InputError("the sSFR definition needs SFR", parameter="sfr")
        with np.errstate(divide="ignore", invalid="ignore"):
            ssfr = np.log10(np.asarray(sfr, dtype=np.float64)) - np.asarray(logmstar, dtype=np.float64)
        return ssfr < log_ssfr_cut
    if definition == "dn4000":
        if dn4000 is None:
            raise InputError("the Dn4000 definition needs DN4000", parameter="dn4000")
        return np.asarray(dn4000, dtype=np.float64) > dn4000_cut
    raise InputError(f"unknown quenching definition {definition!r} (ssfr or dn4000)", parameter="definition")


def mass_completeness(
    logmstar: np.ndarray,
    m_r: np.ndarray,
    z: np.ndarray,
    is_quenched: np.ndarray,
    *,
    mag_limit: float,
    z_edges: np.ndarray,
    percentile: float = 95.0,
    min_count: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-redshift stellar-mass completeness limit (module docstring).

    Parameters
    ----------
    logmstar, m_r, z, is_quenched
        Per galaxy (log M* at the working h, evolution-corrected M_r, redshift, flag).
    mag_limit
        Absolute-magnitude limit of the sample (−20 for DESIVAST).
    z_edges
        Redshift bin edges.
    percentile, min_count
        The limit is this percentile of log M_lim over the quenched galaxies of the bin
        (all galaxies of the bin when fewer than ``min_count`` are quenched). Bins with
        fewer than ``min_count`` galaxies get the limit of the nearest populated bin.

    Returns
    -------
    limit_per_bin, limit_per_galaxy
        ``(len(z_edges) − 1,)`` limits, and each galaxy's limit (NaN outside the bins).
    """
    lm = np.asarray(logmstar, np.float64) + 0.4 * (np.asarray(m_r, np.float64) - mag_limit)
    zz = np.asarray(z, np.float64)
    q = np.asarray(is_quenched, bool)
    edges = np.asarray(z_edges, np.float64)
    nb = len(edges) - 1
    ib = np.searchsorted(edges, zz, side="right") - 1
    ib[(zz == edges[-1])] = nb - 1
    lim = np.full(nb, np.nan)
    for b in range(nb):
        sel = (ib == b) & np.isfinite(lm)
        if sel.sum() < min_count:
            continue
        use = sel & q if (sel & q).sum() >= min_count else sel
        lim[b] = np.percentile(lm[use], percentile)
    good = np.flatnonzero(np.isfinite(lim))
    if len(good) == 0:
        raise InputError(f"no redshift bin has >= {min_count} galaxies for a completeness limit", parameter="z_edges")
    for b in range(nb):
        if not np.isfinite(lim[b]):
            lim[b] = lim[good[np.argmin(np.abs(good - b))]]
    per = np.full(len(zz), np.nan)
    ok = (ib >= 0) & (ib < nb)
    per[ok] = lim[ib[ok]]
    return lim, per


# --------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------


def jackknife_regions(pix_nested: np.ndarray, n_regions: int = 64) -> np.ndarray:
    """Group galaxies into ``n_regions`` spatially contiguous jackknife regions.

    Galaxies are ordered by a NESTED HEALPix index (contiguous on the sky) and cut into
    runs of equal count at pixel boundaries, so one pixel (and mostly one void) is never
    split between regions.

    Raises
    ------
    InputError
        Fewer distinct pixels than regions (use a finer nside).
    """
    pix = np.asarray(pix_nested, dtype=np.int64)
    upix, inv, cnt = np.unique(pix, return_inverse=True, return_counts=True)
    if len(upix) < n_regions:
        raise InputError(
            f"only {len(upix)} occupied HEALPix pixels for {n_regions} jackknife regions; use a finer nside",
            parameter="n_regions",
        )
    npix = len(upix)
    cum = np.cumsum(cnt)
    targets = cum[-1] * np.arange(1, n_regions) / n_regions
    cuts = np.searchsorted(cum, targets, side="left") + 1  # pixels in the first k regions
    for k in range(1, len(cuts)):  # every region gets at least one pixel
        cuts[k] = max(cuts[k], cuts[k - 1] + 1)
    cuts[0] = max(cuts[0], 1)
    for k in range(len(cuts) - 1, -1, -1):
        cuts[k] = min(cuts[k], npix - (n_regions - 1 - k))
        if k + 1 < len(cuts):
            cuts[k] = min(cuts[k], cuts[k + 1] - 1)
    region_of_pix = np.searchsorted(cuts, np.arange(npix), side="right")
    return region_of_pix[inv]


def jackknife_variance(replicates: np.ndarray) -> np.ndarray:
    """Delete-one jackknife variance ``(N − 1)/N Σ (θ_i − θ̄)²`` over axis 0 (NaNs ignored)."""
    r = np.asarray(replicates, dtype=np.float64)
    n = np.sum(np.isfinite(r), axis=0)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (empty bins) give NaN
        mean = np.nanmean(r, axis=0)
        out = (n - 1) / n * np.nansum((r - mean) ** 2, axis=0)
    return np.where(n > 1, out, np.nan)


def bootstrap_replicates(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) per-galaxy bootstrap multiplicities (how often each galaxy is drawn)."""
    out = np.empty((n_boot, n), dtype=np.int32)
    for b in range(n_boot):
        out[b] = np.bincount(rng.integers(0, n, n), minlength=n)
    return out


# --------------------------------------------------------------------------------------
# Weighted binned sums (the engine behind every statistic and its jackknife)
# --------------------------------------------------------------------------------------


def _binned(values: np.ndarray, weights: np.ndarray, ib: np.ndarray, region: np.ndarray, nbin: int, nreg: int):
    """Sums per (region, bin) of weights and weights × values."""
    ok = (ib >= 0) & (ib < nbin)
    idx = region[ok] * nbin + ib[ok]
    w = np.bincount(idx, weights=weights[ok], minlength=nreg * nbin).reshape(nreg, nbin)
    wv = np.bincount(idx, weights=(weights * values)[ok], minlength=nreg * nbin).reshape(nreg, nbin)
    return w, wv


def _leave_one_out(per_region: np.ndarray) -> np.ndarray:
    return per_region.sum(axis=0)[None, :] - per_region


def _bins(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    ib = np.searchsorted(edges, x, side="right") - 1
    ib[x == edges[-1]] = len(edges) - 2
    ib[~np.isfinite(x)] = -1
    return ib


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def mass_function(
    logmstar: np.ndarray, volume: float, edges: np.ndarray, region: np.ndarray, *, n_regions: int | None = None
) -> dict[str, np.ndarray]:
    """Stellar mass function Φ = N / (V Δlog M) of a volume-limited sample, jackknife errors.

    Parameters
    ----------
    logmstar
        log M* of the galaxies of one environment [M☉ h⁻² at h = 1].
    volume
        Comoving volume the environment occupies [(Mpc/h)³] (for voids: the void volume
        fraction of the survey, measured by classifying uniform randoms, times the survey
        volume).
    edges
        Mass bin edges.
    region
        Jackknife region of each galaxy (0 … n_regions − 1); the volume of each region is
        taken proportional to its galaxy count in the full sample (``n_regions`` from the
        caller's full-sample labelling).

    Returns
    -------
    dict
        ``phi``, ``phi_err`` [(Mpc/h)⁻³ dex⁻¹], ``n`` per bin, and ``empty`` (True for bins
        without a galaxy: Φ = 0 there is an upper limit, so its error is NaN, not 0).
    """
    if not volume > 0:
        raise InputError(f"environment volume must be > 0, got {volume}", parameter="volume")
    m = np.asarray(logmstar, np.float64)
    e = np.asarray(edges, np.float64)
    reg = np.asarray(region, np.int64)
    nreg = int(n_regions if n_regions is not None else (reg.max() + 1 if len(reg) else 1))
    dm = np.diff(e)
    ib = _bins(m, e)
    w, _ = _binned(np.zeros(len(m)), np.ones(len(m)), ib, reg, len(dm), nreg)
    n = w.sum(axis=0)
    phi = n / (volume * dm)
    # delete-one: the volume shrinks with the region removed (volume per region ∝ its share)
    share = np.bincount(reg, minlength=nreg) / max(len(reg), 1)
    loo = _leave_one_out(w) / (volume * (1 - share)[:, None] * dm[None, :])
    err = np.sqrt(jackknife_variance(loo))
    empty = n == 0
    err[empty] = np.nan  # every replicate is 0: a zero error would claim a measurement
    return {"phi": phi, "phi_err": err, "n": n, "empty": empty}


def main_sequence(
    logmstar: np.ndarray, log_sfr: np.ndarray, edges: np.ndarray, *, min_count: int = 5
) -> dict[str, np.ndarray]:
    """Median log SFR vs mass of star-forming galaxies, with the scatter.

    Returns ``median``, ``scatter`` (half the 16–84 percentile range), ``n`` per mass bin
    (NaN where fewer than ``min_count`` galaxies).
    """
    m = np.asarray(logmstar, np.float64)
    s = np.asarray(log_sfr, np.float64)
    e = np.asarray(edges, np.float64)
    ib = _bins(m, e)
    nb = len(e) - 1
    med = np.full(nb, np.nan)
    sc = np.full(nb, np.nan)
    n = np.zeros(nb, dtype=np.int64)
    for b in range(nb):
        v = s[(ib == b) & np.isfinite(s)]
        n[b] = len(v)
        if len(v) >= min_count:
            p16, p50, p84 = np.percentile(v, [16, 50, 84])
            med[b], sc[b] = p50, 0.5 * (p84 - p16)
    return {"median": med, "scatter": sc, "n": n}


def matching_weights(
    logm_void: np.ndarray, z_void: np.ndarray, logm_wall: np.ndarray, z_wall: np.ndarray,
    m_edges: np.ndarray, z_edges: np.ndarray,
) -> np.ndarray:
    """Weights for wall galaxies so their (log M*, z) histogram matches the void galaxies'.

    ``w = N_void(cell) / N_wall(cell)`` in each (mass, z) cell, normalised to the number of
    void galaxies; wall galaxies in cells with no void galaxy get 0, and void galaxies in
    cells with no wall galaxy are unmatched (reported by :func:`compare_quenching`).
    """
    hv, _, _ = np.histogram2d(logm_void, z_void, bins=[m_edges, z_edges])
    hw, _, _ = np.histogram2d(logm_wall, z_wall, bins=[m_edges, z_edges])
    im = _bins(np.asarray(logm_wall, np.float64), np.asarray(m_edges, np.float64))
    iz = _bins(np.asarray(z_wall, np.float64), np.asarray(z_edges, np.float64))
    ok = (im >= 0) & (iz >= 0)
    w = np.zeros(len(logm_wall))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(hw > 0, hv / hw, 0.0)
    w[ok] = ratio[im[ok], iz[ok]]
    return w


@dataclass
class EnvironmentComparison:
    """Quenched fraction of void vs (matched) wall galaxies, per mass bin and combined.

    All fractions are for galaxies above the mass-completeness limit; masses in
    log M☉ h⁻² at ``h``. Errors are from the resampling named in ``error_method``.
    """

    mass_edges: np.ndarray
    fq_void: np.ndarray
    fq_void_err: np.ndarray
    fq_wall: np.ndarray
    fq_wall_err: np.ndarray
    diff: np.ndarray
    diff_err: np.ndarray
    z_score: np.ndarray
    n_void: np.ndarray
    n_wall: np.ndarray
    combined_diff: float
    combined_diff_err: float
    combined_z: float
    combined_p: float
    ratio: float
    ratio_err: float
    ratio_ci95: tuple[float, float]
    error_method: str
    n_resamples: int
    h: float
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (arrays as lists, NaN as None)."""

        def conv(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return [conv(x) for x in v.tolist()]
            if isinstance(v, float | np.floating):
                return None if not np.isfinite(v) else float(v)
            if isinstance(v, tuple):
                return [conv(x) for x in v]
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, np.integer):
                return int(v)
            return v

        return {k: conv(v) for k, v in self.__dict__.items()}


def _fractions(wv_q, w):
    with np.errstate(invalid="ignore", divide="ignore"):
        return wv_q / w


def _combine(fv, fw, var):
    """Inverse-variance weighted mean difference over bins (weights from the full-sample variance)."""
    d = fv - fw
    ok = np.isfinite(d) & np.isfinite(var) & (var > 0)
    if not ok.any():
        return np.nan
    wt = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)
    return np.nansum(np.where(ok, d, 0.0) * wt, axis=-1) / wt.sum()


def compare_quenching(
    logmstar: np.ndarray,
    z: np.ndarray,
    is_quenched: np.ndarray,
    is_void: np.ndarray,
    is_wall: np.ndarray,
    region: np.ndarray | None,
    *,
    mass_edges: np.ndarray,
    z_edges: np.ndarray,
    h: float = 1.0,
    bootstrap: np.ndarray | None = None,
    min_per_bin: int = 5,
) -> EnvironmentComparison:
    """Quenched fraction, void vs mass- and redshift-matched wall galaxies.

    Parameters
    ----------
    logmstar, z, is_quenched
        Per galaxy, after sanity and completeness cuts.
    is_void, is_wall
        Environment labels (flag 1 and flag 0; edge/outside galaxies are in neither).
    region
        Jackknife region per galaxy (:func:`jackknife_regions`); the default error method.
    mass_edges, z_edges
        Mass bins of the comparison and the (mass × z) matching grid's z edges (matching
        uses ``mass_edges`` subdivided by 4).
    h
        Hubble parameter the masses are expressed at (recorded).
    bootstrap
        Optional (n_boot, n) multiplicities from :func:`bootstrap_replicates`: per-galaxy
        bootstrap errors instead of the jackknife.
    min_per_bin
        Bins with fewer void or wall galaxies give NaN (reported, not silently zero).

    Returns
    -------
    EnvironmentComparison
        Per-bin ``diff = f_Q(void) − f_Q(wall)`` with ``z_score = diff / σ``; the combined
        inverse-variance difference with its z-score and two-sided p-value; the ratio
        ``f_Q(void) / f_Q(wall, matched)`` over all matched galaxies with a 95% interval.
    """
    m = np.asarray(logmstar, np.float64)
    zz = np.asarray(z, np.float64)
    q = np.asarray(is_quenched, bool).astype(np.float64)
    v = np.asarray(is_void, bool)
    wl = np.asarray(is_wall, bool)
    if np.any(v & wl):
        raise InputError("a galaxy is labelled both void and wall", parameter="is_void/is_wall")
    if v.sum() == 0 or wl.sum() == 0:
        raise InputError(f"need void and wall galaxies (got {v.sum()} void, {wl.sum()} wall)", parameter="is_void")
    me = np.asarray(mass_edges, np.float64)
    fine = np.linspace(me[0], me[-1], 4 * (len(me) - 1) + 1)
    wts = np.zeros(len(m))
    wts[v] = 1.0
    wts[wl] = matching_weights(m[v], zz[v], m[wl], zz[wl], fine, np.asarray(z_edges, np.float64))
    ib = _bins(m, me)
    nb = len(me) - 1
    # per-(replicate) sums: jackknife (leave-one-region-out) or bootstrap multiplicities
    if bootstrap is None:
        if region is None:
            raise InputError("give jackknife regions or bootstrap replicates", parameter="region")
        reg = np.asarray(region, np.int64)
        nreg = int(reg.max()) + 1
        if nreg < 2:
            raise InputError("need at least 2 jackknife regions", parameter="region")
        parts = {}
        for name, sel in (("void", v), ("wall", wl)):
            w_ = np.where(sel, wts, 0.0)
            ww, wq = _binned(q, w_, ib, reg, nb, nreg)
            parts[name] = (_leave_one_out(ww), _leave_one_out(wq), ww.sum(0), wq.sum(0))
        method, nrep = "jackknife", nreg
        varfn = jackknife_variance
    else:
        mult = np.asarray(bootstrap, np.float64)
        nrep = mult.shape[0]
        parts = {}
        for name, sel in (("void", v), ("wall", wl)):
            w_ = np.where(sel, wts, 0.0)
            full_w = np.bincount(ib[ib >= 0], weights=w_[ib >= 0], minlength=nb)
            full_q = np.bincount(ib[ib >= 0], weights=(w_ * q)[ib >= 0], minlength=nb)
            rw = np.empty((nrep, nb))
            rq = np.empty((nrep, nb))
            for b in range(nrep):
                wb = w_ * mult[b]
                rw[b] = np.bincount(ib[ib >= 0], weights=wb[ib >= 0], minlength=nb)
                rq[b] = np.bincount(ib[ib >= 0], weights=(wb * q)[ib >= 0], minlength=nb)
            parts[name] = (rw, rq, full_w, full_q)
        method = "bootstrap (per galaxy)"

        def varfn(r: np.ndarray) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # empty bins give NaN
                return np.nanvar(np.asarray(r, np.float64), axis=0, ddof=1)

    rv_w, rv_q, fv_w, fv_q = parts["void"]
    rw_w, rw_q, fw_w, fw_q = parts["wall"]
    n_void = np.bincount(ib[v & (ib >= 0)], minlength=nb)
    n_wall = np.bincount(ib[wl & (ib >= 0)], minlength=nb)
    small = (n_void < min_per_bin) | (n_wall < min_per_bin)
    fv = _fractions(fv_q, fv_w)
    fw = _fractions(fw_q, fw_w)
    fv[small] = np.nan
    fw[small] = np.nan
    rfv = _fractions(rv_q, rv_w)
    rfw = _fractions(rw_q, rw_w)
    rfv[:, small] = np.nan
    rfw[:, small] = np.nan
    var_v = varfn(rfv)
    var_w = varfn(rfw)
    rdiff = rfv - rfw
    var_d = varfn(rdiff)
    diff = fv - fw
    with np.errstate(invalid="ignore", divide="ignore"):
        zsc = diff / np.sqrt(var_d)
    comb = _combine(fv, fw, var_d)
    # recompute the combined statistic in each replicate with the same bin weights
    ok = np.isfinite(diff) & np.isfinite(var_d) & (var_d > 0)
    wt = np.where(ok, 1.0 / np.where(ok, var_d, 1.0), 0.0)
    rcomb = np.nansum(np.where(ok[None, :], rdiff, 0.0) * wt[None, :], axis=1) / max(wt.sum(), 1e-300)
    comb_var = float(varfn(rcomb[:, None])[0]) if ok.any() else np.nan
    comb_err = float(np.sqrt(comb_var)) if np.isfinite(comb_var) else np.nan
    comb_z = float(comb / comb_err) if comb_err and np.isfinite(comb_err) and comb_err > 0 else np.nan
    comb_p = float(2 * sps.norm.sf(abs(comb_z))) if np.isfinite(comb_z) else np.nan
    # ratio over all bins (matched wall weights)
    sel = ~small
    ratio = float(fv_q[sel].sum() / fv_w[sel].sum() / (fw_q[sel].sum() / fw_w[sel].sum())) if sel.any() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        rratio = (rv_q[:, sel].sum(1) / rv_w[:, sel].sum(1)) / (rw_q[:, sel].sum(1) / rw_w[:, sel].sum(1))
    ratio_err = float(np.sqrt(varfn(rratio[:, None])[0])) if sel.any() else np.nan
    ci = (ratio - 1.959964 * ratio_err, ratio + 1.959964 * ratio_err)
    notes = {
        "quenched_definition": "see summary",
        "matched_void_galaxies_outside_mass_bins": int(np.sum(v & (ib < 0))),
        "wall_weight_sum": float(wts[wl].sum()),
        "void_galaxies": int(v.sum()),
        "bins_too_small": [int(b) for b in np.flatnonzero(small)],
        "masses": f"log10 M*/Msun at h = {h} (FastSpecFit h = 1 values shifted by -2 log10 h)",
    }
    return EnvironmentComparison(
        mass_edges=me, fq_void=fv, fq_void_err=np.sqrt(var_v), fq_wall=fw, fq_wall_err=np.sqrt(var_w),
        diff=diff, diff_err=np.sqrt(var_d), z_score=zsc, n_void=n_void, n_wall=n_wall,
        combined_diff=float(comb), combined_diff_err=comb_err, combined_z=comb_z, combined_p=comb_p,
        ratio=ratio, ratio_err=ratio_err, ratio_ci95=ci, error_method=method, n_resamples=int(nrep), h=h,
        notes=notes,
    )
