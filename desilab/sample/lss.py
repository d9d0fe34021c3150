"""Galaxy positions with voids, walls, filaments and nodes: a Voronoi cosmic web.

The model is van de Weygaert & Icke's (1989) Voronoi clustering model, as used to test
void finders (e.g. Platen, van de Weygaert & Jones 2007, WVF; Neyrinck 2008, ZOBOV):

* Voronoi **nuclei** are scattered at random (density ``cell_density``); their cells
  are the voids;
* **nodes** are the Voronoi vertices (circumcentres of the nuclei's Delaunay
  tetrahedra) — groups and clusters, with a Pareto richness spectrum;
* **filaments** are the Voronoi edges (segments between circumcentres of adjacent
  tetrahedra);
* **walls** are the Voronoi faces: a uniform point is projected onto the bisector plane
  of its two nearest nuclei (the pancake of the Zel'dovich picture);
* **void** galaxies are a sparse population inside cells, away from the walls.

Each element has a Gaussian thickness and a line-of-sight velocity dispersion (rich nodes
get fingers of God, voids expand). Analytic densities of Poisson–Voronoi elements (Møller
1989: vertices 6.768 λ, edge length 5.832 λ^(2/3)) turn the configured galaxy densities
into per-vertex and per-edge expectations, so the result does not depend on the region
generated.

Positions are made in a Cartesian box around one cap's cone and kept where they end up
within a margin of it; :mod:`desilab.sample.galaxies` then cuts to the footprint.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from desilab.sample.config import SampleConfig
from desilab.sample.footprint import Footprint
from desilab.sky.cosmology import C_KM_S, Cosmology
from desilab.sky.geometry import radec_to_unit

__all__ = [
    "CLASS_NAMES",
    "FILAMENT",
    "NODE",
    "VOID",
    "WALL",
    "Positions",
    "Region",
    "Web",
    "build_web",
    "circumspheres",
    "sample_positions",
    "sector_box",
]

VOID, WALL, FILAMENT, NODE = 0, 1, 2, 3
CLASS_NAMES = ("void", "wall", "filament", "node")

#: Poisson–Voronoi constants in 3-D (Møller 1989; Okabe et al. 2000, Table 5.5.1).
VERTEX_DENSITY = 6.768  # vertices per nucleus
EDGE_LENGTH_DENSITY = 5.832  # edge length per volume, in units of λ^(2/3)

#: Margin [Mpc/h] around the cone inside which uniform wall candidates are drawn: a wall
#: galaxy moves from its candidate point to its cell's wall, by less than a cell radius
#: (~28 Mpc/h at the default cell density).
MARGIN = 35.0


def circumspheres(points: np.ndarray, simplices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Circumcentres and radii of tetrahedra.

    Parameters
    ----------
    points
        (n, 3) vertex coordinates.
    simplices
        (m, 4) vertex indices.

    Returns
    -------
    centres, radii
        (m, 3) and (m,), float64. Computed relative to the first vertex for accuracy.
    """
    a = points[simplices[:, 0]]
    b = points[simplices[:, 1]] - a
    c = points[simplices[:, 2]] - a
    d = points[simplices[:, 3]] - a
    cd = np.cross(c, d)
    db = np.cross(d, b)
    bc = np.cross(b, c)
    den = 2.0 * np.einsum("ij,ij->i", b, cd)
    num = (
        np.einsum("ij,ij->i", b, b)[:, None] * cd
        + np.einsum("ij,ij->i", c, c)[:, None] * db
        + np.einsum("ij,ij->i", d, d)[:, None] * bc
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        u = num / den[:, None]
    return a + u, np.sqrt(np.einsum("ij,ij->i", u, u))


@dataclass
class Web:
    """The skeleton of one cap's cosmic web.

    Attributes
    ----------
    nuclei
        (n, 3) Voronoi nuclei [Mpc/h].
    vertices
        (nv, 3) Voronoi vertices = node positions.
    weight
        (nv,) node richness (mean 1).
    edges
        (ne, 2) indices into ``vertices``: the filaments.
    """

    nuclei: np.ndarray
    vertices: np.ndarray
    weight: np.ndarray
    edges: np.ndarray

    def __post_init__(self) -> None:
        self.tree = cKDTree(self.nuclei)


def sector_box(footprint: Footprint, cap: str, d_max: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian bounding box of one cap's cone out to *d_max*, grown by *margin*."""
    ra0, ra1, dec0, dec1 = footprint.sector(cap)
    ra = np.linspace(ra0, ra1, 64)
    dec = np.linspace(dec0, dec1, 64)
    rr, dd = np.meshgrid(ra, dec)
    u = radec_to_unit(rr.ravel(), dd.ravel())
    pts = np.vstack([u * d_max, np.zeros((1, 3))])
    # the cone's widest extent may be at an interior latitude/longitude: include axes
    lo = pts.min(axis=0) - margin
    hi = pts.max(axis=0) + margin
    return lo, hi


def build_web(cfg: SampleConfig, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> Web:
    """Scatter nuclei in a box (grown by two cell sizes) and derive nodes and filaments.

    Parameters
    ----------
    cfg
        Configuration (``cell_density``, ``node_richness_alpha``).
    lo, hi
        Box corners [Mpc/h].
    rng
        Random stream.
    """
    cell = cfg.cell_density ** (-1.0 / 3.0)
    lo = lo - 2 * cell
    hi = hi + 2 * cell
    n = rng.poisson(cfg.cell_density * float(np.prod(hi - lo)))
    nuclei = lo + rng.random((n, 3)) * (hi - lo)
    tri = Delaunay(nuclei)
    centres, _ = circumspheres(nuclei, tri.simplices)
    nbr = tri.neighbors
    t_idx = np.repeat(np.arange(len(nbr)), 4)
    o_idx = nbr.ravel()
    ok = (o_idx > t_idx) & (o_idx >= 0)
    edges = np.column_stack([t_idx[ok], o_idx[ok]])
    # Pareto richness, normalised to mean 1 (capped to avoid one absurd cluster)
    a = cfg.node_richness_alpha
    w = (1.0 - rng.random(len(centres))) ** (-1.0 / a)
    w = np.minimum(w, cfg.node_richness_max)
    w /= w.mean() if len(w) else 1.0
    return Web(nuclei=nuclei, vertices=centres, weight=w, edges=edges)


@dataclass
class Region:
    """A union of spherical-sector shells containing one cap's cone and a margin around it.

    Uniform points are drawn here instead of in the cone's Cartesian bounding box (which
    is mostly empty for a narrow cone): each shell [r_a, r_b] spans the cap's RA/Dec
    bounds padded by the angle the margin subtends at r_a.

    Attributes
    ----------
    shells
        (k, 6) rows of r_a, r_b, ra_lo, ra_hi [deg], sin(dec_lo), sin(dec_hi).
    """

    shells: np.ndarray

    @staticmethod
    def around(sector: tuple[float, float, float, float], d_max: float, margin: float, n_shells: int = 24) -> Region:
        """Shells from 0 to ``d_max + margin`` around an RA/Dec sector."""
        ra0, ra1, dec0, dec1 = sector
        edges = np.linspace(0.0, d_max + margin, n_shells + 1)
        rows = []
        for r_a, r_b in itertools.pairwise(edges):
            pad = 90.0 if r_a <= margin else np.degrees(np.arcsin(margin / r_a)) + 1.0
            d_lo, d_hi = max(dec0 - pad, -90.0), min(dec1 + pad, 90.0)
            cosd = np.cos(np.radians(min(max(abs(d_lo), abs(d_hi)), 89.0)))
            r_pad = pad / cosd
            if pad >= 60.0 or (ra1 - ra0) + 2 * r_pad >= 360.0:
                a_lo, a_hi, d_lo, d_hi = 0.0, 360.0, -90.0, 90.0
            else:
                a_lo, a_hi = ra0 - r_pad, ra1 + r_pad
            rows.append((r_a, r_b, a_lo, a_hi, np.sin(np.radians(d_lo)), np.sin(np.radians(d_hi))))
        return Region(np.array(rows))

    @property
    def volumes(self) -> np.ndarray:
        """Volume of each shell [(Mpc/h)³]."""
        r_a, r_b, a0, a1, s0, s1 = self.shells.T
        return (r_b**3 - r_a**3) / 3.0 * np.radians(a1 - a0) * (s1 - s0)

    def sample(self, density: float, rng: np.random.Generator) -> np.ndarray:
        """Poisson-uniform points of the given density [(Mpc/h)^-3]."""
        counts = rng.poisson(density * self.volumes)
        out = []
        for (r_a, r_b, a0, a1, s0, s1), k in zip(self.shells, counts, strict=True):
            if k == 0:
                continue
            r = (r_a**3 + rng.random(k) * (r_b**3 - r_a**3)) ** (1.0 / 3.0)
            ra = np.radians(rng.uniform(a0, a1, k))
            sd = rng.uniform(s0, s1, k)
            cd = np.sqrt(1.0 - sd * sd)
            out.append(np.column_stack([r * cd * np.cos(ra), r * cd * np.sin(ra), r * sd]))
        return np.concatenate(out) if out else np.zeros((0, 3))


@dataclass
class Positions:
    """Real-space galaxies of one population.

    Attributes
    ----------
    xyz
        (n, 3) real-space comoving positions [Mpc/h].
    cls
        (n,) web element: VOID, WALL, FILAMENT, NODE.
    v_los
        (n,) line-of-sight peculiar velocity [km/s].
    node
        (n,) node (Voronoi vertex) index for node galaxies, else −1 (group id).
    core
        (n,) True for the isolated void galaxies of the hard-core process (the places
        reserved for the most luminous void galaxies).
    """

    xyz: np.ndarray
    cls: np.ndarray
    v_los: np.ndarray
    node: np.ndarray
    core: np.ndarray

    def __len__(self) -> int:
        return len(self.cls)

    @staticmethod
    def concat(parts: list[Positions]) -> Positions:
        """Concatenate populations."""
        return Positions(
            xyz=np.concatenate([p.xyz for p in parts]) if parts else np.zeros((0, 3)),
            cls=np.concatenate([p.cls for p in parts]).astype(np.int8) if parts else np.zeros(0, np.int8),
            v_los=np.concatenate([p.v_los for p in parts]) if parts else np.zeros(0),
            node=np.concatenate([p.node for p in parts]) if parts else np.zeros(0, np.int64),
            core=np.concatenate([p.core for p in parts]) if parts else np.zeros(0, bool),
        )


def _uniform_in_box(n_density: float, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = rng.poisson(n_density * float(np.prod(hi - lo)))
    return lo + rng.random((n, 3)) * (hi - lo)


def _los(xyz: np.ndarray) -> np.ndarray:
    return xyz / np.maximum(np.linalg.norm(xyz, axis=1), 1e-9)[:, None]


def sample_positions(
    cfg: SampleConfig,
    web: Web,
    densities: dict[int, float],
    keep,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
    core_density: float = 0.0,
    region: Region | None = None,
    near=None,
) -> Positions:
    """Draw galaxies of every web element at the given comoving densities.

    Parameters
    ----------
    cfg
        Configuration (thicknesses, velocities).
    web
        The skeleton.
    densities
        Mean number density [(Mpc/h)^-3] per element (``VOID``…``NODE``).
    keep
        Callable ``keep(xyz) -> bool array``: where galaxies are wanted (near the cone).
    lo, hi
        Box in which uniform points are drawn.
    rng
        Random stream.
    core_density
        Density of the isolated (hard-core) void galaxies, part of ``densities[VOID]``.
    region
        Where uniform points are drawn (default: the box).
    near
        Callable ``near(xyz, margin) -> bool array``: skeleton elements (nodes, filament
        midpoints) within *margin* of the wanted region are used (default: *keep*).
    """
    if near is None:

        def near(xyz: np.ndarray, margin: float) -> np.ndarray:
            return keep(xyz)

    def uniform(density: float) -> np.ndarray:
        if region is not None:
            return region.sample(density, rng)
        return _uniform_in_box(density, lo, hi, rng)

    lam = cfg.cell_density
    parts: list[Positions] = []

    # --- nodes: Poisson per vertex, Gaussian cores, fingers of God -----------------------
    vkeep = near(web.vertices, 10.0) & np.all((web.vertices > lo) & (web.vertices < hi), axis=1)
    vid = np.flatnonzero(vkeep)
    mean_per_vertex = densities[NODE] / (VERTEX_DENSITY * lam)
    counts = rng.poisson(mean_per_vertex * web.weight[vid])
    gv = np.repeat(vid, counts)
    w = web.weight[gv]
    sig = np.minimum(cfg.node_sigma * w ** (1.0 / 3.0), 3.0 * cfg.node_sigma)
    xyz = web.vertices[gv] + rng.normal(size=(len(gv), 3)) * sig[:, None]
    sv = np.minimum(cfg.sigma_v_node * w ** (1.0 / 3.0), 1200.0)
    parts.append(
        Positions(xyz, np.full(len(gv), NODE, np.int8), rng.normal(size=len(gv)) * sv, gv.astype(np.int64), _no(gv))
    )

    # --- filaments: Poisson per edge ∝ length ------------------------------------------
    a = web.vertices[web.edges[:, 0]]
    b = web.vertices[web.edges[:, 1]]
    mid = 0.5 * (a + b)
    length = np.linalg.norm(b - a, axis=1)
    ekeep = (length < 4.0 * lam ** (-1.0 / 3.0)) & near(mid, MARGIN) & np.all((mid > lo) & (mid < hi), axis=1)
    eid = np.flatnonzero(ekeep)
    per_length = densities[FILAMENT] / (EDGE_LENGTH_DENSITY * lam ** (2.0 / 3.0))
    # half the filament galaxies are smooth along the segment, half in small groups
    # (Poisson clusters of mean size ``filament_group_size``, 0.5 Mpc/h cores)
    f_grp = cfg.filament_group_fraction
    counts = rng.poisson((1.0 - f_grp) * per_length * length[eid])
    ge = np.repeat(eid, counts)
    t = rng.random(len(ge))
    xyz = a[ge] + t[:, None] * (b[ge] - a[ge]) + rng.normal(size=(len(ge), 3)) * cfg.filament_sigma
    v = rng.normal(size=len(ge)) * cfg.sigma_v_filament
    n_groups = rng.poisson(f_grp * per_length * length[eid] / cfg.filament_group_size)
    gg = np.repeat(eid, n_groups)
    gc = a[gg] + rng.random(len(gg))[:, None] * (b[gg] - a[gg]) + rng.normal(size=(len(gg), 3)) * cfg.filament_sigma
    gv_bulk = rng.normal(size=len(gg)) * cfg.sigma_v_filament
    members = rng.poisson(cfg.filament_group_size, len(gg))
    gm = np.repeat(np.arange(len(gg)), members)
    xyz = np.vstack([xyz, gc[gm] + rng.normal(size=(len(gm), 3)) * 0.5])
    v = np.concatenate([v, gv_bulk[gm] + rng.normal(size=len(gm)) * 120.0])
    nf = len(xyz)
    parts.append(Positions(xyz, np.full(nf, FILAMENT, np.int8), v, np.full(nf, -1, np.int64), np.zeros(nf, bool)))

    # --- walls: uniform points projected on the bisector of their two nearest nuclei ---------
    # A fraction ``wall_group_fraction`` of wall galaxies is in small groups (centres
    # projected the same way, members within 0.5 Mpc/h), the rest smooth.
    f_grp = cfg.wall_group_fraction
    q = uniform((1.0 - f_grp) * densities[WALL])
    qg = uniform(f_grp * densities[WALL] / cfg.filament_group_size)
    if len(q) + len(qg):
        allq = np.vstack([q, qg])
        _, nn = web.tree.query(allq, k=2)
        n1 = web.nuclei[nn[:, 0]]
        n2 = web.nuclei[nn[:, 1]]
        nrm = n2 - n1
        nrm /= np.linalg.norm(nrm, axis=1)[:, None]
        m = 0.5 * (n1 + n2)
        proj = allq - np.einsum("ij,ij->i", allq - m, nrm)[:, None] * nrm
        proj += rng.normal(size=proj.shape) * cfg.wall_sigma
        smooth, centres = proj[: len(q)], proj[len(q) :]
        members = rng.poisson(cfg.filament_group_size, len(centres))
        gm = np.repeat(np.arange(len(centres)), members)
        bulk = rng.normal(size=len(centres)) * cfg.sigma_v_wall
        xyz = np.vstack([smooth, centres[gm] + rng.normal(size=(len(gm), 3)) * 0.5])
        # walls have collapsed: only a dispersion about them (a coherent infall equal to
        # the displacement would make galaxies overshoot into the next cell)
        v = np.concatenate(
            [rng.normal(size=len(smooth)) * cfg.sigma_v_wall, bulk[gm] + rng.normal(size=len(gm)) * 100.0]
        )
        parts.append(Positions(xyz, np.full(len(xyz), WALL, np.int8), v, np.full(len(xyz), -1, np.int64), _no(xyz)))

    # --- voids ----------------------------------------------------------------------------
    # Two sub-populations, both labelled VOID. The *core* one is isolated: candidates
    # farther than ``void_wall_clearance`` from their cell's wall, thinned as a Matérn
    # sequential hard-core process of radius ``void_hardcore``, at density ``core_density``;
    # the most luminous void galaxies are placed there (see galaxies.generate_cap), so
    # void *tracers* are isolated, as VoidFinder's field cut assumes. The *diffuse* one
    # fills the rest of the void density uniformly, away from the walls by 2 Mpc/h.
    core_density = min(core_density, densities[VOID])
    if core_density > 0:
        xyz_c, n1_c = _hardcore_fill(web, uniform, core_density, cfg.void_hardcore, cfg.void_wall_clearance, rng)
        parts.append(_void_part(cfg, xyz_c, n1_c, True, rng))
    diffuse = max(densities[VOID] - core_density, 0.0)
    q = uniform(2.0 * diffuse)
    if len(q):
        n1, clearance = _nucleus_and_clearance(web, q)
        ok = clearance > 2.0
        frac = max(ok.mean(), 1e-3)
        ok &= rng.random(len(q)) < 1.0 / (2.0 * frac)
        parts.append(_void_part(cfg, q[ok], n1[ok], False, rng))

    pos = Positions.concat(parts)
    sel = keep(pos.xyz)
    return Positions(pos.xyz[sel], pos.cls[sel], pos.v_los[sel], pos.node[sel], pos.core[sel])


def _hardcore_fill(
    web: Web, uniform, density: float, radius: float, clearance: float, rng: np.random.Generator, rounds: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Points at least *radius* apart and *clearance* from their cell's walls.

    Random sequential adsorption in vectorised rounds: each round draws uniform
    candidates, drops those too close to a wall or to an accepted point, resolves
    conflicts inside the round by random marks (Matérn type II), and accepts the rest,
    until the accepted density reaches *density* (per unit volume of the whole region,
    walls included) or *rounds* have run (the packing saturates: RSA approaches a volume
    fraction of ~0.38 of spheres of diameter *radius*, far denser than a Matérn process);
    the excess of the last round is thinned at random.

    Returns
    -------
    xyz, nucleus
        Positions and the nucleus of each one's cell.
    """
    acc: list[np.ndarray] = []
    acc_n: list[np.ndarray] = []
    total = 0
    target = None
    tree = None
    for _ in range(rounds):
        q = uniform(density)
        if target is None:
            target = len(q)  # Poisson count of the wanted density over the region
        if len(q) == 0 or total >= target:
            break
        # (both filters are deterministic, so their order does not change the result;
        # the cheap one first)
        if tree is not None:
            d, _ = tree.query(q, k=1, distance_upper_bound=radius)
            q = q[~np.isfinite(d)]
        n1, clear = _nucleus_and_clearance(web, q)
        ok = clear > clearance
        q, n1 = q[ok], n1[ok]
        mark = rng.random(len(q))
        if len(q) > 1:
            pairs = cKDTree(q).query_pairs(radius, output_type="ndarray")
            dead = np.zeros(len(q), dtype=bool)
            if len(pairs):
                dead[np.where(mark[pairs[:, 0]] > mark[pairs[:, 1]], pairs[:, 0], pairs[:, 1])] = True
            q, n1 = q[~dead], n1[~dead]
        acc.append(q)
        acc_n.append(n1)
        total += len(q)
        tree = cKDTree(np.concatenate(acc))
    if not acc:
        return np.zeros((0, 3)), np.zeros((0, 3))
    xyz, nuc = np.concatenate(acc), np.concatenate(acc_n)
    if target is not None and len(xyz) > target:
        keep = np.sort(rng.permutation(len(xyz))[:target])
        xyz, nuc = xyz[keep], nuc[keep]
    return xyz, nuc


def _no(a: np.ndarray) -> np.ndarray:
    return np.zeros(len(a), dtype=bool)


def _nucleus_and_clearance(web: Web, q: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Nearest nucleus of each point and its distance to its cell's boundary.

    The distance to the face shared with nucleus j is (d_j² − d_1²) / (2 |n_j − n_1|); the
    nearest face need not be the one with the second-nearest nucleus, so the minimum is
    taken over the *k* nearest.
    """
    d, nn = web.tree.query(q, k=k)
    n1 = web.nuclei[nn[:, 0]]
    sep = np.linalg.norm(web.nuclei[nn[:, 1:]] - n1[:, None, :], axis=2)
    face = (d[:, 1:] ** 2 - d[:, :1] ** 2) / (2.0 * sep)
    return n1, face.min(axis=1)


def _void_part(cfg: SampleConfig, xyz: np.ndarray, n1: np.ndarray, core: bool, rng: np.random.Generator) -> Positions:
    """Void galaxies with their expansion velocity (outflow from the nucleus)."""
    v = cfg.void_outflow * np.einsum("ij,ij->i", xyz - n1, _los(xyz))
    v += rng.normal(size=len(xyz)) * cfg.sigma_v_void
    n = len(xyz)
    return Positions(xyz, np.full(n, VOID, np.int8), v, np.full(n, -1, np.int64), np.full(n, core))


def observed_redshift(
    xyz: np.ndarray, v_los: np.ndarray, cosmo: Cosmology
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sky position, cosmological and observed redshift of real-space positions.

    ``1 + z_obs = (1 + z_cos)(1 + v_los / c)``.

    Returns
    -------
    ra, dec, r, z_cos, z_obs
    """
    r = np.linalg.norm(xyz, axis=1)
    ra = np.mod(np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0])), 360.0)
    dec = np.degrees(np.arcsin(np.clip(xyz[:, 2] / np.maximum(r, 1e-12), -1.0, 1.0)))
    z_cos = cosmo.redshift_at_distance_mpch(r)
    z_obs = (1.0 + z_cos) * (1.0 + v_los / C_KM_S) - 1.0
    return ra, dec, r, z_cos, z_obs
