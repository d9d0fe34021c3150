"""Low-level FITS access shared by every product reader and writer.

Only :mod:`desilab.io` touches fitsio / astropy.io.fits. This module gives the readers
four things they all need:

* :func:`open_fits` - open a file after checking it *is* FITS and is not truncated, so
  that a broken file fails with a :class:`~desilab.errors.FormatError` naming the file
  instead of a cfitsio status code deep in a pipeline;
* :func:`require_hdu` / :func:`find_hdu` - HDU lookup by EXTNAME, never by position;
* :func:`read_table` - columns (and rows) of a BINTABLE as an Arrow table, with units in
  the field metadata; fitsio reads only the requested columns and rows, which is why it
  is used here rather than ``astropy.table.Table.read`` (about 2-10x faster on column
  subsets, see ``bench/io.py``);
* :func:`atomic_output` - every output is written under a temporary name and renamed
  only when complete, so a crash never leaves a half-written product.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pyarrow as pa

from desilab.errors import FormatError

__all__ = [
    "FITS_BLOCK",
    "arrow_to_numpy",
    "atomic_output",
    "check_fits_file",
    "find_hdu",
    "hdu_names",
    "numpy_to_arrow",
    "open_fits",
    "read_header",
    "read_table",
    "require_columns",
    "require_hdu",
    "rows_for_targetids",
]

FITS_BLOCK = 2880


def check_fits_file(path: str | os.PathLike[str]) -> Path:
    """Check that *path* exists and starts like a FITS file; return it as a Path.

    Raises
    ------
    FormatError
        If the file is missing, empty, or does not begin with ``SIMPLE  =``.
    """
    p = Path(path)
    if not p.exists():
        raise FormatError("file does not exist", file=p)
    if p.is_dir():
        raise FormatError("is a directory, expected a FITS file", file=p)
    size = p.stat().st_size
    if size == 0:
        raise FormatError("file is empty", file=p)
    with p.open("rb") as fh:
        head = fh.read(80)
    if not head.startswith(b"SIMPLE  ="):
        kind = "gzip-compressed" if head[:2] == b"\x1f\x8b" else "not a FITS file"
        if kind == "gzip-compressed" and p.suffix == ".gz":
            return p  # cfitsio reads .fits.gz transparently (FastSpecFit per-healpix files)
        raise FormatError(f"{kind} (no SIMPLE keyword at byte 0)", file=p)
    return p


def open_fits(path: str | os.PathLike[str], mode: str = "r") -> fitsio.FITS:
    """Open a FITS file for reading after checking it is complete.

    Truncation is detected by comparing each HDU's declared data end with the file
    size (cfitsio itself would only fail when the missing bytes are read).

    Parameters
    ----------
    path
        File to open.
    mode
        ``"r"`` (default) or ``"rw"``.

    Returns
    -------
    fitsio.FITS

    Raises
    ------
    FormatError
        Not FITS, truncated, or unreadable headers.
    """
    p = check_fits_file(path)
    try:
        fits = fitsio.FITS(str(p), mode)
    except OSError as exc:
        raise FormatError(f"cannot be opened as FITS: {_cfitsio_msg(exc)}", file=p) from exc
    if p.suffix != ".gz":
        size = p.stat().st_size
        for hdu in fits:
            end = hdu.get_offsets()["data_end"]
            if end > size:
                name = hdu.get_extname() or hdu.get_extnum()
                fits.close()
                raise FormatError(
                    f"truncated: HDU data ends at byte {end} but the file has {size} bytes",
                    file=p,
                    hdu=name,
                )
    return fits


def _cfitsio_msg(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def hdu_names(fits: fitsio.FITS) -> list[str]:
    """EXTNAMEs of all HDUs in order (``"PRIMARY"`` for an unnamed HDU 0)."""
    names = []
    for i, hdu in enumerate(fits):
        name = hdu.get_extname().strip().upper()
        names.append(name or ("PRIMARY" if i == 0 else f"HDU{i}"))
    return names


def find_hdu(fits: fitsio.FITS, *extnames: str) -> fitsio.hdu.base.HDUBase | None:
    """Return the first HDU whose EXTNAME (case-insensitive) is in *extnames*, or None."""
    wanted = [e.upper() for e in extnames]
    names = hdu_names(fits)
    for name in wanted:
        if name in names:
            return fits[names.index(name)]
    return None


def require_hdu(fits: fitsio.FITS, *extnames: str) -> fitsio.hdu.base.HDUBase:
    """Like :func:`find_hdu` but raise a FormatError naming file and HDU when absent."""
    hdu = find_hdu(fits, *extnames)
    if hdu is None:
        raise FormatError(
            f"missing HDU (file has {', '.join(hdu_names(fits))})",
            file=fits._filename,
            hdu="/".join(extnames),
        )
    return hdu


def read_header(path: str | os.PathLike[str], ext: str | int = 0) -> dict[str, Any]:
    """Read one header as a plain dict (keyword -> value), comments dropped."""
    with open_fits(path) as fits:
        hdu = fits[ext] if isinstance(ext, int) else require_hdu(fits, ext)
        hdr = hdu.read_header()
        return {rec["name"]: rec["value"] for rec in hdr.records() if rec["name"]}


def require_columns(
    hdu: fitsio.hdu.TableHDU, columns: Sequence[str], *, file: str | os.PathLike[str] | None = None
) -> list[str]:
    """Check that *columns* exist in *hdu* (case-insensitive) and return their stored names."""
    stored = hdu.get_colnames()
    upper = {c.upper(): c for c in stored}
    out = []
    for col in columns:
        if col.upper() not in upper:
            raise FormatError(
                "missing column",
                file=file if file is not None else hdu._filename,
                hdu=hdu.get_extname() or hdu.get_extnum(),
                column=col,
            )
        out.append(upper[col.upper()])
    return out


def _units(hdu: fitsio.hdu.TableHDU) -> dict[str, str]:
    hdr = hdu.read_header()
    names = hdu.get_colnames()
    units = {}
    for i, name in enumerate(names, start=1):
        unit = hdr.get(f"TUNIT{i}")
        if unit:
            units[name] = str(unit).strip()
    return units


def rows_for_targetids(
    stored_targetids: np.ndarray, targetids: Sequence[int] | np.ndarray
) -> np.ndarray:
    """Row indices in file order of the requested TARGETIDs (missing ones are skipped)."""
    want = np.asarray(targetids, dtype=np.int64)
    return np.flatnonzero(np.isin(stored_targetids, want))


def read_table(
    path: str | os.PathLike[str],
    ext: str | Sequence[str],
    columns: Sequence[str] | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
) -> pa.Table:
    """Read (some columns and rows of) a FITS binary table into Arrow.

    Parameters
    ----------
    path
        FITS file.
    ext
        EXTNAME, or a sequence of acceptable EXTNAMEs (first present wins).
    columns
        Columns to read (default all). Missing columns raise a FormatError naming them.
    rows
        Row indices to read (default all); fitsio reads only those rows.

    Returns
    -------
    pyarrow.Table
        Native-endian columns; strings right-stripped; vector columns as fixed-size
        lists; ``unit`` in each field's metadata where the file has TUNITn.
    """
    names = (ext,) if isinstance(ext, str) else tuple(ext)
    with open_fits(path) as fits:
        hdu = require_hdu(fits, *names)
        if hdu.get_exttype() not in ("BINARY_TBL", "ASCII_TBL"):
            raise FormatError("expected a table HDU", file=path, hdu=names[0])
        cols = require_columns(hdu, columns, file=path) if columns is not None else None
        units = _units(hdu)
        try:
            if rows is not None:
                rows = np.asarray(rows, dtype=np.int64)
                data = hdu.read(columns=cols, rows=rows) if len(rows) else hdu[cols or hdu.get_colnames()][0:0]
            else:
                data = hdu.read(columns=cols)
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read table: {_cfitsio_msg(exc)}", file=path, hdu=names[0]) from exc
    if data is None:  # zero-row tables
        data = np.zeros(0, dtype=hdu.get_rec_dtype()[0])
    return numpy_to_arrow(np.atleast_1d(data), units)


def numpy_to_arrow(data: np.ndarray, units: dict[str, str] | None = None) -> pa.Table:
    """Convert a structured array (any byte order) to an Arrow table.

    Strings become Arrow strings with trailing blanks stripped (FITS pads with spaces);
    vector columns become fixed-size lists (multi-dimensional ones are flattened per
    row and keep their shape in field metadata ``shape``).
    """
    units = units or {}
    arrays = []
    fields = []
    for name in data.dtype.names or ():
        col = data[name]
        meta: dict[str, str] = {}
        if name in units:
            meta["unit"] = units[name]
        if col.dtype.kind in "SU":
            flat = col.astype(str) if col.dtype.kind == "S" else col
            if col.ndim > 1:
                raise FormatError(f"unsupported string array column with shape {col.shape}", column=name)
            arr = pa.array(np.char.rstrip(flat).tolist(), type=pa.string())
        else:
            native = col.astype(col.dtype.newbyteorder("="), copy=False)
            if native.ndim == 1:
                arr = pa.array(native)
            else:
                inner = int(np.prod(native.shape[1:]))
                if native.ndim > 2:
                    meta["shape"] = ",".join(str(s) for s in native.shape[1:])
                values = pa.array(np.ascontiguousarray(native).reshape(-1))
                arr = pa.FixedSizeListArray.from_arrays(values, inner)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type, metadata=meta or None))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def arrow_to_numpy(table: pa.Table, string_widths: dict[str, int] | None = None) -> np.ndarray:
    """Convert an Arrow table to a structured numpy array suitable for fitsio writing.

    Parameters
    ----------
    table
        Arrow table (columns as produced by :func:`numpy_to_arrow`).
    string_widths
        Fixed FITS widths for string columns (e.g. ``{"SPECTYPE": 6}``); otherwise the
        longest value (at least 1) is used.
    """
    string_widths = string_widths or {}
    cols = []
    dtypes = []
    for field in table.schema:
        col = table.column(field.name).combine_chunks()
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            vals = np.array(col.to_pylist(), dtype=object)
            vals = np.where(vals == None, "", vals)  # noqa: E711  (Arrow nulls)
            width = string_widths.get(field.name) or max(1, max((len(v) for v in vals), default=1))
            arr = vals.astype(f"U{width}")
            dtypes.append((field.name, f"U{width}"))
        elif pa.types.is_fixed_size_list(field.type):
            size = field.type.list_size
            flat = col.flatten().to_numpy(zero_copy_only=False)
            shape: tuple[int, ...] = (size,)
            if field.metadata and b"shape" in field.metadata:
                shape = tuple(int(s) for s in field.metadata[b"shape"].decode().split(","))
            arr = flat.reshape((len(col), *shape))
            dtypes.append((field.name, arr.dtype, shape))
        else:
            arr = col.to_numpy(zero_copy_only=False)
            dtypes.append((field.name, arr.dtype))
        cols.append(arr)
    out = np.zeros(table.num_rows, dtype=dtypes)
    for field, arr in zip(table.schema, cols, strict=True):
        out[field.name] = arr
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to *path*; rename it to *path* only on success.

    The temporary name starts with ``.`` and ends with ``.tmp-<pid>`` so that partial
    files are never mistaken for products; on any exception it is removed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
