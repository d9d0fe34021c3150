"""One Settings object, resolved once at the edge (CLI, service, tests) and passed down.

Library code never reads ``os.environ``: it receives a :class:`Settings` (or the few
values it needs) as an argument.

Sources, highest priority first: explicit overrides (CLI options), environment variables
``DESILAB_*``, a ``desilab.toml`` file (``[desilab]`` table or top-level keys) in the
working directory or named by ``DESILAB_CONFIG``, then the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from desilab.errors import ConfigError

__all__ = ["DEFAULT_DATA_DIR", "Settings", "load_settings"]

DEFAULT_DATA_DIR = Path("desilab-data")


class Settings(BaseSettings):
    """Everything that can be configured, with its default.

    Attributes
    ----------
    store
        Catalog store URL: ``duckdb:///path.duckdb`` (embedded, the default) or
        ``postgresql://user@host:port/db`` (a shared server with q3c).
    ray
        ``None`` runs heavy work on a local process pool; ``"local"`` starts a Ray
        instance on this machine; ``"ray://host:10001"`` or ``"auto"`` joins a cluster.
    data_dir
        Where downloaded and generated inputs live (DR1 tree, sample sky).
    out_dir
        Where ``desilab run`` writes its products (VACs, figures, report).
    workers
        Local worker processes for :mod:`desilab.compute` (default: all cores).
    seed
        Root seed; every shard's random stream is spawned from it.
    release_url
        Base URL of the public DR1 tree for ``desilab fetch``.
    specprod
        Spectroscopic production name (``iron`` for DR1).
    shared_dir
        Folder holding optional real reference data (``data/real``), if any.
    log_level
        Python logging level name.
    outflows_host
        Host-galaxy decomposition (SSP templates) in the outflows pipeline at z < 0.8
        (``desilab run`` stage and ``desilab outflows``; ``--no-host`` there); False
        switches it off.
    """

    model_config = SettingsConfigDict(env_prefix="DESILAB_", extra="ignore")

    store: str = "duckdb:///desilab-data/desilab.duckdb"
    ray: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    out_dir: Path = Path("desilab-out")
    workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    seed: int = Field(default=20240613, ge=0)
    release_url: str = "https://data.desi.lbl.gov/public/dr1"
    specprod: str = "iron"
    shared_dir: Path | None = None
    log_level: str = "INFO"
    outflows_host: bool = True

    @field_validator("store")
    @classmethod
    def _check_store(cls, value: str) -> str:
        if not (value.startswith("duckdb://") or value.startswith(("postgresql://", "postgres://"))):
            raise ValueError("must start with duckdb:/// or postgresql://")
        return value

    @field_validator("ray")
    @classmethod
    def _check_ray(cls, value: str | None) -> str | None:
        if value in (None, "", "none", "off", "0"):
            return None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value

    @property
    def store_backend(self) -> str:
        """``"duckdb"`` or ``"postgresql"``."""
        return "duckdb" if self.store.startswith("duckdb://") else "postgresql"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=path) from exc
    table = doc.get("desilab", doc)
    if not isinstance(table, dict):
        raise ConfigError("[desilab] must be a table", file=path)
    return table


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    environ: dict[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve settings once: overrides > environment > desilab.toml > defaults.

    Parameters
    ----------
    overrides
        Values given explicitly (e.g. CLI options); ``None`` values are ignored.
    environ
        Environment mapping to read ``DESILAB_*`` from (default: ``os.environ``);
        tests pass their own.
    config_file
        TOML file; default ``$DESILAB_CONFIG`` or ``./desilab.toml`` if it exists.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        Naming the offending setting.
    """
    env = dict(os.environ if environ is None else environ)
    if config_file is None:
        named = env.get("DESILAB_CONFIG")
        config_file = Path(named) if named else Path("desilab.toml")
        if not named and not config_file.exists():
            config_file = None
    file_values: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.exists():
            raise ConfigError("config file does not exist", file=config_file)
        file_values = _read_toml(config_file)
    env_values = {
        key[len("DESILAB_") :].lower(): val
        for key, val in env.items()
        if key.startswith("DESILAB_") and key != "DESILAB_CONFIG"
    }
    merged: dict[str, Any] = {**file_values, **env_values}
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = set(Settings.model_fields)
    unknown = sorted(k for k in merged if k not in known and k in file_values)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            file=config_file,
        )
    merged = {k: v for k, v in merged.items() if k in known}
    try:
        # _env_file/env reading disabled: we merged the environment ourselves above.
        return Settings.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(
            f"invalid value {err.get('input')!r}: {err['msg']}",
            parameter=f"DESILAB_{name.upper()}",
        ) from exc
