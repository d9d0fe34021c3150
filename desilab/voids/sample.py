"""The DESIVAST volume-limited tracer recipe, and the ``extrapolated`` flag for the rest.

Recipe (``hbrincon/DESIVAST`` ``galaxy_catalog/iron.py``, ``select_catalog.py``; see
``desi-formats.md`` §4c), applied per row:

1. survey/program main/bright (when the columns are given);
2. BGS_BRIGHT: ``BGS_TARGET & 2``;
3. ``SPECTYPE == "GALAXY"``;
4. ``ZWARN == 0`` and ``DELTACHI2 > 40``;
5. one row per TARGETID (the first occurrence is kept; later duplicates fail);
6. ``0 < Z ≤ z_max`` (0.24);
7. ``M_r ≤ mag_limit`` (−20) with ``M_r = ABSMAG01_SDSS_R + 0.97 (Z − 0.1)``
   (FastSpecFit h = 1 magnitude, i.e. "M − 5 log h");
8. inside the completeness mask (when given).

Galaxies that fail the recipe can still be classified geometrically (inside a
VoidFinder hole, or in the V² cell of their nearest tracer) but the published void
catalogs say nothing about them: they carry ``EXTRAPOLATED = True``. Counts of each cut
are returned so every run reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["BGS_BRIGHT_BIT", "EVOLUTION_Q", "MAG_LIMIT", "Z_MAX", "TracerSelection", "evolved_absmag", "select_tracers"]

#: BGS_TARGET bit of BGS_BRIGHT (value 2).
BGS_BRIGHT_BIT = 1
#: Evolution correction coefficient in M_r = ABSMAG01_SDSS_R + Q (Z − 0.1).
EVOLUTION_Q = 0.97
#: Magnitude limit of the DESIVAST volume-limited sample (M − 5 log h).
MAG_LIMIT = -20.0
#: Upper redshift of the DESIVAST volume-limited sample.
Z_MAX = 0.24


def evolved_absmag(absmag01_r: np.ndarray, z: np.ndarray, q: float = EVOLUTION_Q) -> np.ndarray:
    """M_r = ABSMAG01_SDSS_R + q (z − 0.1) (h = 1 magnitudes)."""
    return np.asarray(absmag01_r, dtype=np.float64) + q * (np.asarray(z, dtype=np.float64) - 0.1)


@dataclass(frozen=True)
class TracerSelection:
    """Result of :func:`select_tracers`.

    Attributes
    ----------
    tracer
        Boolean per row: in the volume-limited tracer sample.
    m_r
        Evolution-corrected absolute magnitude (NaN where ABSMAG is missing).
    counts
        Rows remaining after each successive cut (ordered as applied), for reports.
    """

    tracer: np.ndarray
    m_r: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def extrapolated(self) -> np.ndarray:
        """True for rows outside the tracer sample (classified by extrapolation)."""
        return ~self.tracer


def select_tracers(
    *,
    targetid: np.ndarray,
    z: np.ndarray,
    absmag01_r: np.ndarray,
    bgs_target: np.ndarray,
    spectype: np.ndarray,
    zwarn: np.ndarray,
    deltachi2: np.ndarray,
    survey: np.ndarray | None = None,
    program: np.ndarray | None = None,
    in_mask: np.ndarray | None = None,
    z_max: float = Z_MAX,
    mag_limit: float = MAG_LIMIT,
    q: float = EVOLUTION_Q,
) -> TracerSelection:
    """Apply the DESIVAST tracer recipe (module docstring) to catalogue columns.

    All array arguments are per row and of equal length; ``survey``/``program``/``in_mask``
    are optional (their cuts are skipped and reported as such when absent).

    Returns
    -------
    TracerSelection
    """
    n = len(targetid)
    counts: dict[str, int] = {"input": n}
    keep = np.ones(n, dtype=bool)

    def cut(name: str, ok: np.ndarray | None) -> None:
        nonlocal keep
        if ok is None:
            counts[name] = -1  # not applied
            return
        keep &= np.asarray(ok, dtype=bool)
        counts[name] = int(keep.sum())

    def _str(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if a.dtype.kind == "S":
            a = np.char.decode(a, "ascii")
        return np.char.strip(a.astype(str))

    main_bright = None
    if survey is not None and program is not None:
        main_bright = (_str(survey) == "main") & (_str(program) == "bright")
    cut("main_bright", main_bright)
    cut("bgs_bright", (np.asarray(bgs_target, dtype=np.int64) & (1 << BGS_BRIGHT_BIT)) != 0)
    cut("spectype_galaxy", _str(spectype) == "GALAXY")
    cut("zwarn0_deltachi2_gt40", (np.asarray(zwarn) == 0) & (np.asarray(deltachi2, dtype=np.float64) > 40.0))
    tid = np.asarray(targetid, dtype=np.int64)
    first = np.zeros(n, dtype=bool)
    cand = np.flatnonzero(keep)
    _, idx = np.unique(tid[cand], return_index=True)
    first[cand[idx]] = True
    cut("unique_targetid", first)
    zz = np.asarray(z, dtype=np.float64)
    cut("z_range", (zz > 0.0) & (zz <= z_max))
    m_r = evolved_absmag(absmag01_r, zz, q)
    with np.errstate(invalid="ignore"):
        cut("mag_limit", np.isfinite(m_r) & (m_r <= mag_limit))
    cut("in_mask", in_mask)
    return TracerSelection(keep, m_r, counts)
