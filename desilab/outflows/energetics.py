"""Outflow energetics from [O III] emission and from BAL absorption, kept apart.

Every assumption is a named parameter with a documented default; results are astropy
Quantities (per object arrays) with the assumptions returned alongside.

[O III] emission (Carniani et al. 2015; Fiore et al. 2017; Kakkad et al. 2016)
    ``M_ion = 5.33e7 M_sun · C · (L[OIII]_dustcorr / 1e44 erg/s) · (n_e/1000 cm⁻³)⁻¹ · 10^−[O/H]``
    with [O/H] in solar units (``oh`` = 0) and C = ⟨n_e⟩²/⟨n_e²⟩ = 1. Dust correction from the
    Balmer decrement (Hα/Hβ, intrinsic 2.86, Calzetti 2000 curve,
    :func:`balmer_dust_correction`). Default n_e = 1000 cm⁻³ (note: [S II] densities,
    typically 100–500 cm⁻³, underestimate outflow densities; trans-auroral and
    ionisation-parameter methods give 10³–10⁴·⁵). ``Ṁ = 3 M v / R`` (filled cone) or
    ``M v / R`` (shell); R is a parameter (default 1 kpc). The parametric variant uses
    ``v = v_out`` (|Δv| + 2σ); the non-parametric one ``v = w80 / 1.3`` (Harrison et al.
    2014) — both are reported and their ratio is the "spread".
BAL absorption (thin shell; Borguet et al. 2012; Arav et al. 2013)
    ``Ṁ = 4π Ω R N_H μ m_p v`` when a column N_H is known, else ``Ṁ = 4π Ω R² n_H μ m_p v``
    (shell thickness ~R; an upper bound). Ω is the *global* covering fraction (≈ the BAL
    fraction, 0.2), not the line-of-sight covering factor. R from U and n_H when both are
    known (``R = sqrt(Q_H / (4π U n_H c))``), else an assumed R flagged "assumed R"
    (flag bit 4).
Both
    ``Ė_kin = ½ Ṁ v²``, ``ṗ = Ṁ v``, ``ε = Ė_kin / L_bol``; L_bol from L5100 × 9.26,
    L3000 × 5.15 or L1350 × 3.81 (Richards et al. 2006; Shen et al. 2011). ε > 0.5 % and
    > 5 % are flagged (the "two-stage" and "one-stage" feedback thresholds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import astropy.constants as const
import astropy.units as u
import numpy as np

__all__ = [
    "BC",
    "Energetics",
    "bal_energetics",
    "balmer_dust_correction",
    "bolometric_luminosity",
    "oiii_energetics",
]

#: Bolometric corrections L_bol = BC · λL_λ (Richards et al. 2006; Shen et al. 2011).
BC = {5100: 9.26, 3000: 5.15, 1350: 3.81}
EPS_FLAGS = (0.005, 0.05)


@dataclass
class Energetics:
    """Mass, outflow rate, kinetic power, momentum rate and coupling efficiency.

    Quantities are per object; ``flags`` carries bit 1 (ε > 0.5 %), bit 2 (ε > 5 %),
    bit 4 (R assumed, BAL only). ``assumptions`` lists every parameter used.
    """

    mass: u.Quantity
    mdot: u.Quantity
    edot: u.Quantity
    pdot: u.Quantity
    eps: np.ndarray
    flags: np.ndarray
    assumptions: dict[str, object] = field(default_factory=dict)


def balmer_dust_correction(
    ha: np.ndarray, hb: np.ndarray, wave: float = 5008.24, intrinsic: float = 2.86, r_v: float = 3.1
) -> np.ndarray:
    """Multiplicative dust correction at *wave* [Å] from the Balmer decrement (Calzetti 2000).

    ``E(B−V) = 2.5/(k(Hβ) − k(Hα)) log10((Hα/Hβ)/intrinsic)``, clipped at 0; returns
    ``10^{0.4 k(λ) E(B−V)}`` (1 where the decrement is unavailable).
    """

    def k(lam: float) -> float:
        x = 1.0 / (lam * 1e-4)
        if lam >= 6300:
            return 2.659 * (-1.857 + 1.040 * x) + r_v
        return 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + r_v

    with np.errstate(divide="ignore", invalid="ignore"):
        dec = np.asarray(ha, dtype=np.float64) / np.asarray(hb, dtype=np.float64)
        ebv = 2.5 / (k(4862.68) - k(6564.61)) * np.log10(dec / intrinsic)
    ebv = np.where(np.isfinite(ebv), np.clip(ebv, 0.0, None), 0.0)
    return 10.0 ** (0.4 * k(wave) * ebv)


def bolometric_luminosity(lum: u.Quantity, wave: int = 5100) -> u.Quantity:
    """L_bol = BC(λ) · λL_λ with BC5100 = 9.26, BC3000 = 5.15, BC1350 = 3.81."""
    return BC[wave] * lum.to(u.erg / u.s)


def _flags(eps: np.ndarray) -> np.ndarray:
    f = np.zeros(eps.shape, dtype=np.int16)
    f |= np.where(eps > EPS_FLAGS[0], 1, 0).astype(np.int16)
    f |= np.where(eps > EPS_FLAGS[1], 2, 0).astype(np.int16)
    return f


def oiii_energetics(
    l_oiii: u.Quantity,
    v_out: u.Quantity,
    l_bol: u.Quantity,
    *,
    n_e: u.Quantity = 1000.0 * u.cm**-3,
    oh: float = 0.0,
    radius: u.Quantity = 1.0 * u.kpc,
    geometry: str = "cone",
    filling_c: float = 1.0,
) -> Energetics:
    """Ionised-gas outflow energetics from the (dust-corrected) [O III] λ5007 outflow luminosity.

    Parameters
    ----------
    l_oiii
        Dust-corrected [O III] λ5007 luminosity of the outflow component.
    v_out
        Outflow velocity (parametric v_out, or w80/1.3 for the non-parametric variant).
    l_bol
        Bolometric luminosity.
    n_e
        Electron density of the outflowing gas (default 1000 cm⁻³).
    oh
        Metallicity [O/H] in dex relative to solar (0).
    radius
        Outflow radius R (default 1 kpc).
    geometry
        ``"cone"`` (filled cone/sphere, Ṁ = 3Mv/R) or ``"shell"`` (Ṁ = Mv/R).
    filling_c
        ⟨n_e⟩²/⟨n_e²⟩ (1).
    """
    if geometry not in ("cone", "shell"):
        from desilab.errors import InputError

        raise InputError(f"geometry must be 'cone' or 'shell', got {geometry!r}", parameter="geometry")
    lo = l_oiii.to(u.erg / u.s).value
    mass = 5.33e7 * filling_c * (lo / 1e44) * (n_e.to(u.cm**-3).value / 1000.0) ** -1 * 10.0 ** (-oh) * u.Msun
    fac = 3.0 if geometry == "cone" else 1.0
    mdot = (fac * mass * v_out / radius).to(u.Msun / u.yr)
    edot = (0.5 * mdot * v_out**2).to(u.erg / u.s)
    pdot = (mdot * v_out).to(u.dyn)
    eps = (edot / l_bol).to(u.dimensionless_unscaled).value
    return Energetics(
        mass=mass,
        mdot=mdot,
        edot=edot,
        pdot=pdot,
        eps=eps,
        flags=_flags(eps),
        assumptions={"n_e": n_e, "oh": oh, "radius": radius, "geometry": geometry, "filling_c": filling_c},
    )


def bal_energetics(
    v: u.Quantity,
    l_bol: u.Quantity,
    *,
    n_h: u.Quantity = 10**4 * u.cm**-3,
    log_u: np.ndarray | None = None,
    q_h: u.Quantity | None = None,
    radius: u.Quantity = 100.0 * u.pc,
    omega: float = 0.2,
    column: u.Quantity | None = None,
    mu: float = 1.4,
) -> Energetics:
    """BAL outflow energetics for a thin shell.

    ``Ṁ = 4π Ω R N_H μ m_p v`` when a column density N_H is given (thin shell of thickness
    ΔR ≪ R, Borguet et al. 2012 eq. 8), else ``Ṁ = 4π Ω R² n_H μ m_p v`` scaled by a shell
    thickness ΔR = R (upper bound). R comes from the ionisation parameter,
    ``R = sqrt(Q_H / (4π U n_H c))``, when *log_u* and *q_h* are both given; otherwise the
    assumed *radius* is used and flag bit 4 is set.

    Parameters
    ----------
    v
        Outflow speed (e.g. the trough's velocity-weighted centroid), positive.
    l_bol
        Bolometric luminosity.
    n_h
        Hydrogen density (10⁴ cm⁻³).
    log_u, q_h
        Ionisation parameter and ionising photon rate [s⁻¹], optional.
    radius
        Assumed distance (100 pc) when U is unknown.
    omega
        Global covering fraction (0.2 ≈ the BAL fraction; not the line-of-sight C_f).
    column
        Total hydrogen column N_H (optional; selects the thin-shell column form).
    mu
        Mean mass per proton (1.4).
    """
    v = np.atleast_1d(v.to(u.km / u.s).value) * (u.km / u.s)
    nobj = v.size
    r = np.broadcast_to(radius.to(u.cm).value, (nobj,)).copy() * u.cm
    flags = np.zeros(nobj, dtype=np.int16)
    if log_u is not None and q_h is not None:
        uu = 10.0 ** np.broadcast_to(np.asarray(log_u, dtype=np.float64), (nobj,))
        r_u = np.sqrt(q_h / (4 * np.pi * uu * n_h * const.c)).to(u.cm)
        ok = np.isfinite(r_u.value)
        r = np.where(ok, r_u.value, r.value) * u.cm
        flags |= np.where(ok, 0, 4).astype(np.int16)
    else:
        flags |= 4
    if column is not None:
        mdot = (4 * np.pi * omega * r * column * mu * const.m_p * v).to(u.Msun / u.yr)
    else:
        mdot = (4 * np.pi * omega * r**2 * n_h * mu * const.m_p * v).to(u.Msun / u.yr)
    mass = (mdot * r / v).to(u.Msun)
    edot = (0.5 * mdot * v**2).to(u.erg / u.s)
    pdot = (mdot * v).to(u.dyn)
    eps = (edot / l_bol).to(u.dimensionless_unscaled).value
    flags = flags | _flags(eps)
    return Energetics(
        mass=mass,
        mdot=mdot,
        edot=edot,
        pdot=pdot,
        eps=eps,
        flags=flags,
        assumptions={"n_h": n_h, "omega": omega, "radius": radius, "mu": mu, "column": column, "log_u": log_u},
    )
