"""The project's one config system: OmegaConf structured configs (typed dataclasses) loaded from YAML and validated."""

from __future__ import annotations

import os
from dataclasses import is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcvlm_model.atomic_io import atomic_write_text

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the key."""


def enum_choices(enum_type: type[Enum]) -> list[str]:
    """The YAML words of an enum-like config field, in declaration order (also argparse `choices`)."""
    return [member.value for member in enum_type]


def to_enum(enum_type: type[E], value: Any, key: str) -> E:
    """`value` as a member of `enum_type`; ConfigError naming `key`, the value and the allowed words otherwise.

    Loading a YAML converts enum fields already (OmegaConf); this covers configs built in code."""
    try:
        return enum_type(value)
    except ValueError:
        raise ConfigError(
            f"key '{key}': invalid value {value!r}, expected one of {', '.join(enum_choices(enum_type))}"
        ) from None


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    message = str(exc).splitlines()[0]
    return f"key '{key}': {message}" if key else message


def load_config(
    schema: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
) -> T:
    """Load YAML `path` over the dataclass `schema`, apply dotlist `overrides`, validate, return a typed object.

    Unknown keys, wrong types and missing mandatory values raise ConfigError naming the file and key.
    """
    if not is_dataclass(schema):
        raise TypeError(f"{schema!r} is not a dataclass schema")
    base = OmegaConf.structured(schema)
    source = "defaults"
    try:
        if path is not None:
            source = str(path)
            if not Path(path).is_file():
                raise ConfigError(f"config file not found: {path}")
            base = OmegaConf.merge(base, OmegaConf.load(path))
        if overrides:
            source = f"{source} + overrides {list(overrides)}"
            base = OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))
        missing = sorted(OmegaConf.missing_keys(base))
        if missing:
            raise ConfigError(f"{source}: mandatory keys without a value: {', '.join(missing)}")
        return OmegaConf.to_object(base)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc
    except ValueError as exc:  # range checks in the dataclasses' __post_init__
        raise ConfigError(f"{source}: {exc}") from exc


def config_to_yaml(config: Any) -> str:
    """Render a structured config (dataclass instance or DictConfig) as YAML."""
    node = config if isinstance(config, DictConfig) else OmegaConf.structured(config)
    return OmegaConf.to_yaml(node)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-dict form of a structured config (for JSON files and checkpoints)."""
    node = config if isinstance(config, DictConfig) else OmegaConf.structured(config)
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def config_from_dict(schema: type[T], payload: dict[str, Any]) -> T:
    """Rebuild a typed config from its dict form, validating it against `schema`."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), payload))  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{schema.__name__}: {_describe(exc)}") from exc
    except ValueError as exc:
        raise ConfigError(f"{schema.__name__}: {exc}") from exc


def save_effective_config(config: Any, path: str | os.PathLike[str]) -> Path:
    """Write the effective config as YAML atomically (into run directories and checkpoints)."""
    return atomic_write_text(path, config_to_yaml(config))


def get_dotted(config: Any, dotted: str) -> Any:
    """The value at `a.b.c` in nested config dataclasses."""
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def set_dotted(config: Any, dotted: str, value: Any) -> None:
    """Set the value at `a.b.c` in nested config dataclasses."""
    *parents, leaf = dotted.split(".")
    setattr(get_dotted(config, ".".join(parents)) if parents else config, leaf, value)


def resolve_relative_paths(config: Any, keys: Sequence[str], base: str | os.PathLike[str]) -> None:
    """Make the non-empty path values at `keys` absolute in place; a relative one is taken relative to `base`
    (the folder of the YAML file it was written in) and `~` is expanded."""
    for key in keys:
        value = get_dotted(config, key)
        if value is not None and str(value).strip():
            set_dotted(config, key, str((Path(base) / Path(str(value)).expanduser()).resolve()))
