"""The matched-filter scan and the high-pass residual behind the SCAN score."""

from __future__ import annotations

import numpy as np
import torch

from desilab.anomalies.detector import (
    CROP_ALIGN,
    HIGHPASS_WIDTHS,
    SCAN_LABELS,
    SCAN_WIDTHS,
    SHAPE_WIDTHS,
    _scan_stride,
    all_scans,
    highpass_residual,
    residual_scan,
    shape_scan,
)


def test_box_scan_matches_hand_sums() -> None:
    npix = 1000
    r = torch.zeros((2, npix), dtype=torch.float64)
    used = torch.ones_like(r)
    r[0, 297:324] = 1.0  # a 27-pixel excess of 1 sigma per pixel (starts at a multiple of the stride 9)
    r[1, 500] = -7.0  # one bad pixel, negative
    got = residual_scan(r, used)
    w = {wi: k for k, wi in enumerate(SCAN_WIDTHS)}
    # matched width: sum / sqrt(N) = 27 / sqrt(27)
    assert np.isclose(float(got[0, w[27]]), np.sqrt(27.0))
    assert np.isclose(float(got[0, w[1]]), 1.0)
    assert np.isclose(float(got[0, w[9]]), 3.0)  # 9 / sqrt(9)
    # a wider box dilutes it: 27 / sqrt(81)
    assert np.isclose(float(got[0, w[81]]), 3.0)
    # both signs count
    assert np.isclose(float(got[1, w[1]]), 7.0)
    assert np.isclose(float(got[1, w[3]]), 7.0 / np.sqrt(3.0))


def test_unused_pixels_do_not_count_and_half_empty_boxes_are_skipped() -> None:
    r = torch.zeros((1, 400), dtype=torch.float64)
    used = torch.ones_like(r)
    used[0, 200:] = 0.0
    r[0, 190:200] = 2.0  # 10 used pixels of 2 sigma at the red edge of coverage
    got = residual_scan(r, used, widths=(9, 27))
    # width 9 (starts every 3): best box 192-200 holds 8 used pixels of 2 -> 16 / sqrt(8)
    assert np.isclose(float(got[0, 0]), 16.0 / np.sqrt(8.0))
    # width 27 (starts every 9): box 180-206 holds 20 used pixels, 10 of them at 2 -> 20 / sqrt(20)
    assert np.isclose(float(got[0, 1]), 20.0 / np.sqrt(20.0))
    used[0, :190] = 0.0  # only the 10 pixels left: no 27-box is half used any more
    got = residual_scan(r, used, widths=(9, 27))
    assert float(got[0, 1]) == 0.0 and float(got[0, 0]) > 0.0


def test_crop_gives_the_same_maxima_as_the_full_grid() -> None:
    rng = np.random.default_rng(0)
    npix = 4000
    r = torch.from_numpy(rng.normal(size=(3, npix)))
    used = torch.zeros_like(r)
    used[:, 1700:3600] = 1.0
    r = r * used
    r_hp = torch.from_numpy(rng.normal(size=(3, npix))) * used
    inv = [
        torch.from_numpy(rng.uniform(0.5, 2.0, len(range(0, npix - w + 1, _scan_stride(w)))))
        for w in SCAN_WIDTHS + HIGHPASS_WIDTHS + SHAPE_WIDTHS
    ]
    r[:, 3500:3600] += 0.5  # an excess at the red edge: the boxes that hold it reach past the coverage
    full = all_scans(r, used, r_hp, inv)
    c0 = (1700 - max(SCAN_WIDTHS)) // CROP_ALIGN * CROP_ALIGN
    c1 = 3600 + max(SCAN_WIDTHS)  # as VAEAnomalyDetector._forward crops
    crop = all_scans(r[:, c0:c1], used[:, c0:c1], r_hp[:, c0:c1], inv, offset=c0)
    assert full.shape == (3, len(SCAN_LABELS))
    torch.testing.assert_close(crop, full)


def test_highpass_residual_removes_smooth_errors_and_keeps_spikes() -> None:
    npix = 2000
    x = torch.arange(npix, dtype=torch.float64)
    ivar = torch.full((1, npix), 400.0, dtype=torch.float64)  # sigma 0.05
    used = torch.ones_like(ivar)
    resid = (0.3 * torch.sin(x / 200.0))[None, :].clone()  # a smooth model error of 6 sigma
    resid[0, 1000] += 0.25  # a 5-sigma spike
    hp = highpass_residual(resid, used, ivar)
    assert abs(float(hp[0, 1000]) - 5.0) < 0.1
    others = torch.cat([hp[0, 10:994], hp[0, 1007:-10]])
    assert float(others.abs().max()) < 0.1


def test_shape_scan_sees_a_split_line_and_cancels_a_uniform_offset() -> None:
    npix = 1200
    used = torch.ones((3, npix), dtype=torch.float64)
    r = torch.zeros_like(used)
    # a central deficit between two excesses, 27 pixels each (a line split in two peaks)
    r[0, 405:432] = 1.0
    r[0, 432:459] = -1.0
    r[0, 459:486] = 1.0
    r[1, 300:900] = 1.0  # an offset much wider than the boxes: no shape at width 27
    r[2, 432:459] = -1.0  # the central deficit alone
    box = residual_scan(r, used, widths=(27,), reduce=False)[0]
    valid = torch.ones_like(box, dtype=torch.bool)
    d = shape_scan(box, valid, 27)
    assert d.shape == box.shape
    # the matched position: -sqrt(27) - (sqrt(27) + sqrt(27)) / 2 = -2 sqrt(27), over sqrt(1.5)
    assert np.isclose(float(d[0].min()), -2.0 * np.sqrt(27.0) / np.sqrt(1.5))
    assert float(d[1, 40:90].abs().max()) == 0.0  # inside the offset (box starts 360-810)
    assert np.isclose(float(d[2].min()), -np.sqrt(27.0) / np.sqrt(1.5))
    # a skipped neighbour makes the position skipped
    valid[0, 48 - 3] = False
    assert float(shape_scan(box, valid, 27)[0, 48]) == 0.0
    # every shape width is 3 strides of its box
    assert all(w % _scan_stride(w) == 0 and w // _scan_stride(w) == 3 for w in SHAPE_WIDTHS)
