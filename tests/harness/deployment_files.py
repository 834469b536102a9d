"""A deployment's files for tests: certificates for localhost / 127.0.0.1 under a fixed passphrase, a `server.yaml`
that points at them, a SuperLink launch with them, a site's connection settings, and the `bcvlm-client` command of a
site YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from bcvlm_server.certs import CertificatePaths, create_certificates
from bcvlm_server.superlink import SuperLinkLaunch

TEST_CA_PASSPHRASE = b"test CA passphrase"


def loopback_certificates(
    folder: Path,
    public_keys: Mapping[str, str | Path] | None = None,
    *,
    generate_site_keys: Sequence[str] = (),
) -> CertificatePaths:
    """`create_certificates` for a SuperLink on this machine: the sites' `public_keys`, or key pairs the center
    makes for `generate_site_keys` (tests only: the center then holds their private keys)."""
    return create_certificates(
        folder,
        ["localhost"],
        ["127.0.0.1"],
        public_keys,
        ca_passphrase=TEST_CA_PASSPHRASE,
        generate_site_keys=generate_site_keys,
    )


def write_server_yaml(
    folder: Path,
    site_names: Sequence[str],
    federation: Mapping[str, Any],
    port: int = 9555,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """`folder/server.yaml` for a SuperLink on 127.0.0.1:`port` with the certificates in `folder/certs` (as
    `loopback_certificates` writes them), the named sites' public keys there, the `federation` section and any other
    top-level `settings` (e.g. `wait_for_sites_s`)."""
    path = folder / "server.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "superlink": {
                    "host": "127.0.0.1",
                    "port": port,
                    "ca_cert": "certs/ca.crt",
                    "server_cert": "certs/server.crt",
                    "server_key": "certs/server.key",
                },
                "sites": [{"name": s, "public_key": f"certs/sites/{s}/supernode_auth_key.pub"} for s in site_names],
                "federation": dict(federation),
                **(settings or {}),
            }
        )
    )
    return path


def loopback_superlink_launch(
    certs: CertificatePaths, home: Path, port: int, superexec_secret: Path | None = None
) -> SuperLinkLaunch:
    """A SuperLink on 127.0.0.1:`port` with `certs`; its database, Flower home and log under `home`."""
    return SuperLinkLaunch(
        host="127.0.0.1",
        port=port,
        ca_cert=certs.ca_cert,
        server_cert=certs.server_cert,
        server_key=certs.server_key,
        database=home / "state.db",
        flwr_home=home,
        log_path=home / "superlink.log",
        superexec_secret=superexec_secret,
    )


def loopback_site_connection(certs: CertificatePaths, site: str, port: int) -> dict[str, Any]:
    """Site YAML keys that connect `site` (its key made by `loopback_certificates`) to a SuperLink on 127.0.0.1:`port`."""
    return {
        "site_id": site,
        "superlink_address": f"127.0.0.1:{port}",
        "ca_cert": str(certs.site_ca_cert(site)),
        "private_key": str(certs.site_private_key(site)),
    }


def client_command(site_yaml: Path, *args: str) -> list[str]:
    """`bcvlm-client --site SITE_YAML ARGS...` as this interpreter runs it (`python -m bcvlm_client.cli`)."""
    return [sys.executable, "-m", "bcvlm_client.cli", "--site", str(site_yaml), *args]
