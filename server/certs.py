"""`bcvlm certs`: creates the federation's CA, the SuperLink TLS certificate and one SuperNode auth key pair per site."""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bcvlm_model.atomic_io import atomic_write_bytes

SITE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
"""Site names become folder and file names: letters, digits, '_' and '-'."""

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.crt"
SERVER_KEY_NAME = "server.key"
SITES_DIR_NAME = "sites"
SITE_PRIVATE_KEY_NAME = "supernode_auth_key"
SITE_PUBLIC_KEY_NAME = "supernode_auth_key.pub"

LOOPBACK_NAMES: tuple[str, ...] = ("localhost",)
LOOPBACK_IPS: tuple[str, ...] = ("127.0.0.1", "::1")
"""Always in the server certificate's SANs, after the names and addresses given."""

_CURVE = ec.SECP384R1()
"""NIST P-384: accepted by `flwr supernode register` (NIST curves only) and by TLS stacks."""


class CertificateError(ValueError):
    """Certificate creation was refused (bad name, bad address, files exist without --force)."""


@dataclass(frozen=True)
class CertificatePaths:
    """Where `bcvlm certs` writes each file under its output directory."""

    out_dir: Path
    sites: tuple[str, ...]

    @property
    def ca_cert(self) -> Path:
        return self.out_dir / CA_CERT_NAME

    @property
    def ca_key(self) -> Path:
        return self.out_dir / CA_KEY_NAME

    @property
    def server_cert(self) -> Path:
        return self.out_dir / SERVER_CERT_NAME

    @property
    def server_key(self) -> Path:
        return self.out_dir / SERVER_KEY_NAME

    def site_dir(self, site: str) -> Path:
        return self.out_dir / SITES_DIR_NAME / site

    def site_private_key(self, site: str) -> Path:
        return self.site_dir(site) / SITE_PRIVATE_KEY_NAME

    def site_public_key(self, site: str) -> Path:
        return self.site_dir(site) / SITE_PUBLIC_KEY_NAME

    def site_ca_cert(self, site: str) -> Path:
        """Copy of the CA certificate inside the site's bundle (what the site needs to verify the server)."""
        return self.site_dir(site) / CA_CERT_NAME

    def all_files(self) -> list[Path]:
        files = [self.ca_cert, self.ca_key, self.server_cert, self.server_key]
        for site in self.sites:
            files += [self.site_private_key(site), self.site_public_key(site), self.site_ca_cert(site)]
        return files


def validate_site_names(sites: Sequence[str]) -> tuple[str, ...]:
    """Check site names are usable as file names and unique; return them as a tuple."""
    if not sites:
        raise CertificateError("at least one site name is needed (--sites a,b,c)")
    for site in sites:
        if not SITE_NAME_PATTERN.match(site):
            raise CertificateError(
                f"invalid site name {site!r}: use 1-63 letters, digits, '_' or '-', starting with a letter or digit"
            )
    duplicates = sorted({site for site in sites if list(sites).count(site) > 1})
    if duplicates:
        raise CertificateError(f"duplicate site names: {', '.join(duplicates)}")
    return tuple(sites)


def _parse_ips(server_ips: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    parsed = []
    for text in server_ips:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError as exc:
            raise CertificateError(f"--server-ip {text!r} is not an IPv4 or IPv6 address") from exc
    return parsed


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey, openssh: bool = False) -> None:
    if openssh:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    else:
        data = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    atomic_write_bytes(path, data)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)
    os.chmod(path, 0o644)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _make_ca(common_name: str, valid_days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(_CURVE)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    server_names: Sequence[str],
    server_ips: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
    valid_days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(_CURVE)
    common_name = server_names[0] if server_names else str(server_ips[0])
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in server_names]
    alt_names += [x509.IPAddress(ip) for ip in server_ips]
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA384())
    )
    return key, cert


def create_certificates(
    out_dir: str | os.PathLike[str],
    server_names: Sequence[str],
    server_ips: Sequence[str],
    sites: Sequence[str],
    force: bool = False,
    valid_days: int = 825,
    ca_name: str = "bcvlm federation CA",
) -> CertificatePaths:
    """Write the CA, the server certificate (SANs = names + IPs + loopback) and one EC P-384 auth key pair per site.

    Private keys are written with mode 0600; site keys are OpenSSH-format EC keys, which is what
    `flower-supernode --auth-supernode-private-key` and `flwr supernode register` load. Existing files are
    never overwritten unless `force` is true.
    """
    site_names = validate_site_names(list(sites))
    names = [name for name in server_names if name]
    ips = _parse_ips([ip for ip in server_ips if ip])
    if not names and not ips:
        raise CertificateError("the server certificate needs at least one --server-name or --server-ip")
    # Loopback SANs: `bcvlm-server` reaches its own SuperLink on 127.0.0.1 (the CLI runs on the same machine).
    names += [name for name in LOOPBACK_NAMES if name not in names]
    ips += [ip for ip in map(ipaddress.ip_address, LOOPBACK_IPS) if ip not in ips]
    if valid_days < 1:
        raise CertificateError(f"--valid-days must be >= 1, got {valid_days}")
    paths = CertificatePaths(Path(out_dir), site_names)
    existing = [str(path) for path in paths.all_files() if path.exists()]
    if existing and not force:
        raise CertificateError(
            f"refusing to overwrite existing files (pass --force to replace them): {', '.join(existing)}"
        )

    ca_key, ca_cert = _make_ca(ca_name, valid_days)
    server_key, server_cert = _make_server_cert(ca_key, ca_cert, names, ips, valid_days)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_private_key(paths.ca_key, ca_key)
    _write_public(paths.ca_cert, ca_pem)
    _write_private_key(paths.server_key, server_key)
    _write_public(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    for site in site_names:
        site_key = ec.generate_private_key(_CURVE)
        _write_private_key(paths.site_private_key(site), site_key, openssh=True)
        public = site_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        _write_public(paths.site_public_key(site), public + f" bcvlm-site-{site}\n".encode())
        _write_public(paths.site_ca_cert(site), ca_pem)
    return paths


def _split_list(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out += [part.strip() for part in value.split(",") if part.strip()]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcvlm certs",
        description="Create the federation CA, the SuperLink TLS certificate and one SuperNode auth key pair per site.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--server-name", action="append", default=[],
                        help="DNS name of the SuperLink (repeat or comma-separate for several)")
    parser.add_argument("--server-ip", action="append", default=[],
                        help="IP address of the SuperLink (repeat or comma-separate for several)")
    parser.add_argument("--sites", required=True, help="comma-separated site names, e.g. hosp_a,hosp_b")
    parser.add_argument("--valid-days", type=int, default=825, help="certificate lifetime in days (default 825)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def main(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm certs`."""
    args = build_parser().parse_args(list(argv))
    try:
        paths = create_certificates(
            args.out,
            server_names=_split_list(args.server_name),
            server_ips=_split_list(args.server_ip),
            sites=_split_list([args.sites]),
            force=args.force,
            valid_days=args.valid_days,
        )
    except CertificateError as exc:
        print(f"bcvlm certs: error: {exc}", file=sys.stderr)
        return 2
    print(f"CA certificate      {paths.ca_cert}  (give to every site)")
    print(f"CA key              {paths.ca_key}  (keep offline; never leaves the coordinating center)")
    print(f"server certificate  {paths.server_cert} + {paths.server_key}")
    for site in paths.sites:
        print(f"site {site:<14} {paths.site_dir(site)}  (private key goes to the site only; .pub to the server)")
    return 0
