"""A real HTTP server for tests: serves a directory tree on 127.0.0.1 from a thread.

It behaves like the public DESI file server where it matters to ``desilab fetch``:
``GET``/``HEAD``, ``Range: bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` answered with 206 and
``Content-Range``, 416 for unsatisfiable ranges, HTML directory listings, keep-alive
(HTTP/1.1). Test knobs:

* :meth:`TreeServer.drop_after` - cut the connection after N body bytes, for the next K
  GETs of a path (an interrupted transfer);
* :attr:`TreeServer.ignore_range` - answer every GET with 200 and the whole file;
* :meth:`TreeServer.fail` - answer the next K requests of a path with an HTTP status;
* :attr:`TreeServer.log` - every request (method, path, Range header, status, body bytes
  sent), with :meth:`TreeServer.bytes_served` and :meth:`TreeServer.requests_for`.

Use the ``tree_server`` fixture (a server over ``tmp_path / "tree"``) or the class as a
context manager. Only the loopback interface is ever bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

__all__ = ["Request", "TreeServer", "tree_server", "write_sha256sum"]

CHUNK = 64 * 1024


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


class TreeServer:
    """Serve *root* over HTTP on ``127.0.0.1:<ephemeral port>`` from a daemon thread.

    Parameters
    ----------
    root
        Directory to serve; URL paths map to paths below it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.ignore_range = False
        self.log: list[Request] = []
        self._drops: dict[str, list[int]] = {}
        self._fails: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> TreeServer:
        handler = type("Handler", (_Handler,), {"tree": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TreeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- knobs -------------------------------------------------------------------------

    def drop_after(self, path: str, nbytes: int, times: int = 1) -> None:
        """For the next *times* GETs of *path*, close the connection after *nbytes* of body."""
        with self._lock:
            self._drops[_norm(path)] = [nbytes, times]

    def fail(self, path: str, status: int = 503, times: int = 1) -> None:
        """Answer the next *times* requests of *path* with *status*."""
        with self._lock:
            self._fails[_norm(path)] = [status, times]

    def reset(self) -> None:
        """Clear the log and all knobs."""
        with self._lock:
            self.log.clear()
            self._drops.clear()
            self._fails.clear()
            self.ignore_range = False

    # -- counters ----------------------------------------------------------------------

    def requests_for(self, path: str | None = None, method: str | None = None) -> list[Request]:
        """Logged requests, optionally for one path and/or method."""
        with self._lock:
            return [
                r
                for r in self.log
                if (path is None or r.path == _norm(path)) and (method is None or r.method == method)
            ]

    def bytes_served(self, path: str | None = None) -> int:
        """Body bytes sent (for one path, or in total)."""
        return sum(r.body_bytes for r in self.requests_for(path))

    # -- used by the handler -----------------------------------------------------------

    def _take(self, table: dict[str, list[int]], path: str) -> int | None:
        with self._lock:
            entry = table.get(path)
            if not entry or entry[1] <= 0:
                return None
            entry[1] -= 1
            return entry[0]

    def _record(self, req: Request) -> None:
        with self._lock:
            self.log.append(req)


def _norm(path: str) -> str:
    return "/" + unquote(urlsplit(path).path).lstrip("/")


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    tree: TreeServer
    protocol_version = "HTTP/1.1"
    server_version = "desilab-test-server/1.0"
    timeout = 30

    def setup(self) -> None:
        super().setup()
        # Without TCP_NODELAY, header and body writes meet delayed ACKs: ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the client went away mid-response
            self.close_connection = True

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _finish(self, status: int, body: bytes, headers: dict[str, str], head: bool, path: str) -> None:
        # Logged before the response goes out, so a client never sees a reply the log lacks.
        self.tree._record(Request(self.command, path, self.headers.get("Range"), status, 0 if head else len(body)))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        path = _norm(self.path)
        status = self.tree._take(self.tree._fails, path)
        if status is not None:
            self._finish(status, b"injected failure\n", {"Content-Type": "text/plain"}, head, path)
            return
        target = (self.tree.root / path.lstrip("/")).resolve()
        if self.tree.root not in (target, *target.parents) or not target.exists():
            self._finish(404, b"not found\n", {"Content-Type": "text/plain"}, head, path)
            return
        if target.is_dir():
            self._finish(200, _listing(target, path), {"Content-Type": "text/html"}, head, path)
            return
        size = target.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not self.tree.ignore_range:
            parsed = _parse_range(rng, size)
            if parsed == "unsatisfiable":
                self._finish(416, b"", {"Content-Range": f"bytes */{size}"}, head, path)
                return
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        req = Request(self.command, path, rng, status, 0)
        self.tree._record(req)
        self.end_headers()
        sent = 0
        if not head:
            drop = self.tree._take(self.tree._drops, path)
            limit = length if drop is None else min(length, drop)
            with open(target, "rb") as fh:
                fh.seek(start)
                while sent < limit:
                    chunk = fh.read(min(CHUNK, limit - sent))
                    if not chunk:
                        break
                    sent += len(chunk)
                    req.body_bytes = sent  # counted before the client can see the bytes
                    self.wfile.write(chunk)
            if drop is not None and sent < length:
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)


def _parse_range(value: str, size: int) -> tuple[int, int] | str:
    """``(start, end)`` inclusive for one byte range; ``"unsatisfiable"``; or ``"ignore"``
    for malformed and multi-range headers (RFC 9110 lets a server answer those with 200)."""
    m = _RANGE.match(value.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return "ignore"
    if m.group(1) == "":  # suffix range: the last n bytes
        n = int(m.group(2))
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _listing(directory: Path, path: str) -> bytes:
    base = path.rstrip("/") + "/"
    items = []
    for child in sorted(directory.iterdir()):
        name = child.name + ("/" if child.is_dir() else "")
        items.append(f'<li><a href="{quote(base + name)}">{html.escape(name)}</a></li>')
    return (f"<html><body><h1>Index of {html.escape(base)}</h1><ul>" + "".join(items)
            + "</ul></body></html>\n").encode()


def write_sha256sum(directory: Path, name: str, *, files: list[Path] | None = None) -> Path:
    """Write a ``sha256sum``-format file (``HEX  NAME``) for the files of *directory*.

    Parameters
    ----------
    directory
        Directory holding the files.
    name
        Checksum file name, e.g. ``redux_iron_healpix_main_dark_100_10016.sha256sum``.
    files
        Files to list (default: every regular file except ``*.sha256sum``).
    """
    directory = Path(directory)
    if files is None:
        files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.endswith(".sha256sum"))
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in files]
    out = directory / name
    out.write_text("".join(lines))
    return out


@pytest.fixture
def tree_server(tmp_path: Path):
    """A :class:`TreeServer` over ``tmp_path / "tree"``, stopped after the test."""
    with TreeServer(tmp_path / "tree") as server:
        yield server
