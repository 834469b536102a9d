"""Tests for the one config system (bcvlm_model.config_io): validation errors name the file and the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bcvlm_model.config_io import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    resolve_relative_paths,
    save_effective_config,
)


@dataclass
class _Inner:
    batch_size: int = 8
    device: str = "cpu"


@dataclass
class _Outer:
    name: str = "site"
    compute: _Inner = field(default_factory=_Inner)
    epsilon: float = 8.0


def test_yaml_and_overrides_are_merged_typed(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("name: hospital-a\ncompute:\n  batch_size: 4\n")
    cfg = load_config(_Outer, path, overrides=["epsilon=2.5"])
    assert isinstance(cfg, _Outer) and isinstance(cfg.compute, _Inner)
    assert (cfg.name, cfg.compute.batch_size, cfg.compute.device, cfg.epsilon) == ("hospital-a", 4, "cpu", 2.5)


@pytest.mark.parametrize(
    "text, key",
    [
        ("compute:\n  batch_sise: 4\n", "batch_sise"),
        ("compute:\n  batch_size: four\n", "batch_size"),
        ("nme: x\n", "nme"),
    ],
)
def test_unknown_key_or_wrong_type_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(_Outer, path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(_Outer, tmp_path / "nope.yaml")


def test_dict_roundtrip_and_effective_yaml(tmp_path: Path) -> None:
    cfg = _Outer(name="b", compute=_Inner(batch_size=2))
    assert config_from_dict(_Outer, config_to_dict(cfg)) == cfg
    written = save_effective_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(_Outer, written) == cfg


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path) -> None:
    cfg = _Outer(name="data/manifest.csv", compute=_Inner(device="~/cache"))
    resolve_relative_paths(cfg, ("name", "compute.device"), tmp_path / "site")
    assert cfg.name == str((tmp_path / "site" / "data" / "manifest.csv").resolve())
    assert cfg.compute.device == str((Path.home() / "cache").resolve())
    absolute = _Outer(name=str(tmp_path / "abs.csv"), compute=_Inner(device=""))
    resolve_relative_paths(absolute, ("name", "compute.device"), "/elsewhere")
    assert absolute.name == str(tmp_path / "abs.csv") and absolute.compute.device == ""
