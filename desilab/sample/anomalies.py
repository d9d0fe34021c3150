"""Anomalies injected into sample-sky quasars, with labels and the amplitudes used.

Each quasar gets at most one anomaly, drawn at ``QuasarConfig.anomaly_rate`` with the
relative weights ``QuasarConfig.anomaly_weights`` among the classes *eligible* at its
redshift (a LoBAL needs Mg II troughs inside the DESI range, and so on). Three stages:

``physical`` (change :class:`~desilab.sample.qso_spectra.QuasarParams` before rendering)
    ``lobal`` — Hi-BAL troughs plus Al III and Mg II troughs at the same speeds, redder
    continuum; ``felobal`` — a LoBAL with Fe II UV troughs (2344, 2382, 2600 Å);
    ``overlapping_troughs`` — very wide, deep troughs of N V, Si IV, C IV, Al III, Mg II
    and Fe II that overlap and absorb most flux blueward of Mg II (Hall et al. 2002);
    ``redshifted_trough`` — a C IV/Si IV trough at +1000…+10000 km/s (infall; Hall et al.
    2013); ``double_peaked`` — the low-ionisation broad lines split into two peaks
    2000–6000 km/s apart (Eracleous & Halpern 1994); ``vanishing_broad_lines`` — broad
    components dimmed to 0–10% (changing-look); ``odd_line_ratios`` — a weak-line quasar
    (all broad lines × 0.05–0.2), a nitrogen-rich one (N V × 4–8), or extreme [O III]/Hβ
    (narrow [O III] × 6–12); ``stellar_contamination`` — an F/K/M star superposed with
    10–50% of the r-band flux.
``redshift``
    ``wrong_redshift`` — the catalog redshift is off by Δz ∈ {0.05, 0.2, 1} (sign random,
    kept > 0.05) with ZWARN = 0, a confident catastrophic failure.
``instrumental`` (change the observed arrays after noise; ivar and mask left as if fine)
    ``dead_columns`` — 1–3 runs of 3–25 pixels read as ≈ 0; ``hot_pixels`` — 2–6 pixels
    20–100σ high; ``bad_sky_subtraction`` — sky lines mis-subtracted by ±10–30% of their
    flux and the sky continuum by ±3–10%; ``spurious_8600`` — a narrow (FWHM 3–15 Å)
    feature at 8560–8640 Å, ±5–15σ, modelled on the artefact reported in DESI reductions
    (desispec issue 2660; shape assumed).

Every injection returns a dict of its parameters, stored in the truth table
(``qso_anomalies``) so that recall can be measured per class and amplitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desilab.sample.qso_spectra import Component, QuasarParams, Trough

__all__ = [
    "ANOMALY_CLASSES",
    "AnomalyClass",
    "choose_anomaly",
    "eligible",
    "inject_instrumental",
    "inject_physical",
    "wrong_redshift",
]


@dataclass(frozen=True)
class AnomalyClass:
    """One anomaly class.

    Attributes
    ----------
    name
        Label written to the truth tables (``ANOMALY_CLASS``).
    code
        Integer label (``ANOMALY_CODE``; 0 = normal).
    stage
        ``"physical"``, ``"redshift"`` or ``"instrumental"``.
    zmin, zmax
        Systemic redshift range where the class is visible in the DESI range.
    description
        One line for the docs.
    """

    name: str
    code: int
    stage: str
    zmin: float
    zmax: float
    description: str


ANOMALY_CLASSES: dict[str, AnomalyClass] = {
    c.name: c
    for c in (
        AnomalyClass("lobal", 1, "physical", 0.55, 2.4, "low-ionisation BAL: Al III and Mg II troughs"),
        AnomalyClass("felobal", 2, "physical", 0.6, 2.4, "LoBAL with Fe II UV troughs"),
        AnomalyClass("overlapping_troughs", 3, "physical", 1.6, 2.4, "overlapping troughs absorb the UV"),
        AnomalyClass("redshifted_trough", 4, "physical", 1.57, 5.0, "C IV trough at positive velocity"),
        AnomalyClass("double_peaked", 5, "physical", 0.0, 2.3, "double-peaked low-ionisation broad lines"),
        AnomalyClass("vanishing_broad_lines", 6, "physical", 0.0, 5.0, "broad lines dimmed to 0-10%"),
        AnomalyClass("odd_line_ratios", 7, "physical", 0.0, 5.0, "weak-line, N-rich or extreme [O III] quasar"),
        AnomalyClass("wrong_redshift", 8, "redshift", 0.0, 5.0, "catalog redshift off by 0.05, 0.2 or 1"),
        AnomalyClass("stellar_contamination", 9, "physical", 0.0, 5.0, "an F/K/M star superposed (10-50% in r)"),
        AnomalyClass("dead_columns", 10, "instrumental", 0.0, 5.0, "runs of dead pixels, unmasked"),
        AnomalyClass("hot_pixels", 11, "instrumental", 0.0, 5.0, "single hot pixels, unmasked"),
        AnomalyClass("bad_sky_subtraction", 12, "instrumental", 0.0, 5.0, "sky lines/continuum mis-subtracted"),
        AnomalyClass("spurious_8600", 13, "instrumental", 0.0, 5.0, "narrow spurious feature near 8600 A"),
    )
}
"""The classes, by name."""


def eligible(name: str, z: float) -> bool:
    """Whether class *name* is visible for a quasar at systemic redshift *z*."""
    cls = ANOMALY_CLASSES[name]
    return cls.zmin <= z <= cls.zmax


def choose_anomaly(rng: np.random.Generator, z: float, rate: float, weights: dict[str, float]) -> str:
    """Draw the anomaly class of one quasar (``""`` = none).

    The draw order is fixed (one uniform for "is anomalous", one for the class) so the
    random stream does not depend on the outcome.
    """
    u_any, u_cls = rng.random(2)
    names = [n for n in ANOMALY_CLASSES if weights.get(n, 0.0) > 0 and eligible(n, z)]
    if u_any >= rate or not names:
        return ""
    w = np.array([weights[n] for n in names], dtype=np.float64)
    cum = np.cumsum(w / w.sum())
    return names[int(np.searchsorted(cum, u_cls, side="right").clip(0, len(names) - 1))]


def _trough_set(
    ions: list[tuple[str, float]], vmin: float, vmax: float, depth: float, edge: float, rng: np.random.Generator
) -> list[Trough]:
    from desilab.sample.qso_population import trough_structure

    bumps = trough_structure(rng)
    slope = float(rng.uniform(-0.2, 0.4))
    return [Trough(ion, vmin, vmax, min(depth * scale, 0.97), edge, slope, bumps) for ion, scale in ions]


def inject_physical(name: str, params: QuasarParams, rng: np.random.Generator) -> dict[str, float | str]:
    """Apply a ``physical`` anomaly to *params* (in place) and return its parameters."""
    info: dict[str, float | str] = {}
    if name in ("lobal", "felobal", "overlapping_troughs"):
        if name == "overlapping_troughs":
            vmin, width = rng.uniform(0.0, 2000.0), rng.uniform(15000.0, 25000.0)
            depth = rng.uniform(0.75, 0.95)
        else:
            vmin, width = rng.uniform(500.0, 8000.0), float(10 ** rng.uniform(np.log10(2000), np.log10(20000)))
            depth = rng.uniform(0.3, 0.9)
        vmax = vmin + width
        edge = rng.uniform(200.0, 600.0)
        high = [("CIV", 1.0), ("SIIV", 0.8), ("NV", 0.9), ("LYA", 0.6)]
        low = [("ALIII", 0.8), ("MGII", 0.9)]
        fe = [("FEII_2344", 0.6), ("FEII_2382", 0.8), ("FEII_2600", 0.8)]
        ions = high + low + (fe if name != "lobal" else [])
        params.troughs = [t for t in params.troughs if t.ion not in {i for i, _ in ions}]
        params.troughs += _trough_set(ions, vmin, vmax, depth, edge, rng)
        redden = rng.uniform(0.3, 1.2) if name == "lobal" else rng.uniform(0.8, 2.0)
        params.alpha_lambda += redden
        info.update(VMIN=vmin, VMAX=vmax, DEPTH=depth, DALPHA=redden)
    elif name == "redshifted_trough":
        vmin = -rng.uniform(1000.0, 5000.0)
        width = rng.uniform(1500.0, 5000.0)
        depth = rng.uniform(0.3, 0.8)
        # an infalling trough: speeds are negative (redshifted); vmin > vmax in speed terms
        params.troughs.append(Trough("CIV", vmin - width, vmin, depth, 250.0))
        params.troughs.append(Trough("SIIV", vmin - width, vmin, 0.6 * depth, 250.0))
        info.update(VMIN=vmin - width, VMAX=vmin, DEPTH=depth)
    elif name == "double_peaked":
        sep = rng.uniform(2000.0, 6000.0)
        asym = rng.uniform(0.4, 0.6)
        new: list[Component] = []
        for c in params.components:
            if c.kind in ("broad", "vbc") and c.line in ("HALPHA", "HBETA", "HGAMMA", "MGII_2796", "MGII_2803"):
                sig = max(c.sigma_kms * 0.55, 700.0)
                new.append(Component(c.line, "broad", c.wave, c.flux * asym, sig, c.vshift_kms - sep / 2))
                new.append(Component(c.line, "peak2", c.wave, c.flux * (1 - asym), sig, c.vshift_kms + sep / 2))
            else:
                new.append(c)
        params.components = new
        info.update(SEPARATION=sep, BLUE_FRACTION=asym)
    elif name == "vanishing_broad_lines":
        keep = rng.uniform(0.0, 0.1)
        for c in params.components:
            if c.kind in ("broad", "vbc"):
                c.flux *= keep
        params.feii_uv_ew *= keep
        params.feii_opt_ew *= keep
        info.update(BROAD_SCALE=keep)
    elif name == "odd_line_ratios":
        sub = ("weak_line", "nitrogen_rich", "extreme_oiii")[int(rng.integers(0, 3))]
        if sub == "weak_line":
            f = rng.uniform(0.05, 0.2)
            for c in params.components:
                if c.kind in ("broad", "vbc"):
                    c.flux *= f
        elif sub == "nitrogen_rich":
            f = rng.uniform(4.0, 8.0)
            for c in params.components:
                if c.line == "NV_1240":
                    c.flux *= f
        else:
            f = rng.uniform(6.0, 12.0)
            for c in params.components:
                if c.line.startswith("OIII_") or c.line == "NEV_3426":
                    c.flux *= f
        info.update(SUBCLASS=sub, FACTOR=f)
    elif name == "stellar_contamination":
        params.star_kind = "FKM"[int(rng.integers(0, 3))]
        params.star_frac = rng.uniform(0.1, 0.5)
        info.update(STAR=params.star_kind, STAR_FRAC=params.star_frac)
    else:
        raise ValueError(f"{name!r} is not a physical anomaly")
    return info


def wrong_redshift(rng: np.random.Generator, z: float) -> dict[str, float]:
    """The wrong catalog redshift of a ``wrong_redshift`` anomaly."""
    dz = float((0.05, 0.2, 1.0)[int(rng.integers(0, 3))])
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if z + sign * dz < 0.05:
        sign = 1.0
    return {"DZ": sign * dz, "Z_WRONG": z + sign * dz}


def inject_instrumental(
    name: str,
    flux: dict[str, np.ndarray],
    sigma: dict[str, np.ndarray],
    sky: dict[str, np.ndarray],
    wave: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> dict[str, float | str]:
    """Apply an ``instrumental`` anomaly to one spectrum's arms (in place).

    Parameters
    ----------
    name
        The class.
    flux
        Per arm, the observed flux (1-D, modified in place).
    sigma
        Per arm, the 1σ noise per pixel.
    sky
        Per arm, the sky flux density (continuum + lines) that was subtracted.
    wave
        Per arm, wavelengths.
    rng
        Random stream of this object.

    Returns
    -------
    dict
        Parameters (wavelengths, amplitudes) for the truth table.
    """
    arms = list(flux)
    if name == "dead_columns":
        arm = arms[int(rng.integers(0, len(arms)))]
        nrun = int(rng.integers(1, 4))
        waves = []
        for _ in range(nrun):
            n = int(rng.integers(3, 26))
            j = int(rng.integers(10, flux[arm].size - n - 10))
            flux[arm][j : j + n] = rng.normal(0.0, 0.05, n) * sigma[arm][j : j + n]
            waves.append(float(wave[arm][j]))
        return {"ARM": arm, "NRUN": nrun, "WAVE": waves[0], "WAVES": ",".join(f"{w:.1f}" for w in waves)}
    if name == "hot_pixels":
        npx = int(rng.integers(2, 7))
        waves, amps = [], []
        for _ in range(npx):
            arm = arms[int(rng.integers(0, len(arms)))]
            j = int(rng.integers(5, flux[arm].size - 5))
            amp = float(rng.uniform(20.0, 100.0))
            flux[arm][j] += amp * sigma[arm][j]
            waves.append(float(wave[arm][j]))
            amps.append(amp)
        return {
            "NPIX": npx,
            "WAVE": waves[0],
            "AMPLITUDE_SIGMA": float(np.median(amps)),
            "WAVES": ",".join(f"{w:.1f}" for w in waves),
        }
    if name == "bad_sky_subtraction":
        line_amp = float(rng.uniform(0.1, 0.3) * (1 if rng.random() < 0.5 else -1))
        cont_amp = float(rng.uniform(0.03, 0.1) * (1 if rng.random() < 0.5 else -1))
        for arm in arms:
            s = sky[arm]
            cont = np.minimum.accumulate(s[::-1])[::-1]  # a crude lower envelope
            cont = np.minimum(cont, np.median(s))
            flux[arm] += line_amp * (s - cont) + cont_amp * cont
        return {"LINE_AMPLITUDE": line_amp, "CONT_AMPLITUDE": cont_amp}
    if name == "spurious_8600":
        arm = "z" if "z" in flux else arms[-1]
        centre = float(rng.uniform(8560.0, 8640.0))
        fwhm = float(rng.uniform(3.0, 15.0))
        amp = float(rng.uniform(5.0, 15.0) * (1 if rng.random() < 0.75 else -1))
        w = wave[arm]
        near = np.abs(w - centre) < 40.0
        level = float(np.median(sigma[arm][near])) if np.any(near) else 1.0
        flux[arm] += amp * level * np.exp(-0.5 * ((w - centre) / (fwhm / 2.3548)) ** 2)
        return {"WAVE": centre, "FWHM": fwhm, "AMPLITUDE_SIGMA": amp, "AMPLITUDE": amp * level}
    raise ValueError(f"{name!r} is not an instrumental anomaly")
