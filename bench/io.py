"""Read-throughput benchmark of desilab.io against astropy (catalogs and coadds).

Usage::

    python bench/io.py [--rows 1000000] [--spectra 500] [--repeat 3] [--tmpdir DIR]

1. Writes a zcatalog-like table (``--rows`` rows, 33 columns including strings and a
   10-element vector) with fitsio, then times reading 5 columns with
   :func:`desilab.io.fits.read_table` and with ``astropy.table.Table.read(path, hdu=...)``
   followed by selecting the 5 columns (how it is usually done).
2. Writes a synthetic healpix coadd of ``--spectra`` spectra with
   :func:`desilab.io.coadd.write_coadd`, then times :func:`~desilab.io.coadd.read_coadd`
   (all bands, resolution included) against ``astropy.io.fits`` reading the same HDUs
   into memory, and a 10% TARGETID selection (ours vs astropy memory-mapped row
   indexing).

Each timing is the best of ``--repeat`` runs in this process (files are in the page
cache after the first run, so this measures decoding, not the disk). Peak memory is
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (it includes the interpreter, the imports
and writing the test files); ``peak_rss_mb_desilab_catalog`` is taken after our catalog
reads and before astropy's. astropy.io.fits returns big-endian arrays as stored, while
desilab returns native-endian ones (the byte swap is included in our timings).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import fitsio
import numpy as np
import pyarrow as pa
from astropy.io import fits as afits
from astropy.table import Table

from desilab.io.coadd import EXP_FIBERMAP_COLUMNS, FIBERMAP_COLUMNS, SCORES_COLUMNS, read_coadd, write_coadd
from desilab.io.fits import read_table
from desilab.io.spectra import DESI_WAVE_GRIDS, Spectra

CATALOG_COLUMNS = ["TARGETID", "Z", "ZWARN", "SPECTYPE", "TARGET_RA"]
_ZCAT_DTYPE = [
    ("TARGETID", "i8"),
    ("SURVEY", "S7"),
    ("PROGRAM", "S6"),
    ("HEALPIX", "i4"),
    ("SPGRPVAL", "i4"),
    ("Z", "f8"),
    ("ZERR", "f8"),
    ("ZWARN", "i8"),
    ("CHI2", "f8"),
    ("COEFF", "f8", (10,)),
    ("NPIXELS", "i8"),
    ("SPECTYPE", "S6"),
    ("SUBTYPE", "S20"),
    ("NCOEFF", "i8"),
    ("DELTACHI2", "f8"),
    ("COADD_FIBERSTATUS", "i4"),
    ("TARGET_RA", "f8"),
    ("TARGET_DEC", "f8"),
    ("PMRA", "f4"),
    ("PMDEC", "f4"),
    ("EBV", "f4"),
    ("FLUX_G", "f4"),
    ("FLUX_R", "f4"),
    ("FLUX_Z", "f4"),
    ("FLUX_W1", "f4"),
    ("FLUX_W2", "f4"),
    ("MASKBITS", "i2"),
    ("PHOTSYS", "S1"),
    ("DESI_TARGET", "i8"),
    ("BGS_TARGET", "i8"),
    ("ZCAT_NSPEC", "i2"),
    ("ZCAT_PRIMARY", "?"),
    ("DESINAME", "S22"),
]


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Smallest wall time of *repeat* calls of *fn* (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def write_catalog(path: Path, nrows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """A zcatalog-like ZCATALOG table written in chunks with fitsio."""
    rng = np.random.default_rng(seed)
    words = {
        "SPECTYPE": [b"GALAXY", b"QSO", b"STAR"],
        "SURVEY": [b"main", b"sv1", b"sv3"],
        "PROGRAM": [b"bright", b"dark"],
        "SUBTYPE": [b"", b"CV", b"WD"],
        "PHOTSYS": [b"N", b"S"],
    }
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        for start in range(0, nrows, chunk):
            n = min(chunk, nrows - start)
            a = np.zeros(n, dtype=_ZCAT_DTYPE)
            for name in a.dtype.names:
                col = a[name]
                if name in words:
                    a[name] = np.array(words[name])[rng.integers(0, len(words[name]), n)]
                elif name == "DESINAME":
                    a[name] = np.char.add(b"DESI J", rng.integers(0, 10**9, n).astype("S9"))
                elif col.dtype.kind == "b":
                    a[name] = rng.random(n) > 0.3
                elif col.dtype.kind in "iu":
                    a[name] = rng.integers(0, 2**15 - 1, col.shape)
                else:
                    a[name] = rng.random(col.shape)
            a["TARGETID"] = np.arange(start, start + n) + 39627000000000000
            if start == 0:
                f.write(a, extname="ZCATALOG")
            else:
                f["ZCATALOG"].append(a)


def _random_table(columns, n: int, rng: np.random.Generator, tids: np.ndarray) -> pa.Table:
    data = {}
    for col in columns:
        if col.name == "TARGETID":
            data[col.name] = pa.array(tids, pa.int64())
        elif col.dtype.kind == "U":
            width = col.dtype.itemsize // 4
            data[col.name] = pa.array(np.array(["X" * width, "Y" * (width // 2)])[rng.integers(0, 2, n)])
        elif col.dtype.kind == "b":
            data[col.name] = pa.array(rng.random(n) > 0.5)
        elif col.dtype.kind in "iu":
            data[col.name] = pa.array(rng.integers(0, 100, n).astype(col.dtype))
        else:
            data[col.name] = pa.array(rng.random(n).astype(col.dtype))
    return pa.table(data)


def make_coadd(nspec: int, seed: int = 1) -> Spectra:
    """Synthetic healpix coadd content with a full-width FIBERMAP and SCORES."""
    rng = np.random.default_rng(seed)
    tids = np.arange(nspec, dtype=np.int64) * 7 + 39627000000000000
    wave = {b: np.linspace(lo, hi, n) for b, (lo, hi, n) in DESI_WAVE_GRIDS.items()}
    bands = list(wave)
    fm_cols = [c for c in FIBERMAP_COLUMNS if c.required or c.name in ("DESINAME", "DESI_TARGET", "BGS_TARGET")]
    return Spectra(
        bands=bands,
        wave=wave,
        flux={b: rng.normal(1, 0.5, (nspec, wave[b].size)).astype(np.float32) for b in bands},
        ivar={b: rng.uniform(0, 5, (nspec, wave[b].size)).astype(np.float32) for b in bands},
        mask={b: (rng.random((nspec, wave[b].size)) < 0.01).astype(np.int32) for b in bands},
        resolution={b: rng.random((nspec, 11, wave[b].size)).astype(np.float32) for b in bands},
        fibermap=_random_table(fm_cols, nspec, rng, tids),
        exp_fibermap=_random_table(EXP_FIBERMAP_COLUMNS, 4 * nspec, rng, np.repeat(tids, 4)),
        scores=_random_table(SCORES_COLUMNS, nspec, rng, tids),
        meta={
            "SPGRP": "healpix",
            "SPGRPVAL": 27247,
            "HPXPIXEL": 27247,
            "HPXNSIDE": 64,
            "HPXNEST": True,
            "SURVEY": "main",
            "PROGRAM": "dark",
        },
    )


def astropy_read_coadd(path: Path) -> dict[str, np.ndarray]:
    """The HDUs read_coadd reads, read into memory with astropy.io.fits."""
    out = {}
    with afits.open(path, memmap=False) as hdul:
        for name in ["FIBERMAP", "SCORES"] + [
            f"{b}_{k}" for b in "BRZ" for k in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION")
        ]:
            out[name] = hdul[name].data
    return out


def astropy_select_coadd(path: Path, tids: np.ndarray) -> dict[str, np.ndarray]:
    """A TARGETID selection with astropy: memory-mapped HDUs indexed by row."""
    out = {}
    with afits.open(path, memmap=True) as hdul:
        rows = np.flatnonzero(np.isin(hdul["FIBERMAP"].data["TARGETID"], tids))
        out["FIBERMAP"] = hdul["FIBERMAP"].data[rows]
        out["SCORES"] = hdul["SCORES"].data[rows]
        for b in "BRZ":
            out[f"{b}_WAVELENGTH"] = np.array(hdul[f"{b}_WAVELENGTH"].data)
            for k in ("FLUX", "IVAR", "MASK", "RESOLUTION"):
                out[f"{b}_{k}"] = np.array(hdul[f"{b}_{k}"].data[rows])
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark and print the results; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="catalog rows (default 1000000)")
    parser.add_argument("--spectra", type=int, default=500, help="spectra in the coadd (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3)")
    parser.add_argument("--tmpdir", type=Path, default=None, help="where to write the test files")
    args = parser.parse_args(argv)
    res: dict[str, float] = {"rows": args.rows, "spectra": args.spectra}
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="desilab-bench-") as tmp:
        tmpdir = Path(tmp)
        cat = tmpdir / "zpix-main-bright.fits"
        t0 = time.perf_counter()
        write_catalog(cat, args.rows)
        print(
            f"catalog: {args.rows} rows, {cat.stat().st_size / 1e6:.0f} MB written in {time.perf_counter() - t0:.1f} s"
        )

        ours = best_of(lambda: read_table(cat, "ZCATALOG", CATALOG_COLUMNS), args.repeat)
        res["peak_rss_mb_desilab_catalog"] = peak_rss_mb()  # before astropy runs
        ref = best_of(lambda: Table.read(cat, hdu="ZCATALOG")[CATALOG_COLUMNS], args.repeat)
        got = read_table(cat, "ZCATALOG", CATALOG_COLUMNS)
        check = Table.read(cat, hdu="ZCATALOG")[CATALOG_COLUMNS]
        assert np.array_equal(got.column("Z").to_numpy(), np.asarray(check["Z"]))
        res["catalog_read_per_s"] = args.rows / ours
        res["catalog_astropy_per_s"] = args.rows / ref
        res["ratio_vs_astropy_table"] = ref / ours
        print(
            f"catalog 5 columns: desilab {ours:.3f} s ({args.rows / ours:,.0f} rows/s), "
            f"astropy Table.read {ref:.3f} s ({args.rows / ref:,.0f} rows/s), ratio {ref / ours:.2f}x"
        )
        res["peak_rss_mb_catalog"] = peak_rss_mb()
        cat.unlink()

        coadd = tmpdir / "coadd-main-dark-27247.fits"
        t0 = time.perf_counter()
        spec = make_coadd(args.spectra)
        write_coadd(coadd, spec)
        del spec
        print(
            f"coadd: {args.spectra} spectra, {coadd.stat().st_size / 1e6:.0f} MB written in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        ours = best_of(lambda: read_coadd(coadd, redrock=False), args.repeat)
        ref = best_of(lambda: astropy_read_coadd(coadd), args.repeat)
        res["coadd_read_per_s"] = args.spectra / ours
        res["coadd_astropy_per_s"] = args.spectra / ref
        res["ratio_vs_astropy_fits"] = ref / ours
        print(
            f"coadd all HDUs: desilab {ours:.3f} s ({args.spectra / ours:,.0f} spectra/s), "
            f"astropy.io.fits {ref:.3f} s ({args.spectra / ref:,.0f} spectra/s), ratio {ref / ours:.2f}x"
        )

        rng = np.random.default_rng(3)
        all_tids = read_coadd(coadd, bands=["b"], resolution=False, scores=False, redrock=False).targetid
        pick = rng.choice(all_tids, max(1, args.spectra // 10), replace=False)
        sel = read_coadd(coadd, targetids=pick, redrock=False)
        assert sel.targetid.tolist() == pick.tolist()
        ours = best_of(lambda: read_coadd(coadd, targetids=pick, redrock=False), args.repeat)
        ref = best_of(lambda: astropy_select_coadd(coadd, pick), args.repeat)
        res["coadd_select10_per_s"] = len(pick) / ours
        res["coadd_select10_astropy_per_s"] = len(pick) / ref
        res["ratio_vs_astropy_fits_select10"] = ref / ours
        print(
            f"coadd 10% by TARGETID: desilab {ours:.3f} s ({len(pick) / ours:,.0f} spectra/s), "
            f"astropy memmap rows {ref:.3f} s ({len(pick) / ref:,.0f} spectra/s), ratio {ref / ours:.2f}x"
        )
    res["peak_rss_mb"] = peak_rss_mb()
    print(
        f"peak RSS {res['peak_rss_mb']:.0f} MB (after desilab catalog reads "
        f"{res['peak_rss_mb_desilab_catalog']:.0f} MB, after astropy's {res['peak_rss_mb_catalog']:.0f} MB)"
    )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
    return res


if __name__ == "__main__":
    main()
