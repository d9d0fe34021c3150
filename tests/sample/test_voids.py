"""Unit tests of the void constructions (pure functions, no files)."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from scipy.spatial import ConvexHull, Delaunay, Voronoi

from desilab.sample.voids import (
    HoleSet,
    Survey,
    build_zones,
    combine_holes,
    find_holes,
    lens_volume,
    locate,
    points_in_spheres,
    prune,
    radial_check,
    voronoi_cells,
    wall_field_split,
    watershed,
)


def _box_survey(half: float = 60.0) -> Survey:
    """A survey that contains a cube of side 2*half centred 300 Mpc/h away (full-sky mask)."""
    mask = np.ones(hp.nside2npix(16), dtype=bool)
    return Survey(mask, 16, 0.0, 1e4)


def test_voronoi_volumes_and_areas_match_scipy():
    rng = np.random.default_rng(3)
    pts = rng.random((1500, 3)) * 100.0
    vol, edges, area, unbounded, _ = voronoi_cells(pts)
    vor = Voronoi(pts)
    inner = np.flatnonzero(np.all((pts > 25) & (pts < 75), axis=1))[:100]
    for i in inner:
        reg = vor.regions[vor.point_region[i]]
        assert -1 not in reg
        assert vol[i] == pytest.approx(ConvexHull(vor.vertices[reg]).volume, rel=1e-10)
    # faces: compare a few ridges between inner points
    key = {tuple(e): a for e, a in zip(edges.tolist(), area, strict=True)}
    inner_set = set(inner.tolist())
    checked = 0
    for (p, q), rv in zip(vor.ridge_points, vor.ridge_vertices, strict=True):
        if p in inner_set and q in inner_set and -1 not in rv:
            v = vor.vertices[rv]
            n = pts[q] - pts[p]
            n /= np.linalg.norm(n)
            u = np.cross(n, [1.0, 0.0, 0.0])
            u /= np.linalg.norm(u)
            w = np.cross(n, u)
            expected = ConvexHull(np.c_[v @ u, v @ w]).volume
            assert key[(min(p, q), max(p, q))] == pytest.approx(expected, rel=1e-9)
            checked += 1
    assert checked > 20
    assert np.all(np.isinf(vol[unbounded]))


def test_locate_matches_find_simplex():
    rng = np.random.default_rng(4)
    tri = Delaunay(rng.random((3000, 3)) * 100.0)
    q = rng.random((5000, 3)) * 120.0 - 10.0
    assert np.array_equal(locate(tri, q), tri.find_simplex(q))


def test_lens_volume_against_monte_carlo():
    rng = np.random.default_rng(5)
    r1, r2, d = 10.0, 7.0, 12.0
    pts = rng.uniform(-10, 10, size=(400_000, 3))
    inside = (np.linalg.norm(pts, axis=1) < r1) & (np.linalg.norm(pts - [d, 0, 0], axis=1) < r2)
    mc = inside.mean() * 20.0**3
    assert lens_volume(r1, r2, d) == pytest.approx(mc, rel=0.03)
    assert lens_volume(10.0, 3.0, 2.0) == pytest.approx(4 / 3 * np.pi * 27)  # contained
    assert lens_volume(3.0, 3.0, 7.0) == 0.0


def test_radial_check_is_vast_value():
    # VAST: the root in (0,1) of y^3 - 3y + (2 - 4p) = 0; a cap beyond y*R holds p of the volume
    y = radial_check(0.1)
    h = 1.0 - y
    assert np.pi * h**2 * (3 - h) / 3 / (4 / 3 * np.pi) == pytest.approx(0.1)


def test_holes_are_empty_and_bounded_by_four_galaxies():
    rng = np.random.default_rng(6)
    centre = np.array([300.0, 0.0, 0.0])
    wall = centre + rng.uniform(-50, 50, size=(2500, 3))
    # carve two empty regions so that large holes exist
    for c in ([10.0, 10.0, 0.0], [-20.0, -15.0, 10.0]):
        wall = wall[np.linalg.norm(wall - centre - c, axis=1) > 18.0]
    holes, _ = find_holes(wall, _box_survey(), grid=5.0)
    assert len(holes.radius) > 100
    assert np.all(np.diff(holes.radius) <= 0)
    # empty: no wall galaxy strictly inside any hole (1e-6 Mpc/h boundary tolerance)
    assert np.all(points_in_spheres(wall, holes.centre, holes.radius, tol=1e-6) < 0)
    # bounded: the four member galaxies lie on the surface
    d = np.linalg.norm(wall[holes.members] - holes.centre[:, None, :], axis=2)
    assert np.allclose(d, holes.radius[:, None], atol=1e-7)
    assert holes.radius.max() > 15.0


def test_combine_holes_follows_vast_rules():
    c = np.array([[0, 0, 0], [30, 0, 0], [6, 0, 0], [15, 0, 0], [0, 40, 0], [1, 0, 0]], dtype=float)
    r = np.array([14.0, 12.0, 9.0, 8.0, 9.5, 13.5])
    order = np.argsort(-r, kind="stable")
    holes = HoleSet(c[order], r[order], np.zeros((6, 4), int), np.zeros(6, bool))
    max_idx, hole_void = combine_holes(holes)
    maxi = {tuple(holes.centre[i]) for i in max_idx}
    # (0,0,0) R14 and (30,0,0) R12 are maximals; (1,0,0) R13.5 overlaps the first by >10%
    assert maxi == {(0.0, 0.0, 0.0), (30.0, 0.0, 0.0)}
    void_of = {tuple(holes.centre[i]): v for i, v in enumerate(hole_void)}
    assert void_of[(6.0, 0.0, 0.0)] == void_of[(0.0, 0.0, 0.0)]  # >50% inside the first maximal
    assert void_of[(0.0, 40.0, 0.0)] == -1  # R 9.5 < 10: not maximal, overlaps nothing
    # (15,0,0) R8 overlaps both maximals by < 50% of its volume each -> dropped
    assert void_of[(15.0, 0.0, 0.0)] == -1


def test_wall_field_split_uses_third_neighbour():
    rng = np.random.default_rng(7)
    dense = rng.normal(size=(500, 3))
    lonely = np.array([[50.0, 50.0, 50.0], [-60.0, 40.0, 0.0]])
    is_field, _mean, std = wall_field_split(np.vstack([dense, lonely]))
    assert is_field[-2:].all()
    assert is_field[:-2].mean() < 0.1
    assert std > 0


def test_zones_watershed_and_prunings_add_up():
    rng = np.random.default_rng(8)
    # two low-density blobs in a denser medium
    medium = rng.uniform(0, 100, size=(4000, 3))
    keep = (np.linalg.norm(medium - 30, axis=1) > 15) & (np.linalg.norm(medium - 70, axis=1) > 12)
    pts = np.vstack([medium[keep], 30 + rng.normal(size=(15, 3)) * 6, 70 + rng.normal(size=(10, 3)) * 5])
    vol, edges, area, unbounded, _ = voronoi_cells(pts)
    edge_cell = unbounded | np.any((pts < 8) | (pts > 92), axis=1)
    cell = np.where(edge_cell, 0.0, vol)
    zones = build_zones(cell, edges)
    active = zones.zone >= 0
    # every active cell's zone core is its local volume maximum
    assert np.allclose(np.bincount(zones.zone[active], weights=cell[active]), zones.zone_volume)
    assert np.all(zones.core_volume >= 0)
    hierarchy = watershed(zones)
    for method in ("REVOLVER", "VIDE"):
        res = prune(zones, method, pts, edges, area, min_radius=5.0, hierarchy=hierarchy)
        for i, zs in enumerate(res.zones):
            assert res.volume[i] == pytest.approx(zones.zone_volume[zs].sum(), rel=1e-12)
            assert 4 / 3 * np.pi * res.radius[i] ** 3 == pytest.approx(res.volume[i], rel=1e-12)
        if method == "REVOLVER":
            assert np.array_equal(res.zonevoid[:, 0], res.zonevoid[:, 1])
