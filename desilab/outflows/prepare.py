"""Spectrum preparation: one grid, masks, Galactic dereddening, instrumental σ.

* Arms are combined by :meth:`desilab.io.spectra.Spectra.combined` (inverse-variance
  weighting in the overlaps); SDSS spectra are already one band.
* Pixels with ``mask != 0``, ``ivar <= 0``, non-finite values, or within
  :data:`SKY_HALFWIDTH` Å of the strong night-sky lines (:data:`SKY_LINES`, vacuum) get
  ``ivar = 0``.
* Galactic extinction: Fitzpatrick (1999), R_V = 3.1 (the ``extinction`` package, which
  follows FM_UNRED), with the catalog's SFD E(B−V).
* Wavelengths are vacuum throughout (DESI and SDSS spectra are vacuum);
  :func:`air_to_vac` converts air line lists (PyNeb, Cloudy).
* Instrumental broadening: the Gaussian σ of the line-spread function in km/s per pixel,
  from SDSS ``wdisp`` (:func:`sigma_inst_sdss`) or from the second moment of each DESI
  resolution-matrix row (:func:`sigma_inst_resolution`), subtracted in quadrature inside
  the line model so fitted widths are intrinsic.
"""

from __future__ import annotations

from dataclasses import dataclass

import extinction
import numpy as np

from desilab.errors import InputError

__all__ = [
    "SDSS_BAD_BITS",
    "SKY_LINES",
    "Prepared",
    "air_to_vac",
    "deredden",
    "mask_pixels",
    "prepare",
    "sigma_inst_resolution",
    "sigma_inst_sdss",
]

C_KMS = 299792.458
#: Strong night-sky lines [Å, vacuum]: [O I] 5577, Na D, [O I] 6300, 6364.
SKY_LINES = np.array([5578.89, 5891.58, 5897.56, 6302.05, 6365.54])
SKY_HALFWIDTH = 4.0
#: SDSS SPPIXMASK bits that make a pixel unusable: NOPLUG, BADTRACE, BADFLAT, BADARC (0-3),
#: FULLREJECT (18), BRIGHTSKY (23), NODATA (24). Informational bits (e.g. MANYBADCOLUMNS,
#: NEARBADPIXEL) are kept, as PyQSOFit does with ``and_mask``.
SDSS_BAD_BITS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 18) | (1 << 23) | (1 << 24)
#: DESI: every SPECMASK bit is bad.
ALL_BITS = -1
R_V = 3.1


def air_to_vac(wave_air: np.ndarray) -> np.ndarray:
    """Air → vacuum wavelengths [Å] (Morton 2000 / IAU, as in ``pyneb`` and ``astropy``)."""
    w = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / w) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return np.where(w > 2000.0, w * n, w)


def deredden(
    wave: np.ndarray, flux: np.ndarray, ivar: np.ndarray, ebv: np.ndarray | float, r_v: float = R_V
) -> tuple[np.ndarray, np.ndarray]:
    """Correct for Galactic extinction, Fitzpatrick (1999).

    Parameters
    ----------
    wave
        Observed vacuum wavelengths [Å] ``(npix,)``.
    flux, ivar
        ``(N, npix)``.
    ebv
        SFD E(B−V) per spectrum ``(N,)`` or scalar [mag].
    r_v
        Total-to-selective extinction (3.1).

    Returns
    -------
    flux, ivar
        Dereddened (flux × 10^{0.4 A_λ}, ivar × 10^{−0.8 A_λ}).
    """
    ebv = np.atleast_1d(np.asarray(ebv, dtype=np.float64))
    if np.any(~np.isfinite(ebv)) or np.any(ebv < 0):
        raise InputError("E(B-V) must be finite and >= 0", parameter="ebv")
    a1 = extinction.fitzpatrick99(np.asarray(wave, dtype=np.float64), 1.0, r_v)  # A_λ per A_V
    alam = (r_v * ebv)[:, None] * a1[None, :]
    fac = 10.0 ** (0.4 * alam)
    return np.asarray(flux) * fac, np.asarray(ivar) / fac**2


def mask_pixels(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None = None,
    sky: bool = True,
    bad_bits: int = ALL_BITS,
) -> np.ndarray:
    """ivar with bad pixels set to 0 (mask bits in *bad_bits*, ivar ≤ 0, non-finite,
    sky-line residuals)."""
    iv = np.where(np.isfinite(ivar) & np.isfinite(flux) & (ivar > 0), ivar, 0.0).astype(np.float64)
    if mask is not None:
        iv = np.where((np.asarray(mask).astype(np.int64) & bad_bits) != 0, 0.0, iv)
    if sky:
        near = np.any(np.abs(np.asarray(wave)[:, None] - SKY_LINES[None, :]) < SKY_HALFWIDTH, axis=1)
        iv[..., near] = 0.0
    return iv


def sigma_inst_sdss(wdisp: np.ndarray) -> np.ndarray:
    """LSF σ [km/s] from SDSS ``wdisp`` (pixels of 1e-4 dex: 69.03 km/s each)."""
    return np.asarray(wdisp, dtype=np.float64) * (C_KMS * np.log(10.0) * 1e-4)


def sigma_inst_resolution(rdata: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """LSF σ [km/s] per pixel from DESI resolution-matrix diagonals.

    Parameters
    ----------
    rdata
        ``(N, ndiag, npix)`` diagonals (desispec layout: row offset ``ndiag//2 − d``).
    wave
        ``(npix,)`` wavelengths [Å].

    Notes
    -----
    σ_pix² is the second moment of the kernel over the diagonals, normalised to unit
    sum; σ [km/s] = σ_pix Δλ / λ c. Accurate to a few per cent for the near-Gaussian
    DESI LSF.
    """
    r = np.asarray(rdata, dtype=np.float64)
    nd = r.shape[1]
    off = np.arange(nd // 2, -(nd // 2) - 1, -1, dtype=np.float64)
    norm = r.sum(axis=1)
    mom1 = np.einsum("d,ndp->np", off, r) / np.where(norm > 0, norm, 1.0)
    mom2 = np.einsum("d,ndp->np", off**2, r) / np.where(norm > 0, norm, 1.0)
    sig_pix = np.sqrt(np.maximum(mom2 - mom1**2, 0.0))
    dl = np.gradient(np.asarray(wave, dtype=np.float64))
    return sig_pix * dl[None, :] / np.asarray(wave)[None, :] * C_KMS


@dataclass
class Prepared:
    """Spectra ready for fitting, all on one observed grid.

    Attributes
    ----------
    wave
        ``(npix,)`` vacuum Å. ``flux``/``ivar``/``sig_inst`` ``(N, npix)``: dereddened
        flux [1e-17 erg/s/cm²/Å], masked ivar, LSF σ [km/s]. ``z`` reference (redrock)
        redshift, ``targetid``, ``ebv`` per spectrum.
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    sig_inst: np.ndarray
    z: np.ndarray
    targetid: np.ndarray
    ebv: np.ndarray


def prepare(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray | None,
    sig_inst: np.ndarray,
    z: np.ndarray,
    targetid: np.ndarray,
    ebv: np.ndarray | None = None,
    sky: bool = True,
    bad_bits: int = ALL_BITS,
) -> Prepared:
    """Mask, deredden and bundle N spectra on one grid (pure: arrays in, arrays out)."""
    flux = np.atleast_2d(np.asarray(flux, dtype=np.float64))
    n = flux.shape[0]
    iv = mask_pixels(wave, flux, np.atleast_2d(ivar), mask, sky=sky, bad_bits=bad_bits)
    ebv_arr = np.zeros(n) if ebv is None else np.broadcast_to(np.asarray(ebv, dtype=np.float64), (n,)).copy()
    ebv_arr = np.where(np.isfinite(ebv_arr), ebv_arr, 0.0)
    f, iv = deredden(wave, np.nan_to_num(flux), iv, ebv_arr)
    return Prepared(
        wave=np.asarray(wave, dtype=np.float64),
        flux=f,
        ivar=iv,
        sig_inst=np.broadcast_to(np.asarray(sig_inst, dtype=np.float64), flux.shape).copy(),
        z=np.asarray(z, dtype=np.float64).reshape(n),
        targetid=np.asarray(targetid).reshape(n),
        ebv=ebv_arr,
    )
