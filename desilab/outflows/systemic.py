"""Systemic redshifts with a stated precedence, and re-referencing of velocities.

Precedence (first usable source wins): ``OIII`` ([O III] λ5007 core) > ``OII`` ([O II]
doublet) > ``MGII`` (broad Mg II centroid) > ``HB_NARROW`` (narrow Hβ) > ``REDROCK``.
A line source is usable when its flux S/N ≥ :data:`MIN_SNR` and its velocity is finite.
Because the core [O III] and narrow Hβ share one kinematic group in the fit, ``HB_NARROW``
is used only when [O III] itself is too weak.

Velocities ``u`` measured relative to the reference redshift ``z_ref`` convert to the
systemic frame exactly as ``u − v_sys`` with ``v_sys = c ln((1 + z_sys)/(1 + z_ref))``
(velocities are logarithmic wavelength offsets throughout).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_SNR", "PRECEDENCE", "VELOCITY_COLUMNS", "rereference", "systemic_redshift"]

C_KMS = 299792.458
MIN_SNR = 5.0
#: (source label, velocity column, flux column, flux error column)
PRECEDENCE = (
    ("OIII", "OIII_5007_CORE_VSHIFT", "OIII_5007_CORE_FLUX", "OIII_5007_CORE_FLUX_ERR"),
    ("OII", "OII_3729_VSHIFT", "OII_3729_FLUX", "OII_3729_FLUX_ERR"),
    ("MGII", "MGII_VSHIFT", "MGII_FLUX", "MGII_FLUX_ERR"),
    ("HB_NARROW", "HB_NARROW_VSHIFT", "HB_NARROW_FLUX", "HB_NARROW_FLUX_ERR"),
)
VELOCITY_COLUMNS = ("VSHIFT", "V50", "V10", "V90")


def systemic_redshift(z_ref: np.ndarray, cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z_SYS, Z_SYS_SOURCE and the velocity offset v_sys [km/s] per spectrum.

    Parameters
    ----------
    z_ref
        Redshifts the lines were fitted at (redrock).
    cols
        Line columns from :func:`desilab.outflows.measure.fit_lines`.

    Returns
    -------
    z_sys, source, v_sys
    """
    z_ref = np.asarray(z_ref, dtype=np.float64)
    n = z_ref.size
    v_sys = np.zeros(n)
    source = np.full(n, "REDROCK", dtype="U10")
    done = np.zeros(n, dtype=bool)
    for label, vcol, fcol, ecol in PRECEDENCE:
        if vcol not in cols:
            continue
        v, f, e = cols[vcol], cols[fcol], cols[ecol]
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(e > 0, f / e, 0.0)
        use = ~done & np.isfinite(v) & (snr >= MIN_SNR)
        v_sys[use] = v[use]
        source[use] = label
        done |= use
    z_sys = (1.0 + z_ref) * np.exp(v_sys / C_KMS) - 1.0
    return z_sys, source, v_sys


def rereference(cols: dict[str, np.ndarray], v_sys: np.ndarray) -> dict[str, np.ndarray]:
    """Velocity columns shifted to the systemic frame (widths are unchanged)."""
    out = dict(cols)
    for k, v in cols.items():
        if k.endswith("_ERR") or not isinstance(v, np.ndarray) or v.dtype.kind != "f":
            continue
        if any(k.endswith(f"_{s}") for s in VELOCITY_COLUMNS) or k in ("OIII_OUT_V", "OIII_CORE_V"):
            out[k] = v - v_sys
    return out
