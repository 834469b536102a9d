"""ServerDeploymentConfig: the coordinating center's YAML for `bcvlm-server` (SuperLink + site keys + the federation)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from bcvlm_model.config_io import ConfigError, get_dotted, load_config, resolve_relative_paths
from bcvlm_server.certs import CertificateError, load_site_public_key, validate_site_names
from bcvlm_server.server_config import ServerConfig


@dataclass
class SuperLinkSettings:
    """How `flower-superlink` is started (TLS and SuperNode authentication are always on)."""

    host: str = "127.0.0.1"
    """Bind address of the public Fleet gateway (TLS; it forwards only the Fleet API). 0.0.0.0 to serve remote
    sites. The SuperLink itself (Fleet, Control and Runtime APIs) always listens on 127.0.0.1 only."""
    port: int = 9443
    """The one TCP port sites connect to (the gateway's; open it inbound at the coordinating center)."""
    internal_port: Optional[int] = None
    """The SuperLink's own port on 127.0.0.1 (the center's `flwr` commands use it); None = a free port at each start."""
    ca_cert: str = MISSING
    """CA certificate (PEM) from `bcvlm certs` (ca.crt)."""
    server_cert: str = MISSING
    """SuperLink TLS certificate (server.crt); its SANs must cover the name/IP the sites use."""
    server_key: str = MISSING
    """SuperLink TLS private key (server.key, mode 0600)."""
    control_address: Optional[str] = None
    """No longer used and must stay null: the Control API is reachable only on 127.0.0.1:`internal_port`."""
    database: Optional[str] = None
    """SQLite state of the SuperLink (registered sites, runs); default `<run_dir>/superlink/state.db`."""
    startup_timeout_s: float = 60.0


@dataclass
class SiteKey:
    """A site allowed to join: its name (for logs) and its SuperNode auth public key (OpenSSH EC format)."""

    name: str = MISSING
    public_key: str = MISSING


@dataclass
class ServerDeploymentConfig:
    """`bcvlm-server --config cfg.yaml`: the SuperLink, the sites' public keys, and the federation (ServerConfig)."""

    superlink: SuperLinkSettings = field(default_factory=SuperLinkSettings)
    sites: List[SiteKey] = field(default_factory=list)
    federation: ServerConfig = field(default_factory=ServerConfig)
    wait_for_sites_s: float = 600.0
    """How long to wait for every registered site to come online before submitting the run (it is submitted anyway)."""
    run_timeout_s: float = 7 * 24 * 3600.0
    """The run is stopped if it has not finished after this long."""


PATH_KEYS: tuple[str, ...] = (
    "superlink.ca_cert",
    "superlink.server_cert",
    "superlink.server_key",
    "superlink.database",
    "federation.run_dir",
)
"""Keys holding paths; relative values are resolved against the YAML file's folder."""


def validate_deployment_config(cfg: ServerDeploymentConfig, source: str) -> ServerDeploymentConfig:
    """Checks the schema cannot express (files exist, ports, site names); ConfigError names the key."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: key '{key}': {message}")

    for key in ("superlink.ca_cert", "superlink.server_cert", "superlink.server_key"):
        value = str(get_dotted(cfg, key))
        if not Path(value).is_file():
            fail(key, f"file not found: {value}")
    if not 1 <= cfg.superlink.port <= 65535:
        fail("superlink.port", f"must be 1..65535, got {cfg.superlink.port}")
    if cfg.superlink.internal_port is not None and not 1 <= cfg.superlink.internal_port <= 65535:
        fail("superlink.internal_port", f"must be 1..65535 or null, got {cfg.superlink.internal_port}")
    if cfg.superlink.internal_port == cfg.superlink.port:
        fail("superlink.internal_port", "must differ from superlink.port (the gateway's public port)")
    if cfg.superlink.control_address is not None:
        fail(
            "superlink.control_address",
            "is no longer used: the SuperLink's Control API listens only on "
            "127.0.0.1:superlink.internal_port (remove the key)",
        )
    if not cfg.sites:
        fail("sites", "at least one site (name + public_key) is needed")
    try:
        validate_site_names([site.name for site in cfg.sites])
    except CertificateError as exc:
        fail("sites", str(exc))
    for index, site in enumerate(cfg.sites):
        if not Path(site.public_key).is_file():
            fail(f"sites[{index}].public_key", f"file not found: {site.public_key}")
        try:
            load_site_public_key(site.public_key)  # refuses a private key sent by mistake, or a key Flower rejects
        except CertificateError as exc:
            fail(f"sites[{index}].public_key", str(exc))
    if not str(cfg.federation.run_dir).strip():
        fail("federation.run_dir", "must name the run directory")
    if cfg.run_timeout_s <= 0:
        fail("run_timeout_s", f"must be > 0, got {cfg.run_timeout_s}")
    return cfg


def load_deployment_config(path: str | os.PathLike[str], overrides: tuple[str, ...] = ()) -> ServerDeploymentConfig:
    """Load `bcvlm-server`'s YAML; paths become absolute (relative = next to the YAML); errors name the key."""
    source = Path(path)
    cfg = load_config(ServerDeploymentConfig, source, overrides)
    base = source.resolve().parent
    resolve_relative_paths(cfg, PATH_KEYS, base)
    for site in cfg.sites:
        site.public_key = str((base / Path(site.public_key).expanduser()).resolve())
    return validate_deployment_config(cfg, str(path))
