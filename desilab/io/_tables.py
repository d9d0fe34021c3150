"""Helpers shared by the spectra readers/writers: table HDUs <-> Arrow with schema checks.

Private to :mod:`desilab.io`. Reading keeps each table's own header keywords (minus the
structural ones) in the Arrow schema metadata under ``fits_header`` so that a writer
can put them back; writing coerces columns to the golden schema's TFORMs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import fitsio
import numpy as np
import pyarrow as pa

from desilab.errors import FormatError, SchemaError
from desilab.io.fits import arrow_to_numpy, read_table_hdu
from desilab.io.schema import Column, TableHDU

__all__ = [
    "HEADER_META_KEY",
    "header_dict",
    "read_table_with_header",
    "table_header",
    "table_to_fits",
    "user_keywords",
    "write_table",
]

#: Arrow schema-metadata key holding a table HDU's own keywords (JSON object).
HEADER_META_KEY = b"fits_header"

_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|CHECKSUM|DATASUM"
    r"|BZERO|BSCALE|BUNIT|THEAP|ZTABLE|ZIMAGE|Z[A-Z]+\d*|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|COMM|DISP)\d+"
    r"|COMMENT|HISTORY|CONTINUE)$"
)


def header_dict(hdr: fitsio.FITSHDR) -> dict[str, Any]:
    """All keywords of a header as a dict (COMMENT/HISTORY dropped, long strings joined)."""
    out: dict[str, Any] = {}
    for rec in hdr.records():
        name = rec.get("name")
        if not name or name in ("COMMENT", "HISTORY", "CONTINUE"):
            continue
        out[name] = rec.get("value")
    return out


def user_keywords(header: dict[str, Any]) -> dict[str, Any]:
    """The keywords of *header* that are not structural (what a writer may copy)."""
    return {k: v for k, v in header.items() if not _STRUCTURAL.match(k.upper())}


def read_table_with_header(
    hdu: fitsio.hdu.TableHDU,
    *,
    rows: np.ndarray | None = None,
    columns: Sequence[str] | None = None,
    file: str | os.PathLike[str] | None = None,
) -> pa.Table:
    """Read a table HDU (see :func:`desilab.io.fits.read_table_hdu`) keeping its keywords."""
    hdr = hdu.read_header()
    table = read_table_hdu(hdu, columns, rows, file=file, header=hdr)
    keys = user_keywords(header_dict(hdr))
    return table.replace_schema_metadata({HEADER_META_KEY: json.dumps(keys, default=str).encode()})


def table_header(table: pa.Table) -> dict[str, Any]:
    """The keywords stored by :func:`read_table_with_header` (empty dict if none)."""
    meta = table.schema.metadata or {}
    raw = meta.get(HEADER_META_KEY)
    return json.loads(raw) if raw else {}


def _check_strings(table: pa.Table, widths: dict[str, int], extname: str) -> None:
    for name, width in widths.items():
        if name not in table.column_names:
            continue
        col = table.column(name)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise SchemaError(f"expected a string column ({width}A), got {col.type}", hdu=extname, column=name)
        lengths = [len(v) for v in col.to_pylist() if v is not None]
        if lengths and max(lengths) > width:
            raise SchemaError(
                f"value of {max(lengths)} characters does not fit TFORM {width}A", hdu=extname, column=name
            )


def _coerce(arr: np.ndarray, col: Column, extname: str) -> np.ndarray:
    """Cast a column to the schema's dtype/shape, refusing lossy integer casts."""
    want = col.dtype
    if want.kind == "U":
        return arr
    shape = col.shape
    if arr.shape[1:] != shape:
        raise SchemaError(
            f"cell shape {arr.shape[1:]} but TFORM {col.tform} needs {shape}", hdu=extname, column=col.name
        )
    if arr.dtype == want:
        return arr
    if want.kind == "b":
        if arr.dtype.kind in "iu" and np.all((arr == 0) | (arr == 1)):
            return arr.astype(bool)
        raise SchemaError(f"cannot store {arr.dtype} as logical (L)", hdu=extname, column=col.name)
    if want.kind in "iu":
        if arr.dtype.kind not in "iub":
            raise SchemaError(f"cannot store {arr.dtype} as {col.tform}", hdu=extname, column=col.name)
        cast = arr.astype(want)
        if not np.array_equal(cast.astype(np.int64), arr.astype(np.int64)):
            raise SchemaError(f"values do not fit TFORM {col.tform}", hdu=extname, column=col.name)
        return cast
    if want.kind == "f" and arr.dtype.kind in "fiub":
        return arr.astype(want)
    raise SchemaError(f"cannot store {arr.dtype} as {col.tform}", hdu=extname, column=col.name)


def _output_order(given: list[str], schema: TableHDU, missing: list[str]) -> list[str]:
    """*given* order, with each missing schema column placed after its schema predecessor."""
    order = list(given)
    position = {c.name: i for i, c in enumerate(schema.columns)}
    for name in sorted(missing, key=position.__getitem__):
        before = [c.name for c in schema.columns[: position[name]] if c.name in order]
        at = order.index(before[-1]) + 1 if before else 0
        order.insert(at, name)
    return order


def table_to_fits(
    table: pa.Table,
    schema: TableHDU | None,
    *,
    units: bool,
    required: Sequence[str] = ("TARGETID",),
    fill_missing: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Structured array and TUNIT list for writing *table* as the HDU *schema*.

    Columns keep the input order. Columns known to the schema get its TFORM (strings
    padded to the schema width, numbers cast when lossless for integers); other
    columns are written as they are. With *fill_missing*, required schema columns
    absent from *table* are added (after their schema predecessor) with the neutral
    values of :func:`desilab.io.products.neutral_value` (0, NaN, "", False), so that
    the file has the golden layout. TUNITs come from the schema (or, for unknown
    columns, the Arrow field metadata) when *units* is True; otherwise none are
    written (Redrock files carry none).

    Raises
    ------
    SchemaError
        A column of *required* is missing or a value does not fit its TFORM.
    """
    from desilab.io.products import neutral_value

    extname = schema.extname if schema is not None else None
    known = {c.name: c for c in schema.columns} if schema is not None else {}
    for name in required:
        if name not in table.column_names:
            raise SchemaError("missing required column", hdu=extname, column=name)
    widths = {n: c.dtype.itemsize // 4 for n, c in known.items() if c.dtype.kind == "U"}
    _check_strings(table, widths, extname or "")
    plain = table.replace_schema_metadata(None)
    arr = arrow_to_numpy(plain, string_widths={k: v for k, v in widths.items() if k in table.column_names})
    cols = {}
    for name in arr.dtype.names or ():
        cols[name] = _coerce(arr[name], known[name], extname or "") if name in known else arr[name]
    field_units = {f.name: f.metadata[b"unit"].decode() for f in table.schema if f.metadata and b"unit" in f.metadata}
    missing = []
    if fill_missing and schema is not None:
        missing = [c.name for c in schema.columns if c.required and c.name not in cols]
        for name in missing:
            col = known[name]
            cols[name] = np.full((len(arr), *col.shape), neutral_value(col), dtype=col.dtype)
    order = _output_order(list(arr.dtype.names or ()), schema, missing) if missing else list(cols)
    out = np.zeros(len(arr), dtype=[(n, cols[n].dtype, cols[n].shape[1:]) for n in order])
    for n in order:
        out[n] = cols[n]
    unit_list = []
    for name in order:
        unit = ""
        if units:
            unit = (known[name].unit or "") if name in known else field_units.get(name, "")
        unit_list.append(unit)
    return out, unit_list


def write_table(
    fits: fitsio.FITS,
    table: pa.Table,
    extname: str,
    schema: TableHDU | None,
    *,
    units: bool,
    required: Sequence[str] = ("TARGETID",),
    extra_keys: dict[str, Any] | None = None,
) -> None:
    """Append *table* as BINTABLE *extname* (keywords from its metadata, then *extra_keys*)."""
    data, unit_list = table_to_fits(table, schema, units=units, required=required)
    keys = user_keywords(table_header(table))
    keys.update(extra_keys or {})
    hdr = [{"name": k, "value": v} for k, v in keys.items()]
    try:
        fits.write(data, extname=extname, units=unit_list, header=hdr or None)
    except (OSError, ValueError, TypeError) as exc:
        raise FormatError(f"cannot write table: {exc}", hdu=extname) from exc
