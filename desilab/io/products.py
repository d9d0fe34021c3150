"""The product registry, and the schema-driven table conversion every writer shares.

:func:`load_all` imports every product module so that :data:`desilab.io.schema.PRODUCTS`
is complete (each module registers its golden schemas at import). ``desilab inspect``,
:func:`desilab.io.validate.identify` and the docs call it before looking schemas up.

:func:`conform_table` turns an Arrow table into the structured array a writer hands to
fitsio: the columns of a :class:`~desilab.io.schema.TableHDU` in schema order with the
exact dtypes of their TFORMs, missing ones filled with neutral values (0, ``""``, NaN,
False), extra input columns kept after them.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from desilab.errors import SchemaError
from desilab.io.fits import arrow_to_numpy
from desilab.io.schema import PRODUCTS, Column, ProductSchema, TableHDU

__all__ = ["PRODUCT_MODULES", "conform_table", "load_all", "neutral_value"]

#: Modules under ``desilab.io`` that define and register golden schemas.
PRODUCT_MODULES = ("zcatalog", "fastspecfit", "desivast", "qso", "spectra", "coadd", "redrock", "sdss")

def load_all() -> dict[str, ProductSchema]:
    """Import every product module and return :data:`~desilab.io.schema.PRODUCTS`.

    Returns
    -------
    dict
        Product name -> :class:`~desilab.io.schema.ProductSchema`.

    """
    for name in PRODUCT_MODULES:
        importlib.import_module(f"desilab.io.{name}")
    return PRODUCTS


def neutral_value(column: Column, dtype: np.dtype | None = None) -> object:
    """The fill value for a column missing from a writer's input.

    ``0`` for integers, NaN for floats, ``""`` for strings, ``False`` for logicals.
    """
    dt = np.dtype(dtype) if dtype is not None else column.dtype
    if dt.kind == "b":
        return False
    if dt.kind in "iu":
        return 0
    if dt.kind == "f":
        return np.nan
    return ""


def conform_table(
    table: pa.Table,
    hdu: TableHDU,
    *,
    fill: Mapping[str, object] | None = None,
    omit_unless_given: Collection[str] = (),
    dtypes: Mapping[str, str] | None = None,
    extras: bool = True,
    file: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Convert *table* to a structured array laid out as *hdu* says.

    Parameters
    ----------
    table
        Input columns (matched to schema columns case-insensitively).
    hdu
        The golden table layout.
    fill
        Fill values for specific missing columns (default: :func:`neutral_value`).
    omit_unless_given
        Schema columns written only when present in *table* (e.g. tile-only columns).
    dtypes
        numpy dtypes overriding the TFORM default for some columns (e.g. ``{"ZWARN":
        "i1"}``: TFORM ``B`` with ``TZERO=-128``).
    extras
        Keep input columns that are not in the schema, after the schema columns.
    file
        Output file name, for error messages.

    Returns
    -------
    (numpy.ndarray, list of str)
        The structured array and one TUNIT per field (``""`` when none).

    Raises
    ------
    SchemaError
        A given column cannot be stored losslessly with the schema's TFORM.
    """
    fill = fill or {}
    dtypes = {k.upper(): v for k, v in (dtypes or {}).items()}
    omit = {c.upper() for c in omit_unless_given}
    given = {name.upper(): name for name in table.column_names}
    nrows = table.num_rows
    arrays: list[tuple[str, np.ndarray, str]] = []
    used: set[str] = set()
    for col in hdu.columns:
        dtype = np.dtype(dtypes.get(col.name, col.dtype))
        if col.name in given:
            src = given[col.name]
            used.add(src)
            arr = _to_numpy(table.column(src), col, dtype, file=file, hdu=hdu.extname)
        elif col.name in omit:
            continue
        else:
            value = fill.get(col.name, neutral_value(col, dtype))
            if dtype.kind == "U":
                width = max(dtype.itemsize // 4, len(str(value)))
                arr = np.full((nrows, *col.shape), value, dtype=f"U{width}")
            else:
                arr = np.full((nrows, *col.shape), value, dtype=dtype)
        arrays.append((col.name, arr, col.unit or ""))
    if extras:
        in_schema = {c.name for c in hdu.columns}
        for name in table.column_names:
            if name in used or name.upper() in in_schema:
                continue
            field = table.schema.field(name)
            arr = arrow_to_numpy(table.select([name]))[name]
            unit = (field.metadata or {}).get(b"unit", b"").decode()
            arrays.append((name, arr, unit))
    out = np.zeros(nrows, dtype=[(name, arr.dtype, arr.shape[1:]) for name, arr, _ in arrays])
    for name, arr, _ in arrays:
        out[name] = arr
    return out, [unit for _, _, unit in arrays]


def _to_numpy(chunked: pa.ChunkedArray, col: Column, dtype: np.dtype, *, file: str | None, hdu: str) -> np.ndarray:
    """One Arrow column as numpy with the schema dtype/shape, refusing lossy casts."""
    arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()

    def bad(msg: str) -> SchemaError:
        return SchemaError(msg, file=file, hdu=hdu, column=col.name)

    if dtype.kind == "U":
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            raise bad(f"expected strings for TFORM {col.tform}, got {arr.type}")
        values = pc.fill_null(arr, "").to_pylist()
        if any(not v.isascii() for v in values):
            raise bad("FITS strings must be ASCII")
        width = max([dtype.itemsize // 4, *(len(v) for v in values)])
        return np.array(values, dtype=f"U{width}").reshape(len(values))
    if col.shape:
        (size,) = col.shape
        if pa.types.is_fixed_size_list(arr.type):
            if arr.type.list_size != size:
                raise bad(f"expected {size} values per row (TFORM {col.tform}), got {arr.type.list_size}")
            flat = arr.flatten()
        elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            if len(arr) and not np.all(lengths == size):
                raise bad(f"expected {size} values per row (TFORM {col.tform})")
            flat = arr.flatten()
        else:
            raise bad(f"expected a vector column for TFORM {col.tform}, got {arr.type}")
        values = _cast(_fill_nulls(flat, dtype).to_numpy(zero_copy_only=False), dtype, bad)
        return values.reshape(len(arr), size)
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type) or pa.types.is_boolean(arr.type)):
        raise bad(f"expected numbers for TFORM {col.tform}, got {arr.type}")
    return _cast(_fill_nulls(arr, dtype).to_numpy(zero_copy_only=False), dtype, bad)


def _fill_nulls(arr: pa.Array, dtype: np.dtype) -> pa.Array:
    if arr.null_count == 0:
        return arr
    if dtype.kind == "b":
        value = False
    elif dtype.kind == "f":
        value = float("nan")
        arr = arr.cast(pa.float64()) if not pa.types.is_floating(arr.type) else arr
    else:
        value = 0
    return pc.fill_null(arr, pa.scalar(value, type=arr.type))


def _cast(values: np.ndarray, dtype: np.dtype, bad) -> np.ndarray:
    """Cast, refusing float->int with non-integral values and out-of-range integers."""
    if values.dtype == dtype:
        return values
    if dtype.kind == "b":
        if values.dtype.kind != "b" and not (values.dtype.kind in "iu" and np.isin(values, (0, 1)).all()):
            raise bad(f"expected logicals (or 0/1), got {values.dtype}")
        return values.astype(bool)
    if dtype.kind in "iu":
        if values.dtype.kind == "f" and not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            raise bad(f"cannot store non-integer values as {dtype}")
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise bad(f"values out of range for {dtype}")
        return values.astype(dtype)
    return values.astype(dtype)
