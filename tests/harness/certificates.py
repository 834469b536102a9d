"""Test federation certificates: a CA and SuperLink certificate for localhost / 127.0.0.1 under a fixed passphrase."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from bcvlm_server.certs import CertificatePaths, create_certificates

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
