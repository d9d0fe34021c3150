"""Cross-checks against the collaboration's own code (desispec 0.70, a dev dependency).

* files written by ``desispec.io.write_spectra`` read correctly with :func:`read_coadd`;
* files written by :func:`write_coadd` read back with ``desispec.io.read_spectra``
  equal to what we wrote;
* our resolution matrices equal ``desispec.resolution.Resolution`` on a real file;
* :meth:`Spectra.combined` equals ``desispec.coaddition.coadd_cameras`` where their
  rules coincide (no masked pixels).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from desilab.io.coadd import healpix_header, read_coadd, write_coadd
from tests.io.test_spectra import COADDS, desi_wave, make_spectra, need

desispec_io = pytest.importorskip("desispec.io", reason="desispec is a dev dependency (pip install -e .[dev])")
from desispec.coaddition import coadd_cameras  # noqa: E402
from desispec.resolution import Resolution  # noqa: E402
from desispec.spectra import Spectra as DesiSpectra  # noqa: E402

BANDS = ["b", "r", "z"]


def _desispec_spectra(nspec: int = 5, seed: int = 21) -> DesiSpectra:
    """A desispec Spectra with three arms, fibermap, exp_fibermap, scores and resolution."""
    rng = np.random.default_rng(seed)
    tids = np.arange(nspec, dtype=np.int64) * 1000 + 39627000000000000
    wave = {b: desi_wave(b) for b in BANDS}
    # float32-representable values, so desispec's float64 -> f4 cast on write is exact
    flux = {b: rng.normal(2, 1, (nspec, wave[b].size)).astype(np.float32).astype(np.float64) for b in BANDS}
    ivar = {b: rng.uniform(0.1, 3, (nspec, wave[b].size)).astype(np.float32).astype(np.float64) for b in BANDS}
    mask = {b: (rng.random((nspec, wave[b].size)) < 0.05).astype(np.uint32) * (1 << 8) for b in BANDS}
    res = {b: rng.random((nspec, 11, wave[b].size)).astype(np.float32).astype(np.float64) for b in BANDS}
    fibermap = Table(
        {
            "TARGETID": tids,
            "COADD_FIBERSTATUS": np.zeros(nspec, dtype=np.int32),
            "TARGET_RA": rng.uniform(0, 360, nspec),
            "TARGET_DEC": rng.uniform(-10, 80, nspec),
            "OBJTYPE": np.array(["TGT"] * (nspec - 1) + ["SKY"]),
            "BRICKNAME": np.array([f"0{i}1p000" for i in range(nspec)]),
            "FLUX_R": rng.uniform(1, 50, nspec).astype(np.float32),
            "DESI_TARGET": rng.integers(0, 2**40, nspec),
        }
    )
    fibermap["TARGET_RA"].unit = "deg"
    exp = Table(
        {
            "TARGETID": np.repeat(tids, 2),
            "NIGHT": np.tile(np.array([20210510, 20210511], dtype=np.int32), nspec),
            "EXPID": np.arange(2 * nspec, dtype=np.int32),
        }
    )
    scores = Table({"TARGETID": tids, "TSNR2_LRG": rng.uniform(0, 100, nspec).astype(np.float32)})
    meta = healpix_header("main", "dark", 27000)
    return DesiSpectra(
        BANDS,
        wave,
        flux,
        ivar,
        mask=mask,
        resolution_data=res,
        fibermap=fibermap,
        exp_fibermap=exp,
        meta=meta,
        scores=scores,
    )


def test_desispec_written_file_reads_correctly(tmp_path: Path) -> None:
    ds = _desispec_spectra()
    path = tmp_path / "coadd-main-dark-27000.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        desispec_io.write_spectra(str(path), ds)
    ours = read_coadd(path, exp_fibermap=True)
    assert ours.bands == BANDS and len(ours) == 5
    for b in BANDS:
        np.testing.assert_array_equal(ours.wave[b], ds.wave[b])
        np.testing.assert_array_equal(ours.flux[b], ds.flux[b].astype(np.float32))
        np.testing.assert_array_equal(ours.ivar[b], ds.ivar[b].astype(np.float32))
        np.testing.assert_array_equal(ours.mask[b].view(np.uint32), ds.mask[b])
        np.testing.assert_array_equal(ours.resolution[b], ds.resolution_data[b].astype(np.float32))
    for name in ds.fibermap.colnames:
        got = ours.fibermap.column(name).to_pylist()
        assert got == [v.item() if hasattr(v, "item") else v for v in ds.fibermap[name]], name
    assert ours.fibermap.schema.field("TARGET_RA").metadata[b"unit"] == b"deg"
    assert ours.exp_fibermap.column("EXPID").to_pylist() == list(ds.exp_fibermap["EXPID"])
    np.testing.assert_array_equal(ours.scores.column("TSNR2_LRG").to_numpy(), ds.scores["TSNR2_LRG"])
    for key, value in healpix_header("main", "dark", 27000).items():
        assert ours.meta[key] == value
    sel = read_coadd(path, targetids=ds.fibermap["TARGETID"][[3, 1]])
    np.testing.assert_array_equal(sel.flux["z"], ds.flux["z"][[3, 1]].astype(np.float32))


def test_our_file_reads_with_desispec(tmp_path: Path) -> None:
    spec = make_spectra(nspec=6, seed=22)
    path = write_coadd(tmp_path / "coadd-main-bright-9876.fits", spec)
    ds = desispec_io.read_spectra(str(path), single=True)
    assert list(ds.bands) == spec.bands and ds.num_spectra() == 6
    for b in spec.bands:
        np.testing.assert_array_equal(ds.wave[b], spec.wave[b])
        np.testing.assert_array_equal(ds.flux[b], spec.flux[b])
        np.testing.assert_array_equal(ds.ivar[b], spec.ivar[b])
        np.testing.assert_array_equal(ds.mask[b], spec.mask[b].view(np.uint32))
        np.testing.assert_array_equal(ds.resolution_data[b], spec.resolution[b])
    for name in spec.fibermap.column_names:
        ref = spec.fibermap.column(name).to_pylist()
        got = [v.decode() if isinstance(v, bytes) else getattr(v, "item", lambda v=v: v)() for v in ds.fibermap[name]]
        assert got == ref, name
    assert list(ds.exp_fibermap["EXPID"]) == spec.exp_fibermap.column("EXPID").to_pylist()
    np.testing.assert_array_equal(ds.scores["TSNR2_BGS"], spec.scores.column("TSNR2_BGS").to_numpy())
    assert ds.meta["HPXPIXEL"] == 9876 and ds.meta["SPGRP"] == "healpix"
    # desispec's TARGETID selection reorders like ours
    want = spec.targetid[[4, 0]]
    ds_sel = desispec_io.read_spectra(str(path), targetids=want, single=True)
    ours = read_coadd(path, targetids=want)
    np.testing.assert_array_equal(np.asarray(ds_sel.fibermap["TARGETID"]), ours.targetid)
    np.testing.assert_array_equal(ds_sel.flux["r"], ours.flux["r"])


def test_resolution_matrix_equals_desispec_on_real_file() -> None:
    spec = read_coadd(need(COADDS["tile"]), redrock=False)
    for b in spec.bands:
        ours = spec.resolution_matrix(b, 0)
        ref = Resolution(spec.resolution[b][0])
        assert list(ours.offsets) == list(ref.offsets)
        np.testing.assert_array_equal(ours.toarray(), ref.toarray())
        model = np.sin(spec.wave[b] / 30.0)
        np.testing.assert_allclose(ours @ model, ref.dot(model), rtol=1e-6)


def test_combined_equals_desispec_coadd_cameras_without_masks() -> None:
    ds = _desispec_spectra(nspec=3, seed=23)
    for b in BANDS:
        ds.mask[b][:] = 0
    ours = make_spectra(nspec=3, seed=0)
    ours.flux = {b: ds.flux[b].astype(np.float32) for b in BANDS}
    ours.ivar = {b: ds.ivar[b].astype(np.float32) for b in BANDS}
    ours.mask = {b: np.zeros_like(ours.flux[b], dtype=np.int32) for b in BANDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = coadd_cameras(ds)
    comb = ours.combined()
    np.testing.assert_allclose(comb.wave["brz"], ref.wave["brz"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(comb.flux["brz"], ref.flux["brz"], rtol=1e-6)
    np.testing.assert_allclose(comb.ivar["brz"], ref.ivar["brz"], rtol=1e-6)
