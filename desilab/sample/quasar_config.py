"""Settings of the sample-sky quasars (:class:`QuasarConfig`) and their per-scale defaults.

Every number that shapes the quasar population is a field here, with its default and
the published value it follows. ``QuasarConfig.for_scale("tiny")`` gives the CI size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from desilab.errors import ConfigError

__all__ = ["ANOMALY_DEFAULT_WEIGHTS", "SCALE_SIZES", "QuasarConfig"]

SCALE_SIZES: dict[str, int] = {"tiny": 500, "small": 5000, "full": 50000}
"""Quasar spectra per scale. ``full`` is 50,000 spectra ≈ 22 GB of coadds (0.45 MB each);
all of DR1 (1.6 M quasar spectra) would be ≈ 0.7 TB."""

ANOMALY_DEFAULT_WEIGHTS: dict[str, float] = {
    "lobal": 1.0,
    "felobal": 0.7,
    "overlapping_troughs": 0.6,
    "redshifted_trough": 0.6,
    "double_peaked": 1.0,
    "vanishing_broad_lines": 1.0,
    "odd_line_ratios": 1.0,
    "wrong_redshift": 1.0,
    "stellar_contamination": 1.0,
    "dead_columns": 0.8,
    "hot_pixels": 0.8,
    "bad_sky_subtraction": 0.8,
    "spurious_8600": 0.8,
}
"""Relative rates of the injected anomaly classes (see :mod:`desilab.sample.anomalies`)."""


@dataclass(frozen=True)
class QuasarConfig:
    """How many quasars, and what they look like.

    Attributes
    ----------
    n_quasars
        Number of quasar spectra (tiny 500, small 5,000, full 50,000).
    per_pixel
        Mean quasars per nside-64 HEALPix pixel (0.84 deg²); DR1 has ~100 QSO targets per
        pixel in the dark program. Sets how many coadd files are written.
    z_min, z_max
        Systemic redshift range.
    z_knots, z_weights
        Piecewise-linear dN/dz (DESI DR1 QSO-like: rising to z ≈ 1.5–2, Lyα tail to 4).
    mag_min, mag_max, mag_slope
        r-band AB magnitudes: dN/dm ∝ 10^(slope·m), tapered at the r ≈ 22.7 target limit.
    bal_bi_fraction
        Fraction of z ≥ 1.57 quasars given Hi-BAL C IV troughs with BI > 0. The LoBAL,
        FeLoBAL and overlapping-trough anomalies add ≈ 1%, for ≈ 14% in all (DESI: 12–16%
        of z ≥ 1.57 quasars have BI_CIV > 0; Filbert et al. 2024).
    bal_ai_only_fraction
        Extra fraction with AI > 0 but BI = 0 (narrower troughs), so that AI-selected BALs
        outnumber BI-selected ones as in DR14Q/DESI.
    oiii_outflow_fraction
        Fraction of quasars with a blueshifted broad [O III] component (≈ 40–50% of
        low-z quasars show one; Mullaney et al. 2013, Shen 2016).
    log_ne_range
        Uniform range of log10 n_e [cm⁻³] of the narrow-line region ([S II], [O II]).
    te_range
        Uniform range of the [O III]-zone electron temperature [K].
    anomaly_rate
        Fraction of quasars given one injected anomaly.
    anomaly_weights
        Relative rate of each anomaly class.
    exptime
        Effective exposure time of one dark exposure [s].
    sky_residual
        RMS fractional sky-line subtraction residual (per spectrum).
    survey, program, specprod
        DR1 tree components: ``{specprod}/healpix/{survey}/{program}/...``.
    write_spectra
        Write coadd and redrock files (``False`` = catalogs only, ``--no-spectra``).
    """

    n_quasars: int = 500
    per_pixel: int = 60
    z_min: float = 0.3
    z_max: float = 4.0
    z_knots: tuple[float, ...] = (0.3, 0.6, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
    z_weights: tuple[float, ...] = (0.30, 0.60, 0.90, 1.00, 0.95, 0.75, 0.40, 0.18, 0.08)
    mag_min: float = 17.5
    mag_max: float = 22.7
    mag_slope: float = 0.35
    bal_bi_fraction: float = 0.13
    bal_ai_only_fraction: float = 0.10
    oiii_outflow_fraction: float = 0.45
    log_ne_range: tuple[float, float] = (1.0, 4.5)
    te_range: tuple[float, float] = (9000.0, 20000.0)
    anomaly_rate: float = 0.08
    anomaly_weights: dict[str, float] = field(default_factory=lambda: dict(ANOMALY_DEFAULT_WEIGHTS))
    exptime: float = 1000.0
    sky_residual: float = 0.01
    survey: str = "main"
    program: str = "dark"
    specprod: str = "iron"
    write_spectra: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{why} (got {getattr(self, name)!r})", parameter=f"quasars.{name}")

        if self.n_quasars < 0:
            raise bad("n_quasars", "must be >= 0")
        if self.per_pixel < 1:
            raise bad("per_pixel", "must be >= 1")
        if not 0.0 < self.z_min < self.z_max <= 5.0:
            raise bad("z_min", "need 0 < z_min < z_max <= 5")
        if len(self.z_knots) != len(self.z_weights) or len(self.z_knots) < 2:
            raise bad("z_weights", "z_knots and z_weights must have the same length (>= 2)")
        for name in ("bal_bi_fraction", "bal_ai_only_fraction", "oiii_outflow_fraction", "anomaly_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be a fraction in [0, 1]")
        if self.bal_bi_fraction + self.bal_ai_only_fraction > 1.0:
            raise bad("bal_ai_only_fraction", "bal_bi_fraction + bal_ai_only_fraction must be <= 1")
        from desilab.sample.anomalies import ANOMALY_CLASSES

        unknown = set(self.anomaly_weights) - set(ANOMALY_CLASSES)
        if unknown:
            raise bad("anomaly_weights", f"unknown anomaly classes {sorted(unknown)}")
        if self.exptime <= 0:
            raise bad("exptime", "must be positive")

    @classmethod
    def for_scale(cls, scale: str, **overrides: Any) -> QuasarConfig:
        """The defaults for ``tiny`` / ``small`` / ``full``, with optional field overrides."""
        if scale not in SCALE_SIZES:
            raise ConfigError(f"unknown scale {scale!r} (tiny, small, full)", parameter="scale")
        return cls(n_quasars=SCALE_SIZES[scale], **overrides)

    def replace(self, **changes: Any) -> QuasarConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def as_header(self) -> dict[str, Any]:
        """The settings that shape the content, as a JSON-able dict (recorded in truth tables).

        ``write_spectra`` is left out: it changes which files are written, not the tables.
        """
        out = dataclasses.asdict(self)
        out.pop("write_spectra")
        return out
