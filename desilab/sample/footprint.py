"""A DESI-like angular footprint: tiles, passes, a completeness mask and bright-star holes.

The real DR1 bright-time footprint is the union of the observed 1.605°-radius tiles of
four offset passes; DR1 was an early snapshot, so coverage is ragged at the edges and has
holes where tiles were not yet observed. DESIVAST ran its void finders inside a HEALPix
completeness mask. This module builds the same structure for the sample sky:

* tile centres on a fixed hexagonal lattice per pass (anchored at RA = Dec = 0, so a
  patch never changes the lattice), kept inside the :class:`~desilab.sample.config.Patch`
  rectangles and observed with probability ``tile_completeness``;
* ``npass``: how many observed tiles cover each HEALPix pixel (NESTED, ``mask_nside``);
* the **observed** footprint (``npass ≥ 1``: galaxies exist there) and the **completeness
  mask** (``npass ≥ mask_min_passes``: the void finders' survey);
* bright-star holes in which no target is selected (MASKBITS ``BRIGHT``), too small to
  matter for the void mask, as in the real data.

Pure functions of the configuration and a random generator; no IO.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import healpy as hp
import numpy as np
from scipy.spatial import cKDTree

from desilab.sample.config import SampleConfig
from desilab.sky.geometry import angle_to_chord, radec_to_unit

__all__ = ["Footprint", "build_footprint", "cap_of"]

#: DESIVAST's cap split (``hbrincon/DESIVAST`` ``select_catalog.py``): NGC = 83° < RA < 304°.
NGC_RA_RANGE = (83.0, 304.0)

#: Bright-star hole density [deg^-2] and radius range [deg] (Tycho-2 stars brighter than
#: ~10 mag number a few per deg²; the Legacy Surveys BRIGHT mask radius is arcminutes).
STAR_DENSITY = 2.0
STAR_RADIUS = (0.01, 0.06)


def cap_of(ra: np.ndarray) -> np.ndarray:
    """``"NGC"``/``"SGC"`` for each RA (DESIVAST convention: NGC = 83° < RA < 304°)."""
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    return np.where((ra > NGC_RA_RANGE[0]) & (ra < NGC_RA_RANGE[1]), "NGC", "SGC")


@dataclass
class Footprint:
    """The angular footprint of a sample sky.

    Attributes
    ----------
    nside
        HEALPix nside of the maps (NESTED).
    npass
        Full-sky int8 map: number of observed tiles covering each pixel.
    min_passes
        Pixels with ``npass >= min_passes`` form the completeness mask.
    tiles
        Structured array of observed tiles: ``TILEID``, ``PASS``, ``RA``, ``DEC``, ``CAP``.
    stars
        Bright-star holes: array (n, 3) of RA, Dec, radius [deg].
    """

    nside: int
    npass: np.ndarray
    min_passes: int
    tiles: np.ndarray
    stars: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))

    # ---- pixel maps ------------------------------------------------------------------
    @cached_property
    def observed_map(self) -> np.ndarray:
        """Boolean map: observed by at least one tile."""
        return self.npass >= 1

    @cached_property
    def mask_map(self) -> np.ndarray:
        """Boolean map: the completeness mask used for void finding."""
        return self.npass >= self.min_passes

    def cap_map(self, which: np.ndarray, cap: str) -> np.ndarray:
        """A full-sky boolean map restricted to one cap's pixels (*which*: a map above)."""
        out = np.zeros_like(which)
        pix = self._cap_pixels(which, cap)
        out[pix] = True
        return out

    def pixels(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """NESTED pixel of each position at :attr:`nside`."""
        return np.asarray(hp.ang2pix(self.nside, ra, dec, nest=True, lonlat=True), dtype=np.int64)

    def observed(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """True where at least one tile was observed."""
        return self.observed_map[self.pixels(ra, dec)]

    def in_mask(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """True inside the completeness mask."""
        return self.mask_map[self.pixels(ra, dec)]

    def passes(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """Number of observed tiles covering each position (pixel resolution)."""
        return self.npass[self.pixels(ra, dec)].astype(np.int64)

    def in_star_hole(self, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """True for positions inside a bright-star hole."""
        ra = np.asarray(ra, dtype=np.float64)
        if len(self.stars) == 0 or ra.size == 0:
            return np.zeros(ra.shape, dtype=bool)
        tree = cKDTree(radec_to_unit(self.stars[:, 0], self.stars[:, 1]))
        u = radec_to_unit(ra, dec)
        dist, idx = tree.query(u, k=4, distance_upper_bound=float(angle_to_chord(STAR_RADIUS[1])))
        radius_chord = np.full(dist.shape, -1.0)
        ok = np.isfinite(dist)
        radius_chord[ok] = angle_to_chord(self.stars[idx[ok], 2])
        return np.any(ok & (dist < radius_chord), axis=-1)

    # ---- areas and geometry ------------------------------------------------------------
    @property
    def pixel_area_deg2(self) -> float:
        """Area of one pixel [deg²]."""
        return float(hp.nside2pixarea(self.nside, degrees=True))

    def _cap_pixels(self, which: np.ndarray, cap: str | None) -> np.ndarray:
        pix = np.flatnonzero(which)
        if cap is None:
            return pix
        ra, _ = hp.pix2ang(self.nside, pix, nest=True, lonlat=True)
        return pix[cap_of(ra) == cap]

    def mask_pixels(self, cap: str | None = None) -> np.ndarray:
        """NESTED pixels of the completeness mask (optionally of one cap)."""
        return self._cap_pixels(self.mask_map, cap)

    def observed_pixels(self, cap: str | None = None) -> np.ndarray:
        """NESTED pixels observed by at least one tile (optionally of one cap)."""
        return self._cap_pixels(self.observed_map, cap)

    def mask_area_deg2(self, cap: str | None = None) -> float:
        """Area of the completeness mask [deg²]."""
        return len(self.mask_pixels(cap)) * self.pixel_area_deg2

    def observed_area_deg2(self, cap: str | None = None) -> float:
        """Area observed by at least one tile [deg²]."""
        return len(self.observed_pixels(cap)) * self.pixel_area_deg2

    def distance_map(self, cap: str | None = None, nside: int = 64) -> np.ndarray:
        """Full-sky map (NESTED, *nside*) of the angular distance [deg] to the nearest
        observed pixel centre of *cap* (0 inside), used to test "near the footprint"."""
        pix = self.observed_pixels(cap)
        ra, dec = hp.pix2ang(self.nside, pix, nest=True, lonlat=True)
        tree = cKDTree(radec_to_unit(ra, dec))
        allpix = np.arange(hp.nside2npix(nside))
        ra_a, dec_a = hp.pix2ang(nside, allpix, nest=True, lonlat=True)
        chord, _ = tree.query(radec_to_unit(ra_a, dec_a), k=1)
        return np.degrees(2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0)))

    def near(self, xyz: np.ndarray, margin: float, dmap: np.ndarray | None = None) -> np.ndarray:
        """True for 3-D points within about *margin* [Mpc/h] of the observed cone.

        A point at distance r is "near" when its direction is within
        ``arcsin(margin / r)`` plus two coarse pixels of an observed pixel centre
        (or r < margin); *dmap* is :meth:`distance_map`.
        """
        dmap = self.distance_map() if dmap is None else dmap
        nside = hp.npix2nside(len(dmap))
        r = np.linalg.norm(xyz, axis=1)
        out = r < margin
        far = ~out
        if far.any():
            pix = hp.vec2pix(nside, xyz[far, 0], xyz[far, 1], xyz[far, 2], nest=True)
            slack = 2.0 * np.degrees(hp.nside2resol(nside)) + np.sqrt(self.pixel_area_deg2)
            theta = np.degrees(np.arcsin(np.clip(margin / r[far], 0.0, 1.0))) + slack
            out[far] = dmap[pix] <= theta
        return out

    def sector(self, cap: str | None = None, pad_deg: float = 2.0) -> tuple[float, float, float, float]:
        """Bounding (ra_lo, ra_hi, dec_lo, dec_hi) of the observed pixels, padded.

        RA may run past 360 (e.g. 330…400) when a cap straddles RA = 0.
        """
        pix = self.observed_pixels(cap)
        ra, dec = hp.pix2ang(self.nside, pix, nest=True, lonlat=True)
        ra = np.asarray(ra)
        # unwrap RA around the largest gap so caps that straddle 0° stay contiguous
        srt = np.sort(ra)
        gaps = np.diff(np.concatenate([srt, [srt[0] + 360.0]]))
        cut = srt[(np.argmax(gaps) + 1) % len(srt)]
        ra_u = np.where(ra < cut, ra + 360.0, ra)
        return (
            float(ra_u.min() - pad_deg),
            float(ra_u.max() + pad_deg),
            float(max(dec.min() - pad_deg, -90.0)),
            float(min(dec.max() + pad_deg, 90.0)),
        )


def _tile_lattice(patch_ra: tuple[float, float], patch_dec: tuple[float, float], spacing: float, n_passes: int):
    """Tile centres of every pass inside an RA/Dec rectangle (fixed global lattice)."""
    out = []
    row_step = spacing * np.sqrt(3.0) / 2.0
    for p in range(n_passes):
        ra_off = (p % 2) * 0.5 * spacing
        dec_off = (p // 2) * row_step / 2.0 + p * 0.13 * spacing
        j0 = int(np.floor((patch_dec[0] - dec_off) / row_step)) - 1
        j1 = int(np.ceil((patch_dec[1] - dec_off) / row_step)) + 1
        for j in range(j0, j1 + 1):
            dec = dec_off + j * row_step
            if not patch_dec[0] <= dec <= patch_dec[1]:
                continue
            step = spacing / max(np.cos(np.radians(dec)), 0.05)
            shift = ra_off + (0.5 * step if j % 2 else 0.0)
            k0 = int(np.floor((patch_ra[0] - shift) / step)) - 1
            k1 = int(np.ceil((patch_ra[1] - shift) / step)) + 1
            for k in range(k0, k1 + 1):
                ra = shift + k * step
                if patch_ra[0] <= ra <= patch_ra[1]:
                    out.append((p, ra % 360.0, dec))
    return out


def build_footprint(cfg: SampleConfig, rng: np.random.Generator) -> Footprint:
    """Lay out tiles, decide which were observed, and build the pass-count map.

    Parameters
    ----------
    cfg
        Sample-sky configuration (patches, tile geometry, mask nside).
    rng
        Random stream of the footprint shard.

    Returns
    -------
    Footprint
    """
    npix = hp.nside2npix(cfg.mask_nside)
    npass = np.zeros(npix, dtype=np.int16)
    rows = []
    radius = np.radians(cfg.tile_radius_deg)
    tileid = 1000
    for patch in cfg.patches:
        centres = _tile_lattice(
            (patch.ra_min, patch.ra_max), (patch.dec_min, patch.dec_max), cfg.tile_spacing_deg, cfg.n_passes
        )
        keep = rng.random(len(centres)) < patch.tile_completeness
        for (p, ra, dec), ok in zip(centres, keep, strict=True):
            tileid += 1
            if not ok:
                continue
            vec = hp.ang2vec(ra, dec, lonlat=True)
            pix = hp.query_disc(cfg.mask_nside, vec, radius, inclusive=False, nest=True)
            npass[pix] += 1
            rows.append((tileid, p, ra, dec, patch.cap))
    tiles = np.array(rows, dtype=[("TILEID", "i8"), ("PASS", "i8"), ("RA", "f8"), ("DEC", "f8"), ("CAP", "U3")])
    npass = np.minimum(npass, 127).astype(np.int8)
    fp = Footprint(nside=cfg.mask_nside, npass=npass, min_passes=cfg.mask_min_passes, tiles=tiles)
    # Bright-star holes: Poisson over the observed area, uniform inside each observed pixel's
    # neighbourhood (positions are jittered pixel centres).
    obs = fp.observed_pixels()
    n_star = rng.poisson(STAR_DENSITY * len(obs) * fp.pixel_area_deg2)
    pick = rng.choice(obs, size=n_star, replace=True) if len(obs) else np.zeros(0, dtype=np.int64)
    sra, sdec = hp.pix2ang(cfg.mask_nside, pick, nest=True, lonlat=True)
    jitter = np.sqrt(fp.pixel_area_deg2) / 2.0
    sdec = np.clip(sdec + rng.uniform(-jitter, jitter, n_star), -90.0, 90.0)
    sra = np.mod(sra + rng.uniform(-jitter, jitter, n_star) / np.maximum(np.cos(np.radians(sdec)), 0.05), 360.0)
    # radius ~ magnitude: a steep power law between the limits
    srad = STAR_RADIUS[0] * (STAR_RADIUS[1] / STAR_RADIUS[0]) ** (rng.random(n_star) ** 2)
    fp.stars = np.column_stack([sra, sdec, srad]) if n_star else np.zeros((0, 3))
    return fp
