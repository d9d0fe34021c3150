"""Download DR1 files from the public tree: selection -> URLs, resume, sha256 verification.

Three layers, each usable on its own:

* :func:`plan` turns a :class:`Selection` (products, survey, program, healpix pixels,
  version) into :class:`RemoteFile` paths relative to the release root, laid out exactly as
  on ``https://data.desi.lbl.gov/public/dr1`` (desidatamodel; see ``docs/fetch.md``);
* :class:`HttpClient` is a thread-safe HTTP client (one ``requests.Session`` per thread)
  with bounded retries and exponential backoff on connection errors, 429 and 5xx;
* :func:`download` fetches files in parallel into a local mirror with the same layout,
  resuming ``NAME.part`` files with ``Range: bytes=N-`` (and starting over when the server
  ignores Range), verifying each file against the ``*.sha256sum`` file published in its
  directory, and renaming to the final name only after verification.

Checksum files: DESI publishes one ``sha256sum``-format file per directory. Its name is the
directory path with ``/`` replaced by ``_``: relative to ``spectro/`` and prefixed
``redux_`` for the spectroscopic reductions (``redux_iron_healpix_main_dark_100_10016``,
``redux_iron_zcatalog_v1``), relative to the release root and prefixed with the release
name elsewhere (``dr1_vac_dr1_desivast_v1.0``, ``dr1_survey_catalogs_dr1_QSO_iron``).
When that name is absent the directory listing is searched for any ``*.sha256sum``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import quote

import requests
import urllib3.exceptions
from rich.progress import Progress, TaskID

from desilab import __version__
from desilab.errors import ChecksumError, FetchError, InputError

__all__ = [
    "DEFAULT_VERSIONS",
    "PRODUCTS",
    "PROGRAMS",
    "SURVEYS",
    "DownloadResult",
    "HTTPStatusError",
    "HttpClient",
    "RemoteFile",
    "Selection",
    "checksum_file_name",
    "download",
    "file_url",
    "format_bytes",
    "parse_checksums",
    "parse_int_list",
    "plan",
    "probe_sizes",
    "sha256_file",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

PRODUCTS = ("zcatalog", "coadd", "redrock", "fastspecfit", "desivast", "qso")
SURVEYS = ("cmx", "main", "special", "sv1", "sv2", "sv3")
PROGRAMS = ("backup", "bright", "dark", "other")
#: Default version of each versioned product (the latest public DR1 one).
DEFAULT_VERSIONS = {"zcatalog": "v1", "fastspecfit": "v3.0", "desivast": "v1.0", "qso": "v0"}
_KNOWN_VERSIONS = {
    "zcatalog": ("v0", "v1"),
    "fastspecfit": ("v2.1", "v3.0"),
    "desivast": ("v1.0",),
}
_QSO_VERSION = re.compile(r"^v\d+(\.\d+)?$")
#: nside=64 has 12 * 64**2 pixels.
N_HEALPIX_64 = 12 * 64 * 64
_DESIVAST_FILES = tuple(
    f"DESIVAST_BGS_VOLLIM_{alg}_{cap}.fits"
    for alg in ("VoidFinder", "V2_REVOLVER", "V2_VIDE", "V2_ZOBOV")
    for cap in ("NGC", "SGC")
)
CHUNK = 1 << 20
#: network read size: on a dropped connection at most this much received data is lost
NET_CHUNK = 1 << 16


# --------------------------------------------------------------------------------------
# Selection -> files
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file of the public tree.

    Attributes
    ----------
    product
        Product name (one of :data:`PRODUCTS`).
    relpath
        POSIX path relative to the release root, e.g.
        ``spectro/redux/iron/healpix/main/dark/100/10016/coadd-main-dark-10016.fits``.
    checksum_file
        Path (relative to the release root) of the ``*.sha256sum`` file that lists it.
    """

    product: str
    relpath: str
    checksum_file: str

    @property
    def name(self) -> str:
        """File name without directory."""
        return PurePosixPath(self.relpath).name

    @property
    def directory(self) -> str:
        """Directory part of :attr:`relpath`."""
        return str(PurePosixPath(self.relpath).parent)


@dataclass(frozen=True)
class Selection:
    """What to fetch; validated on construction.

    Parameters
    ----------
    products
        Product names from :data:`PRODUCTS`.
    survey
        One of :data:`SURVEYS`; ``"all"`` selects ``zall-pix-SPECPROD.fits`` for zcatalog.
    program
        One of :data:`PROGRAMS`.
    healpix
        nside=64 NESTED pixels; required for ``coadd``/``redrock``; for fastspecfit v3.0
        main bright/dark it restricts the nside=1 files to those containing these pixels.
    version
        Version of the versioned products (default :data:`DEFAULT_VERSIONS`).
    specprod
        Spectroscopic production (``iron`` for DR1).
    release
        Release name, used in VAC paths and checksum-file names (``dr1``).

    Raises
    ------
    InputError
        Naming the offending parameter.
    """

    products: tuple[str, ...]
    survey: str = "main"
    program: str = "dark"
    healpix: tuple[int, ...] = ()
    version: str | None = None
    specprod: str = "iron"
    release: str = "dr1"

    def __post_init__(self) -> None:
        if not self.products:
            raise InputError("give at least one product", parameter="PRODUCT", hint=", ".join(PRODUCTS))
        for product in self.products:
            if product not in PRODUCTS:
                raise InputError(
                    f"unknown product {product!r}", parameter="PRODUCT", hint="choose from " + ", ".join(PRODUCTS)
                )
        surveys = (*SURVEYS, "all") if self.products == ("zcatalog",) else SURVEYS
        if self.survey not in surveys:
            hint = "choose from " + ", ".join(surveys)
            if self.survey == "all":
                hint = "'all' (zall-pix) is only valid for the zcatalog product alone"
            raise InputError(f"unknown survey {self.survey!r}", parameter="survey", hint=hint)
        if self.program not in PROGRAMS:
            raise InputError(
                f"unknown program {self.program!r}", parameter="program", hint="choose from " + ", ".join(PROGRAMS)
            )
        for pix in self.healpix:
            if not 0 <= int(pix) < N_HEALPIX_64:
                raise InputError(
                    f"healpix {pix} out of range for nside=64 (0..{N_HEALPIX_64 - 1})", parameter="healpix"
                )
        if {"coadd", "redrock"} & set(self.products) and not self.healpix:
            raise InputError(
                "coadd/redrock files are per healpix pixel: give the pixels",
                parameter="healpix",
                hint="nside=64 NESTED, the zcatalog HEALPIX column; e.g. --healpix 10016,10017",
            )
        if self.version is not None:
            for product in self.products:
                self.version_of(product)

    def version_of(self, product: str) -> str | None:
        """The version used for *product* (``None`` for unversioned products)."""
        if product not in DEFAULT_VERSIONS:
            return None
        if self.version is None:
            return DEFAULT_VERSIONS[product]
        known = _KNOWN_VERSIONS.get(product)
        ok = self.version in known if known else bool(_QSO_VERSION.match(self.version))
        if not ok:
            choices = ", ".join(known) if known else "v0, v1..."
            raise InputError(
                f"no version {self.version!r} of {product} in DR1",
                parameter="version",
                hint=f"{product} versions: {choices}; fetch products with different versions separately",
            )
        return self.version


def checksum_file_name(directory: str, release: str = "dr1") -> str:
    """Name of the ``*.sha256sum`` file DESI publishes in *directory*.

    Parameters
    ----------
    directory
        Directory relative to the release root (POSIX).
    release
        Release name (prefix outside ``spectro/redux``).

    Examples
    --------
    >>> checksum_file_name("spectro/redux/iron/healpix/main/dark/100/10016")
    'redux_iron_healpix_main_dark_100_10016.sha256sum'
    >>> checksum_file_name("vac/dr1/desivast/v1.0")
    'dr1_vac_dr1_desivast_v1.0.sha256sum'
    """
    parts = [p for p in directory.strip("/").split("/") if p]
    if parts[:2] == ["spectro", "redux"]:
        return "redux_" + "_".join(parts[2:]) + ".sha256sum"
    return f"{release}_" + "_".join(parts) + ".sha256sum"


def _remote(product: str, relpath: str, release: str) -> RemoteFile:
    directory = str(PurePosixPath(relpath).parent)
    return RemoteFile(product, relpath, f"{directory}/{checksum_file_name(directory, release)}")


def plan(selection: Selection) -> list[RemoteFile]:
    """List the files of the public tree that *selection* names.

    Parameters
    ----------
    selection
        What to fetch.

    Returns
    -------
    list of RemoteFile
        In product order, without duplicates.
    """
    s = selection
    redux = f"spectro/redux/{s.specprod}"
    out: list[RemoteFile] = []
    for product in s.products:
        version = s.version_of(product)
        if product == "zcatalog":
            name = f"zall-pix-{s.specprod}.fits" if s.survey == "all" else f"zpix-{s.survey}-{s.program}.fits"
            out.append(_remote(product, f"{redux}/zcatalog/{version}/{name}", s.release))
        elif product in ("coadd", "redrock"):
            for pix in s.healpix:
                d = f"{redux}/healpix/{s.survey}/{s.program}/{pix // 100}/{pix}"
                out.append(_remote(product, f"{d}/{product}-{s.survey}-{s.program}-{pix}.fits", s.release))
        elif product == "fastspecfit":
            d = f"vac/{s.release}/fastspecfit/{s.specprod}/{version}/catalogs"
            stem = f"fastspec-{s.specprod}-{s.survey}-{s.program}"
            if version != "v2.1" and s.survey == "main" and s.program in ("bright", "dark"):
                # v3.0 splits main bright/dark by nside=1 pixel (nested: pix64 >> 12).
                hp1 = sorted({p // 4096 for p in s.healpix}) if s.healpix else range(12)
                out.extend(_remote(product, f"{d}/{stem}-nside1-hp{h:02d}.fits", s.release) for h in hp1)
            else:
                out.append(_remote(product, f"{d}/{stem}.fits", s.release))
        elif product == "desivast":
            d = f"vac/{s.release}/desivast/{version}"
            out.extend(_remote(product, f"{d}/{name}", s.release) for name in _DESIVAST_FILES)
        elif product == "qso":
            d = f"survey/catalogs/{s.release}/QSO/{s.specprod}"
            out.append(_remote(product, f"{d}/QSO_cat_{s.specprod}_cumulative_{version}.fits", s.release))
    seen: set[str] = set()
    unique = []
    for rf in out:
        if rf.relpath not in seen:
            seen.add(rf.relpath)
            unique.append(rf)
    return unique


def parse_int_list(text: str, *, parameter: str) -> list[int]:
    """Parse integers separated by commas, blanks or newlines (``#`` starts a comment).

    Raises
    ------
    InputError
        Naming *parameter* and the first bad token.
    """
    values = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for token in re.split(r"[,\s]+", line.strip()):
            if not token:
                continue
            try:
                values.append(int(token))
            except ValueError:
                raise InputError(f"not an integer: {token!r}", parameter=parameter) from None
    return values


def file_url(base_url: str, relpath: str) -> str:
    """URL of *relpath* under *base_url* (the release root)."""
    return base_url.rstrip("/") + "/" + quote(relpath.lstrip("/"))


def format_bytes(n: float | None) -> str:
    """Human-readable size (``1.5 MB``; decimal units like the DESI docs)."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------
# HTTP with retries
# --------------------------------------------------------------------------------------


class TransientError(Exception):
    """A failure worth retrying (connection dropped, short read, 429/5xx)."""


class HTTPStatusError(FetchError):
    """The server answered with an HTTP error status (4xx); ``status`` holds it."""

    def __init__(self, message: str, *, status: int = 0, **kwargs) -> None:
        self.status = status
        super().__init__(message, **kwargs)


_TRANSIENT = (
    TransientError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.ReadTimeoutError,
)


class HttpClient:
    """Thread-safe HTTP access with bounded retries and exponential backoff.

    Parameters
    ----------
    retries
        Extra attempts after the first on connection errors, short reads, 429 and 5xx.
    backoff
        First wait in seconds; doubled after each failed attempt, capped at *max_backoff*.
    max_backoff
        Longest wait between attempts.
    timeout
        ``(connect, read)`` timeouts in seconds for each request.

    Attributes
    ----------
    bytes_received
        Body bytes received through :meth:`get_bytes`/:meth:`get_range` and by
        :func:`download` (all threads together).
    requests
        Number of requests sent.
    """

    def __init__(
        self,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: tuple[float, float] = (15.0, 60.0),
    ) -> None:
        if retries < 0:
            raise InputError("must be >= 0", parameter="retries")
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self.bytes_received = 0
        self.requests = 0

    @property
    def session(self) -> requests.Session:
        """This thread's session (created on first use)."""
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = requests.Session()
            sess.headers["User-Agent"] = f"desilab/{__version__}"
            # Identity encoding: byte offsets and Content-Length must refer to the file itself.
            sess.headers["Accept-Encoding"] = "identity"
            self._local.session = sess
        return sess

    def count(self, requests_: int = 0, nbytes: int = 0) -> None:
        """Add to the request/byte counters (thread-safe)."""
        with self._lock:
            self.requests += requests_
            self.bytes_received += nbytes

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None, stream: bool = False):
        """One request, no retry; 429/5xx raise :class:`TransientError`, other errors FetchError.

        416 (range not satisfiable) is returned to the caller.
        """
        self.count(requests_=1)
        resp = self.session.request(
            method, url, headers=headers, stream=stream, timeout=self.timeout, allow_redirects=True
        )
        code = resp.status_code
        if code == 429 or code >= 500:
            resp.close()
            raise TransientError(f"HTTP {code} {resp.reason}")
        if code >= 400 and code != 416:
            resp.close()
            hint = "check --base-url and the selection" if code == 404 else None
            raise HTTPStatusError(f"HTTP {code} {resp.reason}", status=code, file=url, hint=hint)
        return resp

    def retrying(self, url: str, func: Callable[[], T], *, what: str = "request") -> T:
        """Call *func* until it succeeds, retrying transient failures with backoff.

        Raises
        ------
        FetchError
            After ``retries + 1`` failed attempts, naming *url* and the last error.
        """
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return func()
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    raise FetchError(
                        f"{what} failed after {attempt + 1} attempt(s): {_describe(exc)}",
                        file=url,
                        hint="check the network; rerun to resume",
                    ) from exc
                log.debug("%s %s: %s; retrying in %.1f s", what, url, _describe(exc), delay)
                if delay > 0:
                    time.sleep(delay)
                delay = min(self.max_backoff, max(delay, 1e-3) * 2)
        raise AssertionError("unreachable")

    def head_size(self, url: str) -> int | None:
        """Size of *url* from HEAD's Content-Length (or a 1-byte range GET if HEAD fails)."""

        def once() -> int | None:
            try:
                resp = self.send("HEAD", url)
            except HTTPStatusError as exc:
                if exc.status == 404:
                    raise
                resp = None  # HEAD refused (405...): ask for one byte instead
            if resp is not None:
                with resp:
                    length = resp.headers.get("Content-Length")
                    if resp.status_code == 200 and length is not None:
                        return int(length)
            resp = self.send("GET", url, headers={"Range": "bytes=0-0"}, stream=True)
            with resp:
                total = _content_range_total(resp.headers.get("Content-Range"))
                if resp.status_code == 206 and total is not None:
                    return total
                length = resp.headers.get("Content-Length")
                return int(length) if resp.status_code == 200 and length is not None else None

        return self.retrying(url, once, what="HEAD")

    def get_bytes(self, url: str) -> bytes:
        """Whole body of a small resource (checksum files, directory listings)."""

        def once() -> bytes:
            resp = self.send("GET", url)
            with resp:
                if resp.status_code != 200:
                    raise FetchError(f"unexpected HTTP {resp.status_code}", file=url)
                body = resp.content
                _check_length(resp, len(body))
            self.count(nbytes=len(body))
            return body

        return self.retrying(url, once, what="GET")

    def get_range(self, url: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of *url* by one ``Range`` request.

        Raises
        ------
        FetchError
            If the server ignores Range (answers 200) or returns another range.
        """
        if length <= 0:
            return b""
        end = start + length - 1

        def once() -> bytes:
            resp = self.send("GET", url, headers={"Range": f"bytes={start}-{end}"}, stream=True)
            with resp:
                if resp.status_code != 206:
                    raise FetchError(
                        f"server answered HTTP {resp.status_code} to a Range request (range reads unsupported)",
                        file=url,
                        hint="download the whole file instead (omit --targets)",
                    )
                got = _content_range_start(resp.headers.get("Content-Range"))
                if got != start:
                    raise FetchError(
                        f"server returned range starting at {got}, asked for {start}", file=url
                    )
                body = resp.raw.read(length + 1, decode_content=False)
                self.count(nbytes=len(body))
                if len(body) != length:
                    raise TransientError(f"short read: {len(body)} of {length} bytes")
            return body

        return self.retrying(url, once, what="range GET")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_length(resp: requests.Response, received: int) -> None:
    length = resp.headers.get("Content-Length")
    if length is not None and int(length) != received:
        raise TransientError(f"short read: {received} of {length} bytes")


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)", value or "")
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------
# Checksum files
# --------------------------------------------------------------------------------------


def parse_checksums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` output (``HEX  NAME`` or ``HEX *NAME``) into ``{name: hex}``.

    Names are stored as written (``./`` prefix removed); lookups use the file name.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([0-9a-fA-F]{64})\s+\*?(.+)$", line)
        if not m:
            continue
        name = m.group(2).strip()
        while name.startswith("./"):
            name = name[2:]
        out[name] = m.group(1).lower()
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Manifests:
    """Published checksums per directory, loaded once (thread-safe), cached in the mirror."""

    def __init__(self, client: HttpClient, base_url: str, dest: Path) -> None:
        self.client = client
        self.base_url = base_url
        self.dest = dest
        self._lock = threading.Lock()
        self._dir_locks: dict[str, threading.Lock] = {}
        self._remote: dict[str, dict[str, str]] = {}

    def _dir_lock(self, directory: str) -> threading.Lock:
        with self._lock:
            return self._dir_locks.setdefault(directory, threading.Lock())

    def expected(self, rf: RemoteFile, *, refresh: bool = False) -> tuple[str, str]:
        """``(sha256, checksum file relpath)`` published for *rf*.

        The local copy of the checksum file is used when it lists *rf*; otherwise (or
        with *refresh*) it is fetched from the server and saved into the mirror.
        """
        with self._dir_lock(rf.directory):
            if not refresh and rf.directory not in self._remote:
                local = self.dest / rf.checksum_file
                if local.is_file():
                    sums = parse_checksums(local.read_text(errors="replace"))
                    if rf.name in sums:
                        return sums[rf.name], rf.checksum_file
            if refresh or rf.directory not in self._remote:
                self._remote[rf.directory] = self._load_remote(rf)
            sums = self._remote[rf.directory]
        if rf.name not in sums:
            raise FetchError(
                f"not listed in the published checksum file {rf.checksum_file}",
                file=rf.relpath,
                hint="use --no-verify to download without verification",
            )
        return sums[rf.name], rf.checksum_file

    def _load_remote(self, rf: RemoteFile) -> dict[str, str]:
        url = file_url(self.base_url, rf.checksum_file)
        try:
            body = self.client.get_bytes(url)
        except HTTPStatusError as exc:
            if exc.status not in (403, 404):
                raise
            return self._load_from_listing(rf)
        self._save(rf.checksum_file, body)
        return parse_checksums(body.decode("utf-8", errors="replace"))

    def _load_from_listing(self, rf: RemoteFile) -> dict[str, str]:
        """Fallback: any ``*.sha256sum`` linked from the directory listing."""
        dir_url = file_url(self.base_url, rf.directory) + "/"
        try:
            listing = self.client.get_bytes(dir_url).decode("utf-8", errors="replace")
        except HTTPStatusError as exc:
            if exc.status == 404:
                raise FetchError(
                    "directory not found on the server (HTTP 404)",
                    file=dir_url,
                    hint="check --base-url and the selection (survey, program, healpix, version)",
                ) from exc
            listing = ""
        names = sorted({PurePosixPath(h).name for h in re.findall(r'href="([^"?#]+\.sha256sum)"', listing)})
        sums: dict[str, str] = {}
        for name in names:
            rel = f"{rf.directory}/{name}"
            body = self.client.get_bytes(file_url(self.base_url, rel))
            self._save(rel, body)
            sums.update(parse_checksums(body.decode("utf-8", errors="replace")))
        if not names:
            raise FetchError(
                f"no published checksum file in {rf.directory}/ (looked for {PurePosixPath(rf.checksum_file).name})",
                file=rf.relpath,
                hint="use --no-verify to download without verification",
            )
        return sums

    def _save(self, relpath: str, body: bytes) -> None:
        path = self.dest / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(body)
        os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------


@dataclass
class DownloadResult:
    """What happened to one file.

    Attributes
    ----------
    remote
        The file.
    path
        Local path in the mirror.
    status
        ``"downloaded"``, ``"resumed"`` (continued a ``.part``) or ``"skipped"``
        (already present and verified).
    size
        File size in bytes.
    bytes_transferred
        Body bytes received for this file in this run.
    sha256
        Verified digest (``None`` with ``verify=False``).
    """

    remote: RemoteFile
    path: Path
    status: str
    size: int
    bytes_transferred: int = 0
    sha256: str | None = None


@dataclass
class _Bars:
    progress: Progress | None
    overall: TaskID | None = None
    total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)

    def add_total(self, n: int) -> None:
        if self.progress is None or self.overall is None:
            return
        with self.lock:
            self.total += n
            self.progress.update(self.overall, total=self.total)

    def advance(self, task: TaskID | None, n: int) -> None:
        if self.progress is None:
            return
        if task is not None:
            self.progress.advance(task, n)
        if self.overall is not None:
            self.progress.advance(self.overall, n)


def download(
    files: Sequence[RemoteFile],
    *,
    base_url: str,
    dest: str | os.PathLike[str],
    jobs: int = 4,
    verify: bool = True,
    client: HttpClient | None = None,
    progress: Progress | None = None,
) -> list[DownloadResult]:
    """Download *files* into the mirror *dest* (same layout as the public tree).

    Parameters
    ----------
    files
        From :func:`plan`.
    base_url
        Release root, e.g. ``https://data.desi.lbl.gov/public/dr1``.
    dest
        Local mirror root.
    jobs
        Files downloaded in parallel.
    verify
        Check each file against its directory's published ``*.sha256sum`` (default). Without
        it, a file already present under its final name is skipped unchecked.
    client
        HTTP client (retry policy); default :class:`HttpClient`.
    progress
        Rich progress to draw bars on (one per file, one overall), or ``None``.

    Returns
    -------
    list of DownloadResult
        In the order of *files*.

    Raises
    ------
    ChecksumError
        A file does not match its published checksum; neither the file nor its ``.part``
        is left behind.
    FetchError
        Network/HTTP failure after retries; a ``.part`` file is kept for the next run.
    """
    if jobs < 1:
        raise InputError("must be >= 1", parameter="jobs")
    client = client or HttpClient()
    dest = Path(dest)
    manifests = _Manifests(client, base_url, dest)
    bars = _Bars(progress)
    if progress is not None:
        bars.overall = progress.add_task(f"total ({len(files)} files)", total=None)

    def one(rf: RemoteFile) -> DownloadResult:
        return _download_one(rf, base_url=base_url, dest=dest, verify=verify, client=client,
                             manifests=manifests, bars=bars)

    results: list[DownloadResult | None] = [None] * len(files)
    errors: list[tuple[RemoteFile, Exception]] = []
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="desilab-fetch")
    futures = [pool.submit(one, rf) for rf in files]
    try:
        for i, (rf, fut) in enumerate(zip(files, futures, strict=True)):
            try:
                results[i] = fut.result()
            except Exception as exc:
                errors.append((rf, exc))
    except BaseException:  # Ctrl-C: stop the transfers at their next chunk, keep the .part files
        bars.cancel.set()
        for fut in futures:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
    if errors:
        _raise_combined(errors)
    return [r for r in results if r is not None]


def _raise_combined(errors: list[tuple[RemoteFile, Exception]]) -> None:
    first = errors[0][1]
    if len(errors) == 1:
        raise first
    for rf, exc in errors:
        log.error("%s", exc if isinstance(exc, FetchError) else f"{rf.relpath}: {exc}")
    others = ", ".join(e[0].name for e in errors[1:])
    if isinstance(first, FetchError):
        raise type(first)(
            f"{first.message}; {len(errors) - 1} more file(s) failed: {others}",
            file=first.file,
            hint=first.hint,
        ) from first
    raise first


def _download_one(
    rf: RemoteFile,
    *,
    base_url: str,
    dest: Path,
    verify: bool,
    client: HttpClient,
    manifests: _Manifests,
    bars: _Bars,
) -> DownloadResult:
    final = dest / rf.relpath
    part = final.with_name(final.name + ".part")
    url = file_url(base_url, rf.relpath)
    expected = manifests.expected(rf)[0] if verify else None

    if final.exists():
        size = final.stat().st_size
        if not verify:
            log.debug("%s present; not verified (--no-verify)", rf.relpath)
            bars.add_total(size)
            bars.advance(None, size)
            return DownloadResult(rf, final, "skipped", size)
        digest = sha256_file(final)
        if digest != expected:
            # The mirror's checksum copy may be stale: ask the server once more.
            expected = manifests.expected(rf, refresh=True)[0]
        if digest == expected:
            bars.add_total(size)
            bars.advance(None, size)
            return DownloadResult(rf, final, "skipped", size, 0, digest)
        log.warning("%s differs from its published checksum; downloading it again", rf.relpath)

    final.parent.mkdir(parents=True, exist_ok=True)
    task = None
    if bars.progress is not None:
        task = bars.progress.add_task(rf.name, total=None)
    state = {"transferred": 0, "resumed": False, "announced": 0}
    full_retry_done = False
    while True:
        client.retrying(url, lambda: _transfer(client, url, part, state, bars, task), what="download")
        digest = sha256_file(part) if verify else None
        if not verify or digest == expected:
            break
        part.unlink(missing_ok=True)
        if state["resumed"] and not full_retry_done:
            # The old .part may have been corrupt: start over once before giving up.
            log.warning("%s: checksum mismatch after resuming; downloading from scratch", rf.relpath)
            full_retry_done = True
            state["resumed"] = False
            continue
        final.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch: published {expected}, downloaded {digest}; file removed",
            file=rf.relpath,
            hint=f"checksums from {rf.checksum_file}; retry later or report it",
        )
    size = part.stat().st_size
    os.replace(part, final)
    if task is not None and bars.progress is not None:
        bars.progress.update(task, total=size, completed=size, visible=False)
    status = "resumed" if state["resumed"] else "downloaded"
    return DownloadResult(rf, final, status, size, state["transferred"], digest)


def _transfer(
    client: HttpClient, url: str, part: Path, state: dict, bars: _Bars, task: TaskID | None
) -> None:
    """One attempt: continue *part* from its current size (or from zero) to the end."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else None
    resp = client.send("GET", url, headers=headers, stream=True)
    with resp:
        if resp.status_code == 416:
            total = _content_range_total(resp.headers.get("Content-Range"))
            if total is not None and total == offset:
                return  # the .part is already complete
            part.unlink(missing_ok=True)
            raise TransientError("stale partial file (range not satisfiable); starting over")
        if resp.status_code == 206 and offset:
            start = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise TransientError(f"server resumed at byte {start}, asked for {offset}; starting over")
            mode = "ab"
            state["resumed"] = True
        elif resp.status_code == 200:
            if offset:
                log.info("%s: server ignored the Range request; downloading the whole file", url)
            offset = 0
            mode = "wb"
        else:
            raise FetchError(f"unexpected HTTP {resp.status_code}", file=url)
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is not None and bars.progress is not None:
            announced = state["announced"]
            bars.add_total(total - announced)
            state["announced"] = total
            bars.progress.update(task, total=total, completed=offset)
            if offset and not announced:
                bars.advance(None, offset)
        received = 0
        with open(part, mode) as fh:
            try:
                for chunk in resp.iter_content(chunk_size=NET_CHUNK):
                    if bars.cancel.is_set():
                        raise FetchError("interrupted; rerun to resume", file=url)
                    if chunk:
                        fh.write(chunk)
                        received += len(chunk)
                        bars.advance(task, len(chunk))
            finally:
                client.count(nbytes=received)
                state["transferred"] += received
        if length is not None and received != int(length):
            raise TransientError(f"connection closed after {received} of {length} bytes")


def probe_sizes(
    files: Iterable[RemoteFile], *, base_url: str, jobs: int = 4, client: HttpClient | None = None
) -> list[tuple[RemoteFile, int | None]]:
    """Sizes of *files* from HEAD requests (``None`` where the server gives none).

    Raises
    ------
    FetchError
        A file does not exist on the server (HTTP 404) or the server is unreachable.
    """
    if jobs < 1:
        raise InputError("must be >= 1", parameter="jobs")
    client = client or HttpClient()
    files = list(files)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="desilab-head") as pool:
        sizes = list(pool.map(lambda rf: client.head_size(file_url(base_url, rf.relpath)), files))
    return list(zip(files, sizes, strict=True))
