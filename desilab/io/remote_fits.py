"""Extract selected TARGETIDs from a remote coadd/redrock FITS file with HTTP range reads.

A healpix coadd holds every target of its pixel (often hundreds of MB); most analyses want a
few targets. :func:`extract_targets` reads only what those targets need and writes a valid,
smaller FITS file with the same HDUs, in the same order, with the same headers:

1. **Structure.** Headers are read with range requests, 2880-byte blocks at a time until
   the ``END`` card; each HDU's data size follows from BITPIX, NAXISn, PCOUNT and GCOUNT
   (FITS 4.0 §4.4.1), so the next header's offset is known without reading the data.
2. **Rows.** The whole FIBERMAP data block is read (one request; it is small next to the
   images: ~0.5 KB per target against ~0.45 MB of spectra) and its TARGETID column decoded;
   the wanted rows are the FIBERMAP rows whose TARGETID was asked for, **in file order**.
3. **Tables.** A table with ``NAXIS2 == nspec`` (FIBERMAP, SCORES; REDSHIFTS, TSNR2 in
   redrock files) is row-matched: only those rows are fetched, then its TARGETID column
   (when it has one) is checked against FIBERMAP's. Other tables with a TARGETID column
   (EXP_FIBERMAP: one row per target and exposure) are read whole and filtered by
   TARGETID. Tables with neither are copied whole. Tables with a heap (``PCOUNT > 0``,
   variable-length arrays or tile-compressed images) are refused with a FormatError.
4. **Images.** An image whose slowest axis is nspec (FLUX, IVAR, MASK: ``NAXIS2``;
   RESOLUTION: ``NAXIS3``; MODEL...) gets only the wanted spectra, one contiguous byte run
   each; runs closer than ``merge_gap`` bytes are merged into one request. Other images
   (WAVELENGTH) are copied whole.
5. **Output.** Header cards are copied verbatim except ``NAXIS2``/``NAXISn`` (updated) and
   ``CHECKSUM``/``DATASUM``, which are **recomputed** (FITS checksum convention) when the
   source HDU has them; data are padded to 2880 bytes. The file is written under a
   temporary name and renamed when complete.

The result reads with astropy.io.fits and fitsio and equals the same targets cut from the
full file. Nothing here verifies it against a published checksum: there is none for a cut.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io.fits import Card

from desilab.errors import FormatError, InputError
from desilab.io.fetch import HttpClient
from desilab.io.fits import FITS_BLOCK, atomic_output

__all__ = [
    "ExtractResult",
    "HduLayout",
    "RemoteFits",
    "datasum",
    "encode_checksum",
    "extract_targets",
    "output_name",
]

log = logging.getLogger(__name__)

CARD = 80
_END_CARD = "END" + " " * 77
#: bytes per element of each TFORM letter (X is bits, handled separately)
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16, "P": 8, "Q": 16}
_TFORM_RE = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_INT_DTYPES = {"B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8"}
#: the reference table whose rows define "a target" in coadd and redrock files
REFERENCE_TABLE = "FIBERMAP"
#: refuse headers longer than this many blocks (2.9 MB) instead of reading a whole file
MAX_HEADER_BLOCKS = 1000


# --------------------------------------------------------------------------------------
# FITS structure
# --------------------------------------------------------------------------------------


@dataclass
class HduLayout:
    """Where one HDU lives in the file and what its header says.

    Attributes
    ----------
    index
        HDU number (0 = primary).
    header_start
        Byte offset of the header.
    cards
        The 80-character header cards, ``END`` excluded.
    data_start
        Byte offset of the data (= end of the padded header).
    data_size
        Data size in bytes, without padding.
    """

    index: int
    header_start: int
    cards: list[str]
    data_start: int
    data_size: int
    values: dict[str, object] = field(default_factory=dict)

    @property
    def data_span(self) -> int:
        """Data size padded to a whole number of 2880-byte blocks."""
        return _padded(self.data_size)

    @property
    def end(self) -> int:
        """Offset just after this HDU (start of the next header)."""
        return self.data_start + self.data_span

    @property
    def extname(self) -> str:
        """EXTNAME, upper-case (``PRIMARY`` for an unnamed HDU 0)."""
        name = str(self.values.get("EXTNAME", "") or "").strip().upper()
        return name or ("PRIMARY" if self.index == 0 else f"HDU{self.index}")

    @property
    def xtension(self) -> str:
        """``""`` for the primary HDU, else ``BINTABLE``/``IMAGE``/``TABLE``."""
        return str(self.values.get("XTENSION", "") or "").strip().upper()

    @property
    def axes(self) -> list[int]:
        """``[NAXIS1, NAXIS2, ...]`` (fastest first, as in the header)."""
        return [int(self.values[f"NAXIS{i}"]) for i in range(1, int(self.values.get("NAXIS", 0)) + 1)]

    @property
    def bitpix(self) -> int:
        """BITPIX."""
        return int(self.values["BITPIX"])

    @property
    def pcount(self) -> int:
        """PCOUNT (0 when absent)."""
        return int(self.values.get("PCOUNT", 0) or 0)

    @property
    def is_table(self) -> bool:
        """True for BINTABLE and ASCII TABLE extensions."""
        return self.xtension in ("BINTABLE", "TABLE", "A3DTABLE")

    def value(self, key: str, default: object = None) -> object:
        """Header value of *key* (parsed)."""
        return self.values.get(key, default)


def _padded(n: int) -> int:
    return -(-n // FITS_BLOCK) * FITS_BLOCK


def _parse_cards(cards: Iterable[str]) -> dict[str, object]:
    """Values of the cards the layout needs (structural keywords, EXTNAME, TFORM/TTYPE...)."""
    wanted = re.compile(
        r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|GROUPS|EXTNAME|TFIELDS|TTYPE\d+|TFORM\d+|"
        r"TZERO\d+|TSCAL\d+|ZIMAGE|CHECKSUM|DATASUM)$"
    )
    values: dict[str, object] = {}
    for card in cards:
        key = card[:8].strip().upper()
        if not key or not wanted.match(key):
            continue
        try:
            values[key] = Card.fromstring(card).value
        except Exception as exc:  # astropy raises VerifyError and ValueError variants
            raise FormatError(f"unparsable header card {card.strip()!r}: {exc}") from exc
    return values


def _data_size(values: dict[str, object], index: int) -> int:
    """Data size in bytes (FITS 4.0 eq. 1 and 2)."""
    naxis = int(values.get("NAXIS", 0))
    if naxis == 0:
        return 0
    axes = [int(values[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
    bits = abs(int(values["BITPIX"]))
    pcount = int(values.get("PCOUNT", 0) or 0)
    gcount = int(values.get("GCOUNT", 1) or 1)
    if index == 0 and values.get("GROUPS") is True and axes[0] == 0:  # random groups
        return bits // 8 * gcount * (pcount + math.prod(axes[1:]))
    return bits // 8 * gcount * (pcount + math.prod(axes))


class RemoteFits:
    """Read the structure and selected bytes of a FITS file over HTTP range requests.

    Parameters
    ----------
    url
        File URL (the server must honour ``Range``).
    client
        HTTP client; its counters record requests and bytes.
    header_blocks
        2880-byte blocks asked for by the first request of each header; each further request
        for the same header asks for twice as many (a DESI FIBERMAP header is ~12 blocks, an
        image header 1-2).
    """

    def __init__(self, url: str, client: HttpClient | None = None, *, header_blocks: int = 2) -> None:
        self.url = url
        self.client = client or HttpClient()
        self.header_blocks = max(1, header_blocks)
        self._size: int | None = None
        self._hdus: list[HduLayout] | None = None
        # Header reads over-read into the following data; keep those bytes for reuse.
        self._spare: dict[int, bytes] = {}

    @property
    def size(self) -> int:
        """File size in bytes (HEAD)."""
        if self._size is None:
            size = self.client.head_size(self.url)
            if size is None:
                raise FormatError("server gives no file size (Content-Length)", file=self.url)
            self._size = size
        return self._size

    def read(self, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` (reusing bytes over-read with a header)."""
        head = b""
        for seg_start, seg in list(self._spare.items()):
            if seg_start <= start < seg_start + len(seg):
                head = seg[start - seg_start : start - seg_start + length]
                break
        if len(head) == length:
            return head
        return head + self.client.get_range(self.url, start + len(head), length - len(head))

    def hdus(self) -> list[HduLayout]:
        """All HDUs, from their headers (read block by block until each ``END``)."""
        if self._hdus is not None:
            return self._hdus
        size = self.size
        hdus: list[HduLayout] = []
        offset = 0
        while offset < size:
            hdu = self._read_header(len(hdus), offset, size)
            if hdu is None:  # blank/zero blocks after the last HDU
                log.debug("%s: %d bytes of padding after the last HDU", self.url, size - offset)
                break
            hdus.append(hdu)
            offset = hdu.end
            if hdus[-1].data_start + hdus[-1].data_size > size:
                raise FormatError(
                    f"truncated: data ends at byte {hdus[-1].data_start + hdus[-1].data_size}, "
                    f"file has {size}",
                    file=self.url,
                    hdu=hdus[-1].extname,
                )
        if not hdus:
            raise FormatError("empty file", file=self.url)
        self._hdus = hdus
        return hdus

    def _read_header(self, index: int, start: int, size: int) -> HduLayout | None:
        cards: list[str] = []
        pos = start
        blocks = self.header_blocks
        while True:
            if pos >= size:
                raise FormatError("header has no END card", file=self.url, hdu=index)
            if pos - start >= MAX_HEADER_BLOCKS * FITS_BLOCK:
                raise FormatError(f"header longer than {MAX_HEADER_BLOCKS} blocks without END",
                                  file=self.url, hdu=index)
            nbytes = min(blocks * FITS_BLOCK, size - pos)
            nbytes -= nbytes % FITS_BLOCK
            if nbytes <= 0:
                raise FormatError("file size is not a multiple of 2880 bytes", file=self.url, hdu=index)
            chunk = self.read(pos, nbytes)
            if pos == start:
                if index > 0 and not chunk[:FITS_BLOCK].strip(b"\0 "):
                    return None
                self._check_first_card(index, chunk[:CARD].decode("ascii", errors="replace"))
            for b in range(0, len(chunk), FITS_BLOCK):
                block = chunk[b : b + FITS_BLOCK].decode("ascii", errors="replace")
                pos += FITS_BLOCK
                for c in range(0, FITS_BLOCK, CARD):
                    card = block[c : c + CARD]
                    if card[:8] == "END     ":
                        if b + FITS_BLOCK < len(chunk):
                            self._spare[pos] = chunk[b + FITS_BLOCK :]
                        return self._layout(index, start, cards, pos)
                    cards.append(card)
            blocks = min(blocks * 2, 64)

    def _check_first_card(self, index: int, card: str) -> None:
        key = "SIMPLE" if index == 0 else "XTENSION"
        if card[:8].strip() != key:
            what = "not a FITS file" if index == 0 else "corrupt HDU"
            raise FormatError(f"{what}: expected {key} at byte offset of HDU {index}, got {card[:8]!r}",
                              file=self.url, hdu=index)

    def _layout(self, index: int, start: int, cards: list[str], data_start: int) -> HduLayout:
        values = _parse_cards(cards)
        return HduLayout(index, start, cards, data_start, _data_size(values, index), values)

    def read_ranges(self, ranges: Sequence[tuple[int, int]], *, merge_gap: int = 0,
                    pool: ThreadPoolExecutor | None = None) -> list[bytes]:
        """Bytes of each ``(start, length)`` in *ranges*, fetching nearby runs together.

        Parameters
        ----------
        ranges
            Absolute ``(start, length)`` pairs, any order.
        merge_gap
            Runs separated by at most this many bytes are fetched by one request.
        pool
            Executor for parallel requests (default: sequential).
        """
        if not ranges:
            return []
        order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        groups: list[list[int]] = []
        spans: list[list[int]] = []  # [start, end) per request
        for i in order:
            start, length = ranges[i]
            if spans and start - spans[-1][1] <= merge_gap:
                spans[-1][1] = max(spans[-1][1], start + length)
                groups[-1].append(i)
            else:
                spans.append([start, start + length])
                groups.append([i])
        def fetch(span: list[int]) -> bytes:
            return self.read(span[0], span[1] - span[0])

        blobs = list(pool.map(fetch, spans)) if pool is not None else [fetch(s) for s in spans]
        out: list[bytes] = [b""] * len(ranges)
        for (span_start, _), members, blob in zip(spans, groups, blobs, strict=True):
            view = memoryview(blob)
            for i in members:
                start, length = ranges[i]
                out[i] = bytes(view[start - span_start : start - span_start + length])
        return out


# --------------------------------------------------------------------------------------
# Table columns
# --------------------------------------------------------------------------------------


def _column_widths(hdu: HduLayout) -> list[tuple[str, int, str, int]]:
    """``(TTYPE, byte offset in row, TFORM letter, repeat)`` for each column of a BINTABLE."""
    out = []
    offset = 0
    for i in range(1, int(hdu.value("TFIELDS", 0) or 0) + 1):
        tform = str(hdu.value(f"TFORM{i}", "")).strip().upper()
        m = _TFORM_RE.match(tform)
        if not m:
            raise FormatError(f"unsupported TFORM{i} {tform!r}", hdu=hdu.extname)
        repeat = int(m.group(1)) if m.group(1) else 1
        letter = m.group(2)
        width = -(-repeat // 8) if letter == "X" else repeat * _TFORM_BYTES[letter]
        out.append((str(hdu.value(f"TTYPE{i}", "")).strip().upper(), offset, letter, repeat))
        offset += width
    return out


def _targetid_column(hdu: HduLayout) -> tuple[int, str, float] | None:
    """``(byte offset, big-endian dtype, TZERO)`` of TARGETID in a BINTABLE, or None."""
    if hdu.xtension != "BINTABLE":
        return None
    for index, (name, offset, letter, repeat) in enumerate(_column_widths(hdu), start=1):
        if name == "TARGETID":
            if letter not in _INT_DTYPES or repeat != 1:
                raise FormatError(f"TARGETID has unsupported format {repeat}{letter}", hdu=hdu.extname,
                                  column="TARGETID")
            return offset, _INT_DTYPES[letter], float(hdu.value(f"TZERO{index}", 0) or 0)
    return None


def _targetids(hdu: HduLayout, rows: bytes, col: tuple[int, str, float]) -> np.ndarray:
    """Decode TARGETID from raw table rows."""
    offset, dtype, tzero = col
    row_bytes = hdu.axes[0]
    n = len(rows) // row_bytes if row_bytes else 0
    raw = np.ndarray((n,), dtype=np.dtype(dtype), buffer=rows, offset=offset, strides=(row_bytes,))
    if tzero == 2.0**63 and dtype == ">i8":  # unsigned 64-bit convention
        return (raw.view(">u8").astype(np.uint64) ^ np.uint64(1 << 63)).astype(np.int64)
    return raw.astype(np.int64) + np.int64(tzero)


# --------------------------------------------------------------------------------------
# Checksums (FITS checksum convention, Seaman, Pence & Rots 2002)
# --------------------------------------------------------------------------------------


def _ones_sum(data: bytes | memoryview, start: int = 0) -> int:
    """32-bit ones'-complement sum of big-endian words (len(data) % 4 == 0)."""
    total = start
    step = 1 << 26  # 64 MiB per slice keeps the uint64 accumulator exact
    for i in range(0, len(data), step):
        words = np.frombuffer(data[i : i + step], dtype=">u4")
        total += int(words.sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def datasum(data: bytes | memoryview) -> int:
    """DATASUM of padded HDU data."""
    return _ones_sum(data)


_EXCLUDE = frozenset(b":;<=>?@[\\]^_`")


def encode_checksum(value: int, complement: bool = True) -> str:
    """16-character ASCII encoding of a 32-bit sum for the CHECKSUM keyword."""
    if complement:
        value = ~value & 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> (24 - 8 * i)) & 0xFF
        quotient, remainder = byte // 4 + 0x30, byte % 4
        ch = [quotient] * 4
        ch[0] += remainder
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[15:] + asc[:15]).decode("ascii")


# --------------------------------------------------------------------------------------
# Header editing
# --------------------------------------------------------------------------------------


def _set_card(cards: list[str], key: str, value: object) -> None:
    """Give *key* a new value, keeping its comment; leave the card untouched if unchanged."""
    for i, card in enumerate(cards):
        if card[:8].strip().upper() == key:
            old = Card.fromstring(card)
            if old.value == value:
                return
            cards[i] = Card(key, value, old.comment).image
            return
    raise FormatError(f"header has no {key} card")


def _header_bytes(cards: list[str]) -> bytes:
    text = "".join(c.ljust(CARD)[:CARD] for c in cards) + _END_CARD
    raw = text.encode("ascii")
    return raw + b" " * (_padded(len(raw)) - len(raw))


def _finish_hdu(hdu: HduLayout, cards: list[str], data: bytes) -> bytes:
    """Header + padded data, with CHECKSUM/DATASUM recomputed where the source had them."""
    pad = b" " if hdu.xtension == "TABLE" else b"\0"
    data = data + pad * (_padded(len(data)) - len(data))
    keys = {c[:8].strip().upper() for c in cards}
    if "DATASUM" in keys:
        _set_card(cards, "DATASUM", str(datasum(data)))
    if "CHECKSUM" in keys:
        original = next(c for c in cards if c[:8].strip().upper() == "CHECKSUM")
        _set_card(cards, "CHECKSUM", "0" * 16)
        total = _ones_sum(_header_bytes(cards), datasum(data))
        new = encode_checksum(total)
        if Card.fromstring(original).value == new:
            cards[cards.index(next(c for c in cards if c[:8].strip().upper() == "CHECKSUM"))] = original
        else:
            _set_card(cards, "CHECKSUM", new)
    return _header_bytes(cards) + data


# --------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------


@dataclass
class ExtractResult:
    """Outcome of :func:`extract_targets`.

    Attributes
    ----------
    url
        Source file.
    path
        Written file, or ``None`` when none of the targets is in the source.
    file_size
        Size of the source file in bytes.
    bytes_fetched
        Body bytes received for this extraction (headers, FIBERMAP, selected rows).
    requests
        HTTP requests sent.
    found
        Requested TARGETIDs present in the file, in file order.
    missing
        Requested TARGETIDs absent from the file.
    nspec
        Targets in the source file.
    skipped
        True when *path* already existed and nothing was fetched.
    """

    url: str
    path: Path | None
    file_size: int
    bytes_fetched: int
    requests: int
    found: list[int]
    missing: list[int]
    nspec: int
    skipped: bool = False

    @property
    def fraction(self) -> float:
        """``bytes_fetched / file_size``."""
        return self.bytes_fetched / self.file_size if self.file_size else 0.0


def output_name(name: str, targetids: Iterable[int]) -> str:
    """Name of a cut: ``coadd-main-dark-10016.fits`` -> ``coadd-main-dark-10016-targets-<8 hex>.fits``.

    The suffix is a digest of the sorted, unique TARGETIDs, so the same request maps to the
    same file (and a rerun is a no-op).
    """
    ids = sorted({int(t) for t in targetids})
    tag = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:8]
    stem = name[: -len(".fits")] if name.endswith(".fits") else name
    return f"{stem}-targets-{tag}.fits"


def extract_targets(
    url: str,
    out_path: str | os.PathLike[str],
    targetids: Sequence[int] | np.ndarray,
    *,
    client: HttpClient | None = None,
    jobs: int = 4,
    merge_gap: int = 16 * 1024,
    overwrite: bool = False,
) -> ExtractResult:
    """Write the rows/spectra of *targetids* from the remote coadd/redrock *url* to *out_path*.

    Parameters
    ----------
    url
        A DESI coadd or redrock file (any FITS file with a FIBERMAP table) on a server
        that honours HTTP ``Range``.
    out_path
        Output FITS file (written atomically).
    targetids
        TARGETIDs wanted; those not in the file are reported in ``missing``.
    client
        HTTP client (retry policy, counters); a fresh one by default.
    jobs
        Range requests in flight at once.
    merge_gap
        Byte runs closer than this are read by one request (fewer round trips for a few
        extra bytes).
    overwrite
        Re-extract even if *out_path* exists (default: keep it and fetch nothing).

    Returns
    -------
    ExtractResult
        Including ``bytes_fetched`` against ``file_size``.

    Raises
    ------
    InputError
        No TARGETIDs given.
    FormatError
        No FIBERMAP table, a table with a heap, or a malformed/truncated file.
    FetchError
        Network failure, or a server that ignores Range requests.
    """
    wanted = np.unique(np.asarray(list(targetids), dtype=np.int64))
    if wanted.size == 0:
        raise InputError("no TARGETIDs given", parameter="targets")
    if jobs < 1:
        raise InputError("must be >= 1", parameter="jobs")
    out_path = Path(out_path)
    client = client or HttpClient()
    if out_path.exists() and not overwrite:
        return _existing(url, out_path, wanted)
    req0, bytes0 = client.requests, client.bytes_received
    remote = RemoteFits(url, client)
    hdus = remote.hdus()
    _refuse_heaps(hdus, url)
    ref = next((h for h in hdus if h.extname == REFERENCE_TABLE and h.xtension == "BINTABLE"), None)
    if ref is None:
        raise FormatError(
            f"no {REFERENCE_TABLE} table: cannot tell which rows belong to which target",
            file=url,
            hdu=REFERENCE_TABLE,
        )
    ref_col = _targetid_column(ref)
    if ref_col is None:
        raise FormatError("no TARGETID column", file=url, hdu=REFERENCE_TABLE, column="TARGETID")
    nspec = ref.axes[1]
    ref_rows = remote.read(ref.data_start, ref.data_size)
    ref_tid = _targetids(ref, ref_rows, ref_col)
    rows = np.flatnonzero(np.isin(ref_tid, wanted))
    found = ref_tid[rows]
    missing = sorted(set(wanted.tolist()) - set(found.tolist()))

    def result(path: Path | None) -> ExtractResult:
        return ExtractResult(url, path, remote.size, client.bytes_received - bytes0,
                             client.requests - req0, found.tolist(), missing, nspec)

    if rows.size == 0:
        return result(None)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="desilab-range") as pool, \
            atomic_output(out_path) as tmp, open(tmp, "wb") as fh:
        cutter = _Cutter(remote, rows, found, nspec, pool, merge_gap, {ref.index: ref_rows})
        for hdu in hdus:
            cards, data = cutter.cut(hdu)
            fh.write(_finish_hdu(hdu, cards, data))
    log.debug("%s: %d of %d targets, fetched %d of %d bytes", url, rows.size, nspec,
             client.bytes_received - bytes0, remote.size)
    return result(out_path)


def _existing(url: str, out_path: Path, wanted: np.ndarray) -> ExtractResult:
    """Describe an already-written cut without touching the network."""
    from desilab.io.fits import open_fits, require_hdu

    with open_fits(out_path) as fits:
        tid = np.asarray(require_hdu(fits, REFERENCE_TABLE).read(columns=["TARGETID"])["TARGETID"])
    found = [int(t) for t in tid]
    missing = sorted(set(wanted.tolist()) - set(found))
    return ExtractResult(url, out_path, 0, 0, 0, found, missing, -1, skipped=True)


def _refuse_heaps(hdus: list[HduLayout], url: str) -> None:
    for hdu in hdus:
        if hdu.xtension == "BINTABLE" and hdu.pcount > 0:
            what = "a tile-compressed image" if hdu.value("ZIMAGE") is True else "variable-length arrays"
            raise FormatError(
                f"table has a heap (PCOUNT={hdu.pcount}, {what}); row extraction is not supported",
                file=url,
                hdu=hdu.extname,
                hint="download the whole file instead (omit --targets)",
            )


class _Cutter:
    """Cut one HDU at a time: returns (new header cards, new unpadded data)."""

    def __init__(self, remote: RemoteFits, rows: np.ndarray, found: np.ndarray, nspec: int,
                 pool: ThreadPoolExecutor, merge_gap: int, cache: dict[int, bytes]) -> None:
        self.remote = remote
        self.rows = rows
        self.found = found
        self.nspec = nspec
        self.pool = pool
        self.merge_gap = merge_gap
        self.cache = cache

    def whole(self, hdu: HduLayout) -> bytes:
        if hdu.index not in self.cache:
            self.cache[hdu.index] = self.remote.read(hdu.data_start, hdu.data_size)
        return self.cache[hdu.index]

    def runs(self, hdu: HduLayout, unit: int) -> bytes:
        """The wanted rows/spectra of *unit* bytes each, in file order."""
        if hdu.index in self.cache:
            blob = memoryview(self.cache[hdu.index])
            return b"".join(bytes(blob[r * unit : (r + 1) * unit]) for r in self.rows)
        ranges = [(hdu.data_start + int(r) * unit, unit) for r in self.rows]
        return b"".join(self.remote.read_ranges(ranges, merge_gap=self.merge_gap, pool=self.pool))

    def cut(self, hdu: HduLayout) -> tuple[list[str], bytes]:
        cards = list(hdu.cards)
        axes = hdu.axes
        if hdu.data_size == 0:
            return cards, b""
        if hdu.xtension == "BINTABLE":
            return self._cut_table(hdu, cards, axes)
        if hdu.xtension in ("IMAGE", "") and len(axes) >= 2 and axes[-1] == self.nspec \
                and hdu.pcount == 0 and int(hdu.value("GCOUNT", 1) or 1) == 1:
            unit = abs(hdu.bitpix) // 8 * math.prod(axes[:-1])
            _set_card(cards, f"NAXIS{len(axes)}", int(self.rows.size))
            return cards, self.runs(hdu, unit)
        return cards, self.whole(hdu)

    def _cut_table(self, hdu: HduLayout, cards: list[str], axes: list[int]) -> tuple[list[str], bytes]:
        row_bytes, nrows = axes[0], axes[1]
        col = _targetid_column(hdu)
        if nrows == self.nspec:
            data = self.runs(hdu, row_bytes)
            if col is None or np.array_equal(_targetids(hdu, data, col), self.found):
                _set_card(cards, "NAXIS2", int(self.rows.size))
                return cards, data
            log.debug("%s: TARGETIDs not row-matched to FIBERMAP; selecting by TARGETID", hdu.extname)
        if col is None:
            log.debug("%s: no TARGETID and %d rows (nspec %d); copied whole", hdu.extname, nrows, self.nspec)
            return cards, self.whole(hdu)
        blob = self.whole(hdu)
        keep = np.flatnonzero(np.isin(_targetids(hdu, blob, col), self.found))
        view = memoryview(blob)
        _set_card(cards, "NAXIS2", int(keep.size))
        return cards, b"".join(bytes(view[r * row_bytes : (r + 1) * row_bytes]) for r in keep)
