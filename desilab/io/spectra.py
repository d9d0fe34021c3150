"""The in-memory spectra container every pipeline uses: :class:`Spectra`.

A :class:`Spectra` holds one or more spectrograph *bands* (DESI arms ``b``, ``r``, ``z``;
``sdss`` for SDSS/BOSS spectra), each with its own wavelength grid, plus the per-target
tables that describe the rows (FIBERMAP, SCORES, REDSHIFTS). Readers fill it:

* DESI coadds: :func:`desilab.io.coadd.read_coadd` (and :func:`~desilab.io.coadd.write_coadd`),
* Redrock tables: :func:`desilab.io.redrock.read_redrock`,
* SDSS ``spec-`` files: :func:`desilab.io.sdss.read_sdss_spec`.

These names are also importable from this module (lazily, to avoid import cycles).

Conventions (DESI DR1, see ``docs/formats/spectra.md``):

* ``wave[band]`` float64, vacuum Angstrom, shape ``(nwave,)``;
* ``flux[band]`` / ``ivar[band]`` float32, shape ``(nspec, nwave)``, flux in
  ``10**-17 erg/(s cm2 Angstrom)`` and ivar in its inverse square;
* ``mask[band]`` int32 SPECMASK bits, 0 = good. Older files store the mask as
  uint32 (BZERO = 2**31); it is reinterpreted as int32 with the same bit pattern, so
  ``mask.view(np.uint32)`` gives back the stored values. Pixels with ``ivar == 0`` are
  unusable whatever their mask;
* ``resolution[band]`` float32 ``(nspec, ndiag, nwave)``: the diagonals of each
  spectrum's band-diagonal resolution matrix (see :meth:`Spectra.resolution_matrix`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse

from desilab.errors import InputError

__all__ = [
    "COMBINED_DWAVE",
    "COMBINED_NWAVE",
    "COMBINED_WAVE_MIN",
    "DESI_WAVE_GRIDS",
    "FLUX_UNIT",
    "IVAR_UNIT",
    "SPECMASK",
    "WAVE_UNIT",
    "Spectra",
    "combined_wave",
    "format_doc",
    "rows_for_targetids_ordered",
]

#: BUNIT of the FLUX (and MODEL) images, exactly as desispec writes it.
FLUX_UNIT = "10**-17 erg/(s cm2 Angstrom)"
#: BUNIT of the IVAR images.
IVAR_UNIT = "10**+34 (s2 cm4 Angstrom2) / erg2"
#: BUNIT of the WAVELENGTH images (vacuum wavelengths).
WAVE_UNIT = "Angstrom"

#: DESI DR1 (iron) per-arm grids: first, last wavelength [Angstrom] and number of pixels.
DESI_WAVE_GRIDS: dict[str, tuple[float, float, int]] = {
    "b": (3600.0, 5800.0, 2751),
    "r": (5760.0, 7620.0, 2326),
    "z": (7520.0, 9824.0, 2881),
}
#: The common "brz" grid of :meth:`Spectra.combined` (FastSpecFit's model grid).
COMBINED_WAVE_MIN = 3600.0
COMBINED_DWAVE = 0.8
COMBINED_NWAVE = 7781

#: desispec SPECMASK bit numbers (desispec ``maskbits.py``); 0 means a good pixel.
SPECMASK: dict[str, int] = {
    "SOMEBADPIX": 0,
    "ALLBADPIX": 1,
    "COSMIC": 2,
    "LOWFLAT": 3,
    "BADFIBERFLAT": 4,
    "BRIGHTSKY": 5,
    "BADSKY": 6,
    "BAD2DFIT": 7,
    "NODATA": 8,
    "BADFIBER": 9,
    "BADCOLUMN": 10,
}

_ALIGN_TOL = 1e-3  # Angstrom: how close an arm pixel must be to a combined-grid pixel
_COMBINE_CHUNK = 128  # spectra per block in combined(), bounds the float64 workspace


def combined_wave() -> np.ndarray:
    """The combined DESI grid: 7781 pixels, 3600.0 to 9824.0 Angstrom in 0.8 Angstrom steps."""
    return COMBINED_WAVE_MIN + COMBINED_DWAVE * np.arange(COMBINED_NWAVE, dtype=np.float64)


def rows_for_targetids_ordered(
    stored: np.ndarray,
    targetids: Sequence[int] | np.ndarray,
    *,
    on_missing: Literal["raise", "skip"] = "raise",
    what: str = "file",
) -> np.ndarray:
    """Row indices of *targetids* in *stored*, in the order the TARGETIDs were asked for.

    Repeated requests are served once. A TARGETID stored in several rows yields all of
    them (in stored order).

    Parameters
    ----------
    stored
        TARGETID of each row.
    targetids
        The wanted TARGETIDs.
    on_missing
        ``"raise"`` (default): an InputError lists TARGETIDs that are not stored;
        ``"skip"``: they are ignored.
    what
        How to name the source in the error message.

    Returns
    -------
    numpy.ndarray
        int64 row indices.
    """
    stored = np.asarray(stored).astype(np.int64, copy=False).ravel()
    wanted = np.asarray(targetids, dtype=np.int64).ravel()
    _, first = np.unique(wanted, return_index=True)
    wanted = wanted[np.sort(first)]
    order = np.argsort(stored, kind="stable")
    srt = stored[order]
    lo = np.searchsorted(srt, wanted, side="left")
    hi = np.searchsorted(srt, wanted, side="right")
    counts = hi - lo
    if on_missing == "raise" and np.any(counts == 0):
        missing = wanted[counts == 0]
        shown = ", ".join(str(t) for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} requested TARGETID(s) not in the {what}: {shown}",
            parameter="targetids",
            hint="pass on_missing='skip' to ignore them",
        )
    if np.all(counts <= 1):
        return order[lo[counts == 1]].astype(np.int64)
    starts = np.repeat(lo, counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return order[starts + within].astype(np.int64)


def _as_rows(rows: Sequence[int] | np.ndarray, nspec: int) -> np.ndarray:
    """Validate a row selection (indices or a boolean mask) against *nspec* rows."""
    arr = np.asarray(rows)
    if arr.dtype == bool:
        if arr.shape != (nspec,):
            raise InputError(f"boolean row mask has shape {arr.shape}, expected ({nspec},)", parameter="rows")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise InputError(f"row indices must be integers, got {arr.dtype}", parameter="rows")
    arr = arr.astype(np.int64).ravel()
    if arr.min() < 0 or arr.max() >= nspec:
        raise InputError(f"row index out of range 0..{nspec - 1}", parameter="rows")
    return arr


def _take_table(table: pa.Table | None, rows: np.ndarray) -> pa.Table | None:
    return None if table is None else table.take(pa.array(rows, type=pa.int64()))


def _slice_extra(value: Any, rows: np.ndarray, nspec: int) -> Any:
    """Row-slice per-spectrum entries of ``Spectra.extra``; leave the rest unchanged."""
    if isinstance(value, np.ndarray) and value.ndim >= 2 and value.shape[0] == nspec:
        return value[rows]
    if isinstance(value, pa.Table) and value.num_rows == nspec:
        return _take_table(value, rows)
    if isinstance(value, dict):
        return {k: _slice_extra(v, rows, nspec) for k, v in value.items()}
    return value


@dataclass(eq=False)
class Spectra:
    """Spectra of ``nspec`` targets in one or more bands, with their per-target tables.

    Parameters
    ----------
    bands
        Band names in file order, e.g. ``["b", "r", "z"]`` (DESI) or ``["sdss"]``.
    wave
        Per band, the wavelength grid, float64 ``(nwave,)``, vacuum Angstrom.
    flux, ivar
        Per band, float32 ``(nspec, nwave)``.
    mask
        Per band, int32 ``(nspec, nwave)`` bitmask (0 = good). Missing bands (or
        ``None``) are filled with zeros. uint32 input is reinterpreted bit for bit.
    resolution
        Per band, float32 ``(nspec, ndiag, nwave)`` resolution-matrix diagonals, or
        ``None`` when not read / not available.
    fibermap
        One row per spectrum (row-matched), with ``TARGETID`` for DESI data; ``None``
        when the file has none (e.g. QuasarNP's test coadd). For SDSS it is SPECOBJ.
    exp_fibermap
        Per-exposure rows (not row-matched), DESI coadds only.
    scores
        The coadd SCORES table, row-matched.
    redshifts
        Redrock REDSHIFTS rows, row-matched to the spectra.
    meta
        The PRIMARY header as a dict.
    extra
        Anything else. Per-spectrum entries are row-sliced by :meth:`select`: arrays
        with ``ndim >= 2`` and ``nspec`` rows, Arrow tables with ``nspec`` rows, and
        dicts of those (e.g. ``extra["model"] = {band: array}``). Others are carried as
        they are.

    Notes
    -----
    Arrays are converted to the documented dtypes (native byte order) on construction;
    inconsistent shapes raise :class:`~desilab.errors.InputError`.
    """

    bands: list[str]
    wave: dict[str, np.ndarray]
    flux: dict[str, np.ndarray]
    ivar: dict[str, np.ndarray]
    mask: dict[str, np.ndarray] | None = None
    resolution: dict[str, np.ndarray] | None = None
    fibermap: pa.Table | None = None
    exp_fibermap: pa.Table | None = None
    scores: pa.Table | None = None
    redshifts: pa.Table | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bands = [str(b) for b in self.bands]
        if not self.bands:
            raise InputError("a Spectra needs at least one band", parameter="bands")
        if len(set(self.bands)) != len(self.bands):
            raise InputError(f"repeated band names {self.bands}", parameter="bands")
        wave_in, flux_in, ivar_in = dict(self.wave), dict(self.flux), dict(self.ivar)
        mask_in = dict(self.mask or {})
        self.wave, self.flux, self.ivar, self.mask = {}, {}, {}, {}
        nspec = None
        for b in self.bands:
            for name, store in (("wave", wave_in), ("flux", flux_in), ("ivar", ivar_in)):
                if b not in store:
                    raise InputError(f"no {name} for band {b!r}", parameter=name)
            w = np.asarray(wave_in[b], dtype=np.float64)
            if w.ndim != 1:
                raise InputError(f"wave[{b!r}] must be 1-D, got shape {w.shape}", parameter="wave")
            f = np.asarray(flux_in[b], dtype=np.float32)
            iv = np.asarray(ivar_in[b], dtype=np.float32)
            if f.ndim != 2 or f.shape[1] != w.size:
                raise InputError(f"flux[{b!r}] has shape {f.shape}, expected (nspec, {w.size})", parameter="flux")
            if iv.shape != f.shape:
                raise InputError(f"ivar[{b!r}] has shape {iv.shape}, flux {f.shape}", parameter="ivar")
            if nspec is None:
                nspec = f.shape[0]
            elif f.shape[0] != nspec:
                raise InputError(
                    f"band {b!r} has {f.shape[0]} spectra, band {self.bands[0]!r} has {nspec}",
                    parameter="flux",
                )
            self.wave[b], self.flux[b], self.ivar[b] = w, f, iv
            self.mask[b] = _as_mask(mask_in.get(b), f.shape, b)
        if self.resolution is not None:
            res = {}
            for b in self.bands:
                if b not in self.resolution:
                    raise InputError(f"no resolution data for band {b!r}", parameter="resolution")
                r = np.asarray(self.resolution[b], dtype=np.float32)
                if r.ndim != 3 or r.shape[0] != nspec or r.shape[2] != self.wave[b].size or r.shape[1] % 2 == 0:
                    raise InputError(
                        f"resolution[{b!r}] has shape {r.shape}, expected ({nspec}, odd ndiag, {self.wave[b].size})",
                        parameter="resolution",
                    )
                res[b] = r
            self.resolution = res
        for name in ("fibermap", "scores", "redshifts"):
            table = getattr(self, name)
            if table is not None:
                if not isinstance(table, pa.Table):
                    raise InputError(f"{name} must be a pyarrow.Table", parameter=name)
                if table.num_rows != nspec:
                    raise InputError(f"{name} has {table.num_rows} rows but there are {nspec} spectra", parameter=name)
        if self.exp_fibermap is not None and not isinstance(self.exp_fibermap, pa.Table):
            raise InputError("exp_fibermap must be a pyarrow.Table", parameter="exp_fibermap")
        self.meta = dict(self.meta or {})
        self.extra = dict(self.extra or {})

    def __len__(self) -> int:
        return self.nspec

    @property
    def nspec(self) -> int:
        """Number of spectra (rows)."""
        return int(self.flux[self.bands[0]].shape[0])

    @property
    def targetid(self) -> np.ndarray | None:
        """TARGETID per spectrum (int64), or None without a fibermap TARGETID column."""
        if self.fibermap is None or "TARGETID" not in self.fibermap.column_names:
            return None
        return np.asarray(self.fibermap.column("TARGETID").to_numpy(), dtype=np.int64)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{b}:{self.wave[b].size}" for b in self.bands)
        parts = [f"nspec={self.nspec}", f"bands=[{shapes}]"]
        parts.append(f"resolution={'yes' if self.resolution is not None else 'no'}")
        for name in ("fibermap", "exp_fibermap", "scores", "redshifts"):
            table = getattr(self, name)
            if table is not None:
                parts.append(f"{name}={table.num_rows}x{table.num_columns}")
        if self.extra:
            parts.append(f"extra={sorted(self.extra)}")
        return f"Spectra({', '.join(parts)})"

    # --- selection -----------------------------------------------------------------

    def select(
        self,
        targetids: Sequence[int] | np.ndarray | None = None,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        on_missing: Literal["raise", "skip"] = "raise",
    ) -> Spectra:
        """A new Spectra with a subset of the spectra.

        Parameters
        ----------
        targetids
            TARGETIDs to keep, returned in the order given (needs a fibermap).
        rows
            Row indices (in the order given) or a boolean mask of length ``nspec``.
        on_missing
            What to do with requested TARGETIDs that are absent (``"raise"`` or ``"skip"``).

        Returns
        -------
        Spectra
            Row-matched arrays and tables are sliced; ``exp_fibermap`` keeps the rows of
            the selected TARGETIDs (in stored order); ``meta`` is copied.
        """
        if (targetids is None) == (rows is None):
            raise InputError("give exactly one of targetids or rows", parameter="targetids/rows")
        if targetids is not None:
            stored = self.targetid
            if stored is None:
                raise InputError("these spectra have no TARGETID (no fibermap)", parameter="targetids")
            sel = rows_for_targetids_ordered(stored, targetids, on_missing=on_missing, what="spectra")
        else:
            sel = _as_rows(rows, self.nspec)
        return self._take(sel)

    def _take(self, sel: np.ndarray) -> Spectra:
        exp = self.exp_fibermap
        tids = self.targetid
        if exp is not None and tids is not None and "TARGETID" in exp.column_names:
            keep = pc.is_in(exp.column("TARGETID"), value_set=pa.array(tids[sel], type=pa.int64()))
            exp = exp.filter(keep)
        return Spectra(
            bands=list(self.bands),
            wave={b: self.wave[b] for b in self.bands},
            flux={b: self.flux[b][sel] for b in self.bands},
            ivar={b: self.ivar[b][sel] for b in self.bands},
            mask={b: self.mask[b][sel] for b in self.bands},
            resolution=None if self.resolution is None else {b: self.resolution[b][sel] for b in self.bands},
            fibermap=_take_table(self.fibermap, sel),
            exp_fibermap=exp,
            scores=_take_table(self.scores, sel),
            redshifts=_take_table(self.redshifts, sel),
            meta=dict(self.meta),
            extra={k: _slice_extra(v, sel, self.nspec) for k, v in self.extra.items()},
        )

    # --- resolution ----------------------------------------------------------------

    def resolution_matrix(self, band: str, i: int) -> scipy.sparse.dia_matrix:
        """The sparse resolution matrix of spectrum *i* in *band*.

        Built as desispec's ``Resolution`` does: ``data[i]`` of shape ``(ndiag, nwave)``
        holds the diagonals with offsets ``ndiag//2 - arange(ndiag)`` (+5 ... -5 for
        ndiag = 11), i.e. ``R[j - offset, j] = data[i][k, j]``.

        Returns
        -------
        scipy.sparse.dia_matrix
            Shape ``(nwave, nwave)``; ``R @ model`` convolves a model sampled on
            ``wave[band]`` to the instrumental resolution.
        """
        if self.resolution is None:
            raise InputError("no resolution data (read with resolution=True)", parameter="resolution")
        if band not in self.resolution:
            raise InputError(f"no band {band!r}; bands are {self.bands}", parameter="band")
        data = self.resolution[band][i]
        ndiag, nwave = data.shape
        offsets = ndiag // 2 - np.arange(ndiag)
        return scipy.sparse.dia_matrix((data, offsets), shape=(nwave, nwave))

    # --- camera combination --------------------------------------------------------

    def combined(self) -> Spectra:
        """One band on the common 0.8 Angstrom grid, 3600-9824 Angstrom (7781 pixels).

        Arms are placed on :func:`combined_wave` (their pixels must coincide with it to
        1e-3 Angstrom) and combined pixel by pixel; outside the b/r and r/z overlaps one
        arm contributes and its values are copied exactly. Rules per combined pixel,
        over the contributing arm pixels k, with "good" meaning ``ivar_k > 0``,
        ``mask_k == 0`` and finite flux and ivar:

        * some good: ``flux = sum(ivar_k f_k) / sum(ivar_k)`` and ``ivar = sum(ivar_k)``
          over the *good* ones; ``mask = 0`` (the pixel is good if any arm is good);
        * none good: the same sums over the pixels with finite ``ivar_k > 0`` (masked
          ones included, so a lone masked pixel keeps its values); if there are none,
          ``ivar = 0`` and flux is the plain mean; ``mask`` = bitwise OR of the
          contributing masks;
        * no arm covers it (a band not read): ``flux = ivar = 0``, ``mask = NODATA``.

        This differs from ``desispec.coaddition.coadd_cameras``, which weights by ivar
        whatever the mask and ORs the masks in the overlaps. Resolution data is *not*
        combined (``resolution`` is None): fit models per arm with
        :meth:`resolution_matrix` when the line-spread function matters.

        Returns
        -------
        Spectra
            A single band named after the arms in wavelength order (e.g. ``"brz"``),
            sharing the tables and ``extra`` (per-band extras keep their arm keys).
        """
        grid = combined_wave()
        order = sorted(self.bands, key=lambda b: float(self.wave[b][0]))
        placed = []
        for b in order:
            w = self.wave[b]
            i0 = int(np.rint((w[0] - COMBINED_WAVE_MIN) / COMBINED_DWAVE))
            i1 = i0 + w.size
            if i0 < 0 or i1 > COMBINED_NWAVE or not np.allclose(w, grid[i0:i1], rtol=0, atol=_ALIGN_TOL):
                raise InputError(
                    f"band {b!r} ({w[0]:.2f}-{w[-1]:.2f} A, {w.size} px) is not on the combined "
                    f"{COMBINED_DWAVE} A grid {COMBINED_WAVE_MIN}-{grid[-1]:.1f} A",
                    parameter="bands",
                )
            placed.append((b, i0, i1))
        nspec = self.nspec
        flux = np.zeros((nspec, COMBINED_NWAVE), dtype=np.float32)
        ivar = np.zeros((nspec, COMBINED_NWAVE), dtype=np.float32)
        mask = np.zeros((nspec, COMBINED_NWAVE), dtype=np.int32)
        for start in range(0, nspec, _COMBINE_CHUNK):
            stop = min(start + _COMBINE_CHUNK, nspec)
            f_out, iv_out, m_out = self._combine_block(placed, start, stop)
            flux[start:stop], ivar[start:stop], mask[start:stop] = f_out, iv_out, m_out
        name = "".join(b for b, _, _ in placed)
        return Spectra(
            bands=[name],
            wave={name: grid},
            flux={name: flux},
            ivar={name: ivar},
            mask={name: mask},
            resolution=None,
            fibermap=self.fibermap,
            exp_fibermap=self.exp_fibermap,
            scores=self.scores,
            redshifts=self.redshifts,
            meta=dict(self.meta),
            extra=dict(self.extra),
        )

    def _combine_block(
        self, placed: list[tuple[str, int, int]], start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = stop - start
        shape = (n, COMBINED_NWAVE)
        num_good = np.zeros(shape)
        den_good = np.zeros(shape)
        num_pos = np.zeros(shape)
        den_pos = np.zeros(shape)
        sum_f = np.zeros(shape)
        count = np.zeros(COMBINED_NWAVE, dtype=np.int32)
        mask_or = np.zeros(shape, dtype=np.int32)
        for b, i0, i1 in placed:
            f = self.flux[b][start:stop].astype(np.float64)
            iv = self.ivar[b][start:stop].astype(np.float64)
            m = self.mask[b][start:stop]
            with np.errstate(invalid="ignore"):
                pos = np.isfinite(f) & np.isfinite(iv) & (iv > 0)
            good = pos & (m == 0)
            wf = np.where(pos, iv * np.where(pos, f, 0.0), 0.0)
            wi = np.where(pos, iv, 0.0)
            cols = slice(i0, i1)
            num_pos[:, cols] += wf
            den_pos[:, cols] += wi
            num_good[:, cols] += np.where(good, wf, 0.0)
            den_good[:, cols] += np.where(good, wi, 0.0)
            sum_f[:, cols] += f
            count[i0:i1] += 1
            mask_or[:, cols] |= m
        covered = count > 0
        any_good = den_good > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_f = np.where(covered, sum_f / np.maximum(count, 1), 0.0)
            f_out = np.where(any_good, num_good / den_good, np.where(den_pos > 0, num_pos / den_pos, mean_f))
        iv_out = np.where(any_good, den_good, den_pos)
        m_out = np.where(any_good, 0, mask_or).astype(np.int32)
        m_out[:, ~covered] = 1 << SPECMASK["NODATA"]
        return f_out.astype(np.float32), iv_out.astype(np.float32), m_out


def _as_mask(mask: np.ndarray | None, shape: tuple[int, int], band: str) -> np.ndarray:
    """int32 mask of *shape*: zeros when absent, uint32 reinterpreted bit for bit."""
    if mask is None:
        return np.zeros(shape, dtype=np.int32)
    m = np.asarray(mask)
    if m.shape != shape:
        raise InputError(f"mask[{band!r}] has shape {m.shape}, flux {shape}", parameter="mask")
    if m.dtype.kind == "b":
        return m.astype(np.int32)
    if m.dtype.kind not in "iu":
        raise InputError(f"mask[{band!r}] must be integer, got {m.dtype}", parameter="mask")
    m = m.astype(m.dtype.newbyteorder("="), copy=False)
    if m.dtype == np.int32:
        return m
    if m.dtype == np.uint32:
        return m.view(np.int32)
    if m.size and (m.min() < np.iinfo(np.int32).min or m.max() > np.iinfo(np.uint32).max):
        raise InputError(f"mask[{band!r}] values do not fit in 32 bits", parameter="mask")
    return m.astype(np.int64).astype(np.uint32).view(np.int32)


DOC_PREAMBLE = """# Spectra: DESI coadds, Redrock files, SDSS spec files

Files: DESI healpix coadds `coadd-SURVEY-PROGRAM-HPX.fits` and tile coadds
`coadd-PETAL-TILEID-thruNIGHT.fits` (same layout; the FIBERMAP carries tile columns), the
Redrock files beside them (`redrock-*.fits`), and SDSS/BOSS `spec-PLATE-MJD-FIBER.fits`.
Modules: `desilab.io.spectra` (the `Spectra` container), `desilab.io.coadd`,
`desilab.io.redrock`, `desilab.io.sdss`. This page is generated
(`desilab.io.spectra.format_doc()`); a test fails when it is out of date.

## The `Spectra` container

One object per file (or selection), used by every pipeline:

| field | type | notes |
|---|---|---|
| `bands` | list of str | `["b", "r", "z"]` (DESI, file order) or `["sdss"]` |
| `wave[band]` | float64 `(nwave,)` | vacuum Angstrom |
| `flux[band]`, `ivar[band]` | float32 `(nspec, nwave)` | `10**-17 erg/(s cm2 Angstrom)` and its inverse square |
| `mask[band]` | int32 `(nspec, nwave)` | SPECMASK bits (SDSS: `and_mask`), 0 = good; zeros when the file has no MASK |
| `resolution[band]` | float32 `(nspec, ndiag, nwave)` or None | None when not read or absent |
| `fibermap` | Arrow table or None | row-matched; None for files without FIBERMAP (QuasarNP test file) |
| `exp_fibermap` | Arrow table or None | per exposure; read only with `exp_fibermap=True` |
| `scores` | Arrow table or None | SCORES, row-matched |
| `redshifts` | Arrow table or None | Redrock REDSHIFTS, row-matched by TARGETID |
| `meta` | dict | PRIMARY header |
| `extra` | dict | `model` (`{band: array}`), `extra_catalog`, SDSS `wdisp`/`or_mask`/`sky`/`spzline` |

`targetid` (int64 array or None), `len()`, `select(targetids=None, rows=None)` (requested
order; `exp_fibermap` filtered by TARGETID; per-spectrum `extra` entries sliced).

**MASK dtype.** Current files store MASK as int32; iron-era files as uint32 (BITPIX 32,
`BZERO = 2**31`). Both are returned as int32 *with the same bit pattern*:
`mask.view(np.uint32)` gives the stored unsigned values back, and `mask & (1 << bit)`
works the same for both.

**`resolution_matrix(band, i)`** returns `scipy.sparse.dia_matrix((data[i], offsets),
shape=(nwave, nwave))` with `offsets = ndiag//2 - arange(ndiag)` (+5 ... -5), i.e.
`R[j - offset, j] = data[i][k, j]`, exactly as `desispec.resolution.Resolution`
(tested equal on a real file).

**`combined()`** returns one band (named after the arms, e.g. `"brz"`) on the common grid
3600.0 + 0.8 k Angstrom, k = 0 ... 7780 (7781 pixels, FastSpecFit's model grid). Arms
must lie on that grid (to 1e-3 Angstrom). Per combined pixel, over the contributing arm
pixels, "good" meaning `ivar > 0`, `mask == 0` and finite flux and ivar:

- some good: `flux = sum(ivar * f) / sum(ivar)`, `ivar = sum(ivar)` over the good ones, `mask = 0`
  (a combined pixel is good if any arm pixel is good);
- none good: the same sums over the pixels with finite `ivar > 0` (so a lone masked pixel
  keeps its values), plain mean flux and `ivar = 0` if there are none, and
  `mask` = OR of the contributing masks;
- no arm covers the pixel (a band not read): `flux = ivar = 0`, `mask = NODATA` (bit 8).

Outside the b/r (5760-5800 A) and r/z (7520-7620 A) overlaps one arm contributes and its
values are copied exactly. `desispec.coaddition.coadd_cameras` weights by ivar whatever
the mask and ORs the masks; both agree when nothing is masked (tested). Resolution data
is **not** combined: fit per arm with `resolution_matrix` when the line-spread function
matters.

## Reading

`read_coadd(path, *, targetids=None, rows=None, bands=None, resolution=True,
exp_fibermap=False, redrock="auto", scores=True, models=False, on_missing="raise")`:

- HDUs are found by EXTNAME; image dimensions are checked against each other and against
  the FIBERMAP row count from the headers before any data is read (a mismatch raises
  `FormatError` naming file and HDU). Files without FIBERMAP, MASK or RESOLUTION (the
  QuasarNP test file) are read.
- `targetids`: FIBERMAP TARGETID is read first, then only the matching image rows,
  returned in the order asked (like `desispec.io.read_spectra`). Rows are read as
  contiguous runs (gaps of up to 2 rows are read through), straight from the file and
  byte-swapped into native arrays, several HDUs at once in up to 4 threads; compressed
  images and `.gz` files go through fitsio.
  Unknown TARGETIDs raise `InputError` unless `on_missing="skip"`.
- `resolution=False` skips the RESOLUTION HDUs (about 80% of the bytes).
- `redrock="auto"` uses a REDSHIFTS HDU in the file if there is one, else the
  `redrock-*` file beside `coadd-*` if it exists, matching rows by TARGETID; a TARGETID
  missing (or repeated) in the Redrock file is a `FormatError` naming the Redrock file,
  HDU and column. Pass a path to use another file, `False` for none.
- Table keywords (SURVEY, PROGRAM, HPXPIXEL, DEPNAMnn, ...) are kept in each Arrow table's
  schema metadata (`fits_header`, JSON) so that writers can put them back; units are in
  the field metadata (`unit`).

`read_redrock(path, *, targetids=None, columns=None, on_missing="raise")` returns the
REDSHIFTS table (`ZBEST` accepted for old files), TARGETID selection as above.

`read_sdss_spec(path)` returns band `"sdss"`: `wave = 10**loglam` (float64, vacuum),
`flux`, `ivar`, `mask = and_mask` (SDSS SPPIXMASK bits, not DESI SPECMASK),
`fibermap` = the SPECOBJ row (SPALL in BOSS files), `redshifts` = that row in DESI names
(`Z`, `ZERR` <- `Z_ERR`, `ZWARN` <- `ZWARNING`, `SPECTYPE` <- `CLASS`, `SUBTYPE` <-
`SUBCLASS`), `extra["wdisp"]` (1, nwave): the Gaussian sigma of the line-spread function
in pixels of 1e-4 dex, which the pipelines need for instrumental broadening
(`wdisp_to_kms`: 1 pixel = 69.03 km/s; `wdisp_to_angstrom(wave, wdisp)`),
`extra["or_mask"]`, `extra["sky"]`, `extra["model"]["sdss"]` (SDSS best-fit model) and
`extra["spzline"]` (SPZLINE table). Per-exposure HDUs are never read; no resolution
matrix.

## Writing

`write_coadd(path, spectra, *, include_redshifts=False)` writes desispec's layout:
PRIMARY (`spectra.meta`, structural keywords dropped, `LONGSTRN` added; use
`healpix_header(survey, program, healpix)` for SPGRP, SPGRPVAL, HPXPIXEL, HPXNSIDE,
HPXNEST, SURVEY, PROGRAM), FIBERMAP, EXP_FIBERMAP, then per band WAVELENGTH (f8,
`BUNIT Angstrom`), FLUX (f4, `10**-17 erg/(s cm2 Angstrom)`), IVAR (f4,
`10**+34 (s2 cm4 Angstrom2) / erg2`), MASK (int32, no BZERO), RESOLUTION (f4), MODEL
(when `extra["model"]`), SCORES, EXTRA_CATALOG, and REDSHIFTS only on request (real
healpix coadds keep redshifts in `redrock-*`).

`write_redrock(path, redshifts, fibermap, tsnr2, header, *, exp_fibermap=None)` writes
PRIMARY (RRVER, TEMNAMnn, ... as given), REDSHIFTS, FIBERMAP, EXP_FIBERMAP, TSNR2, with
the tables checked to be row-matched by TARGETID.

Both writers: columns keep the input order and get the schema TFORMs (strings padded to
the schema width, a longer value is a `SchemaError`; integer casts must be lossless);
required schema columns that the input lacks are added after their schema predecessor
with neutral values (0, NaN, "", False) so the file has the golden layout; TUNITs are
the schema's for coadds (as in current productions; iron files have none) and none for
Redrock (Redrock writes none); keywords read with a table are written back. Output goes
through `atomic_output` and is byte-deterministic: no dates, no CHECKSUM/DATASUM (the
real files have them, with a timestamp). Re-writing the real loa healpix coadd gives the
same HDUs, columns, TFORMs, TUNITs, keywords and data.

## Verified and assumed

- **Verified** on the four real DESI files (iron SV1 tile coadd + Redrock 0.17.0, loa
  healpix coadd + Redrock 0.20.2), the QuasarNP test coadd and two SDSS spec files:
  readers equal `astropy.io.fits` array for array (values and dtypes); the golden
  schemas' HDUs, dtypes, BUNITs, TFORMs and (where present) TUNITs match; the content
  checks pass. Against desispec 0.70: files written by `desispec.io.write_spectra` read
  correctly, our files read back with `desispec.io.read_spectra` unchanged, resolution
  matrices equal `Resolution`.
- **Assumed** (documented, not seen in a real file): uint32 MASK with BZERO (iron
  datamodel; tested on a file we wrote with astropy), tile-compressed MASK HDUs, REDSHIFTS/
  EXTRA_CATALOG/MODEL HDUs inside a coadd, BOSS `SPALL` in place of `SPECOBJ`.
  `STD_FIBER_RA/DEC` carry TUNIT `deg` but desispec computes them in arcsec.
  SDSS-V spec files (upper-case columns, `WRESL` instead of `wdisp`) are not supported.

## Performance (`python bench/io.py`)

@BENCH@
"""

BENCH_TEXT = """Defaults: 5 of 33 columns of a 1,000,000-row zcatalog-like table (287 MB); a
500-spectrum healpix coadd (224 MB) read whole (all bands, resolution included) and by a
10% TARGETID selection. Best of 3 in one process, files in the page cache. Five runs on
the development machine (2 CPUs shared with other jobs, so the spread is large):

| measurement | desilab | astropy | ratio |
|---|---|---|---|
| catalog, 5 columns | 2.0-4.9 M rows/s | 0.29-0.62 M rows/s (`Table.read` then select) | 5.0-9.4x |
| coadd, everything | 1,580-3,540 spectra/s | 1,330-2,800 spectra/s (`fits.open(memmap=False)`) | 0.9-1.6x |
| coadd, 10% by TARGETID | 530-1,130 spectra/s | 190-330 spectra/s (memmap + row indexing) | 2.3-3.4x |

astropy returns the images big-endian as stored; desilab's figures include the byte swap
to native arrays. Peak RSS: 205 MB after the desilab catalog reads (interpreter and
imports included), 820-1,150 MB once astropy has read the same table.
"""


def format_doc() -> str:
    """The content of ``docs/formats/spectra.md`` (generated from the schemas)."""
    from desilab.io.coadd import COADD_SCHEMA
    from desilab.io.redrock import REDROCK_SCHEMA
    from desilab.io.sdss import SDSS_SPEC_SCHEMA
    from desilab.io.validate import schema_markdown

    parts = [DOC_PREAMBLE.replace("@BENCH@", BENCH_TEXT)]
    parts += [schema_markdown(s) for s in (COADD_SCHEMA, REDROCK_SCHEMA, SDSS_SPEC_SCHEMA)]
    return "\n".join(parts)


def __getattr__(name: str) -> Any:  # lazy re-exports (PEP 562), see module docstring
    if name in ("read_coadd", "write_coadd"):
        from desilab.io import coadd

        return getattr(coadd, name)
    if name in ("read_redrock", "write_redrock"):
        from desilab.io import redrock

        return getattr(redrock, name)
    if name == "read_sdss_spec":
        from desilab.io import sdss

        return sdss.read_sdss_spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
