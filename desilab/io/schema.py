"""Golden schemas: the expected layout of every DR1 product, as data.

One definition feeds the readers (which columns exist, their dtypes), the writers (TFORM,
TUNIT, header keywords), ``desilab inspect`` (validation) and the docs. Each product's
schema lives in its reader module (``zcatalog.py``, ``spectra.py``...) and registers
itself in :data:`PRODUCTS` via :func:`register`.

TFORM letters follow the FITS standard: ``L`` bool, ``B`` uint8, ``I`` int16,
``J`` int32, ``K`` int64, ``E`` float32, ``D`` float64, ``nA`` string of width n,
``nX`` a vector of n elements of type X.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "PRODUCTS",
    "Column",
    "ImageHDU",
    "Problem",
    "ProductSchema",
    "TableHDU",
    "parse_tform",
    "register",
    "tform_of_dtype",
]

_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMP])")
_TFORM_DTYPE = {
    "L": "b1",
    "B": "u1",
    "I": "i2",
    "J": "i4",
    "K": "i8",
    "E": "f4",
    "D": "f8",
}
_DTYPE_TFORM = {v: k for k, v in _TFORM_DTYPE.items()}


def parse_tform(tform: str) -> tuple[int, str]:
    """Split a TFORM like ``"10D"`` into ``(10, "D")`` (repeat defaults to 1)."""
    m = _TFORM_RE.match(tform.upper())
    if not m:
        raise ValueError(f"bad TFORM {tform!r}")
    return (int(m.group(1)) if m.group(1) else 1), m.group(2)


def tform_of_dtype(dtype: np.dtype, shape: tuple[int, ...] = ()) -> str:
    """TFORM letter(s) for a numpy field dtype and sub-shape (``("f8", (10,)) -> "10D"``)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "SU":
        width = dtype.itemsize // (4 if dtype.kind == "U" else 1)
        return f"{width}A"
    code = _DTYPE_TFORM.get(f"{dtype.kind}{dtype.itemsize}")
    if code is None:
        # uint16/32/64 are stored as signed + TZERO in FITS
        code = {"u2": "I", "u4": "J", "u8": "K", "i1": "B"}.get(f"{dtype.kind}{dtype.itemsize}", "?")
    n = int(np.prod(shape)) if shape else 1
    return f"{n}{code}" if n != 1 else code


@dataclass(frozen=True)
class Column:
    """One column of a binary table.

    Attributes
    ----------
    name
        TTYPE as the producer spells it (upper case for DESI; SDSS and VAST use lower case).
    tform
        FITS TFORM (``"K"``, ``"10D"``, ``"6A"``).
    unit
        TUNIT string as written by the producer (``None`` when dimensionless).
    description
        One line, from desidatamodel where it has one.
    required
        ``False`` for columns present only in some versions/productions.
    """

    name: str
    tform: str
    unit: str | None = None
    description: str = ""
    required: bool = True

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of one element (strings as ``U<width>``)."""
        repeat, code = parse_tform(self.tform)
        if code == "A":
            return np.dtype(f"U{repeat}")
        return np.dtype(_TFORM_DTYPE[code])

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-row shape: ``()`` for scalars and strings, ``(n,)`` for vectors."""
        repeat, code = parse_tform(self.tform)
        return () if code == "A" or repeat == 1 else (repeat,)


@dataclass(frozen=True)
class TableHDU:
    """A BINTABLE HDU looked up by EXTNAME (``aliases`` are accepted spellings)."""

    extname: str
    columns: tuple[Column, ...]
    required: bool = True
    description: str = ""
    aliases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    kind: Literal["table"] = "table"

    def column(self, name: str) -> Column:
        """Look a column up by name, case-insensitively (KeyError if absent)."""
        for col in self.columns:
            if col.name.upper() == name.upper():
                return col
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        """Column names in schema order."""
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class ImageHDU:
    """An IMAGE HDU: dtype(s) accepted, dimensionality, BUNIT.

    ``dtypes`` lists every accepted numpy dtype (e.g. MASK images are int32 in current
    files and uint32-via-BZERO in older ones), the first being what our writers use.
    """

    extname: str
    dtypes: tuple[str, ...]
    ndim: int
    bunit: str | None = None
    required: bool = True
    description: str = ""
    aliases: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    kind: Literal["image"] = "image"


@dataclass(frozen=True)
class Problem:
    """One validation finding: where, what, and whether it makes the file invalid."""

    file: str
    message: str
    hdu: str | None = None
    column: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        loc = self.file
        if self.hdu:
            loc += f"[{self.hdu}]"
        if self.column:
            loc += f".{self.column}"
        return f"{self.severity.upper()}: {loc}: {self.message}"


@dataclass(frozen=True)
class ProductSchema:
    """The golden layout of one product.

    Attributes
    ----------
    name
        Short id used by ``desilab inspect --product`` (e.g. ``"coadd"``).
    title
        Human name.
    filename
        Regular expression matched against the file's basename, used to identify it.
    hdus
        Expected HDUs (PRIMARY excluded unless it carries data).
    source
        Where the layout was transcribed from, with the source commit.
    primary_keywords
        Keywords expected in the PRIMARY header.
    identify
        Optional content test ``f(extnames, primary_header) -> bool`` used when the
        file name does not identify the product.
    notes
        What is verified and what is assumed.
    """

    name: str
    title: str
    filename: str
    hdus: tuple[TableHDU | ImageHDU, ...]
    source: str
    primary_keywords: tuple[str, ...] = ()
    identify: Callable[[list[str], dict], bool] | None = field(default=None, compare=False)
    notes: str = ""

    def hdu(self, extname: str) -> TableHDU | ImageHDU:
        """Look an HDU up by EXTNAME or alias (KeyError if absent)."""
        for h in self.hdus:
            if extname.upper() == h.extname or extname.upper() in h.aliases:
                return h
        raise KeyError(extname)

    def matches_name(self, path: str | Path) -> bool:
        """True if the basename matches :attr:`filename`."""
        return re.search(self.filename, Path(path).name) is not None


PRODUCTS: dict[str, ProductSchema] = {}


def register(schema: ProductSchema) -> ProductSchema:
    """Add *schema* to :data:`PRODUCTS` (by name) and return it."""
    PRODUCTS[schema.name] = schema
    return schema
