"""Batched multi-Gaussian emission-line fits with covariance errors and BIC model choice.

Model of one line *complex* (a wavelength window) for N spectra at once::

    f(λ) = Σ_groups Σ_lines F_l · c / (λ √(2π) σ_t) · exp(−½ ((u − v_g)/σ_t)²) + a + b (λ/λ_c − 1)

with ``u = c ln(λ_obs / (λ_0 (1 + z)))`` the velocity relative to the reference redshift,
``σ_t² = σ_g² + σ_inst²`` (σ_g the *intrinsic* dispersion of the group, σ_inst the
instrument's line-spread σ at that pixel), and ``F_l`` the observed-frame line flux
[1e-17 erg/s/cm²]. Lines in one kinematic *group* share (v, σ) ("shared kinematics within
a component"). Only what physics fixes is tied: [OIII] 5007/4959 = 2.98, [NII]
6583/6548 = 3.05. The density-sensitive doublets are parametrised by total flux and
ratio, the ratio free inside its physical range: [SII] 6716/6731 ∈ [0.44, 1.45],
[OII] 3729/3726 ∈ [0.35, 1.50]. A local linear continuum (a, b) absorbs what the global
continuum model leaves.

Model choice: each complex is fitted with 0–3 broad Gaussians (and, for Hβ+[OIII], with
and without a second "wing" [OIII] group); per spectrum the lowest
``BIC = χ² + k ln n`` wins.

Outflow criterion (documented in docs/outflows.md): the [OIII] wing is *detected* when the
best wing model beats the best no-wing model by ΔBIC > ``measure.DBIC_WING`` (−1,
calibrated on null spectra to a false-positive rate < 1 %), the wing is not significantly
redshifted from the core (v_wing − v_core < 2σ), and it is not pinned at its bluest
velocity or largest σ excess. The wing's σ is the core σ plus a free excess
(``WING_DSIGMA_MIN`` = −300 … 1500 km/s), so the wing may be narrower than the core; it is
told from the core by its velocity (the core shares Hβ's kinematics).
``v_out = |v_wing − v_sys| + 2 σ_wing`` (Rupke & Veilleux
style "max" velocity); v10 of the total [OIII] profile is reported too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from desilab.outflows.lm import LMResult, batched_lm

__all__ = [
    "COMPLEXES",
    "C_KMS",
    "Complex",
    "ComplexFit",
    "Group",
    "LineModel",
    "fit_complex",
    "prepare_window",
    "profile_measures",
]

C_KMS = 299792.458
SQRT2PI = float(np.sqrt(2.0 * np.pi))

# Vacuum rest wavelengths [Å] (SDSS / FastSpecFit line list).
WAVE = {
    "CIV": 1549.06,
    "MGII": 2799.49,
    "OII_3726": 3727.09,
    "OII_3729": 3729.88,
    "HG": 4341.68,
    "OIII_4363": 4364.44,
    "HB": 4862.68,
    "OIII_4959": 4960.30,
    "OIII_5007": 5008.24,
    "NII_6548": 6549.86,
    "HA": 6564.61,
    "NII_6583": 6585.27,
    "SII_6716": 6718.29,
    "SII_6731": 6732.67,
}

OIII_RATIO = 2.98
NII_RATIO = 3.05
SII_RATIO_BOUNDS = (0.44, 1.45)
OII_RATIO_BOUNDS = (0.35, 1.50)


@dataclass(frozen=True)
class Group:
    """Lines sharing one velocity and dispersion.

    ``lines`` entries are ``(name, kind, arg)``: kind ``"free"`` (own flux parameter),
    ``"tied"`` (flux = flux of line *arg* / ratio, *arg* = ``(leader, ratio)``), or
    ``"doublet"`` (*arg* = ``(partner, (rmin, rmax))``: this line and *partner* are
    parametrised by total flux and ratio this/partner).
    """

    name: str
    lines: tuple[tuple[str, str, object], ...]
    sigma: tuple[float, float, float]  # lo, start, hi [km/s]
    vel: tuple[float, float, float]
    #: if set, this group's σ is the named group's σ plus a free excess (bounds ``sigma``),
    #: so that e.g. the [O III] wing is always broader than the core (no label switching)
    sigma_link: str | None = None


@dataclass(frozen=True)
class Complex:
    """A fitting window [Å, rest] with its always-present groups and optional ones."""

    name: str
    window: tuple[float, float]
    groups: tuple[Group, ...]
    broad_line: str | None = None  # line that gets 0-3 broad Gaussians
    wing: Group | None = None  # optional outflow group
    absorption: Group | None = None  # optional stellar Balmer absorption (host stand-in)


#: Lower bound of the [O III] wing's σ excess over the core σ [km/s]: negative, so that a
#: wing *narrower* than the core (a shifted, quiescent-width outflow) is representable —
#: the injection grid has them (σ_wing 60–600 km/s for any core σ) and a bound of +30 km/s
#: made the fit absorb them in the core or in the broad Hβ. The wing is identified by its
#: velocity instead (it must not be redshifted from the core; measure.DBIC_WING).
WING_DSIGMA_MIN = -300.0


def _narrow(name: str, lines: tuple[tuple[str, str, object], ...]) -> Group:
    return Group(name, lines, sigma=(20.0, 150.0, 900.0), vel=(-600.0, 0.0, 600.0))


COMPLEXES: dict[str, Complex] = {
    "HB_OIII": Complex(
        "HB_OIII",
        (4720.0, 5100.0),
        groups=(
            _narrow(
                "NARROW",
                (
                    ("HB", "free", None),
                    ("OIII_5007", "free", None),
                    ("OIII_4959", "tied", ("OIII_5007", OIII_RATIO)),
                ),
            ),
        ),
        broad_line="HB",
        absorption=Group("ABS", (("HB", "absorption", None),), sigma=(300.0, 900.0, 2500.0), vel=(-300.0, 0.0, 300.0)),
        wing=Group(
            "WING",
            (("OIII_5007", "free", None), ("OIII_4959", "tied", ("OIII_5007", OIII_RATIO))),
            sigma=(WING_DSIGMA_MIN, 250.0, 1500.0),  # excess over the core σ (may be < 0)
            vel=(-2500.0, -200.0, 500.0),
            sigma_link="NARROW",
        ),
    ),
    "HA_NII_SII": Complex(
        "HA_NII_SII",
        (6400.0, 6800.0),
        groups=(
            _narrow(
                "NARROW",
                (
                    ("HA", "free", None),
                    ("NII_6583", "free", None),
                    ("NII_6548", "tied", ("NII_6583", NII_RATIO)),
                    ("SII_6716", "doublet", ("SII_6731", SII_RATIO_BOUNDS)),
                ),
            ),
        ),
        broad_line="HA",
        absorption=Group("ABS", (("HA", "absorption", None),), sigma=(300.0, 900.0, 2500.0), vel=(-300.0, 0.0, 300.0)),
    ),
    "OII": Complex(
        "OII",
        (3690.0, 3770.0),
        groups=(_narrow("NARROW", (("OII_3729", "doublet", ("OII_3726", OII_RATIO_BOUNDS)),)),),
    ),
    # narrow Hγ and [O III] 4363 only: broad Hγ (FWHM ≳ 70 Å) is not constrained by a window this
    # narrow and is absorbed by the local linear continuum (a stated limitation for T_e in BLAGN)
    "HG_OIII4363": Complex(
        "HG_OIII4363",
        (4310.0, 4390.0),
        groups=(_narrow("NARROW", (("HG", "free", None), ("OIII_4363", "free", None))),),
    ),
    "MGII": Complex("MGII", (2700.0, 2900.0), groups=(), broad_line="MGII"),
    "CIV": Complex("CIV", (1500.0, 1600.0), groups=(), broad_line="CIV"),
}

BROAD_SIGMA = (600.0, 1800.0, 9000.0)
BROAD_VEL = (-3000.0, 0.0, 3000.0)


def _broad_group(line: str, i: int, n: int) -> Group:
    # start the components at different widths so they do not collapse onto one another
    start = BROAD_SIGMA[1] * (0.6 + 0.8 * i / max(n - 1, 1)) if n > 1 else BROAD_SIGMA[1]
    return Group(f"BROAD{i + 1}", ((line, "free", None),), sigma=(BROAD_SIGMA[0], start, BROAD_SIGMA[2]), vel=BROAD_VEL)


class LineModel:
    """The Gaussian-sum model of one complex for a batch of spectra, with its Jacobian.

    Parameter layout per group: ``[v, σ, flux params...]`` where a doublet contributes
    ``[total, ratio]``; then ``[a, b]`` (local linear continuum).
    """

    def __init__(
        self, groups: tuple[Group, ...], lam: np.ndarray, z: np.ndarray, sig_inst: np.ndarray, backend: str = "numba"
    ):
        self.groups = groups
        self.lam = lam  # (N, P) observed wavelength
        self.z = z
        self.sig_inst = sig_inst  # (N, P) km/s
        self.nrow = lam.shape[0]
        self.names: list[str] = []
        self.lo: list[float] = []
        self.hi: list[float] = []
        self.start: list[float] = []
        # evaluation recipe: (group index, line name, λ0, kind, param idx, extra)
        self.terms: list[tuple[int, str, float, str, int, object]] = []
        self.kin: list[tuple[int, int]] = []
        self.kin_link: list[int] = []
        lead_idx: dict[tuple[int, str], int] = {}
        sigma_idx: dict[str, int] = {}
        for gi, g in enumerate(groups):
            iv = self._add(f"{g.name}_V", *g.vel)
            isg = self._add(f"{g.name}_{'DSIGMA' if g.sigma_link else 'SIGMA'}", *g.sigma)
            sigma_idx[g.name] = isg
            self.kin.append((iv, isg))
            self.kin_link.append(sigma_idx[g.sigma_link] if g.sigma_link else -1)
            for name, kind, arg in g.lines:
                if kind in ("free", "absorption"):
                    lo, st, hi = (0.0, 1.0, np.inf) if kind == "free" else (-np.inf, -1.0, 0.0)
                    ip = self._add(f"{g.name}_{name}_FLUX", lo, st, hi)
                    lead_idx[(gi, name)] = ip
                    self.terms.append((gi, name, WAVE[name], "free", ip, None))
                elif kind == "doublet":
                    partner, (rmin, rmax) = arg  # type: ignore[misc]
                    ip = self._add(f"{g.name}_{name}+{partner}_FLUX", 0.0, 1.0, np.inf)
                    ir = self._add(f"{g.name}_{name}/{partner}_RATIO", rmin, 0.5 * (rmin + rmax), rmax)
                    self.terms.append((gi, name, WAVE[name], "dA", ip, ir))
                    self.terms.append((gi, partner, WAVE[partner], "dB", ip, ir))
            for name, kind, arg in g.lines:
                if kind == "tied":
                    leader, ratio = arg  # type: ignore[misc]
                    self.terms.append((gi, name, WAVE[name], "tied", lead_idx[(gi, leader)], float(ratio)))
        self.ia = self._add("CONT_A", -np.inf, 0.0, np.inf)
        self.ib = self._add("CONT_B", -np.inf, 0.0, np.inf)
        self.k = len(self.names)
        # cached per batch: velocities of every term's line, λ-dependent factors
        lnl = np.log(lam)
        ln1z = np.log1p(z)[:, None]
        self._u = [C_KMS * (lnl - np.log(t[2]) - ln1z) for t in self.terms]
        self._si2 = sig_inst**2
        self._c_over_lam_sqrt2pi = C_KMS / (lam * SQRT2PI)
        lam_c = np.median(lam, axis=1)[:, None]
        self._x = lam / lam_c - 1.0
        self._u_all = np.stack(self._u) if self._u else np.zeros((0, *lam.shape))
        self._term_v = np.array([self.kin[t[0]][0] for t in self.terms], dtype=np.int64)
        self._term_s = np.array([self.kin[t[0]][1] for t in self.terms], dtype=np.int64)
        self._term_s2 = np.array([self.kin_link[t[0]] for t in self.terms], dtype=np.int64)
        # (at most two) flux parameters of each term, for the sparse numba kernel
        self._dfl_idx = np.full((len(self.terms), 2), -1, dtype=np.int64)
        for ti, (_gi, _name, _l0, kind, ip, extra) in enumerate(self.terms):
            self._dfl_idx[ti, 0] = ip
            if kind in ("dA", "dB"):
                self._dfl_idx[ti, 1] = int(extra)  # type: ignore[call-overload]
        self.backend = backend

    def _add(self, name: str, lo: float, start: float, hi: float) -> int:
        self.names.append(name)
        self.lo.append(lo)
        self.start.append(start)
        self.hi.append(hi)
        return len(self.names) - 1

    def sigma(self, p: np.ndarray, gi: int) -> np.ndarray:
        """Intrinsic σ of group *gi*, ``(N,)``: ≥ 0 (a linked group's base σ + excess may
        sum to < 0; the profile depends on σ² only, so its width is the absolute value)."""
        return np.abs(self._signed_sigma(p, gi))

    def _signed_sigma(self, p: np.ndarray, gi: int) -> np.ndarray:
        s = p[:, self.kin[gi][1]]
        if self.kin_link[gi] >= 0:
            s = s + p[:, self.kin_link[gi]]
        return s

    def sigma_grad(self, gi: int) -> list[int]:
        """Parameter indices whose sum is group *gi*'s σ."""
        return [self.kin[gi][1]] + ([self.kin_link[gi]] if self.kin_link[gi] >= 0 else [])

    def line_fluxes(self, p: np.ndarray) -> dict[tuple[int, str], np.ndarray]:
        """Flux of every (group, line) term ``(N,)`` for parameters *p*."""
        out = {}
        for gi, name, _, kind, ip, extra in self.terms:
            out[(gi, name)] = self._flux(p, kind, ip, extra)[0]
        return out

    @staticmethod
    def _flux(p: np.ndarray, kind: str, ip: int, extra: object) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Flux and its derivatives {param index: dF/dp}."""
        if kind == "free":
            return p[:, ip], {ip: np.ones(p.shape[0])}
        if kind == "tied":
            return p[:, ip] / extra, {ip: np.full(p.shape[0], 1.0 / extra)}  # type: ignore[operator]
        t, r = p[:, ip], p[:, extra]  # type: ignore[index]
        if kind == "dA":
            return t * r / (1 + r), {ip: r / (1 + r), extra: t / (1 + r) ** 2}  # type: ignore[dict-item]
        return t / (1 + r), {ip: 1 / (1 + r), extra: -t / (1 + r) ** 2}  # type: ignore[dict-item]

    def __call__(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.rows(p, np.arange(p.shape[0]))

    def rows(self, p: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model ``(n, P)`` and Jacobian ``(n, k, P)`` for the spectra *rows* (p: one row per entry).

        Rows are taken modulo the number of spectra, so several starts per spectrum can
        run as extra rows of one batch (row ``s·N + i`` is spectrum *i*).
        """
        rows = np.asarray(rows) % self.nrow
        if self.backend == "numba":
            return self._rows_numba(p, rows)
        return self._rows_numpy(p, rows)

    def normal(
        self, p: np.ndarray, rows: np.ndarray, y: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Model, χ², JᵀWJ and JᵀW(y − model) for the spectra *rows* (see :mod:`.lm`; rows
        modulo the number of spectra, as in :meth:`rows`)."""
        rows = np.asarray(rows) % self.nrow
        if self.backend != "numba":
            model, jac = self._rows_numpy(p, rows)
            r = y - model
            jw = jac * w[:, None, :]
            return (
                model,
                np.sum(w * r * r, axis=1),
                np.matmul(jw, jac.transpose(0, 2, 1)),
                np.matmul(jw, r[:, :, None])[:, :, 0],
            )
        from desilab.outflows._kernels import gauss_normal_eq

        flux, dflux = self._flux_arrays(p)
        dfl_val = np.take_along_axis(dflux, np.maximum(self._dfl_idx, 0)[None, :, :], axis=2)
        return gauss_normal_eq(
            self._u_all,
            self._si2,
            self._c_over_lam_sqrt2pi,
            self._x,
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(p, dtype=np.float64),
            flux,
            np.ascontiguousarray(dfl_val),
            self._dfl_idx,
            self._term_v,
            self._term_s,
            self._term_s2,
            self.ia,
            self.ib,
            np.ascontiguousarray(y, dtype=np.float64),
            np.ascontiguousarray(w, dtype=np.float64),
        )

    def _flux_arrays(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = p.shape[0]
        nt = len(self.terms)
        flux = np.empty((n, nt))
        dflux = np.zeros((n, nt, self.k))
        for ti, (_gi, _name, _lam0, kind, ip, extra) in enumerate(self.terms):
            f, d = self._flux(p, kind, ip, extra)
            flux[:, ti] = f
            for j, dj in d.items():
                dflux[:, ti, j] += dj
        return flux, dflux

    def _rows_numba(self, p: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from desilab.outflows._kernels import gauss_model_jac

        flux, dflux = self._flux_arrays(p)
        full = rows.size == self._u_all.shape[1] and np.array_equal(rows, np.arange(rows.size))
        u = self._u_all if full else self._u_all[:, rows]
        return gauss_model_jac(
            u,
            self._si2 if full else self._si2[rows],
            self._c_over_lam_sqrt2pi if full else self._c_over_lam_sqrt2pi[rows],
            self._x if full else self._x[rows],
            np.ascontiguousarray(p, dtype=np.float64),
            flux,
            dflux,
            self._term_v,
            self._term_s,
            self._term_s2,
            self.ia,
            self.ib,
        )

    def _rows_numpy(self, p: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        si2 = self._si2[rows]
        inv_lam = self._c_over_lam_sqrt2pi[rows]
        n, npix = si2.shape
        model = np.zeros((n, npix))
        jac = np.zeros((n, self.k, npix))
        for ti, (gi, _name, _lam0, kind, ip, extra) in enumerate(self.terms):
            iv, isg = self.kin[gi]
            isg2 = self.kin_link[gi]
            v = p[:, iv][:, None]
            s = self._signed_sigma(p, gi)[:, None]  # the Jacobian below is in the signed σ
            st2 = s * s + si2
            d = self._u[ti][rows] - v
            x = d * d / st2
            g = inv_lam / np.sqrt(st2) * np.exp(-0.5 * x)
            flux, dflux = self._flux(p, kind, ip, extra)
            fg = flux[:, None] * g
            model += fg
            fg_st2 = fg / st2
            jac[:, iv] += fg_st2 * d
            jac[:, isg] += fg_st2 * (x - 1.0) * s
            if isg2 >= 0:
                jac[:, isg2] += fg_st2 * (x - 1.0) * s
            for j, dj in dflux.items():
                jac[:, j] += dj[:, None] * g
        x = self._x[rows]
        model += p[:, self.ia][:, None] + p[:, self.ib][:, None] * x
        jac[:, self.ia] = 1.0
        jac[:, self.ib] = x
        return model, jac

    def linear_start(self, y: np.ndarray, w: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
        """Start values: fluxes and local continuum from a linear fit at given kinematics.

        Parameters
        ----------
        y, w
            Data and weights ``(N, npix)``.
        p
            ``(N, k)`` parameters whose kinematics (velocities, σ, doublet ratios) are
            kept; default: every kinematic parameter at its start value.

        Returns
        -------
        numpy.ndarray
            ``(N, k)`` start parameters, fluxes strictly inside their bounds.
        """
        n = y.shape[0]
        p = np.tile(np.array(self.start, dtype=np.float64), (n, 1)) if p is None else np.array(p, dtype=np.float64)
        lin = [i for i, nm in enumerate(self.names) if nm.endswith("_FLUX")] + [self.ia, self.ib]
        # the model is linear in these: with them at 0 the residual is y and the normal
        # equations restricted to them are the linear least-squares problem (for doublets
        # the FLUX column at the current ratio is the doublet's profile)
        p[:, lin] = 0.0
        _, _, jtj, g = self.normal(p, np.arange(n), y, w)
        ata = jtj[:, lin][:, :, lin] + 1e-9 * np.eye(len(lin))
        try:
            sol = np.linalg.solve(ata, g[:, lin, None])[:, :, 0]
        except np.linalg.LinAlgError:
            sol = np.zeros((n, len(lin)))
        p[:, lin] = sol
        # keep fluxes strictly inside their bounds (emission >= 0, absorption <= 0)
        for i in lin[:-2]:
            p[:, i] = np.clip(p[:, i], self.lo[i] + 1e-3, self.hi[i] - 1e-3)
        return p


@dataclass
class ComplexFit:
    """Result of fitting one complex with one model for N spectra."""

    complex: str
    label: str
    model: LineModel
    lm: LMResult
    nbroad: int
    wing: bool
    absorption: bool = False
    #: the pixels fitted (rows padded to a common length; ``window.npix`` real pixels per row)
    window: Window | None = None

    @property
    def bic(self) -> np.ndarray:
        """``χ² + k ln n`` per spectrum (∞ where no pixels were usable)."""
        n = np.maximum(self.lm.ndata, 1)
        out = self.lm.chi2 + self.model.k * np.log(n)
        return np.where(self.lm.ndata > self.model.k, out, np.inf)


@dataclass
class Window:
    """Pixels of one complex for N spectra, padded to a common length (weight 0 = pad)."""

    lam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    sig_inst: np.ndarray
    z: np.ndarray
    cont: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    #: ``(N,)`` real (unpadded) pixels per row; row *i*'s pixels are ``[:npix[i]]``
    npix: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def row(self, i: int) -> dict[str, np.ndarray]:
        """Row *i* without its padding: ``lam``, ``flux``, ``ivar``, ``sig_inst``, ``cont``."""
        m = int(self.npix[i]) if self.npix.size else self.lam.shape[1]
        return {
            "lam": self.lam[i, :m],
            "flux": self.flux[i, :m],
            "ivar": self.ivar[i, :m],
            "sig_inst": self.sig_inst[i, :m],
            "cont": self.cont[i, :m] if self.cont.size else np.zeros(m),
        }


def prepare_window(
    wave: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    z: np.ndarray,
    sig_inst: np.ndarray,
    window: tuple[float, float],
    cont: np.ndarray | None = None,
) -> Window:
    """Cut a rest-frame window out of N spectra on a common observed grid.

    Parameters
    ----------
    wave
        Observed vacuum wavelengths ``(npix,)`` (shared) or ``(N, npix)``.
    flux, ivar
        ``(N, npix)``; *flux* is the continuum-subtracted flux when *cont* is given
        separately (cont is only carried for equivalent widths).
    z
        Reference redshifts ``(N,)``.
    sig_inst
        Instrumental σ [km/s], ``(N, npix)`` or broadcastable.
    window
        Rest-frame window [Å].
    cont
        Continuum model ``(N, npix)`` (for EWs), optional.
    """
    flux = np.atleast_2d(flux)
    n, npix = flux.shape
    wave2 = np.broadcast_to(wave, (n, npix))
    sig2 = np.broadcast_to(sig_inst, (n, npix))
    cont2 = np.zeros((n, npix)) if cont is None else np.broadcast_to(cont, (n, npix))
    rest = wave2 / (1.0 + np.asarray(z, dtype=np.float64))[:, None]
    inw = (rest >= window[0]) & (rest <= window[1])
    counts = inw.sum(axis=1)
    p = max(int(counts.max()), 1)
    out = {k: np.zeros((n, p)) for k in ("lam", "flux", "ivar", "sig", "cont")}
    out["lam"][:] = 1.0
    for i in range(n):
        idx = np.flatnonzero(inw[i])
        m = idx.size
        out["lam"][i, :m] = wave2[i, idx]
        out["lam"][i, m:] = wave2[i, idx[-1]] if m else window[0] * (1 + z[i])
        out["flux"][i, :m] = flux[i, idx]
        out["ivar"][i, :m] = ivar[i, idx]
        out["sig"][i, :m] = sig2[i, idx]
        out["cont"][i, :m] = cont2[i, idx]
    iv = np.where(np.isfinite(out["ivar"]) & np.isfinite(out["flux"]), out["ivar"], 0.0)
    return Window(
        lam=out["lam"],
        flux=np.nan_to_num(out["flux"]),
        ivar=np.maximum(iv, 0.0),
        sig_inst=out["sig"],
        z=np.asarray(z, dtype=np.float64),
        cont=out["cont"],
        npix=counts.astype(np.int64),
    )


def fit_complex(
    win: Window,
    cplx: Complex,
    *,
    nbroad: int = 0,
    wing: bool = False,
    absorption: bool = False,
    n_iter: int = 40,
    backend: str = "numba",
    init: ComplexFit | None = None,
    wing_starts: tuple[tuple[float, float, float], ...] | None = None,
) -> ComplexFit:
    """Fit one model (fixed number of broad components, with or without an [O III] wing and
    stellar Balmer absorption) to N spectra.

    Parameters
    ----------
    win
        Pixels of the complex (:func:`prepare_window`).
    cplx
        The complex.
    nbroad, wing, absorption
        The model variant.
    n_iter
        Levenberg–Marquardt iterations.
    backend
        ``"numba"`` (sparse fused kernel) or ``"numpy"``.
    init
        A converged fit of the same spectra whose parameters (matched by name) seed this
        one — e.g. the no-wing model when fitting the wing model; other kinematics start
        at their defaults; fluxes are re-solved linearly.
    wing_starts
        Starts of the wing ``(v [km/s], σ excess [km/s], wing/total [O III] flux)``
        (default :data:`WING_STARTS`); with *init*, one more start per spectrum at the
        velocity of the largest residual *init* leaves (:data:`RESIDUAL_START`). All starts
        of all spectra run as the rows of one batched fit; the lowest χ² per spectrum is
        kept (the core + wing χ² surface has local minima: the wing hugging the core, or
        pinned at zero flux where its kinematics have no gradient).

    Returns
    -------
    ComplexFit
    """
    groups = list(cplx.groups)
    if wing and cplx.wing is not None:
        groups.append(cplx.wing)
    if absorption and cplx.absorption is not None:
        groups.append(cplx.absorption)
    if cplx.broad_line is not None:
        groups += [_broad_group(cplx.broad_line, i, nbroad) for i in range(nbroad)]
    use_wing = wing and cplx.wing is not None
    starts = (wing_starts or WING_STARTS) if use_wing else ((0.0, 0.0, 0.0),)
    n = win.flux.shape[0]
    v_res = None
    if use_wing and init is not None:  # one more start, per spectrum: where the no-wing fit leaves most flux
        v_res = _residual_peak_velocity(win, init, cplx.wing.vel)  # type: ignore[union-attr]
        starts = (*starts, (0.0, RESIDUAL_START[0], RESIDUAL_START[1]))
    ns = len(starts)

    def tile(a: np.ndarray) -> np.ndarray:
        return a if ns == 1 else np.tile(a, (ns,) + (1,) * (a.ndim - 1))

    # one model on the N spectra; start s of spectrum i is row s·N + i (rows are taken modulo N)
    model = LineModel(tuple(groups), win.lam, win.z, win.sig_inst, backend=backend)
    y, w = tile(win.flux), tile(win.ivar)
    p0 = np.tile(np.array(model.start, dtype=np.float64), (ns * n, 1))
    if init is not None:
        for j, nm in enumerate(init.model.names):
            if nm in model.names and not nm.endswith("_FLUX") and nm not in ("CONT_A", "CONT_B"):
                p0[:, model.names.index(nm)] = tile(init.lm.params[:, j])
    if use_wing:
        iv, ids = model.names.index("WING_V"), model.names.index("WING_DSIGMA")
        isc = model.names.index("NARROW_SIGMA")
        for k, (v, ds, _f) in enumerate(starts):
            sl = slice(k * n, (k + 1) * n)
            p0[sl, iv] = v_res if (v_res is not None and k == ns - 1) else v
            p0[sl, ids] = ds
            if init is not None:  # a no-wing core is broadened by the wing it absorbed
                p0[sl, isc] = np.maximum(0.8 * p0[sl, isc], model.lo[isc])
    p0 = model.linear_start(y, w, p0)
    if use_wing:
        # split the [O III] flux as the start asks: a wing at 0 flux has no gradient in v, σ
        icf, iwf = model.names.index("NARROW_OIII_5007_FLUX"), model.names.index("WING_OIII_5007_FLUX")
        tot = p0[:, icf] + p0[:, iwf]
        frac = np.repeat(np.array([s[2] for s in starts]), n)
        p0[:, icf] = np.maximum(tot * (1.0 - frac), 1e-3)
        p0[:, iwf] = np.maximum(tot * frac, 1e-3)
    lo = np.array(model.lo)
    hi = np.array(model.hi)
    lm = batched_lm(model, p0, y, w, lo, hi, n_iter=n_iter)
    if ns > 1:
        lm = _best_start(lm, ns, n)
    label = f"{cplx.name}:b{nbroad}{'w' if wing else ''}{'a' if absorption else ''}"
    return ComplexFit(
        cplx.name, label, model, lm, nbroad, use_wing, absorption and cplx.absorption is not None, window=win
    )


#: Starts of the [O III] wing: (v [km/s], σ excess over the core [km/s], wing share of the
#: [O III] flux). Chosen on the injection grid's failure modes: a fast narrow-ish wing, a
#: slow broad one (σ_wing ≈ σ_core, small shift), and the two of the original fit.
WING_STARTS: tuple[tuple[float, float, float], ...] = (
    (-200.0, 250.0, 0.3),
    (-800.0, 550.0, 0.3),
    (-400.0, 60.0, 0.3),
    (-100.0, 500.0, 0.4),
)


#: The per-spectrum residual start: (σ excess [km/s], wing share of the [O III] flux); its
#: velocity is that of the largest positive residual of the no-wing fit near [O III] 5007.
RESIDUAL_START = (60.0, 0.3)


def _residual_peak_velocity(win: Window, init: ComplexFit, vel: tuple[float, float, float]) -> np.ndarray:
    """Velocity (relative to [O III] 5007) of the largest positive residual, in σ, that the
    no-wing fit *init* leaves within the wing's velocity bounds (``(N,)``, km/s).

    The residual is smoothed over 5 pixels (≈ 150–250 km/s, the width of the narrowest
    wings) so that a single noisy pixel does not set the start. This start finds wings the
    fixed starts of :data:`WING_STARTS` miss: narrow ones far from −400 km/s, which the fit
    otherwise absorbs in the core or in the broad Hβ.
    """
    from scipy.ndimage import uniform_filter1d

    r = (win.flux - init.lm.model) * np.sqrt(win.ivar)
    rs = uniform_filter1d(r, 5, axis=1, mode="constant")
    u = C_KMS * (np.log(win.lam) - np.log(WAVE["OIII_5007"]) - np.log1p(win.z)[:, None])
    lo, hi = vel[0] + 100.0, vel[2] - 100.0
    rs = np.where((u > lo) & (u < hi) & (win.ivar > 0), rs, -np.inf)
    j = np.argmax(rs, axis=1)
    v = u[np.arange(u.shape[0]), j]
    return np.where(np.isfinite(rs.max(axis=1)), np.clip(v, lo, hi), vel[1])


def _best_start(lm: LMResult, ns: int, n: int) -> LMResult:
    """Per spectrum, the start (block of *n* rows out of *ns*) with the lowest χ²."""
    chi = lm.chi2.reshape(ns, n)
    best = np.argmin(chi, axis=0)
    return lm.take(best * n + np.arange(n))


# ---------------------------------------------------------------------------------------
# Non-parametric profile measures
# ---------------------------------------------------------------------------------------

NGRID = 1200


def profile_measures(
    fluxes: np.ndarray, vels: np.ndarray, sigmas: np.ndarray, ngrid: int = NGRID
) -> dict[str, np.ndarray]:
    """Non-parametric measures of a sum of Gaussians (intrinsic, no instrument).

    Parameters
    ----------
    fluxes, vels, sigmas
        ``(N, ncomp)`` component fluxes, centroid velocities and intrinsic σ [km/s];
        components with zero flux are ignored.
    ngrid
        Points of the per-spectrum velocity grid spanning ``min(v − 6σ) … max(v + 6σ)``
        used for multi-component profiles (single Gaussians are analytic).

    Returns
    -------
    dict
        ``(N,)`` arrays: ``FLUX``; ``VSHIFT`` (flux-weighted centroid), ``SIGMA`` (second
        moment), ``FWHM`` (of the summed profile, by interpolation), ``V50``, ``V10``,
        ``V90`` (velocities below which 50/10/90% of the flux lies, so v10 is the blue
        side), ``W80 = V90 − V10``, ``ASYM = ((V90 − V50) − (V50 − V10)) / W80`` (< 0: a
        blue wing).
    """
    from scipy.special import ndtr

    f = np.clip(np.nan_to_num(np.asarray(fluxes, dtype=np.float64)), 0.0, None)
    v = np.asarray(vels, dtype=np.float64)
    s = np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-3)
    n = f.shape[0]
    tot = f.sum(axis=1)
    safe = np.where(tot > 0, tot, 1.0)
    mean = (f * v).sum(axis=1) / safe
    var = (f * (s**2 + v**2)).sum(axis=1) / safe - mean**2
    out = {
        "FLUX": tot,
        "VSHIFT": mean,
        "SIGMA": np.sqrt(np.maximum(var, 0.0)),
        "FWHM": 2.354820045 * np.sqrt(np.maximum(var, 0.0)),
        "V50": mean.copy(),
        "V10": mean - 1.281551566 * np.sqrt(np.maximum(var, 0.0)),
        "V90": mean + 1.281551566 * np.sqrt(np.maximum(var, 0.0)),
    }
    multi = (f > 0).sum(axis=1) > 1
    if multi.any():
        fm, vm, sm = f[multi], v[multi], s[multi]
        live = fm > 0
        lo = np.where(live, vm - 6 * sm, np.inf).min(axis=1)
        hi = np.where(live, vm + 6 * sm, -np.inf).max(axis=1)
        t = np.linspace(0.0, 1.0, ngrid)
        grid = lo[:, None] + (hi - lo)[:, None] * t[None, :]  # (m, G)
        z = (grid[:, :, None] - vm[:, None, :]) / sm[:, None, :]
        tm = fm.sum(axis=1)
        cdf = (fm[:, None, :] * ndtr(z)).sum(axis=2) / tm[:, None]
        dens = (fm[:, None, :] * np.exp(-0.5 * z * z) / sm[:, None, :]).sum(axis=2)
        rows = np.arange(grid.shape[0])

        def quant(q: float) -> np.ndarray:
            i = np.clip(np.argmax(cdf >= q, axis=1), 1, ngrid - 1)
            c0, c1 = cdf[rows, i - 1], cdf[rows, i]
            w = (q - c0) / np.where(c1 > c0, c1 - c0, 1.0)
            return grid[rows, i - 1] + w * (grid[rows, i] - grid[rows, i - 1])

        peak = dens.max(axis=1)
        above = dens >= 0.5 * peak[:, None]
        first = np.argmax(above, axis=1)
        last = ngrid - 1 - np.argmax(above[:, ::-1], axis=1)

        def cross(i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
            d0, d1 = dens[rows, i0], dens[rows, i1]
            w = (0.5 * peak - d0) / np.where(d1 != d0, d1 - d0, 1.0)
            return grid[rows, i0] + w * (grid[rows, i1] - grid[rows, i0])

        left = cross(np.clip(first - 1, 0, None), first)
        right = cross(last, np.clip(last + 1, None, ngrid - 1))
        out["FWHM"][multi] = right - left
        out["V10"][multi] = quant(0.1)
        out["V50"][multi] = quant(0.5)
        out["V90"][multi] = quant(0.9)
    w80 = out["V90"] - out["V10"]
    out["W80"] = w80
    out["ASYM"] = ((out["V90"] - out["V50"]) - (out["V50"] - out["V10"])) / np.where(w80 > 0, w80, np.nan)
    bad = tot <= 0
    for k in out:
        if k != "FLUX":
            out[k] = np.where(bad, np.nan, out[k])
    del n
    return out
