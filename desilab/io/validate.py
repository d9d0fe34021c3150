"""Name a FITS file's product and check it against its golden schema.

* :func:`identify` - which registered product a file is: first by file name (the
  schemas' ``filename`` regexes), then by content (HDU names and PRIMARY keywords
  through each schema's ``identify`` function, then by which schema's required HDUs
  are all present).
* :func:`validate` - a list of :class:`~desilab.io.schema.Problem`: not FITS or
  truncated, missing required HDUs/columns, TFORM letter or repeat mismatches (errors;
  string widths only warn), TUNIT/BUNIT mismatches and missing keywords (warnings),
  image dtype and dimensionality (errors), plus content checks that product modules
  add with :func:`register_check`.
* :func:`describe` - the HDU inventory used by ``desilab inspect``.
* :func:`schema_markdown` / :func:`write_format_docs` - the golden schemas as Markdown
  (``docs/formats/*.md``).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fitsio
import numpy as np

from desilab.errors import FormatError
from desilab.io.fits import FITS_BLOCK, check_fits_file, open_fits
from desilab.io.schema import ImageHDU, Problem, ProductSchema, TableHDU, parse_tform

__all__ = [
    "Check",
    "HDUInfo",
    "allow_variable_repeat",
    "describe",
    "fast_header",
    "format_docs",
    "identify",
    "register_check",
    "scan_hdus",
    "schema_markdown",
    "validate",
    "write_format_docs",
]

#: A content check: ``fn(path, fits) -> list[Problem]``; ``fits`` behaves as an open
#: :class:`fitsio.FITS` (opened with :func:`~desilab.io.fits.open_fits` on first use).
Check = Callable[[str, fitsio.FITS], list[Problem]]

_CHECKS: dict[str, list[Check]] = {}
_VARIABLE_REPEAT: set[tuple[str, str, str]] = set()


def register_check(product_name: str, fn: Check) -> Check:
    """Add a content check run by :func:`validate` for *product_name*.

    Parameters
    ----------
    product_name
        :attr:`ProductSchema.name` the check applies to.
    fn
        ``fn(path, fits) -> list[Problem]``; ``fits`` behaves as an open
        :class:`fitsio.FITS` (opened with ``open_fits`` on first use). Checks run only
        when every required HDU is present. Registering the same function twice has
        no effect.

    Returns
    -------
    callable
        *fn*, so this can be used as a decorator factory's inner call.
    """
    checks = _CHECKS.setdefault(product_name, [])
    if fn not in checks:
        checks.append(fn)
    return fn


def allow_variable_repeat(product_name: str, extname: str, column: str) -> None:
    """Declare that a vector column's length varies between real files.

    A repeat-count mismatch on that column is then a warning, not an error (e.g. the
    FastSpecFit v2.1 ``COEFF`` length depends on the template set).
    """
    _VARIABLE_REPEAT.add((product_name, extname.upper(), column.upper()))


def fast_header(hdu: Any) -> dict[str, Any]:
    """The header of a fitsio HDU as a dict, parsed straight from the file's bytes.

    fitsio's ``read_header`` costs ~0.4 s for the ~3000 cards of a 900-column
    FastSpecFit table; this reads the header blocks (``header_start`` to ``data_start``)
    and parses the 80-character cards in Python. Values are str, bool, int or float;
    COMMENT/HISTORY/CONTINUE cards are skipped. Works for ``.gz`` files (the offsets are
    in decompressed bytes). Not for tile-compressed images (use fitsio for those).
    """
    offsets = hdu.get_offsets()
    start, stop = int(offsets["header_start"]), int(offsets["data_start"])
    filename = str(hdu._filename)
    opener = gzip.open if filename.endswith(".gz") else open
    with opener(filename, "rb") as fh:
        fh.seek(start)
        raw = fh.read(stop - start)
    out: dict[str, Any] = {}
    for i in range(0, len(raw), 80):
        card = raw[i : i + 80].decode("ascii", "replace")
        key = card[:8].strip()
        if key == "END":
            break
        if not key or card[8:10] != "= ":
            continue
        out[key] = _card_value(card[10:])
    return out


def _card_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        value, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    value.append("'")
                    i += 2
                    continue
                break
            value.append(text[i])
            i += 1
        return "".join(value).rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class HDUInfo:
    """One HDU as seen by :func:`scan_hdus`: its header and where its data lies.

    Attributes
    ----------
    index, extname
        Position and EXTNAME (``"PRIMARY"`` / ``"HDU<i>"`` when unnamed, as
        :func:`desilab.io.fits.hdu_names`).
    header
        Keyword -> value (str, bool, int, float); COMMENT/HISTORY/CONTINUE dropped.
    header_start, data_start, data_size
        Byte offsets (decompressed bytes for ``.gz``) and the unpadded data size.
    """

    index: int
    extname: str
    header: dict[str, Any]
    header_start: int
    data_start: int
    data_size: int

    @property
    def data_end(self) -> int:
        """End of the data unit including its padding to a 2880-byte block."""
        return self.data_start + -(-self.data_size // FITS_BLOCK) * FITS_BLOCK

    @property
    def is_table(self) -> bool:
        """A (binary or ASCII) table that is not a tile-compressed image."""
        xtension = str(self.header.get("XTENSION", "")).strip().upper()
        return xtension in ("BINTABLE", "TABLE") and not self.header.get("ZIMAGE")

    @property
    def kind(self) -> str:
        """``"table"``, ``"image"`` or ``"empty"``."""
        if self.is_table:
            return "table"
        return "image" if self.shape else "empty"

    @property
    def shape(self) -> list[int] | None:
        """Image shape in numpy order (slowest axis first); None for tables and empty HDUs."""
        if self.is_table:
            return None
        h = self.header
        prefix = "ZNAXIS" if h.get("ZIMAGE") else "NAXIS"
        naxis = int(h.get(prefix, 0) or 0)
        dims = [int(h.get(f"{prefix}{i}", 0) or 0) for i in range(naxis, 0, -1)]
        return dims or None

    @property
    def dtype(self) -> str | None:
        """numpy dtype name of an image after BZERO/BSCALE (uint32 for BITPIX=32, BZERO=2^31)."""
        if self.kind != "image":
            return None
        h = self.header
        bitpix = int(h.get("ZBITPIX" if h.get("ZIMAGE") else "BITPIX", 0))
        bzero, bscale = h.get("BZERO", 0) or 0, h.get("BSCALE", 1)
        base = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}.get(bitpix)
        if base is None or bitpix < 0 or (bzero == 0 and bscale in (1, None)):
            return base
        unsigned = {(8, -128): "int8", (16, 1 << 15): "uint16", (32, 1 << 31): "uint32", (64, 1 << 63): "uint64"}
        if bscale in (1, None) and (bitpix, bzero) in unsigned:
            return unsigned[(bitpix, bzero)]
        return "float64" if bitpix >= 32 else "float32"

    @property
    def nrows(self) -> int | None:
        """Rows of a table (NAXIS2)."""
        return int(self.header.get("NAXIS2", 0)) if self.is_table else None

    @property
    def ncols(self) -> int | None:
        """Columns of a table (TFIELDS)."""
        return int(self.header.get("TFIELDS", 0)) if self.is_table else None


_SCAN_CACHE: dict[tuple[str, int, int, bool], list[HDUInfo]] = {}


def scan_hdus(path: str | os.PathLike[str], *, strict: bool = True) -> list[HDUInfo]:
    """List the HDUs of a FITS (or ``.fits.gz``) file by reading only its headers.

    Results are cached by (path, size, mtime) for the few most recent files, since
    identify, validate and content checks all scan the same file; treat them as
    read-only. See :func:`_scan_hdus` for the details.
    """
    try:
        st = os.stat(path)
    except OSError:
        return _scan_hdus(path, strict=strict)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, strict)
    if key not in _SCAN_CACHE:
        if len(_SCAN_CACHE) >= 16:
            _SCAN_CACHE.pop(next(iter(_SCAN_CACHE)))
        _SCAN_CACHE[key] = _scan_hdus(path, strict=strict)
    return _SCAN_CACHE[key]


def _scan_hdus(path: str | os.PathLike[str], *, strict: bool = True) -> list[HDUInfo]:
    """List the HDUs of a FITS (or ``.fits.gz``) file by reading only its headers.

    Much cheaper than opening with fitsio, which parses every column of every table
    (~0.2 s per 900-column FastSpecFit table): each header is read until END and the
    data unit is skipped using BITPIX, NAXISn, PCOUNT and GCOUNT.

    Parameters
    ----------
    path
        FITS file.
    strict
        Raise when the file is cut short (inside a header or a data unit); otherwise
        return the complete HDUs.

    Raises
    ------
    FormatError
        Missing, empty or not FITS; corrupt gzip stream; truncated (when *strict*),
        naming the HDU that is cut.
    """
    check_fits_file(path)
    is_gz = str(path).endswith(".gz")
    size = 0 if is_gz else os.path.getsize(path)
    hdus: list[HDUInfo] = []
    try:
        with (gzip.open if is_gz else open)(path, "rb") as fh:
            while True:
                start = fh.tell()
                header, partial = _read_header_blocks(fh)
                if header is None:
                    if partial and strict:
                        raise FormatError(
                            f"truncated: the file ends inside the header of HDU {len(hdus)}", file=path, hdu=len(hdus)
                        )
                    break
                index = len(hdus)
                default = "PRIMARY" if index == 0 else f"HDU{index}"
                name = str(header.get("EXTNAME", "") or "").strip().upper() or default
                naxis = int(header.get("NAXIS", 0) or 0)
                npix = 0
                if naxis:
                    npix = int(np.prod([int(header.get(f"NAXIS{i}", 0) or 0) for i in range(1, naxis + 1)]))
                gcount = int(header.get("GCOUNT", 1) or 1)
                pcount = int(header.get("PCOUNT", 0) or 0)
                nbytes = abs(int(header.get("BITPIX", 8))) // 8 * gcount * (pcount + npix)
                info = HDUInfo(index, name, header, start, fh.tell(), nbytes)
                fh.seek(info.data_end - info.data_start, 1)
                reached = fh.tell() if is_gz else min(info.data_end, size)
                if reached < info.data_end:
                    if strict:
                        raise FormatError(
                            f"truncated: HDU data ends at byte {info.data_end} but the file has {reached} bytes",
                            file=path,
                            hdu=name,
                        )
                    break
                hdus.append(info)
    except (EOFError, gzip.BadGzipFile) as exc:
        raise FormatError(f"corrupt or truncated gzip stream: {exc}", file=path) from exc
    if not hdus:
        raise FormatError("no complete FITS header", file=path)
    return hdus


def _read_header_blocks(fh: Any) -> tuple[dict[str, Any] | None, bool]:
    """(header, False) up to END; (None, partial) at end of file."""
    header: dict[str, Any] = {}
    first = True
    while True:
        block = fh.read(FITS_BLOCK)
        if len(block) < FITS_BLOCK:
            return None, bool(block) or not first
        first = False
        for i in range(0, FITS_BLOCK, 80):
            card = block[i : i + 80].decode("ascii", "replace")
            key = card[:8].strip()
            if key == "END":
                return header, False
            if key and card[8:10] == "= ":
                header[key] = _card_value(card[10:])


def _peek(path: str | os.PathLike[str]) -> tuple[list[str], dict[str, Any]]:
    """EXTNAMEs and PRIMARY header from :func:`scan_hdus` (lenient about truncation)."""
    hdus = scan_hdus(path, strict=False)
    return [h.extname for h in hdus], hdus[0].header


class _LazyFITS:
    """A fitsio.FITS opened (with :func:`open_fits`) only when a check first uses it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fits: fitsio.FITS | None = None

    def _get(self) -> fitsio.FITS:
        if self._fits is None:
            self._fits = open_fits(self._path)
        return self._fits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __getitem__(self, key: Any) -> Any:
        return self._get()[key]

    def __iter__(self) -> Any:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, key: Any) -> bool:
        return key in self._get()

    def close(self) -> None:
        if self._fits is not None:
            self._fits.close()


def identify(path: str | os.PathLike[str]) -> ProductSchema:
    """Return the registered product schema *path* belongs to.

    The file name is tried first (exactly one schema's ``filename`` regex matching
    wins without opening the file); otherwise the content decides among the name
    matches (or among all products when no name matches): each schema's ``identify``
    function on the EXTNAMEs and PRIMARY header, then the schema whose required HDUs
    are all present (the most specific one).

    Raises
    ------
    FormatError
        Not FITS / truncated, or no (or more than one) product fits; the message lists
        the HDUs found.
    """
    from desilab.io.products import load_all

    products = load_all()
    by_name = [s for s in products.values() if s.matches_name(path)]
    if len(by_name) == 1:
        return by_name[0]
    extnames, primary = _peek(path)
    candidates = by_name or list(products.values())
    found = [s for s in candidates if s.identify is not None and _safe_identify(s, extnames, primary)]
    if not found:
        found = _structural_matches(candidates, extnames)
    if len(found) == 1:
        return found[0]
    hdus = ", ".join(extnames)
    if found:
        names = ", ".join(s.name for s in found)
        raise FormatError(f"ambiguous product: could be {names} (HDUs: {hdus})", file=path, hint="pass --product NAME")
    known = ", ".join(sorted(products)) or "none registered"
    raise FormatError(
        f"not a known DR1 product (HDUs found: {hdus}; known products: {known})",
        file=path,
        hint="pass --product NAME if the file is renamed",
    )


def _safe_identify(schema: ProductSchema, extnames: list[str], primary: dict[str, Any]) -> bool:
    try:
        return bool(schema.identify(extnames, primary))  # type: ignore[misc]
    except Exception:  # a faulty identify() must not hide the others
        return False


def _structural_matches(candidates: list[ProductSchema], extnames: list[str]) -> list[ProductSchema]:
    present = set(extnames)
    scored = []
    for s in candidates:
        required = [h for h in s.hdus if h.required and h.extname != "PRIMARY"]
        if required and all(({h.extname, *h.aliases} & present) for h in required):
            scored.append((len(required), s))
    if not scored:
        return []
    best = max(n for n, _ in scored)
    return [s for n, s in scored if n == best]


def describe(path: str | os.PathLike[str], *, schema: ProductSchema | None = None) -> dict[str, Any]:
    """Inventory of a FITS file: its product (if identified) and every HDU.

    Parameters
    ----------
    path
        FITS file.
    schema
        Its product, if already known (otherwise :func:`identify` is tried).

    Returns
    -------
    dict
        ``{"file", "product", "hdus": [{"index", "extname", "type", "rows", "shape",
        "columns", "dtype"}]}``; ``type`` is ``"empty"``, ``"image"`` or ``"table"``;
        ``shape`` is in numpy order (slowest axis first); ``product`` is None when unknown.

    Raises
    ------
    FormatError
        Not FITS or truncated.
    """
    hdus = scan_hdus(path)
    product = schema.name if schema is not None else None
    if schema is None:
        try:
            product = identify(path).name
        except FormatError:
            product = None
    return {
        "file": str(path),
        "product": product,
        "hdus": [
            {
                "index": h.index,
                "extname": h.extname,
                "type": h.kind,
                "rows": h.nrows,
                "shape": h.shape,
                "columns": h.ncols,
                "dtype": h.dtype,
            }
            for h in hdus
        ],
    }


def validate(path: str | os.PathLike[str], schema: ProductSchema | None = None) -> list[Problem]:
    """Check *path* against its golden schema.

    The structure (HDUs, TFORM/TUNIT, image BITPIX/BZERO/NAXIS, keywords, truncation)
    is checked from the headers alone (:func:`scan_hdus`); the content checks
    registered with :func:`register_check` get a fitsio handle opened on first use.

    Parameters
    ----------
    path
        FITS file.
    schema
        Golden schema; default :func:`identify`.

    Returns
    -------
    list of Problem
        Errors make the file invalid; warnings do not. Empty means clean.
    """
    file = str(path)
    try:
        if schema is None:
            schema = identify(path)
        hdus = scan_hdus(path)
    except FormatError as exc:  # not FITS, truncated, unknown product
        return [Problem(exc.file or file, exc.message, hdu=_s(exc.hdu), column=exc.column)]
    problems: list[Problem] = []
    names = [h.extname for h in hdus]
    if not file.endswith(".gz") and os.path.getsize(file) > hdus[-1].data_end:
        extra = os.path.getsize(file) - hdus[-1].data_end
        problems.append(Problem(file, f"{extra} bytes after the last complete HDU ({names[-1]}): truncated or corrupt"))
    problems += _check_keywords(file, hdus[0].header, "PRIMARY", schema.primary_keywords)
    missing_hdu = False
    for expected in schema.hdus:
        idx = _find(names, expected)
        if idx is None:
            if expected.required:
                missing_hdu = True
                problems.append(
                    Problem(file, f"missing required HDU (file has {', '.join(names)})", hdu=expected.extname)
                )
            continue
        if isinstance(expected, TableHDU):
            problems += _check_table(file, schema.name, hdus[idx], expected)
        else:
            problems += _check_image(file, hdus[idx], expected)
    if missing_hdu:  # content checks assume the structure is there
        return problems
    fits = _LazyFITS(file)
    try:
        for check in _CHECKS.get(schema.name, []):
            try:
                problems += list(check(file, fits))
            except FormatError as exc:
                problems.append(Problem(exc.file or file, exc.message, hdu=_s(exc.hdu), column=exc.column))
            except Exception as exc:  # a crashing check is reported, not fatal
                name = getattr(check, "__name__", "check")
                problems.append(Problem(file, f"content check {name} failed: {type(exc).__name__}: {exc}"))
    finally:
        fits.close()
    return problems


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def _find(names: list[str], expected: TableHDU | ImageHDU) -> int | None:
    for name in (expected.extname, *expected.aliases):
        if name.upper() in names:
            return names.index(name.upper())
    return None


def _check_keywords(file: str, header: Any, extname: str, keywords: tuple[str, ...]) -> list[Problem]:
    missing = [k for k in keywords if k not in header]
    if not missing:
        return []
    return [Problem(file, f"missing header keyword(s) {', '.join(missing)}", hdu=extname, severity="warning")]


def _check_table(file: str, product: str, info: HDUInfo, expected: TableHDU) -> list[Problem]:
    extname = info.extname
    if not info.is_table:
        return [Problem(file, f"expected a binary table, found {info.kind}", hdu=extname)]
    header = info.header
    problems = _check_keywords(file, header, extname, expected.keywords)
    stored: dict[str, tuple[str, str, str | None]] = {}
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        name = str(header.get(f"TTYPE{i}", "")).strip()
        unit = header.get(f"TUNIT{i}")
        tform = str(header.get(f"TFORM{i}", "")).strip()
        stored[name.upper()] = (name, tform, None if unit is None else str(unit).strip())
    has_units = any(u for _, _, u in stored.values())
    for col in expected.columns:
        if col.name.upper() not in stored:
            if col.required:
                problems.append(
                    Problem(file, f"missing required column (TFORM {col.tform})", hdu=extname, column=col.name)
                )
            continue
        name, tform, unit = stored[col.name.upper()]
        if name != col.name:
            problems.append(
                Problem(file, f"column is spelled {name!r}", hdu=extname, column=col.name, severity="warning")
            )
        problems += _compare_tform(file, product, extname, col.name, col.tform, tform)
        if has_units and (col.unit or "") != (unit or ""):
            problems.append(
                Problem(
                    file,
                    f"TUNIT is {unit!r}, expected {col.unit!r}",
                    hdu=extname,
                    column=col.name,
                    severity="warning",
                )
            )
    with_units = sum(1 for c in expected.columns if c.unit and c.name in stored)
    if not has_units and with_units:
        problems.append(
            Problem(
                file,
                f"no TUNITn keywords ({with_units} schema columns have units)",
                hdu=extname,
                severity="warning",
            )
        )
    return problems


def _compare_tform(file: str, product: str, extname: str, column: str, want: str, got: str) -> list[Problem]:
    try:
        grepeat, gcode = parse_tform(got)
    except ValueError:
        return [Problem(file, f"unreadable TFORM {got!r} (expected {want})", hdu=extname, column=column)]
    wrepeat, wcode = parse_tform(want)
    if gcode != wcode:
        return [Problem(file, f"TFORM is {got}, expected {want} (wrong data type)", hdu=extname, column=column)]
    if grepeat == wrepeat:
        return []
    if wcode == "A":
        return [
            Problem(
                file, f"string width {grepeat}, schema says {wrepeat}", hdu=extname, column=column, severity="warning"
            )
        ]
    severity = "warning" if (product, extname, column) in _VARIABLE_REPEAT else "error"
    return [
        Problem(
            file,
            f"TFORM is {got}, expected {want} (wrong vector length)",
            hdu=extname,
            column=column,
            severity=severity,
        )
    ]


def _check_image(file: str, info: HDUInfo, expected: ImageHDU) -> list[Problem]:
    extname = info.extname
    if info.is_table:
        return [Problem(file, "expected an image, found a table", hdu=extname)]
    problems = []
    dtype = info.dtype
    accepted = [np.dtype(d) for d in expected.dtypes]
    if dtype is None or np.dtype(dtype) not in accepted:
        want = " or ".join(str(d) for d in accepted)
        bitpix = info.header.get("ZBITPIX", info.header.get("BITPIX"))
        problems.append(Problem(file, f"image dtype is {dtype} (BITPIX {bitpix}), expected {want}", hdu=extname))
    ndim = len(info.shape or [])
    if ndim != expected.ndim:
        problems.append(
            Problem(file, f"image has {ndim} dimension(s) {info.shape}, expected {expected.ndim}", hdu=extname)
        )
    header = info.header
    if expected.bunit is not None:
        bunit = header.get("BUNIT")
        if bunit is None or str(bunit).strip() != expected.bunit:
            problems.append(
                Problem(file, f"BUNIT is {bunit!r}, expected {expected.bunit!r}", hdu=extname, severity="warning")
            )
    problems += _check_keywords(file, header, extname, expected.keywords)
    return problems


# ---------------------------------------------------------------------------------------
# Markdown rendering of golden schemas (docs/formats/*.md)


def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def schema_markdown(schema: ProductSchema) -> str:
    """Render a golden schema as Markdown (one section, HDU tables with TFORM/unit).

    Parameters
    ----------
    schema
        The schema to render.

    Returns
    -------
    str
        Markdown text ending with a newline; deterministic for a given schema.
    """
    lines = [
        f"## `{schema.name}`: {schema.title}",
        "",
        f"- File name pattern: `{schema.filename}`",
        f"- Source: {schema.source}",
    ]
    if schema.primary_keywords:
        lines.append(f"- PRIMARY keywords: {', '.join(f'`{k}`' for k in schema.primary_keywords)}")
    lines.append("")
    if schema.notes:
        lines += [f"Notes: {schema.notes}", ""]
    lines += ["| HDU | type | required | contents |", "|---|---|---|---|"]
    for h in schema.hdus:
        if isinstance(h, TableHDU):
            what = f"{len(h.columns)} columns"
        else:
            what = f"{h.ndim}-d image, dtype {' or '.join(h.dtypes)}" + (f", BUNIT `{h.bunit}`" if h.bunit else "")
        lines.append(f"| `{h.extname}` | {h.kind} | {'yes' if h.required else 'no'} | {_md(h.description)} ({what}) |")
    lines.append("")
    for h in schema.hdus:
        lines.append(f"### `{h.extname}`" + ("" if h.required else " (optional)"))
        lines.append("")
        if h.description:
            lines += [_md(h.description), ""]
        if h.aliases:
            lines += [f"Also accepted as: {', '.join(f'`{a}`' for a in h.aliases)}", ""]
        if h.keywords:
            lines += [f"Header keywords: {', '.join(f'`{k}`' for k in h.keywords)}", ""]
        if isinstance(h, TableHDU):
            lines += ["| # | column | TFORM | unit | required | description |", "|---|---|---|---|---|---|"]
            for i, c in enumerate(h.columns, start=1):
                unit = f"`{_md(c.unit)}`" if c.unit else ""
                req = "yes" if c.required else "no"
                lines.append(f"| {i} | `{c.name}` | `{c.tform}` | {unit} | {req} | {_md(c.description)} |")
        else:
            lines.append(
                f"Image: {h.ndim} dimensions, dtype {' or '.join(f'`{d}`' for d in h.dtypes)}"
                + (f", BUNIT `{h.bunit}`" if h.bunit else "")
                + "."
            )
        lines.append("")
    return "\n".join(lines)


def format_docs() -> dict[str, str]:
    """The generated format pages: file name -> Markdown content."""
    from desilab.io import desivast, fastspecfit, qso, spectra, zcatalog

    return {
        "zcatalog.md": zcatalog.format_doc(),
        "fastspecfit.md": fastspecfit.format_doc(),
        "desivast.md": desivast.format_doc(),
        "qso.md": qso.format_doc(),
        "spectra.md": spectra.format_doc(),
    }


def write_format_docs(directory: str | os.PathLike[str]) -> list[Path]:
    """(Re)write the generated format pages into *directory*; return their paths.

    Run ``python -c "from desilab.io.validate import write_format_docs;
    write_format_docs('docs/formats')"`` from the repository root after changing a schema.
    """
    out = []
    for name, text in format_docs().items():
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out
