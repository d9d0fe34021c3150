"""Membership kernels: exact against brute force outside the tolerance shell, flags, V² joins."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from scipy.spatial import cKDTree

from desilab.errors import InputError
from desilab.voids.membership import (
    BOUNDARY_TOL,
    ENV_EDGE,
    ENV_OUT,
    ENV_VOID,
    ENV_WALL,
    HoleGrid,
    SurveyMask,
    classify_voidfinder,
    edge_flags,
    holes_brute_force,
    nearest_void_distance,
    v2_flags,
    v2_membership,
    vec2pix_nest,
)


def _holes(rng, n=400, box=200.0):
    c = rng.uniform(20, box - 20, (n, 3))
    r = rng.uniform(4, 14, n)
    return c, r


@pytest.mark.parametrize("nside", [1, 2, 16, 64, 1024])
def test_vec2pix_matches_healpy(nside):
    rng = np.random.default_rng(nside)
    v = rng.normal(size=(20000, 3))
    v[:10] = [
        [0, 0, 1], [0, 0, -1], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [1, 1, 0], [1, 0, 1], [0, 1, -1], [3, 4, 5]
    ]
    assert np.array_equal(vec2pix_nest(nside, v), hp.vec2pix(nside, *v.T, nest=True))


def test_grid_equals_brute_force_outside_shell_with_surface_points():
    rng = np.random.default_rng(3)
    c, r = _holes(rng)
    pts = rng.uniform(0, 200, (30000, 3))
    # add the defining galaxies: points exactly on hole surfaces, with float32 round-off
    u = rng.normal(size=(2000, 3))
    u /= np.linalg.norm(u, axis=1)[:, None]
    k = rng.integers(0, len(c), 2000)
    surf = (c[k] + u * r[k, None]).astype(np.float32).astype(np.float64)
    pts = np.vstack([pts, surf])
    grid = HoleGrid.build(c, r)
    hole, shell = grid.query(pts)
    ref_hole, ref_shell = holes_brute_force(pts, c, r)
    assert np.array_equal(hole, ref_hole)  # same lowest-index containing hole
    assert np.array_equal(shell, ref_shell)
    # the float32-rounded surface points are in the shell unless genuinely inside another hole
    d = np.linalg.norm(surf - c[k], axis=1)
    assert np.all(np.abs(d - r[k]) < BOUNDARY_TOL)
    on = shell[-2000:] | (hole[-2000:] >= 0)
    assert on.all()
    # VAST's strict |x - c| < R on the same points: agrees outside the shell
    d_all = np.linalg.norm(pts[:, None, :] - c[None], axis=2)
    strict = (d_all < r[None]).any(axis=1)
    assert np.array_equal(strict[~shell], (hole >= 0)[~shell])
    print(f"boundary-shell points: {shell.sum()} of {len(pts)}")


@pytest.mark.parametrize("cell", [1.5, 5.0, 40.0])
def test_grid_cell_size_does_not_change_answer(cell):
    rng = np.random.default_rng(5)
    c, r = _holes(rng, 200)
    pts = rng.uniform(-10, 210, (5000, 3))  # some outside the grid
    ref = holes_brute_force(pts, c, r)
    got = HoleGrid.build(c, r, cell=cell).query(pts)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])


def test_empty_and_bad_holes():
    g = HoleGrid.build(np.zeros((0, 3)), np.zeros(0))
    h, s = g.query(np.ones((3, 3)))
    assert (h == -1).all() and not s.any()
    with pytest.raises(InputError, match="radii"):
        HoleGrid.build(np.zeros((2, 3)), np.array([1.0, -1.0]))
    with pytest.raises(InputError, match="non-finite"):
        classify_voidfinder(np.array([[np.nan, 0, 0]]), HoleGrid.build(np.ones((1, 3)), np.ones(1)))


def _survey(nside=32, d_min=50.0, d_max=400.0):
    vec = np.stack(hp.pix2vec(nside, np.arange(12 * nside * nside), nest=True), axis=1)
    mask = (vec[:, 2] > 0.3) & (vec[:, 0] > 0)  # a cap
    return SurveyMask(mask, nside, d_min, d_max)


def _probe_reference(xyz, survey, dist):
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    pts = xyz[:, None, :] + dist * axes[None]
    r = np.linalg.norm(pts, axis=2)
    pix = hp.vec2pix(survey.nside, pts[..., 0], pts[..., 1], pts[..., 2], nest=True)
    inside = survey.mask[pix] & (r > survey.d_min) & (r < survey.d_max)
    return ~inside.all(axis=1)


def test_flags_match_vast_rules():
    rng = np.random.default_rng(7)
    survey = _survey()
    v = rng.normal(size=(40000, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    xyz = v * rng.uniform(0, 450, len(v))[:, None]
    c = xyz[rng.choice(len(xyz), 300, replace=False)]
    r = rng.uniform(5, 20, 300)
    grid = HoleGrid.build(c, r)
    res = classify_voidfinder(xyz, grid, survey, rule="probe")
    hole, shell = holes_brute_force(xyz, c, r)
    norm = np.linalg.norm(xyz, axis=1)
    pix = hp.vec2pix(survey.nside, *xyz.T, nest=True)
    inside = survey.mask[pix] & (norm > survey.d_min) & (norm < survey.d_max)
    expect = np.full(len(xyz), ENV_WALL)
    expect[_probe_reference(xyz, survey, 10.0)] = ENV_EDGE
    expect[~inside] = ENV_OUT
    expect[hole >= 0] = ENV_VOID
    assert np.array_equal(res.flag, expect)
    assert np.array_equal(res.hole, hole) and np.array_equal(res.shell, shell)
    assert {0, 1, 2, 9} <= set(np.unique(res.flag).tolist())


def test_buffer_rule_is_conservative_and_exact_radially():
    rng = np.random.default_rng(8)
    survey = _survey(nside=64)
    v = rng.normal(size=(30000, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    xyz = v * rng.uniform(0, 450, len(v))[:, None]
    buf = edge_flags(xyz, survey, rule="buffer", distance=30.0)
    inside = survey.contains(xyz)
    # brute force: distance to the nearest out-of-survey point of a dense random cloud
    w = rng.normal(size=(400000, 3))
    w /= np.linalg.norm(w, axis=1)[:, None]
    cloud = w * rng.uniform(0, 460, len(w))[:, None]
    outside_cloud = cloud[~survey.contains(cloud)]
    d, _ = cKDTree(outside_cloud).query(xyz[inside], k=1)
    truly_near = d < 30.0 - 3.0  # margin for the cloud's sampling density
    assert buf[inside][truly_near].all()  # never misses a galaxy within the buffer
    assert buf[~inside].all()
    # radial part is exact
    norm = np.linalg.norm(xyz, axis=1)
    assert buf[inside & ((norm - 50 < 30) | (400 - norm < 30))].all()


def test_nearest_void_distance_units():
    c = np.array([[0.0, 0, 0], [30.0, 0, 0]])
    rad = np.array([5.0, 20.0])
    d, i = nearest_void_distance(np.array([[12.0, 0, 0]]), c, rad)
    # 12/5 = 2.4 vs 18/20 = 0.9: the big void is nearer in units of its radius
    assert d[0] == pytest.approx(0.9) and i[0] == 1
    d, i = nearest_void_distance(np.ones((2, 3)), np.zeros((0, 3)), np.zeros(0))
    assert np.isinf(d).all() and (i == -1).all()


def test_v2_join_and_nearest_cell():
    rng = np.random.default_rng(9)
    gz_xyz = rng.uniform(0, 100, (500, 3))
    gz_target = np.arange(1000, 1500)
    gz_zone = rng.integers(-1, 20, 500)
    gz_out = (rng.uniform(size=500) < 0.1).astype(np.int16)
    zone_ids = np.arange(20)
    void0 = np.where(zone_ids % 3 == 0, -1, zone_ids // 3)
    # galaxies: half are tracers (joined), half new positions
    tid = np.concatenate([gz_target[:100], np.arange(5000, 5100)])
    xyz = np.vstack([gz_xyz[:100] + 50.0, rng.uniform(0, 100, (100, 3))])  # tracer xyz deliberately off: join wins
    res = v2_membership(tid, xyz, gz_target, gz_xyz, gz_zone, gz_out, zone_ids, void0)
    assert res["joined"][:100].all() and not res["joined"][100:].any()
    assert np.array_equal(res["zone"][:100], gz_zone[:100])
    _, nn = cKDTree(gz_xyz).query(xyz[100:])
    assert np.array_equal(res["zone"][100:], gz_zone[nn])
    z = res["zone"]
    expect = (z >= 0) & (void0[np.maximum(z, 0)] >= 0)
    assert np.array_equal(res["in_void"], expect)
    flag = v2_flags(res["in_void"], xyz, None, gz_out=res["gz_out"])
    assert np.all(flag[res["gz_out"]] == ENV_OUT)
    assert set(np.unique(flag).tolist()) <= {0, 1, 9}


def test_unknown_edge_rule():
    survey = _survey()
    with pytest.raises(InputError, match="edge rule"):
        edge_flags(np.ones((1, 3)), survey, rule="sphere")


def _flag_setup(n=30000, seed=11):
    rng = np.random.default_rng(seed)
    survey = _survey()
    v = rng.normal(size=(n, 3))
    v /= np.linalg.norm(v, axis=1)[:, None]
    xyz = v * rng.uniform(0, 450, n)[:, None]
    c = xyz[rng.choice(n, 400, replace=False)]
    r = rng.uniform(5, 20, 400)
    return xyz, HoleGrid.build(c, r), survey, c, r


def _same_bytes(a, b):
    return all(
        getattr(a, k).dtype == getattr(b, k).dtype and getattr(a, k).tobytes() == getattr(b, k).tobytes()
        for k in ("flag", "hole", "shell")
    )


def test_sharded_classification_identical_for_1_and_2_workers():
    """Shards through desilab.compute: in-process and a real 2-process pool give the same bytes."""
    from desilab.compute import LocalExecutor, SerialExecutor

    xyz, grid, survey, c, r = _flag_setup()
    theta = survey.edge_angles()
    one = classify_voidfinder(xyz, grid, survey, edge_theta=theta)  # one shard, in process
    many = classify_voidfinder(xyz, grid, survey, edge_theta=theta, executor=SerialExecutor(), shard_size=7001)
    with LocalExecutor(1) as ex1:
        w1 = classify_voidfinder(xyz, grid, survey, edge_theta=theta, executor=ex1, shard_size=7001)
    with LocalExecutor(2) as ex2:  # forkserver workers, shared-memory files
        w2 = classify_voidfinder(xyz, grid, survey, edge_theta=theta, executor=ex2, shard_size=7001)
        w2_mem = classify_voidfinder(xyz, grid, None, executor=ex2, shard_size=4000)
    assert _same_bytes(one, many) and _same_bytes(one, w1) and _same_bytes(one, w2)
    hole, shell = holes_brute_force(xyz, c, r)
    assert np.array_equal(w2.hole, hole) and np.array_equal(w2.shell, shell)
    assert np.array_equal(w2_mem.hole, hole) and np.array_equal(w2_mem.flag, (hole >= 0).astype(np.int16))


def test_results_come_back_in_input_order():
    xyz, grid, survey, _, _ = _flag_setup(n=20000, seed=12)
    perm = np.random.default_rng(0).permutation(len(xyz))
    a = classify_voidfinder(xyz, grid, survey)
    b = classify_voidfinder(xyz[perm], grid, survey, shard_size=3000)
    assert np.array_equal(a.flag[perm], b.flag) and np.array_equal(a.hole[perm], b.hole)
    assert np.array_equal(a.shell[perm], b.shell)
    f32 = classify_voidfinder(xyz.astype(np.float32), grid, survey)  # any float input is converted per shard
    assert f32.flag.shape == (len(xyz),)


def test_nonfinite_position_error_names_row():
    xyz, grid, _, _, _ = _flag_setup(n=5000, seed=13)
    xyz[4321, 1] = np.inf
    with pytest.raises(InputError, match="first row 4321"):
        classify_voidfinder(xyz, grid, shard_size=1000)
    with pytest.raises(InputError, match="shard_size"):
        classify_voidfinder(xyz, grid, shard_size=0)
    with pytest.raises(InputError, match=r"shape \(n, 3\)"):
        classify_voidfinder(xyz[:, :2], grid)
