"""Settings of the sample sky: three scales, every tunable with the published number it copies.

A :class:`SampleConfig` is a frozen dataclass; :func:`config_for_scale` returns the one of
a named scale (``tiny``, ``small``, ``full``), optionally with fields overridden. Nothing
here reads the environment or the disk.

Sources quoted below (the numbers are the published ones; where we had to choose, the
field docstring says so):

* DESIVAST DR1 VAC, ``desivast/v1.0`` (Rincon et al. 2024, arXiv:2411.00148) and the
  headers of its files as reported in ``desi-formats.md`` §4: flat ΛCDM Ω_m = 0.315, h = 1,
  BGS Bright volume-limited sample M_r ≤ −20 with the +0.97(z − 0.1) evolution term,
  0 < z ≤ 0.24; NGC: 364,058 tracers over 2,446 deg² (~2,450), VoidFinder 3,241 voids /
  89,003 holes; SGC 524 voids / 12,860 holes.
* VAST VoidFinder defaults (``DESI-UR/VAST`` ``voidfinder.py::find_voids``,
  ``wall_field_separation``, ``hole_combine.py::combine_holes_2``): 5 Mpc/h hole grid,
  10 Mpc/h minimum maximal radius, 10 % maximal overlap, 50 % hole-join overlap, 10 %
  of a hole allowed outside the mask, field galaxies = 3rd-neighbour distance above the
  mean + 1.5 σ.
* VAST V² (``vsquared/zobov.py::sortVoids``): VIDE link density 0.2 × mean; REVOLVER keeps
  zones with radius above the median.
* Pan et al. 2012 (MNRAS 421, 926): SDSS DR7 VoidFinder voids fill ~60 % of the volume and
  hold ~7 % of the galaxies — the targets of the void model below.
* Baldry et al. 2012 (MNRAS 421, 621), GAMA z < 0.06 stellar mass function, double
  Schechter: log M* = 10.66, φ1* = 3.96e-3, α1 = −0.35, φ2* = 0.79e-3, α2 = −1.47
  (h = 0.7, Chabrier) — converted here to h = 1 (log M* − 0.31 dex, φ* / 0.343).
* Renzini & Peng 2015 (ApJL 801, L29): star-forming main sequence
  log SFR = 0.76 log M* − 7.64 (h = 0.7); 0.3 dex scatter (Speagle et al. 2014).
* Peng et al. 2010 (ApJ 721, 193) / Baldry et al. 2006: quenched fraction rising from
  ~0.1 at 10^9.5 to ~0.8 at 10^11 M_sun (h = 0.7): a logistic with centre 10.4, width 0.3.
* Bell et al. 2003 (ApJS 149, 289): log(M/L_r) = −0.306 + 1.097 (g − r), minus 0.093 dex
  for a Chabrier IMF; Blanton & Roweis 2007: M_sun(^{0.1}r) = 4.76.
* Kauffmann et al. 2003 (MNRAS 341, 33): Dn4000 ≈ 1.2–1.4 for star-forming and
  1.6–2.0 for quiescent galaxies.
* Hahn et al. 2023 (AJ 165, 253), DESI BGS targets: BGS Bright r < 19.5, BGS Faint
  19.5 < r < 20.175 (extinction-corrected); Redrock success for BGS with
  ``ZWARN == 0 & DELTACHI2 > 40`` ≈ 98–99 % for Bright.
* DESI fibre positioners: tile radius 1.605 deg; main bright program: 4 passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from desilab.errors import ConfigError

__all__ = [
    "SCALES",
    "Patch",
    "SampleConfig",
    "config_for_scale",
]

SCALES = ("tiny", "small", "full")


@dataclass(frozen=True)
class Patch:
    """An RA/Dec rectangle of the footprint in which DESI-like tiles are laid out.

    Attributes
    ----------
    cap
        ``"NGC"`` or ``"SGC"`` (DESIVAST splits at 83° < RA < 304° = NGC).
    ra_min, ra_max, dec_min, dec_max
        Rectangle in degrees (tile centres must fall inside it).
    tile_completeness
        Probability that a tile of this patch was observed in "DR1" (the rest are
        holes in the coverage, as in the real DR1 footprint).
    """

    cap: str
    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float
    tile_completeness: float = 0.93


@dataclass(frozen=True)
class SampleConfig:
    """Every tunable of the sample sky.

    Geometry and cosmology
    ----------------------
    scale
        Name of the scale these values come from.
    patches
        Footprint rectangles (see :class:`Patch`).
    omega_m, h
        Cosmology of the mock: DESIVAST's flat ΛCDM Ω_m = 0.315, h = 1 (Mpc/h).
    z_min, z_max_galaxies
        Redshift range of generated galaxies. Real BGS reaches z ≈ 0.5; beyond 0.26 the
        galaxies matter to none of our pipelines, so they are not made (0.25: DESIVAST's
        selection buffer).
    z_max_tracers
        DESIVAST's volume-limited upper redshift (0.24).
    tracer_mag_limit
        M_r limit of the tracer sample (−20) with ``evolution_q`` = 0.97.
    mask_nside
        HEALPix nside (NESTED) of the angular masks (256: 0.05 deg² pixels).
    tile_radius_deg, tile_spacing_deg, n_passes
        DESI-like tiles: 1.605° radius; a hexagonal lattice per pass; 4 passes
        (main bright program) offset from one another.
    mask_min_passes
        Pixels covered by at least this many observed tiles form the completeness mask
        used for void finding; pixels with fewer (but ≥ 1) are observed but outside it
        (their galaxies get ``OUT = 1`` in GALZONE).

    Large-scale structure (a Voronoi "cosmic web", van de Weygaert & Icke 1989)
    ---------------------------------------------------------------------------
    cell_density
        Number density of Voronoi nuclei [(Mpc/h)^-3]. One cell per 24,000 (Mpc/h)³
        matches DESIVAST's 3,241 NGC voids in its ~7.7e7 (Mpc/h)³ volume.
    frac_void, frac_wall, frac_filament, frac_node
        Fractions of the massive population (log M* ≥ ``mass_split``) in each web
        element; chosen so that VoidFinder on the tracers gives Pan et al. (2012)'s
        ~60 % / ~7 % (the tests check 0.55–0.65 and 5–9 %).
    faint_frac_void
        Void fraction of the low-mass population (void galaxies are less massive).
    wall_sigma, filament_sigma, node_sigma
        Gaussian thickness of walls, filaments and node (group) cores [Mpc/h].
    void_wall_clearance
        Void galaxies are kept at least this far [Mpc/h] from their cell's walls.
    void_hardcore
        Void galaxies are at least this far from one another [Mpc/h] (a Matérn type-II
        hard-core process: isolated, as VoidFinder's field-galaxy cut assumes).
    void_core_density
        Density [(Mpc/h)^-3] of those isolated places; the most luminous void galaxies
        take them, the rest of the void population is diffuse.
    node_richness_alpha, node_richness_max
        Pareto index of node richness and its cap in units of the mean (a few rich
        clusters of ~10³ galaxies, many poorer ones).
    filament_group_fraction, filament_group_size, wall_group_fraction
        Fractions of filament and wall galaxies in small groups, and the mean group size.
    sigma_v_node, sigma_v_filament, sigma_v_wall, sigma_v_void
        Line-of-sight velocity dispersions [km/s] (fingers of God in rich nodes scale
        with richness^(1/3)).
    void_outflow
        Coherent void expansion [km/s per Mpc/h from the cell nucleus]: f Ω δ/3 · 100
        with δ ≈ −0.85, f ≈ 0.5.

    Galaxy populations and properties (h = 1 throughout)
    ----------------------------------------------------
    mass_split
        log M* separating the massive population from the sub-sampled low-mass one
        (9.75: below it no galaxy is bright enough to be a tracer, even the bluest).
    smf_log_mstar, smf_phi1, smf_alpha1, smf_phi2, smf_alpha2
        Baldry et al. 2012 double Schechter in h = 1 units.
    smf_norm
        Multiplies φ*; calibrated so the observed tracer density matches DESIVAST's
        364,058 / 7.7e7 (Mpc/h)³ ≈ 4.7e-3 after fibre and redshift losses.
    smf_shift_void, smf_shift_node
        dex added to log M* of the SMF in voids / nodes (void galaxies are less massive,
        cluster galaxies more).
    faint_density
        Comoving density of generated low-mass galaxies [(Mpc/h)^-3] (a random subsample
        of the true population; each carries its sampling weight in truth/).
    faint_keep
        Massive galaxies that cannot be tracers (too faint or beyond z = 0.24) are kept
        with this probability (weight 1/faint_keep): tracers are complete, the rest is
        a documented random subsample.
    faint_mass_floor
        Lowest log M* generated.
    quench_centre, quench_width
        Logistic quenched fraction vs log M* (h = 1).
    env_quenching
        **Injected environmental effect**: the quenched fraction of void galaxies (truth
        label ``ENV_TRUE == "void"``) is ``(1 − env_quenching)`` times that of other
        galaxies at the same stellar mass. 0 gives a null sky.
    ms_slope, ms_intercept, ms_scatter
        Main sequence log SFR = slope · log M* + intercept (h = 1), scatter in dex.
    quenched_log_ssfr, quenched_scatter
        Quiescent galaxies' log sSFR centre and scatter.
    sfr_floor_log_ssfr
        Below this true log sSFR FastSpecFit reports SFR = 0 (its floor).
    junk_fraction
        Fraction of FastSpecFit rows with a failed fit (LOGMSTAR in −12.1…5 or 13…15.6,
        IVAR = 0, SFR possibly absurd), as in the real v3.0 VAC.
    bgs_bright_limit, bgs_faint_limit
        r-band limits of BGS Bright (19.5) and Faint (20.175).
    evolution_q
        The 0.97 of DESIVAST's M_r = ABSMAG01_SDSS_R + 0.97 (z − 0.1).

    Observation
    -----------
    fibre_pmax, fibre_crowding, fibre_patrol_deg
        Per-pass fibre probability ``pmax / (1 + crowding · N/⟨N⟩)`` with N the number of
        other targets within the patrol radius: incompleteness grows in dense regions.
    dchi2_mu0, dchi2_slope, dchi2_sigma
        log10 DELTACHI2 ~ N(mu0 − slope (r − 18), sigma).
    zwarn_other_fraction
        Fraction of spectra with another ZWARN bit (bad fibre, little coverage).
    star_fraction
        Fraction of targets that Redrock calls STAR (exercises the SPECTYPE cut).
    sv3_duplicate_fraction
        Fraction of targets also observed in SV3 (duplicate zall rows; ZCAT_PRIMARY).

    Void finding
    ------------
    hole_grid, min_maximal_radius, maximal_overlap, hole_join_fraction,
    hole_mask_overlap, field_sigma, field_neighbour, edge_probe
        VAST VoidFinder parameters (defaults of ``find_voids`` / ``combine_holes_2``).
    v2_link_density, v2_min_radius
        VIDE linking density (0.2 of the mean) and V² minimum void radius [Mpc/h].
    randoms_density
        Density of the uniform randoms used for volume fractions and R_EFF [(Mpc/h)^-3].

    Orchestration
    -------------
    n_galaxy_shards
        Number of shards for the per-galaxy work (fixed per scale, never from the worker
        count, so output does not depend on it).
    n_quasar_spectra
        Quasar spectra the quasar half makes at this scale.
    """

    scale: str
    patches: tuple[Patch, ...]
    omega_m: float = 0.315
    h: float = 1.0
    z_min: float = 0.005
    z_max_galaxies: float = 0.25
    z_max_tracers: float = 0.24
    tracer_mag_limit: float = -20.0
    mask_nside: int = 256
    tile_radius_deg: float = 1.605
    tile_spacing_deg: float = 3.0
    n_passes: int = 4
    mask_min_passes: int = 2
    # large-scale structure
    cell_density: float = 1.3e-5
    frac_void: float = 0.14
    frac_wall: float = 0.32
    frac_filament: float = 0.32
    frac_node: float = 0.22
    faint_frac_void: float = 0.13
    wall_sigma: float = 2.6
    filament_sigma: float = 1.8
    node_sigma: float = 0.6
    void_wall_clearance: float = 7.0
    void_hardcore: float = 9.0
    void_core_density: float = 7.0e-4
    node_richness_alpha: float = 2.5
    node_richness_max: float = 12.0
    filament_group_fraction: float = 0.7
    wall_group_fraction: float = 0.6
    filament_group_size: float = 5.0
    sigma_v_node: float = 300.0
    sigma_v_filament: float = 150.0
    sigma_v_wall: float = 110.0
    sigma_v_void: float = 60.0
    void_outflow: float = 14.0
    # galaxies
    mass_split: float = 9.75
    smf_log_mstar: float = 10.35
    smf_phi1: float = 1.155e-2
    smf_alpha1: float = -0.35
    smf_phi2: float = 2.30e-3
    smf_alpha2: float = -1.47
    smf_norm: float = 1.35
    smf_shift_void: float = -0.3
    smf_shift_node: float = 0.15
    faint_density: float = 1.0e-3
    faint_keep: float = 0.08
    faint_mass_floor: float = 8.0
    quench_centre: float = 10.09
    quench_width: float = 0.30
    env_quenching: float = 0.25
    ms_slope: float = 0.76
    ms_intercept: float = -7.714
    ms_scatter: float = 0.30
    quenched_log_ssfr: float = -12.0
    quenched_scatter: float = 0.45
    sfr_floor_log_ssfr: float = -12.4
    junk_fraction: float = 0.004
    bgs_bright_limit: float = 19.5
    bgs_faint_limit: float = 20.175
    evolution_q: float = 0.97
    # observation
    fibre_pmax: float = 0.85
    fibre_crowding: float = 0.3
    fibre_patrol_deg: float = 0.04
    dchi2_mu0: float = 3.3
    dchi2_slope: float = 0.55
    dchi2_sigma: float = 0.5
    zwarn_other_fraction: float = 0.004
    star_fraction: float = 0.001
    sv3_duplicate_fraction: float = 0.01
    # void finding
    hole_grid: float = 5.0
    min_maximal_radius: float = 10.0
    maximal_overlap: float = 0.1
    hole_join_fraction: float = 0.5
    hole_mask_overlap: float = 0.1
    field_sigma: float = 1.5
    field_neighbour: int = 3
    edge_probe: float = 10.0
    v2_link_density: float = 0.2
    v2_min_radius: float = 10.0
    randoms_density: float = 0.05
    # orchestration
    n_galaxy_shards: int = 8
    n_quasar_spectra: int = 500
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        fracs = self.frac_void + self.frac_wall + self.frac_filament + self.frac_node
        if abs(fracs - 1.0) > 1e-6:
            raise ConfigError(f"web fractions must sum to 1, got {fracs:.4f}", parameter="frac_*")
        if not 0.0 <= self.env_quenching < 1.0:
            raise ConfigError(f"env_quenching must be in [0, 1), got {self.env_quenching}", parameter="env_quenching")
        if not self.patches:
            raise ConfigError("a sample sky needs at least one footprint patch", parameter="patches")
        if not 0 < self.z_max_tracers <= self.z_max_galaxies:
            raise ConfigError("need 0 < z_max_tracers <= z_max_galaxies", parameter="z_max_tracers")

    @property
    def caps(self) -> tuple[str, ...]:
        """Caps present, NGC first."""
        present = {p.cap for p in self.patches}
        return tuple(c for c in ("NGC", "SGC") if c in present)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (for truth/ and file headers)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "patches":
                value = [vars(p) | {} for p in value]
            out[f.name] = value
        return out


# --------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------

_TINY = (
    Patch("NGC", 179.0, 190.0, 26.5, 33.5),
    Patch("SGC", 16.0, 22.0, -1.5, 2.7),
)
_SMALL = (
    Patch("NGC", 150.0, 193.0, 20.0, 35.0),
    Patch("SGC", 10.0, 24.0, -3.0, 6.0),
)
_FULL = (
    Patch("NGC", 130.0, 230.0, 20.0, 40.0, tile_completeness=0.90),
    Patch("NGC", 195.0, 235.0, -5.0, 13.0, tile_completeness=0.85),
    Patch("SGC", 0.0, 25.0, -5.0, 8.0, tile_completeness=0.88),
    Patch("SGC", 335.0, 355.0, 0.0, 4.0, tile_completeness=0.85),
)

_SCALES: dict[str, dict[str, Any]] = {
    "tiny": {"patches": _TINY, "n_galaxy_shards": 4, "n_quasar_spectra": 500, "randoms_density": 0.08},
    "small": {"patches": _SMALL, "n_galaxy_shards": 16, "n_quasar_spectra": 5000, "randoms_density": 0.03},
    "full": {"patches": _FULL, "n_galaxy_shards": 64, "n_quasar_spectra": 50_000, "randoms_density": 0.01},
}


def config_for_scale(scale: str, **overrides: Any) -> SampleConfig:
    """The configuration of a named scale, with optional field overrides.

    Parameters
    ----------
    scale
        ``tiny`` (≈ 20k galaxies, the CI and README default), ``small`` (≈ 200k) or
        ``full`` (a DESIVAST-sized sky: ≈ 2,450 + 400 deg², ≈ 0.45M tracers).
    **overrides
        Any :class:`SampleConfig` field, e.g. ``env_quenching=0.0`` for a null sky.

    Raises
    ------
    ConfigError
        Unknown scale or field.
    """
    if scale not in _SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}", parameter="--scale")
    known = {f.name for f in fields(SampleConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown sample-sky setting(s): {', '.join(unknown)}", parameter="overrides")
    base = SampleConfig(scale=scale, **_SCALES[scale])
    return replace(base, **overrides) if overrides else base
