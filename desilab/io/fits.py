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
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fitsio
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    "read_table_hdu",
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
        last_end = 0
        for hdu in fits:
            end = hdu.get_offsets()["data_end"]
            last_end = max(last_end, end)
            if end > size:
                name = hdu.get_extname() or hdu.get_extnum()
                fits.close()
                raise FormatError(
                    f"truncated: HDU data ends at byte {end} but the file has {size} bytes",
                    file=p,
                    hdu=name,
                )
        # cfitsio silently stops at an HDU whose header is cut off: look for its start
        if size > last_end:
            with p.open("rb") as fh:
                fh.seek(last_end)
                tail = fh.read(9)
            if tail == b"XTENSION=":
                n = len(fits)
                fits.close()
                raise FormatError(
                    f"truncated: the header of HDU {n} (at byte {last_end}) is incomplete", file=p, hdu=n
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


def _units(hdu: fitsio.hdu.TableHDU, hdr: fitsio.FITSHDR | None = None) -> dict[str, str]:
    hdr = hdu.read_header() if hdr is None else hdr
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
        Row indices to read (default all); fitsio reads only those rows, and returns
        them in the order given.

    Returns
    -------
    pyarrow.Table
        Native-endian columns; strings right-stripped; vector columns as fixed-size
        lists; ``unit`` in each field's metadata where the file has TUNITn.
    """
    names = (ext,) if isinstance(ext, str) else tuple(ext)
    with open_fits(path) as fits:
        hdu = require_hdu(fits, *names)
        return read_table_hdu(hdu, columns, rows, file=path)


def read_table_hdu(
    hdu: fitsio.hdu.TableHDU,
    columns: Sequence[str] | None = None,
    rows: Sequence[int] | np.ndarray | None = None,
    *,
    file: str | os.PathLike[str] | None = None,
    header: fitsio.FITSHDR | None = None,
) -> pa.Table:
    """Like :func:`read_table`, for an HDU of an already opened file.

    Readers that take several HDUs from one file use this to avoid re-opening it.
    Whole-column reads of plain binary tables bypass cfitsio's column-by-column
    reader: the rows are streamed once, in chunks, and only the wanted fields are
    kept (see :func:`_read_columns_raw`); everything else goes through fitsio.

    Parameters
    ----------
    hdu
        A fitsio table HDU.
    columns, rows
        As for :func:`read_table`.
    file
        The file's path, for error messages and the streaming reader (default: the
        name fitsio opened).
    header
        The HDU's header if the caller already has it (saves parsing it twice).

    Returns
    -------
    pyarrow.Table
    """
    file = file if file is not None else hdu._filename
    extname = hdu.get_extname() or hdu.get_extnum()
    if hdu.get_exttype() not in ("BINARY_TBL", "ASCII_TBL"):
        raise FormatError("expected a table HDU", file=file, hdu=extname)
    cols = require_columns(hdu, columns, file=file) if columns is not None else None
    hdr = hdu.read_header() if header is None else header
    units = _units(hdu, hdr)
    if rows is None:
        raw = _read_columns_raw(hdu, hdr, cols if cols is not None else hdu.get_colnames(), file)
        if raw is not None:
            return _columns_to_arrow(raw, units)
    try:
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            nrows = hdu.get_nrows()
            if len(rows) and (rows.min() < 0 or rows.max() >= nrows):
                raise FormatError(f"row index out of range (table has {nrows} rows)", file=file, hdu=extname)
            data = hdu.read(columns=cols, rows=rows) if len(rows) else None
        else:
            data = hdu.read(columns=cols)
    except OSError as exc:
        raise FormatError(f"cannot read table: {_cfitsio_msg(exc)}", file=file, hdu=extname) from exc
    except ValueError as exc:
        raise FormatError(f"cannot read table: {exc}", file=file, hdu=extname) from exc
    if data is None:  # zero-row tables or an empty row selection
        dtype = hdu.get_rec_dtype()[0]
        if cols is not None:
            dtype = np.dtype([(c, dtype[c]) for c in cols])
        data = np.zeros(0, dtype=dtype)
    return numpy_to_arrow(np.atleast_1d(data), units)


# --- streaming reader for whole columns of plain binary tables -------------------------

_RAW_CHUNK_BYTES = 32 << 20
_TFORM_SPLIT = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_TFORM_WIDTH = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}
_TFORM_RAW = {"L": "u1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}
# TZERO values that encode unsigned (or signed-byte) integers, and the resulting dtype
_UNSIGNED_TZERO = {"B": (-128, "i1"), "I": (1 << 15, "u2"), "J": (1 << 31, "u4"), "K": (1 << 63, "u8")}


def _read_columns_raw(
    hdu: fitsio.hdu.TableHDU, hdr: fitsio.FITSHDR, cols: Sequence[str], file: str | os.PathLike[str]
) -> dict[str, np.ndarray] | None:
    """Read whole columns by streaming the table rows once; None if not applicable.

    cfitsio reads a column subset one column at a time, re-reading the table for each;
    for catalogs with wide rows that is several times slower than one sequential pass.
    Only fixed-width columns without scaling are handled (L, B, I, J, K, E, D, nA,
    vectors, and the TZERO conventions for unsigned integers); anything else
    (compressed or gzipped files, variable-length, bit, complex, scaled, string-array
    columns) returns None and the caller uses fitsio. The values, dtypes and shapes
    equal what fitsio returns (strings stay bytes; :func:`numpy_to_arrow` decodes).
    """
    path = Path(file)
    if hdu.get_exttype() != "BINARY_TBL" or path.suffix.lower() in (".gz", ".fz", ".bz2", ".z"):
        return None
    if hdr.get("ZTABLE") or not path.is_file():
        return None
    names = hdu.get_colnames()
    try:
        naxis1 = int(hdr["NAXIS1"])
        nrows = int(hdr["NAXIS2"])
    except (KeyError, ValueError):
        return None
    # byte offset of every field in the row, from the TFORMs
    offsets: dict[str, tuple[int, int, str, int]] = {}
    pos = 0
    for i, name in enumerate(names, start=1):
        tform = str(hdr.get(f"TFORM{i}", ""))
        m = _TFORM_SPLIT.match(tform)
        if m is None:
            return None
        repeat = int(m.group(1)) if m.group(1) else 1
        code = m.group(2)
        if code not in "PQ" and tform[m.end() :].strip():
            return None  # e.g. "20A10" (an array of substrings): leave it to fitsio
        if code in "PQ":
            width = 8 if code == "P" else 16
        elif code == "X":
            width = (repeat + 7) // 8
        else:
            width = repeat * _TFORM_WIDTH[code]
        offsets[name] = (pos, repeat, code, i)
        pos += width
    if pos != naxis1:
        return None
    spec = []
    for name in cols:
        off, repeat, code, i = offsets[name]
        if (code not in _TFORM_RAW and code != "A") or repeat == 0:
            return None
        tscal = _header_number(hdr.get(f"TSCAL{i}", 1))
        tzero = _header_number(hdr.get(f"TZERO{i}", 0))
        if tscal != 1 or (tzero != 0 and (code not in _UNSIGNED_TZERO or tzero != _UNSIGNED_TZERO[code][0])):
            return None
        shape: tuple[int, ...] = () if repeat == 1 or code == "A" else (repeat,)
        tdim = hdr.get(f"TDIM{i}")
        if tdim is not None:
            dims = [int(d) for d in re.findall(r"\d+", str(tdim))]
            if code == "A" or len(dims) != 1 or dims[0] != repeat:
                return None  # multi-dimensional cells: leave the reshaping to fitsio
        raw = f"S{repeat}" if code == "A" else _TFORM_RAW[code]
        spec.append((name, off, np.dtype((raw, shape)) if shape else np.dtype(raw), code, tzero))
    by_offset = sorted(spec, key=lambda s: s[1])  # numpy buffers need fields in offset order
    rec = np.dtype(
        {
            "names": [s[0] for s in by_offset],
            "formats": [s[2] for s in by_offset],
            "offsets": [s[1] for s in by_offset],
            "itemsize": naxis1,
        }
    )
    out: dict[str, np.ndarray] = {}
    for name, _, raw_dt, code, tzero in spec:
        shape = raw_dt.shape
        base = raw_dt.base if shape else raw_dt
        if code == "L":
            dt = np.dtype(bool)
        elif tzero:
            dt = np.dtype(_UNSIGNED_TZERO[code][1])
        else:
            dt = base.newbyteorder("=")
        out[name] = np.empty((nrows, *shape), dtype=dt)
    if nrows == 0:
        return out
    start = hdu.get_offsets()["data_start"]
    chunk = max(1, _RAW_CHUNK_BYTES // naxis1)
    buf = np.empty(min(chunk, nrows), dtype=rec)
    with path.open("rb") as fh:
        fh.seek(start)
        i = 0
        while i < nrows:
            k = min(chunk, nrows - i)
            view = buf[:k]
            got = fh.readinto(memoryview(view).cast("B"))
            if got != k * naxis1:
                raise FormatError("truncated table data", file=file, hdu=hdu.get_extname() or hdu.get_extnum())
            for name, _, _dt, code, tzero in spec:
                src = view[name]
                dst = out[name][i : i + k]
                if code == "L":
                    np.equal(src, ord("T"), out=dst)
                elif tzero:
                    bits = src.view(src.dtype.str.replace("i", "u")) if code != "B" else src
                    sign = np.array(1 << (8 * bits.dtype.itemsize - 1), dtype=bits.dtype.newbyteorder("="))
                    dst.view(dst.dtype.str.replace("i", "u"))[...] = bits ^ sign
                else:
                    dst[...] = src
            i += k
    return out


def _header_number(value: Any) -> float | int | None:
    """A numeric header value (fitsio returns integers beyond int64, e.g. 2**63, as text)."""
    if isinstance(value, (int, float)):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return float(str(value).strip())
        except ValueError:
            return None


def _strings_to_arrow(col: np.ndarray, name: str) -> pa.Array:
    """Fixed-width bytes/str column -> Arrow strings, trailing NULs and blanks removed."""
    if col.ndim > 1:
        raise FormatError(f"unsupported string array column with shape {col.shape}", column=name)
    try:
        if col.dtype.kind == "S":
            width = col.dtype.itemsize
            if width == 0 or len(col) == 0:
                return pa.array([""] * len(col), type=pa.string())
            buf = pa.py_buffer(np.ascontiguousarray(col))
            fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(col), [None, buf])
            arr = fixed.cast(pa.binary()).cast(pa.string())
        else:
            arr = pa.array(col, type=pa.string())
        arr = pc.utf8_rtrim(arr, characters="\x00")
        return pc.utf8_rtrim_whitespace(arr)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not valid UTF-8: decode value by value
        flat = col.astype(str) if col.dtype.kind == "S" else col
        return pa.array(np.char.rstrip(flat).tolist(), type=pa.string())


def _column_to_arrow(name: str, col: np.ndarray, unit: str | None) -> tuple[pa.Array, pa.Field]:
    meta: dict[str, str] = {}
    if unit:
        meta["unit"] = unit
    if col.dtype.kind in "SU":
        arr = _strings_to_arrow(col, name)
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
    return arr, pa.field(name, arr.type, metadata=meta or None)


def _columns_to_arrow(columns: dict[str, np.ndarray], units: dict[str, str] | None = None) -> pa.Table:
    units = units or {}
    arrays = []
    fields = []
    for name, col in columns.items():
        arr, fld = _column_to_arrow(name, col, units.get(name))
        arrays.append(arr)
        fields.append(fld)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def numpy_to_arrow(data: np.ndarray, units: dict[str, str] | None = None) -> pa.Table:
    """Convert a structured array (any byte order) to an Arrow table.

    Strings become Arrow strings with trailing blanks stripped (FITS pads with spaces);
    vector columns become fixed-size lists (multi-dimensional ones are flattened per
    row and keep their shape in field metadata ``shape``).
    """
    return _columns_to_arrow({name: data[name] for name in data.dtype.names or ()}, units)


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
