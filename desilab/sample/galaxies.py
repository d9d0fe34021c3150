"""BGS-like galaxies of one cap: positions, physical properties, targeting and observation.

The chain, per cap (one shard each):

1. **Positions** from the Voronoi web (:mod:`desilab.sample.lss`) for two populations:
   the *massive* one (log M* ≥ ``mass_split``, every possible tracer, generated at its
   true density) and a *low-mass* one (a random subsample at ``faint_density``, each
   galaxy carrying its sampling weight).
2. **Stellar mass** from the Baldry et al. (2012) double-Schechter function (h = 1),
   shifted to lower masses in voids and higher in nodes.
3. **Star formation**: quenched with probability ``f_Q(M*)`` — times ``1 − env_quenching``
   for void galaxies (the injected environmental effect, known per galaxy); star-forming
   galaxies on the Renzini & Peng (2015) main sequence with 0.3 dex scatter, quenched
   ones at log sSFR ≈ −12.
4. **Colours and magnitudes**: ^{0.1}(g − r) from the star-formation state, M/L from
   Bell et al. (2003), ``ABSMAG01_SDSS_R = M_e − 0.97 (z − 0.1)`` so that DESIVAST's
   recipe ``M_r = ABSMAG01_SDSS_R + 0.97 (z − 0.1)`` recovers the evolution-corrected M_e.
   Apparent magnitudes with k-corrections and Galactic extinction; BGS Bright/Faint
   targeting on extinction-corrected r.
5. **Observation**: fibres assigned with a probability that falls in crowded regions,
   Redrock-like Z, ZERR, DELTACHI2, ZWARN (rare catastrophic failures and stars), and the
   FastSpecFit VAC's values including its failure modes.

Everything is numpy in, dict of numpy columns out; tables are built in
:mod:`desilab.sample.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import healpy as hp
import numpy as np
from scipy.spatial import cKDTree
from scipy.special import expit

from desilab.sample import lss
from desilab.sample.config import SampleConfig
from desilab.sample.footprint import Footprint
from desilab.sky.cosmology import C_KM_S, Cosmology
from desilab.sky.geometry import angle_to_chord, radec_to_unit

__all__ = [
    "BGS_BITS",
    "DESI_BGS_ANY",
    "ZWARN_BITS",
    "absmag_limit_mass",
    "generate_cap",
    "make_targetids",
    "quenched_fraction",
    "smf",
    "tracer_selection",
]

#: BGS_TARGET bits (desitarget targetmask.yaml).
BGS_BITS = {"BGS_FAINT": 0, "BGS_BRIGHT": 1, "BGS_FAINT_NORTH": 8, "BGS_BRIGHT_NORTH": 9,
            "BGS_FAINT_SOUTH": 16, "BGS_BRIGHT_SOUTH": 17}  # fmt: skip
#: DESI_TARGET bit of BGS_ANY.
DESI_BGS_ANY = 60
#: ZWARN bits used here.
ZWARN_BITS = {"LITTLE_COVERAGE": 1, "SMALL_DELTA_CHI2": 2, "BAD_SPECQA": 18}
#: Galactic extinction coefficients A/E(B−V) of the Legacy Surveys DR9 bands (g, r, z, W1, W2).
EXT = {"G": 3.214, "R": 2.165, "Z": 1.211, "W1": 0.184, "W2": 0.113}
#: M_sun in ^{0.1}r (Blanton & Roweis 2007).
MSUN_R01 = 4.76
#: Bell et al. (2003) M/L_r vs (g − r), minus 0.093 dex for a Chabrier IMF.
ML_A, ML_B, ML_CHABRIER = -0.306, 1.097, -0.093
#: Bluest ^{0.1}(g − r) generated (bounds the brightest M_e at a given mass).
GR_MIN = 0.25
#: Nside of the pseudo-bricks in TARGETIDs (shared with the quasar generator).
BRICK_NSIDE = 64

# ---------------------------------------------------------------------------------------
# Mass function and quenching
# ---------------------------------------------------------------------------------------


def smf(logm: np.ndarray, cfg: SampleConfig, shift: float = 0.0) -> np.ndarray:
    """Double-Schechter stellar mass function φ(log M*) [(Mpc/h)^-3 dex^-1], h = 1."""
    x = 10.0 ** (np.asarray(logm, dtype=np.float64) - cfg.smf_log_mstar - shift)
    phi = cfg.smf_phi1 * x ** (cfg.smf_alpha1 + 1) + cfg.smf_phi2 * x ** (cfg.smf_alpha2 + 1)
    return cfg.smf_norm * np.log(10.0) * np.exp(-x) * phi


@lru_cache(maxsize=32)
def _smf_cdf(cfg: SampleConfig, shift: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(6.0, 13.0, 7001)
    pdf = smf(grid, cfg, shift)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    return grid, cdf


def smf_integral(lo: np.ndarray, hi: np.ndarray, cfg: SampleConfig, shift: float = 0.0) -> np.ndarray:
    """Number density between log-masses *lo* and *hi* [(Mpc/h)^-3]."""
    grid, cdf = _smf_cdf(cfg, shift)
    return np.interp(hi, grid, cdf) - np.interp(lo, grid, cdf)


def sample_smf(lo: np.ndarray, hi: np.ndarray, cfg: SampleConfig, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Draw log M* from the (shifted) SMF truncated to [lo, hi] (arrays broadcast)."""
    grid, cdf = _smf_cdf(cfg, shift)
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
    clo, chi = np.interp(lo, grid, cdf), np.interp(hi, grid, cdf)
    u = clo + rng.random(lo.shape) * (chi - clo)
    return np.interp(u, cdf, grid)


def quenched_fraction(logm: np.ndarray, is_void: np.ndarray, cfg: SampleConfig) -> np.ndarray:
    """Injected probability of being quenched at fixed stellar mass.

    ``f_Q(M*) = logistic((log M* − quench_centre) / quench_width)``, times
    ``1 − env_quenching`` for void galaxies (truth label ``ENV_TRUE == void``).
    """
    fq = expit((np.asarray(logm) - cfg.quench_centre) / cfg.quench_width)
    return np.where(is_void, (1.0 - cfg.env_quenching) * fq, fq)


def _class_shift(cls: np.ndarray, cfg: SampleConfig) -> np.ndarray:
    return np.select([cls == lss.VOID, cls == lss.NODE], [cfg.smf_shift_void, cfg.smf_shift_node], 0.0)


def absmag_limit_mass(z: np.ndarray, r_limit: float, cosmo: Cosmology, cfg: SampleConfig) -> np.ndarray:
    """Lowest log M* that can reach apparent r ≤ *r_limit* at redshift z (bluest M/L)."""
    dm = cosmo.distance_modulus(np.maximum(z, 1e-4))
    kmin = kcorr_r(z, np.full(np.shape(z), GR_MIN))
    m_e = r_limit + 0.4 - dm - kmin + cfg.evolution_q * (np.asarray(z) - 0.1)  # 0.4 mag of scatter margin
    log_ml = ML_A + ML_B * GR_MIN + ML_CHABRIER
    return log_ml + (MSUN_R01 - m_e) / 2.5


def kcorr_r(z: np.ndarray, gr: np.ndarray) -> np.ndarray:
    """k-correction of observed r to ^{0.1}r: −2.5 log10(1.1) at z = 0.1, steeper for red galaxies."""
    return -2.5 * np.log10(1.1) + (np.asarray(z) - 0.1) * (0.35 + 1.1 * np.clip(np.asarray(gr) - 0.45, 0.0, None))


def ebv_model(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """A smooth E(B−V) map ~ 0.015 / sin|b| (a cosecant law; SFD-like at high latitude)."""
    u = radec_to_unit(ra, dec)
    # ICRS -> Galactic rotation (Hipparcos / IAU)
    rot = np.array(
        [
            [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
            [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
            [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669],
        ]
    )
    g = u @ rot.T
    sinb = np.abs(g[:, 2])
    return np.clip(0.012 / np.maximum(sinb, 0.15) + 0.004 * np.sin(np.radians(3 * ra)) ** 2, 0.005, 0.25)


# ---------------------------------------------------------------------------------------
# One cap
# ---------------------------------------------------------------------------------------


@dataclass
class CapInputs:
    """Everything one cap's shard needs (picklable)."""

    cfg: SampleConfig
    footprint: Footprint
    cap: str
    seed: int


def _sample_population(
    cfg: SampleConfig,
    fp: Footprint,
    cap: str,
    web: lss.Web,
    densities: dict[int, float],
    lo: np.ndarray,
    hi: np.ndarray,
    d_max: float,
    rng: np.random.Generator,
    core_density: float = 0.0,
    dmap: np.ndarray | None = None,
) -> lss.Positions:
    # only this cap's pixels: near the observer the generation region is the whole sky,
    # and the other cap's galaxies belong to the other shard
    obs_map = fp.cap_map(fp.observed_map, cap)
    dmap = fp.distance_map(cap) if dmap is None else dmap

    def keep(xyz: np.ndarray) -> np.ndarray:
        # Peculiar velocities move galaxies along the line of sight only, so the angular
        # cut is exact here; radially, keep a margin for redshift-space distortions.
        r = np.linalg.norm(xyz, axis=1)
        ok = r < d_max + 25.0
        pix = hp.vec2pix(fp.nside, xyz[ok, 0], xyz[ok, 1], xyz[ok, 2], nest=True)
        ok[ok] = obs_map[pix]
        return ok

    def near(xyz: np.ndarray, margin: float) -> np.ndarray:
        r = np.linalg.norm(xyz, axis=1)
        return (r < d_max + margin) & fp.near(xyz, margin, dmap)

    region = lss.Region.around(fp.sector(cap), d_max, lss.MARGIN)
    return lss.sample_positions(cfg, web, densities, keep, lo, hi, rng, core_density, region, near)


def generate_cap(cfg: SampleConfig, fp: Footprint, cap: str, cosmo: Cosmology, rng: np.random.Generator) -> dict:
    """Galaxies of one cap that are BGS targets in the observed footprint.

    Parameters
    ----------
    cfg
        Configuration.
    fp
        Footprint.
    cap
        ``"NGC"`` or ``"SGC"``.
    cosmo
        Cosmology (h = 1 distances).
    rng
        The cap's random stream (sub-streams are spawned from it in a fixed order).

    Returns
    -------
    dict
        Per-galaxy numpy columns (truth and observation); see ``docs/sample-sky.md``.
    """
    r_web, r_pos_a, r_pos_b, r_prop, r_obs = rng.spawn(5)
    z_hi = cfg.z_max_galaxies + 0.01
    d_max = float(cosmo.comoving_distance_mpch(z_hi))
    lo, hi = lss.sector_box(fp, cap, d_max, lss.MARGIN)
    web = lss.build_web(cfg, lo, hi, r_web)

    # --- populations -----------------------------------------------------------------
    n_a = float(smf_integral(np.array(cfg.mass_split), np.array(14.0), cfg))
    fr = {lss.VOID: cfg.frac_void, lss.WALL: cfg.frac_wall, lss.FILAMENT: cfg.frac_filament, lss.NODE: cfg.frac_node}
    dens_a = {k: n_a * f for k, f in fr.items()}
    rest = 1.0 - cfg.frac_void
    fb = {k: (cfg.faint_frac_void if k == lss.VOID else fr[k] * (1.0 - cfg.faint_frac_void) / rest) for k in fr}
    dens_b = {k: cfg.faint_density * f for k, f in fb.items()}
    dmap = fp.distance_map(cap)
    pa_ = _sample_population(cfg, fp, cap, web, dens_a, lo, hi, d_max, r_pos_a, cfg.void_core_density, dmap)
    pb_ = _sample_population(cfg, fp, cap, web, dens_b, lo, hi, d_max, r_pos_b, 0.0, dmap)
    pos = lss.Positions.concat([pa_, pb_])
    massive = np.concatenate([np.ones(len(pa_), bool), np.zeros(len(pb_), bool)])
    ra, dec, r_real, z_cos, z_true = lss.observed_redshift(pos.xyz, pos.v_los, cosmo)
    inside = (
        fp.cap_map(fp.observed_map, cap)[fp.pixels(ra, dec)] & (z_true > cfg.z_min) & (z_true <= cfg.z_max_galaxies)
    )
    sel = np.flatnonzero(inside)
    ra, dec, r_real, z_cos, z_true = ra[sel], dec[sel], r_real[sel], z_cos[sel], z_true[sel]
    cls, v_los, node, massive, xyz = pos.cls[sel], pos.v_los[sel], pos.node[sel], massive[sel], pos.xyz[sel]
    core = pos.core[sel]
    n = len(sel)

    # --- stellar masses -------------------------------------------------------------------
    shift = _class_shift(cls, cfg)
    logm = np.empty(n)
    m_lo_b = np.clip(absmag_limit_mass(z_true, cfg.bgs_faint_limit, cosmo, cfg), cfg.faint_mass_floor, None)
    for s in np.unique(shift):
        k = shift == s
        ka = k & massive
        logm[ka] = sample_smf(np.full(ka.sum(), cfg.mass_split), np.full(ka.sum(), 13.5), cfg, float(s), r_prop)
        kb = k & ~massive
        lo_b = np.minimum(m_lo_b[kb], cfg.mass_split)
        logm[kb] = sample_smf(lo_b, np.full(kb.sum(), cfg.mass_split), cfg, float(s), r_prop)
    # sampling weight of the low-mass subsample: true density / generated density
    lo_all = np.minimum(m_lo_b, cfg.mass_split)
    true_b = smf_integral(lo_all, np.full(n, cfg.mass_split), cfg)
    weight = np.where(massive, 1.0, true_b / cfg.faint_density)
    possible = massive | (m_lo_b < cfg.mass_split)

    # --- star formation, colours, M/L (independent of position) --------------------------------
    is_void = cls == lss.VOID
    p_q = quenched_fraction(logm, is_void, cfg)
    quenched = r_prop.random(n) < p_q
    log_ssfr_ms = (cfg.ms_slope - 1.0) * logm + cfg.ms_intercept
    log_ssfr = np.where(
        quenched,
        cfg.quenched_log_ssfr + cfg.quenched_scatter * r_prop.normal(size=n),
        log_ssfr_ms + cfg.ms_scatter * r_prop.normal(size=n),
    )
    log_ssfr = np.clip(log_ssfr, -14.0, -8.3)
    dm10 = logm - 10.0
    gr = np.where(
        quenched,
        0.88 + 0.05 * dm10 + 0.035 * r_prop.normal(size=n),
        0.58 + 0.10 * dm10 - 0.12 * (log_ssfr - log_ssfr_ms) + 0.06 * r_prop.normal(size=n),
    )
    gr = np.clip(gr, GR_MIN, 1.10)
    log_ml = ML_A + ML_B * gr + ML_CHABRIER + 0.05 * r_prop.normal(size=n)
    m_e = MSUN_R01 - 2.5 * (logm - log_ml)  # evolution-corrected ^{0.1}M_r - 5 log h
    ur = np.where(quenched, 2.55 + 0.1 * dm10, 1.55 + 0.25 * dm10) + 0.12 * r_prop.normal(size=n)
    ri = 0.30 + 0.2 * (gr - 0.6) + 0.03 * r_prop.normal(size=n)
    iz = 0.22 + 0.15 * (gr - 0.6) + 0.03 * r_prop.normal(size=n)
    # The most luminous massive void galaxies take the isolated (core) void places: the
    # property rows of massive void galaxies are permuted so that core positions get the
    # brightest M_e (properties do not depend on position, so this is a relabelling).
    # Which rows go to which place is otherwise random: positions are generated in shells
    # of distance, so any ordering would correlate properties with distance.
    vm = np.flatnonzero(is_void & massive)
    if len(vm):
        by_lum = vm[np.argsort(m_e[vm], kind="stable")]
        n_core = int(core[vm].sum())
        rows = np.concatenate([r_prop.permutation(by_lum[:n_core]), r_prop.permutation(by_lum[n_core:])])
        slots = np.concatenate([vm[core[vm]], vm[~core[vm]]])
        for arr in (logm, p_q, quenched, log_ssfr, log_ssfr_ms, gr, log_ml, m_e, ur, ri, iz):
            arr[slots] = arr[rows].copy()
    log_sfr = logm + log_ssfr
    ug = ur - gr
    absmag_r = m_e - cfg.evolution_q * (z_true - 0.1)
    kr = kcorr_r(z_true, gr)
    dmod = cosmo.distance_modulus(z_true)
    r_true = absmag_r + dmod + kr  # extinction-free apparent r (DECam r ~ SDSS r here)
    ebv = ebv_model(ra, dec)
    gr_obs = gr + (z_true - 0.1) * (1.2 + 1.5 * np.clip(gr - 0.5, 0, None))
    rz_obs = 0.25 + 0.55 * gr + 0.8 * z_true + 0.04 * r_prop.normal(size=n)
    rw1_obs = 0.2 + 0.8 * gr + 1.5 * z_true + 0.1 * r_prop.normal(size=n)
    mags = {"G": r_true + gr_obs, "R": r_true, "Z": r_true - rz_obs, "W1": r_true - rw1_obs,
            "W2": r_true - rw1_obs + 0.5 - 0.3 * gr}  # fmt: skip

    # --- sub-sampling of massive galaxies that cannot be tracers -------------------------------
    # Every galaxy that could enter the volume-limited tracer sample is kept; the others of
    # the massive population are kept with probability ``faint_keep`` (weight 1/faint_keep).
    could_trace = (m_e <= cfg.tracer_mag_limit + 0.15) & (z_true <= cfg.z_max_tracers + 0.01)
    keep_a = could_trace | (r_prop.random(n) < cfg.faint_keep)
    weight = np.where(massive & ~could_trace, weight / cfg.faint_keep, weight)

    # --- targeting -------------------------------------------------------------------------
    r_corr = r_true
    bright = r_corr < cfg.bgs_bright_limit
    faint = (~bright) & (r_corr < cfg.bgs_faint_limit)
    starhole = fp.in_star_hole(ra, dec)
    target = (bright | faint) & possible & ~starhole & (keep_a | ~massive)
    t = np.flatnonzero(target)

    out: dict[str, np.ndarray] = {
        "RA": ra, "DEC": dec, "Z_COSMO": z_cos, "Z_TRUE": z_true, "V_LOS": v_los, "R_REAL": r_real,
        "X_REAL": xyz[:, 0], "Y_REAL": xyz[:, 1], "Z_REAL": xyz[:, 2],
        "ENV_TRUE": cls.astype(np.int16), "NODE_ID": node, "VOID_CORE": core, "MASSIVE_POP": massive,
        "SAMPLING_WEIGHT": weight,
        "LOGMSTAR_TRUE": logm, "P_QUENCHED": p_q, "QUENCHED_TRUE": quenched, "LOG_SSFR_TRUE": log_ssfr,
        "SFR_TRUE": 10.0**log_sfr, "GR01_TRUE": gr, "UR01_TRUE": ur, "ABSMAG_R_EVOL": m_e,
        "ABSMAG01_SDSS_R_TRUE": absmag_r, "RMAG_TRUE": r_true, "EBV": ebv, "BGS_BRIGHT_TRUE": bright,
    }  # fmt: skip
    out = {k: v[t] for k, v in out.items()}
    mags = {k: v[t] for k, v in mags.items()}
    colours = {"UG": ug[t], "RI": ri[t], "IZ": iz[t]}
    n = len(t)
    out["CAP"] = np.full(n, cap)
    # BGS bits (north/south variants by photometric system)
    north = (out["DEC"] >= 32.375) & (cap == "NGC")
    out["PHOTSYS"] = np.where(north, "N", "S")
    is_b = out["BGS_BRIGHT_TRUE"]
    bgs = np.where(is_b, 1 << BGS_BITS["BGS_BRIGHT"], 1 << BGS_BITS["BGS_FAINT"]).astype(np.int64)
    bgs |= np.where(
        north,
        np.where(is_b, 1 << BGS_BITS["BGS_BRIGHT_NORTH"], 1 << BGS_BITS["BGS_FAINT_NORTH"]),
        np.where(is_b, 1 << BGS_BITS["BGS_BRIGHT_SOUTH"], 1 << BGS_BITS["BGS_FAINT_SOUTH"]),
    ).astype(np.int64)
    out["BGS_TARGET"] = bgs
    out["DESI_TARGET"] = np.full(n, 1 << DESI_BGS_ANY, dtype=np.int64)
    _observe(out, mags, colours, cfg, fp, cosmo, r_obs)
    return out


def _observe(
    out: dict, mags: dict, colours: dict, cfg: SampleConfig, fp: Footprint, cosmo: Cosmology, rng: np.random.Generator
) -> None:
    """Fibre assignment, redshifts and FastSpecFit-like measurements (adds columns to *out*)."""
    n = len(out["RA"])
    r_fibre, r_z, r_fs, r_phot = rng.spawn(4)
    # --- fibre assignment: per-pass probability falls with the local target density --------
    npass = fp.passes(out["RA"], out["DEC"])
    u = radec_to_unit(out["RA"], out["DEC"])
    if n:
        tree = cKDTree(u)
        nnb = tree.query_ball_point(u, r=float(angle_to_chord(cfg.fibre_patrol_deg)), return_length=True) - 1
        mean_nb = max(float(np.mean(nnb)), 1e-3)
    else:
        nnb, mean_nb = np.zeros(0), 1.0
    p1 = cfg.fibre_pmax / (1.0 + cfg.fibre_crowding * nnb / mean_nb)
    p_obs = 1.0 - (1.0 - p1) ** npass
    observed = r_fibre.random(n) < p_obs
    out["NPASS"] = npass
    out["N_NEIGHBOUR_PATROL"] = nnb.astype(np.int64)
    out["P_OBS"] = p_obs
    out["OBSERVED"] = observed
    out["IN_MASK"] = fp.in_mask(out["RA"], out["DEC"])

    # --- photometry (fluxes in nanomaggies; zcatalog fluxes are NOT extinction-corrected) ---
    ebv = out["EBV"]
    for band, mag in mags.items():
        flux_corr = 10.0 ** (-0.4 * (mag - 22.5))
        trans = 10.0 ** (-0.4 * EXT[band] * ebv)
        depth = {"G": 24.5, "R": 24.0, "Z": 23.2, "W1": 21.0, "W2": 20.3}[band]
        sig = 10.0 ** (-0.4 * (depth - 22.5)) / 5.0
        flux_obs = flux_corr * trans + sig * r_phot.normal(size=n)
        out[f"FLUX_{band}"] = flux_obs
        out[f"FLUX_IVAR_{band}"] = np.full(n, 1.0 / sig**2)
        out[f"MW_TRANSMISSION_{band}"] = trans
    size = np.exp(np.log(1.2) + 0.4 * r_phot.normal(size=n)) * (0.1 / np.maximum(out["Z_TRUE"], 0.02)) ** 0.7
    out["SHAPE_R"] = np.clip(size, 0.2, 30.0)
    ffrac = 1.0 / (1.0 + (out["SHAPE_R"] / 0.9) ** 1.3)
    for band in ("G", "R", "Z"):
        out[f"FIBERFLUX_{band}"] = out[f"FLUX_{band}"] * ffrac
        out[f"FIBERTOTFLUX_{band}"] = out[f"FLUX_{band}"] * ffrac * 1.02
    out["SERSIC"] = np.where(out["QUENCHED_TRUE"], 4.0, 1.0)
    out["MORPHTYPE"] = np.where(out["QUENCHED_TRUE"], "DEV", "EXP")

    # --- Redrock ----------------------------------------------------------------------------
    r_fib = 22.5 - 2.5 * np.log10(np.maximum(out["FIBERFLUX_R"], 1e-3))
    mu = cfg.dchi2_mu0 - cfg.dchi2_slope * (r_fib - 20.0) * 0.7 - cfg.dchi2_slope * 0.3 * (out["RMAG_TRUE"] - 18.0)
    log_dchi2 = mu + cfg.dchi2_sigma * r_z.normal(size=n)
    dchi2 = 10.0**log_dchi2
    zerr = 1.2e-5 * (1.0 + out["Z_TRUE"]) * 10.0 ** (0.25 * r_z.normal(size=n) - 0.5 * (log_dchi2 - 2.5))
    zerr = np.clip(zerr, 2e-6, 5e-3)
    z = out["Z_TRUE"] + zerr * r_z.normal(size=n)
    zwarn = np.zeros(n, dtype=np.int64)
    zwarn[dchi2 < 9.0] |= 1 << ZWARN_BITS["SMALL_DELTA_CHI2"]
    other = r_z.random(n) < cfg.zwarn_other_fraction
    zwarn[other] |= np.where(r_z.random(n) < 0.5, 1 << ZWARN_BITS["LITTLE_COVERAGE"], 1 << ZWARN_BITS["BAD_SPECQA"])[
        other
    ]
    # catastrophic failures: likely at low DELTACHI2, very rare above 40
    p_cat = np.where(dchi2 < 40.0, 0.35, 0.0005)
    cat = r_z.random(n) < p_cat
    z = np.where(cat, r_z.uniform(0.0, 1.2, n), z)
    spectype = np.full(n, "GALAXY")
    star = r_z.random(n) < cfg.star_fraction
    spectype[star] = "STAR"
    z = np.where(star, 3e-4 * r_z.normal(size=n), z)
    out["Z"] = z
    out["ZERR"] = zerr
    out["ZWARN"] = zwarn
    out["DELTACHI2"] = dchi2
    out["SPECTYPE"] = spectype
    out["Z_CORRECT"] = ~(cat | star)
    out["CHI2"] = 7000.0 + 300.0 * r_z.random(n)
    out["NPIXELS"] = np.full(n, 7900, dtype=np.int64)
    out["TSNR2_BGS"] = 10.0 ** (2.9 - 0.4 * (out["RMAG_TRUE"] - 19.0)) * npass / 2.0
    out["COADD_NUMEXP"] = np.maximum(npass, 1).astype(np.int64)
    out["COADD_EXPTIME"] = 180.0 * np.maximum(npass, 1) * (1.0 + 0.1 * r_z.random(n))
    out["SUBPRIORITY"] = r_z.random(n)
    out["SV3_DUPLICATE"] = r_z.random(n) < cfg.sv3_duplicate_fraction

    # --- FastSpecFit v3.0-like measurements (h = 1) ------------------------------------------
    _fastspec(out, colours, cfg, cosmo, r_fs)


def _fastspec(out: dict, colours: dict, cfg: SampleConfig, cosmo: Cosmology, rng: np.random.Generator) -> None:
    n = len(out["RA"])
    logm_t = out["LOGMSTAR_TRUE"]
    sig_m = 0.08 + 0.04 * np.clip(out["RMAG_TRUE"] - 18.0, 0, None)
    logm = logm_t + sig_m * rng.normal(size=n)
    out["LOGMSTAR"] = logm
    out["LOGMSTAR_IVAR"] = 1.0 / sig_m**2
    lssfr = out["LOG_SSFR_TRUE"]
    sig_s = np.where(lssfr > -11.0, 0.2, 0.5)
    sfr_obs = 10.0 ** (logm_t + lssfr + sig_s * rng.normal(size=n))
    floored = lssfr < cfg.sfr_floor_log_ssfr
    sfr_obs = np.where(floored, 0.0, sfr_obs)
    out["SFR"] = sfr_obs
    out["SFR_IVAR"] = np.where(floored, 0.0, 1.0 / (np.log(10) * sig_s * np.maximum(sfr_obs, 1e-6)) ** 2)
    dn_true = 1.22 + 0.62 * expit(-2.5 * (lssfr + 11.0)) + 0.05 * (logm_t - 10.0)
    out["DN4000_TRUE"] = dn_true
    out["DN4000"] = dn_true + 0.04 * rng.normal(size=n)
    out["DN4000_IVAR"] = np.full(n, 1.0 / 0.04**2)
    out["DN4000_OBS"] = out["DN4000"] + 0.01 * rng.normal(size=n)
    out["DN4000_MODEL"] = dn_true + 0.015 * rng.normal(size=n)
    out["DN4000_MODEL_IVAR"] = np.full(n, 1.0 / 0.015**2)
    age = np.where(out["QUENCHED_TRUE"], 7.0 + 2.0 * rng.random(n), 1.0 + 3.0 * rng.random(n))
    out["AGE"] = age
    out["AGE_IVAR"] = np.full(n, 1.0)
    out["ZZSUN"] = 10 ** (0.15 * (logm_t - 10.0) - 0.05 + 0.1 * rng.normal(size=n))
    out["ZZSUN_IVAR"] = np.full(n, 100.0)
    out["TAUV"] = np.clip(
        np.where(out["QUENCHED_TRUE"], 0.1, 0.6 + 0.3 * (logm_t - 10.0)) + 0.15 * rng.normal(size=n), 0, 3
    )
    out["TAUV_IVAR"] = np.full(n, 25.0)
    out["VDISP"] = np.clip(10 ** (2.1 + 0.25 * (logm_t - 10.5)) * (1 + 0.1 * rng.normal(size=n)), 50, 375)
    out["VDISP_IVAR"] = np.full(n, 1e-3)
    # absolute magnitudes (^{0.1} bands, h = 1) and their inverse variances
    mr = out["ABSMAG01_SDSS_R_TRUE"] + 0.03 * rng.normal(size=n)
    g = mr + out["GR01_TRUE"]
    u_ = g + colours["UG"]
    i = mr - colours["RI"]
    zb = i - colours["IZ"]
    for band, val in (("U", u_), ("G", g), ("R", mr), ("I", i), ("Z", zb)):
        out[f"ABSMAG01_SDSS_{band}"] = val
        out[f"ABSMAG01_IVAR_SDSS_{band}"] = np.full(n, 1.0 / 0.03**2)
    out["KCORR01_SDSS_R"] = kcorr_r(out["Z_TRUE"], out["GR01_TRUE"])
    out["ABSMAG10_DECAM_R"] = mr - 0.25 + 0.3 * (out["GR01_TRUE"] - 0.6)
    out["ABSMAG10_DECAM_G"] = g - 0.35
    out["ABSMAG10_DECAM_Z"] = zb - 0.15
    # emission lines from SFR (Kennicutt 1998 × 0.63 for Chabrier; 1 mag of Hα attenuation)
    dl_cm = cosmo.luminosity_distance_cm(out["Z_TRUE"])
    l_ha = out["SFR_TRUE"] / (7.9e-42 * 0.63) * 10 ** (-0.4 * np.where(out["QUENCHED_TRUE"], 0.3, 1.0))
    f_ha = l_ha / (4 * np.pi * dl_cm**2) / 1e-17
    lines = {
        "HALPHA": f_ha,
        "HBETA": f_ha / 2.86 * 10 ** (-0.4 * 0.45),
        "NII_6584": f_ha * np.clip(0.25 + 0.25 * (logm_t - 10.0), 0.05, 1.0),
        "OII_3726": f_ha * 0.28,
        "OII_3729": f_ha * 0.37,
        "OIII_5007": f_ha * np.clip(0.35 - 0.25 * (logm_t - 9.5), 0.04, 1.5),
    }
    sigma_line = 0.8 + 0.2 * rng.random(n)
    cont_r = 10 ** (-0.4 * (out["RMAG_TRUE"] + 48.6)) * C_KM_S * 1e13 / 6500.0**2 / 1e-17
    for name, flux in lines.items():
        obs = flux + sigma_line * rng.normal(size=n)
        out[f"{name}_FLUX"] = obs
        out[f"{name}_FLUX_IVAR"] = 1.0 / sigma_line**2
        out[f"{name}_EW"] = obs / np.maximum(cont_r, 1e-3) / (1.0 + out["Z_TRUE"])
        out[f"{name}_SIGMA"] = np.full(n, 60.0) + 20.0 * rng.random(n)
    # failure modes of the real VAC: junk LOGMSTAR with IVAR = 0, occasionally absurd SFR
    junk = rng.random(n) < cfg.junk_fraction
    lo_side = rng.random(n) < 0.6
    junk_m = np.where(lo_side, rng.uniform(-12.1, 5.0, n), rng.uniform(13.0, 15.6, n))
    out["LOGMSTAR"] = np.where(junk, junk_m, out["LOGMSTAR"])
    out["LOGMSTAR_IVAR"] = np.where(junk, 0.0, out["LOGMSTAR_IVAR"])
    wild = junk & (rng.random(n) < 0.5)
    out["SFR"] = np.where(wild, 10 ** rng.uniform(2.0, np.log10(76_710.0), n), out["SFR"])
    out["SFR_IVAR"] = np.where(junk, 0.0, out["SFR_IVAR"])
    out["FASTSPEC_JUNK"] = junk


# ---------------------------------------------------------------------------------------
# Identifiers and the tracer recipe
# ---------------------------------------------------------------------------------------


def make_targetids(
    ra: np.ndarray, dec: np.ndarray, photsys: np.ndarray, cap_index: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DESI-encoded TARGETIDs: ``OBJID | BRICKID << 22 | RELEASE << 42``.

    BRICKID is the nside-64 NESTED pixel (as the quasar generator uses) and OBJID the
    running number of the galaxy in its pixel, in input order, plus ``cap_index << 20``
    (caps are generated in separate shards and a pixel can receive galaxies from both,
    so the cap keeps their ids apart); OBJID stays below 2**21 (the quasar generator
    uses OBJID ≥ 2**21 in the same pixels, so ids never collide). RELEASE is 9011 for
    the north (PHOTSYS "N") and 9010 for the south, as Legacy Surveys DR9.

    Returns
    -------
    targetid, brickid, objid
    """
    brick = np.asarray(hp.ang2pix(BRICK_NSIDE, ra, dec, nest=True, lonlat=True), dtype=np.int64)
    order = np.argsort(brick, kind="stable")
    sb = brick[order]
    first = np.searchsorted(sb, sb, side="left")
    objid = np.empty(len(ra), dtype=np.int64)
    objid[order] = np.arange(len(ra)) - first
    if len(objid) and objid.max() >= 1 << 20:
        raise ValueError("more than 2**20 galaxies of one cap in one nside-64 pixel")
    if not 0 <= cap_index <= 1:
        raise ValueError(f"cap_index must be 0 or 1, got {cap_index}")
    objid = objid + (cap_index << 20)
    release = np.where(np.asarray(photsys) == "N", 9011, 9010).astype(np.int64)
    return objid | (brick << 22) | (release << 42), brick, objid


def tracer_selection(
    z: np.ndarray,
    absmag01_r: np.ndarray,
    bgs_target: np.ndarray,
    spectype: np.ndarray,
    zwarn: np.ndarray,
    deltachi2: np.ndarray,
    in_mask: np.ndarray,
    cfg: SampleConfig,
) -> np.ndarray:
    """DESIVAST's volume-limited tracer recipe on catalogue values.

    BGS_BRIGHT, SPECTYPE GALAXY, ZWARN == 0, DELTACHI2 > 40, 0 < Z ≤ 0.24,
    ``ABSMAG01_SDSS_R + 0.97 (Z − 0.1) ≤ −20``, inside the completeness mask. Magnitudes
    must be the float32 values written to the FastSpecFit file.
    """
    m_r = np.asarray(absmag01_r, dtype=np.float64) + cfg.evolution_q * (np.asarray(z) - 0.1)
    return (
        ((np.asarray(bgs_target) & (1 << BGS_BITS["BGS_BRIGHT"])) != 0)
        & (np.asarray(spectype) == "GALAXY")
        & (np.asarray(zwarn) == 0)
        & (np.asarray(deltachi2) > 40.0)
        & (np.asarray(z) > 0.0)
        & (np.asarray(z) <= cfg.z_max_tracers)
        & (m_r <= cfg.tracer_mag_limit)
        & np.asarray(in_mask)
    )
