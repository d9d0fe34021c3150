from pathlib import Path

import pytest

from desilab.config import load_settings
from desilab.errors import ConfigError


def test_defaults_without_environment():
    s = load_settings(environ={})
    assert s.store.startswith("duckdb:///")
    assert s.store_backend == "duckdb"
    assert s.ray is None
    assert s.workers >= 1


def test_precedence_override_env_file(tmp_path: Path):
    cfg = tmp_path / "desilab.toml"
    cfg.write_text('[desilab]\nworkers = 3\nseed = 7\nstore = "duckdb:///from-file.duckdb"\n')
    env = {"DESILAB_SEED": "11", "DESILAB_CONFIG": str(cfg)}
    s = load_settings({"store": "postgresql://postgres@127.0.0.1:5432/x"}, environ=env)
    assert s.workers == 3  # file
    assert s.seed == 11  # environment beats file
    assert s.store_backend == "postgresql"  # override beats both


def test_bad_values_name_the_setting(tmp_path: Path):
    with pytest.raises(ConfigError, match="DESILAB_STORE"):
        load_settings(environ={"DESILAB_STORE": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="DESILAB_WORKERS"):
        load_settings(environ={"DESILAB_WORKERS": "0"})
    cfg = tmp_path / "desilab.toml"
    cfg.write_text("wokers = 3\n")
    with pytest.raises(ConfigError, match="wokers"):
        load_settings(config_file=cfg, environ={})
    cfg.write_text("workers = [\n")
    with pytest.raises(ConfigError, match="TOML"):
        load_settings(config_file=cfg, environ={})


def test_ray_off_spellings():
    for off in ("", "none", "off", "0"):
        assert load_settings(environ={"DESILAB_RAY": off}).ray is None
    assert load_settings(environ={"DESILAB_RAY": "local"}).ray == "local"
