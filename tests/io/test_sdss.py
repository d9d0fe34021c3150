"""Tests of the SDSS/BOSS ``spec-`` reader against astropy on the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits as afits

from desilab.errors import FormatError, InputError
from desilab.io.schema import PRODUCTS, parse_tform
from desilab.io.sdss import SDSS_SPEC_SCHEMA, read_sdss_spec, wdisp_to_angstrom, wdisp_to_kms

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "sdss_spec"
FILES = {
    "qso": (REAL / "spec-0332-52367-0639.fits", 3810, "QSO", 0.10061),
    "galaxy": (REAL / "spec-0266-51602-0107.fits", 3849, "GALAXY", 0.12315),
}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real test file {path} is not available (shared/data/real not checked out)")
    return path


@pytest.mark.parametrize("kind", sorted(FILES))
def test_sdss_spec_equals_astropy(kind: str) -> None:
    path, npix, cls, z = FILES[kind]
    spec = read_sdss_spec(need(path))
    assert spec.bands == ["sdss"] and len(spec) == 1 and spec.resolution is None
    with afits.open(path) as hdul:
        co = hdul["COADD"].data
        wave = spec.wave["sdss"]
        assert wave.dtype == np.float64 and wave.shape == (npix,)
        np.testing.assert_array_equal(wave, 10.0 ** co["loglam"].astype(np.float64))
        for got, col, dtype in (
            (spec.flux["sdss"], "flux", np.float32),
            (spec.ivar["sdss"], "ivar", np.float32),
            (spec.mask["sdss"], "and_mask", np.int32),
            (spec.extra["wdisp"], "wdisp", np.float32),
            (spec.extra["or_mask"], "or_mask", np.int32),
            (spec.extra["sky"], "sky", np.float32),
            (spec.extra["model"]["sdss"], "model", np.float32),
        ):
            assert got.dtype == dtype and got.shape == (1, npix), col
            np.testing.assert_array_equal(got[0], co[col])
        so = hdul["SPECOBJ"].data
        assert spec.fibermap.column_names == list(so.columns.names)
        for name in so.columns.names:
            ref = so[name][0]
            got = spec.fibermap.column(name)[0].as_py()
            if isinstance(ref, str):
                assert got == ref.rstrip(), name
            else:
                np.testing.assert_array_equal(np.asarray(got), np.asarray(ref), err_msg=name)
        zl = hdul["SPZLINE"].data
        spz = spec.extra["spzline"]
        assert spz.num_rows == len(zl) == 29
        np.testing.assert_array_equal(spz.column("LINEAREA").to_numpy(), zl["LINEAREA"])
        assert spz.column("LINENAME").to_pylist() == [v.rstrip() for v in zl["LINENAME"]]
        assert spec.meta["PLATEID"] == hdul[0].header["PLATEID"]
        assert spec.meta["BUNIT"] == "1E-17 erg/cm^2/s/Ang"
    rs = spec.redshifts.to_pylist()[0]
    assert rs["SPECTYPE"] == cls and rs["Z"] == pytest.approx(z, abs=5e-5) and rs["ZWARN"] == 0
    assert 3780 < wave[0] < 3840 and 9190 < wave[-1] < 9210
    with pytest.raises(InputError, match="not on the combined"):
        spec.combined()


def test_sdss_schema_matches_real_files() -> None:
    assert PRODUCTS["sdss-spec"] is SDSS_SPEC_SCHEMA
    for path, *_ in FILES.values():
        need(path)
        assert SDSS_SPEC_SCHEMA.matches_name(path)
        with afits.open(path) as hdul:
            names = [h.name for h in hdul]
            assert SDSS_SPEC_SCHEMA.identify(names, dict(hdul[0].header))
            for key in SDSS_SPEC_SCHEMA.primary_keywords:
                assert key in hdul[0].header
            for hdu in SDSS_SPEC_SCHEMA.hdus:
                cols = {c.name: c for c in hdul[hdu.extname].columns}  # exact spelling as the real files
                for col in hdu.columns:
                    if col.required:
                        assert col.name in cols, (path.name, hdu.extname, col.name)
                    if col.name in cols and col.name != "RUN2D":
                        assert parse_tform(cols[col.name].format) == parse_tform(col.tform), col.name
    assert not SDSS_SPEC_SCHEMA.matches_name("coadd-main-dark-10.fits")


def test_wdisp_conversions() -> None:
    assert wdisp_to_kms(np.array([1.0]))[0] == pytest.approx(69.03, abs=0.01)
    np.testing.assert_allclose(wdisp_to_angstrom(np.array([5000.0]), np.array([1.0])), [5000 * np.log(10) * 1e-4])


def test_sdss_missing_columns_and_boss_alias(tmp_path: Path) -> None:
    path = need(FILES["galaxy"][0])
    bad = tmp_path / "spec-0266-51602-0107.fits"
    with afits.open(path) as hdul:
        co = hdul["COADD"]
        keep = [c for c in co.columns if c.name != "wdisp"]
        hdul["COADD"] = afits.BinTableHDU.from_columns(keep, name="COADD")
        hdul.writeto(bad)
    with pytest.raises(FormatError) as info:
        read_sdss_spec(bad)
    assert info.value.hdu == "COADD" and info.value.column.upper() == "WDISP"
    boss = tmp_path / "spec-3586-55181-0001.fits"
    with afits.open(path) as hdul:
        hdul["SPECOBJ"].name = "SPALL"
        hdul.writeto(boss)
    spec = read_sdss_spec(boss)
    assert spec.redshifts.column("SPECTYPE").to_pylist() == ["GALAXY"]
    assert SDSS_SPEC_SCHEMA.hdu("SPALL").extname == "SPECOBJ"
