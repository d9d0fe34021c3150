"""`desilab doctor`: what is installed and reachable, each OK or missing, with the fix.

Every check is a small function returning :class:`Finding` objects; nothing here raises
for a missing component — it reports it. ``required`` findings make the exit code
non-zero; optional ones (Ray, CUDA, PostgreSQL when the store is DuckDB) only inform.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from desilab.config import Settings

__all__ = ["CORE_PACKAGES", "OPTIONAL_PACKAGES", "Finding", "run_checks"]

Status = Literal["ok", "missing", "warn", "info"]

CORE_PACKAGES: dict[str, str] = {
    # import name: distribution name
    "numpy": "numpy",
    "scipy": "scipy",
    "astropy": "astropy",
    "fitsio": "fitsio",
    "healpy": "healpy",
    "pyarrow": "pyarrow",
    "duckdb": "duckdb",
    "psycopg": "psycopg",
    "typer": "typer",
    "rich": "rich",
    "pydantic": "pydantic",
    "pydantic_settings": "pydantic-settings",
    "requests": "requests",
    "matplotlib": "matplotlib",
}

OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    # import name: (distribution, what needs it)
    "torch": ("torch", "anomaly VAE (pip install torch==2.13.0)"),
    "ray": ("ray", "distributed compute (pip install 'ray[default]')"),
    "desispec": ("desispec", "cross-check tests against the collaboration's reader"),
}


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report."""

    area: str
    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def check_python() -> list[Finding]:
    """Python version (3.11+ required)."""
    ok = sys.version_info >= (3, 11)
    return [
        Finding(
            "python",
            "python",
            "ok" if ok else "missing",
            f"{platform.python_version()} ({sys.executable})",
            "" if ok else "install Python 3.11 or newer",
            required=True,
        )
    ]


def check_packages() -> list[Finding]:
    """Core dependencies (required) and optional ones."""
    out = []
    for mod, dist in CORE_PACKAGES.items():
        ver = _version(dist)
        try:
            importlib.import_module(mod)
            out.append(Finding("python deps", dist, "ok", ver or "installed", required=True))
        except Exception as exc:  # ImportError, or a broken binary wheel
            out.append(
                Finding(
                    "python deps",
                    dist,
                    "missing",
                    f"cannot import {mod}: {exc}",
                    f"pip install -e . (or pip install {dist})",
                    required=True,
                )
            )
    for dist, why in OPTIONAL_PACKAGES.values():
        ver = _version(dist)
        status: Status = "ok" if ver else "info"
        out.append(
            Finding("python deps", dist, status, ver or f"not installed — needed for {why}", "" if ver else why)
        )
    return out


def check_store(settings: Settings, timeout_s: float = 3.0) -> list[Finding]:
    """The configured store, and PostgreSQL's q3c/pgsphere availability."""
    out: list[Finding] = []
    if settings.store_backend == "duckdb":
        path = Path(settings.store.removeprefix("duckdb://").removeprefix("/") or "desilab.duckdb")
        if settings.store.startswith("duckdb:////"):
            path = Path("/" + str(path).lstrip("/"))
        parent = path.parent if str(path.parent) else Path(".")
        existing = parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        writable = existing.exists() and _writable(existing)
        out.append(
            Finding(
                "store",
                "duckdb",
                "ok" if writable else "missing",
                f"{path} ({'exists' if path.exists() else 'will be created'})",
                "" if writable else f"make {existing} writable or set DESILAB_STORE",
                required=True,
            )
        )
        pg_url = "postgresql://postgres@127.0.0.1:5432/postgres"
        pg_required = False
    else:
        pg_url = settings.store
        pg_required = True
    out.extend(check_postgres(pg_url, timeout_s, required=pg_required))
    return out


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK)


def check_postgres(url: str, timeout_s: float = 3.0, required: bool = False) -> list[Finding]:
    """Connect to PostgreSQL and look for the q3c and pg_sphere extensions."""
    try:
        import psycopg
    except ImportError:
        return [
            Finding(
                "postgresql", "server", "missing", "psycopg not installed", "pip install 'psycopg[binary]'", required
            )
        ]
    safe = _redact(url)
    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s))) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            avail = {
                name: ver
                for name, ver in conn.execute(
                    "SELECT name, default_version FROM pg_available_extensions WHERE name IN ('q3c', 'pg_sphere')"
                ).fetchall()
            }
    except Exception as exc:
        status: Status = "missing" if required else "info"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [
            Finding(
                "postgresql",
                "server",
                status,
                f"{safe}: not reachable ({reason})",
                "start it: pg_ctlcluster --skip-systemctl-redirect 15 main start"
                + ("" if required else " (only needed for DESILAB_STORE=postgresql://...)"),
                required,
            )
        ]
    out = [Finding("postgresql", "server", "ok", f"{safe}: PostgreSQL {version}", required=required)]
    pkg = {"q3c": "postgresql-15-q3c", "pg_sphere": "postgresql-15-pgsphere"}
    for ext in ("q3c", "pg_sphere"):
        if ext in avail:
            out.append(Finding("postgresql", ext, "ok", f"extension available (v{avail[ext]})", required=required))
        else:
            out.append(
                Finding(
                    "postgresql",
                    ext,
                    "missing" if required else "warn",
                    "extension not available on the server",
                    f"apt-get install {pkg[ext]}",
                    required,
                )
            )
    return out


def _redact(url: str) -> str:
    """Hide a password in a connection URL."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"
    return url


def check_ray(settings: Settings) -> list[Finding]:
    """Ray installation (required only when DESILAB_RAY is set)."""
    ver = _version("ray")
    required = settings.ray is not None
    if ver:
        detail = f"ray {ver}" + (f"; DESILAB_RAY={settings.ray}" if settings.ray else "; local processes in use")
        return [Finding("compute", "ray", "ok", detail, required=required)]
    return [
        Finding(
            "compute",
            "ray",
            "missing" if required else "info",
            "not installed" + (f" but DESILAB_RAY={settings.ray}" if required else "; local processes in use"),
            "pip install 'ray[default]'",
            required,
        )
    ]


def check_cuda() -> list[Finding]:
    """CUDA through PyTorch, else nvidia-smi presence (never required)."""
    try:
        import torch
    except ImportError:
        smi = shutil.which("nvidia-smi")
        detail = "PyTorch not installed" + (f"; nvidia-smi at {smi}" if smi else "; no nvidia-smi")
        return [Finding("compute", "cuda", "info", detail, "pip install torch==2.13.0 for the anomaly VAE")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return [Finding("compute", "cuda", "ok", f"torch {torch.__version__}: {names}")]
    return [Finding("compute", "cuda", "info", f"torch {torch.__version__}: no CUDA device; CPU will be used")]


def check_dirs(settings: Settings) -> list[Finding]:
    """Data/output folders and free disk space."""
    out = []
    for label, path in (("data_dir", settings.data_dir), ("out_dir", settings.out_dir)):
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free_gb = shutil.disk_usage(probe).free / 1e9
        status: Status = "ok" if free_gb > 2 else "warn"
        out.append(
            Finding(
                "folders",
                label,
                status,
                f"{path} ({free_gb:.0f} GB free)",
                "" if status == "ok" else "free some disk space: the tiny sample sky needs ~0.3 GB",
            )
        )
    return out


def run_checks(settings: Settings, *, postgres_timeout_s: float = 3.0) -> list[Finding]:
    """All checks, in report order."""
    return [
        *check_python(),
        *check_packages(),
        *check_store(settings, postgres_timeout_s),
        *check_ray(settings),
        *check_cuda(),
        *check_dirs(settings),
    ]
