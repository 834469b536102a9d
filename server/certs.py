"""`bcvlm certs`: the center's CA (encrypted key) and SuperLink certificate from the sites' public keys; `bcvlm certs
site-key` makes a site's SuperNode key pair at the site, so private keys never travel."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import getpass
import hashlib
import ipaddress
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
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
_NIST_CURVES: tuple[str, ...] = ("secp256r1", "secp384r1", "secp521r1")
"""What OpenSSH EC keys can use and `flwr supernode register` accepts."""


class CertificateError(ValueError):
    """Certificate creation was refused (bad name, bad address, bad key file, files exist without --force)."""


CA_PASSPHRASE_ENV = "BCVLM_CA_PASSPHRASE"
"""Environment variable `bcvlm certs` reads the CA key's passphrase from when no --ca-passphrase-file is given."""
MIN_PASSPHRASE_LENGTH = 12
CA_KEY_DIR_NAME = "ca_private"
"""Default folder of the encrypted CA key: next to the output folder, never inside it (that one is handed out)."""


def default_ca_key_path(out_dir: str | os.PathLike[str]) -> Path:
    """Where the CA key goes unless told: `<parent of out_dir>/ca_private/ca.key`, outside the files for sites."""
    return Path(out_dir).resolve().parent / CA_KEY_DIR_NAME / CA_KEY_NAME


@dataclass(frozen=True)
class CertificatePaths:
    """Where `bcvlm certs` writes each file: the center's folder `out_dir` (with one folder per site to hand out)
    and the encrypted CA key elsewhere."""

    out_dir: Path
    sites: tuple[str, ...]
    ca_key: Path
    generated_sites: tuple[str, ...] = ()
    """Sites whose private key the center made (--generate-site-keys); empty in the default flow."""

    @property
    def ca_cert(self) -> Path:
        return self.out_dir / CA_CERT_NAME

    @property
    def server_cert(self) -> Path:
        return self.out_dir / SERVER_CERT_NAME

    @property
    def server_key(self) -> Path:
        return self.out_dir / SERVER_KEY_NAME

    def site_dir(self, site: str) -> Path:
        return self.out_dir / SITES_DIR_NAME / site

    def site_private_key(self, site: str) -> Path:
        """Only written for sites in `generated_sites`: in the default flow the site's private key is never here."""
        return self.site_dir(site) / SITE_PRIVATE_KEY_NAME

    def site_public_key(self, site: str) -> Path:
        return self.site_dir(site) / SITE_PUBLIC_KEY_NAME

    def site_ca_cert(self, site: str) -> Path:
        """Copy of the CA certificate inside the site's bundle (what the site needs to verify the server)."""
        return self.site_dir(site) / CA_CERT_NAME

    def all_files(self) -> list[Path]:
        files = [self.ca_cert, self.ca_key, self.server_cert, self.server_key]
        for site in self.sites:
            files += [self.site_public_key(site), self.site_ca_cert(site)]
        files += [self.site_private_key(site) for site in self.generated_sites]
        return files


@dataclass(frozen=True)
class SiteKeyPaths:
    """A site's SuperNode authentication key pair, made at the site (`bcvlm certs site-key`)."""

    private_key: Path
    public_key: Path


def validate_site_names(sites: Sequence[str]) -> tuple[str, ...]:
    """Check site names are usable as file names and unique; return them as a tuple."""
    if not sites:
        raise CertificateError("at least one site is needed (--site-key NAME=PUBFILE)")
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


def _write_private_key(
    path: Path, key: ec.EllipticCurvePrivateKey, openssh: bool = False, passphrase: bytes | None = None
) -> None:
    # atomic_write_bytes writes through mkstemp (mode 0600), so the key is never readable by others, even briefly.
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase is not None else serialization.NoEncryption()
    )
    key_format = serialization.PrivateFormat.OpenSSH if openssh else serialization.PrivateFormat.PKCS8
    atomic_write_bytes(path, key.private_bytes(serialization.Encoding.PEM, key_format, encryption))
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)
    os.chmod(path, 0o644)


def public_key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """OpenSSH-style SHA256 fingerprint: site and center read it to each other to confirm the right key arrived."""
    blob = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()[1]
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_site_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """A site's SuperNode public key as `flwr supernode register` accepts it (OpenSSH, EC on a NIST curve)."""
    source = Path(path)
    if not source.is_file():
        raise CertificateError(f"site public key not found: {source}")
    data = source.read_bytes()
    if b"PRIVATE KEY" in data:
        raise CertificateError(
            f"{source} holds a PRIVATE key: the site must keep it and send only the .pub file "
            f"(`bcvlm certs site-key` writes both)"
        )
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{source} is not an OpenSSH public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in _NIST_CURVES:
        raise CertificateError(f"{source}: SuperNode keys must be EC keys on a NIST curve ({', '.join(_NIST_CURVES)})")
    return key


def create_site_key(out_dir: str | os.PathLike[str], site: str = "site", force: bool = False) -> SiteKeyPaths:
    """Make this site's SuperNode key pair in `out_dir`: private key 0600 (OpenSSH, what flower-supernode loads),
    public key `.pub` (the only file that goes to the center). Existing keys are kept unless `force`."""
    if not SITE_NAME_PATTERN.match(site):
        raise CertificateError(f"invalid site name {site!r}: use 1-63 letters, digits, '_' or '-'")
    folder = Path(out_dir)
    paths = SiteKeyPaths(folder / SITE_PRIVATE_KEY_NAME, folder / SITE_PUBLIC_KEY_NAME)
    existing = [str(path) for path in (paths.private_key, paths.public_key) if path.exists()]
    if existing and not force:
        raise CertificateError(
            f"refusing to overwrite existing keys (pass --force to replace them): {', '.join(existing)}"
        )
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
    key = ec.generate_private_key(_CURVE)
    _write_private_key(paths.private_key, key, openssh=True)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    _write_public(paths.public_key, public + f" bcvlm-site-{site}\n".encode())
    return paths


def check_ca_passphrase(passphrase: bytes) -> bytes:
    """Refuse an empty or short CA passphrase (there is no default one)."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise CertificateError(f"the CA key passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters")
    return passphrase


def read_ca_passphrase(
    passphrase_file: str | None,
    environ: Mapping[str, str] = os.environ,
    prompt: Callable[[str], str] | None = getpass.getpass,
    interactive: bool | None = None,
) -> bytes:
    """The CA key's passphrase: from --ca-passphrase-file, else $BCVLM_CA_PASSPHRASE, else typed twice at a terminal."""
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise CertificateError(f"cannot read --ca-passphrase-file {passphrase_file}: {exc}") from exc
        return check_ca_passphrase(text.encode())
    if environ.get(CA_PASSPHRASE_ENV):
        return check_ca_passphrase(environ[CA_PASSPHRASE_ENV].encode())
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not interactive or prompt is None:
        raise CertificateError(
            f"the CA key is encrypted and no passphrase was given: use --ca-passphrase-file, "
            f"${CA_PASSPHRASE_ENV} or run at a terminal to type it"
        )
    first = prompt("Passphrase for the new CA key: ")
    if prompt("Repeat it: ") != first:
        raise CertificateError("the two passphrases differ")
    return check_ca_passphrase(first.encode())


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
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
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
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
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
    site_public_keys: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    ca_passphrase: bytes,
    ca_key_path: str | os.PathLike[str] | None = None,
    generate_site_keys: Sequence[str] = (),
    force: bool = False,
    valid_days: int = 825,
    ca_name: str = "bcvlm federation CA",
) -> CertificatePaths:
    """Write the CA, the server certificate (SANs = names + IPs + loopback) and one folder per site to hand out.

    `site_public_keys` maps site names to the `.pub` files the sites made with `bcvlm certs site-key`; each is
    checked and copied into `sites/<name>/` next to the CA certificate. The CA key is encrypted with
    `ca_passphrase` and written to `ca_key_path` (default `default_ca_key_path(out_dir)`), never inside `out_dir`.
    `generate_site_keys` names sites whose key pair the center makes itself (the center then holds those sites'
    private keys and could act as them). Private keys are mode 0600; nothing is overwritten unless `force`.
    """
    public_keys = {name: Path(path) for name, path in (site_public_keys or {}).items()}
    site_names = validate_site_names([*public_keys, *generate_site_keys])
    names = [name for name in server_names if name]
    ips = _parse_ips([ip for ip in server_ips if ip])
    if not names and not ips:
        raise CertificateError("the server certificate needs at least one --server-name or --server-ip")
    # Loopback SANs: `bcvlm-server` reaches its own SuperLink on 127.0.0.1 (the CLI runs on the same machine).
    names += [name for name in LOOPBACK_NAMES if name not in names]
    ips += [ip for ip in map(ipaddress.ip_address, LOOPBACK_IPS) if ip not in ips]
    if valid_days < 1:
        raise CertificateError(f"--valid-days must be >= 1, got {valid_days}")
    check_ca_passphrase(ca_passphrase)
    out = Path(out_dir)
    ca_key = Path(ca_key_path) if ca_key_path is not None else default_ca_key_path(out)
    if ca_key.resolve().is_relative_to(out.resolve()):
        raise CertificateError(
            f"the CA key must be written outside {out} (that folder's files are handed out): got --ca-key {ca_key}"
        )
    loaded = {name: load_site_public_key(path) for name, path in public_keys.items()}
    paths = CertificatePaths(out, site_names, ca_key, tuple(generate_site_keys))
    existing = [str(path) for path in paths.all_files() if path.exists()]
    if existing and not force:
        raise CertificateError(
            f"refusing to overwrite existing files (pass --force to replace them): {', '.join(existing)}"
        )

    ca_private, ca_cert = _make_ca(ca_name, valid_days)
    server_key, server_cert = _make_server_cert(ca_private, ca_cert, names, ips, valid_days)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    if not ca_key.parent.exists():
        ca_key.parent.mkdir(parents=True, mode=0o700)
    _write_private_key(ca_key, ca_private, passphrase=ca_passphrase)
    _write_public(paths.ca_cert, ca_pem)
    _write_private_key(paths.server_key, server_key)
    _write_public(paths.server_cert, server_cert.public_bytes(serialization.Encoding.PEM))
    for site, public_key in loaded.items():
        _write_public(
            paths.site_public_key(site),
            public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            + f" bcvlm-site-{site}\n".encode(),
        )
        _write_public(paths.site_ca_cert(site), ca_pem)
    for site in generate_site_keys:
        create_site_key(paths.site_dir(site), site, force=True)  # overwrite check done above, for all files at once
        _write_public(paths.site_ca_cert(site), ca_pem)
    return paths


def _split_list(values: Sequence[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or ():
        out += [part.strip() for part in value.split(",") if part.strip()]
    return out


def _site_key_args(values: Sequence[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in _split_list(values):
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise CertificateError(f"--site-key takes NAME=PATH_TO.pub, got {item!r}")
        if name in pairs:
            raise CertificateError(f"duplicate site names: {name}")
        pairs[name] = path
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcvlm certs",
        description="Coordinating center: create the federation CA (encrypted key) and the SuperLink TLS certificate, "
        "and take in the sites' public keys. Sites make their key pair with `bcvlm certs site-key`.",
    )
    parser.add_argument(
        "--out", required=True, help="output directory (the center's files + sites/<name>/ to hand out)"
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=[],
        help="DNS name of the SuperLink (repeat or comma-separate for several)",
    )
    parser.add_argument(
        "--server-ip",
        action="append",
        default=[],
        help="IP address of the SuperLink (repeat or comma-separate for several)",
    )
    parser.add_argument(
        "--site-key",
        action="append",
        default=[],
        metavar="NAME=PUBFILE",
        help="a site's public key file from `bcvlm certs site-key` (repeat or comma-separate)",
    )
    parser.add_argument(
        "--ca-key",
        default=None,
        help=f"where the encrypted CA key goes (default: {CA_KEY_DIR_NAME}/{CA_KEY_NAME} next to "
        f"--out; never inside it)",
    )
    parser.add_argument(
        "--ca-passphrase-file",
        default=None,
        help=f"file holding the CA key's passphrase (else ${CA_PASSPHRASE_ENV}, else a prompt)",
    )
    parser.add_argument(
        "--generate-site-keys",
        action="store_true",
        help="UNSAFE: the center makes the key pairs of the sites named in --sites and so holds "
        "their private keys (it could act as any of them)",
    )
    parser.add_argument("--sites", default="", help="with --generate-site-keys: comma-separated site names")
    parser.add_argument("--valid-days", type=int, default=825, help="certificate lifetime in days (default 825)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def build_site_key_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcvlm certs site-key",
        description="At the hospital: make this site's SuperNode key pair. Keep the private key here (mode 0600); "
        "send only the .pub file to the coordinating center.",
    )
    parser.add_argument("--out", required=True, help="folder for supernode_auth_key and supernode_auth_key.pub")
    parser.add_argument("--site", default="site", help="site name written as the public key's comment")
    parser.add_argument("--force", action="store_true", help="replace an existing key pair")
    return parser


def site_key_main(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm certs site-key`."""
    args = build_site_key_parser().parse_args(list(argv))
    try:
        paths = create_site_key(args.out, args.site, force=args.force)
    except CertificateError as exc:
        print(f"bcvlm certs site-key: error: {exc}", file=sys.stderr)
        return 2
    public = load_site_public_key(paths.public_key)
    print(f"private key  {paths.private_key}  (mode 0600; stays at this site, never send it)")
    print(f"public key   {paths.public_key}  (send this file to the coordinating center)")
    print(f"fingerprint  {public_key_fingerprint(public)}  (confirm it with the center by phone)")
    return 0


def main(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm certs` (and of `bcvlm certs site-key ...`)."""
    argv = list(argv)
    if argv[:1] == ["site-key"]:
        return site_key_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        site_keys = _site_key_args(args.site_key)
        generated = _split_list([args.sites])
        if generated and not args.generate_site_keys:
            raise CertificateError(
                "--sites only names sites for --generate-site-keys; sites make their own keys "
                "(`bcvlm certs site-key`) and you pass each .pub with --site-key NAME=PUBFILE"
            )
        if args.generate_site_keys and not generated:
            raise CertificateError("--generate-site-keys needs --sites a,b,c")
        if not site_keys and not generated:
            raise CertificateError("no sites: pass each site's public key with --site-key NAME=PUBFILE")
        passphrase = read_ca_passphrase(args.ca_passphrase_file)
        paths = create_certificates(
            args.out,
            server_names=_split_list(args.server_name),
            server_ips=_split_list(args.server_ip),
            site_public_keys=site_keys,
            ca_passphrase=passphrase,
            ca_key_path=args.ca_key,
            generate_site_keys=generated,
            force=args.force,
            valid_days=args.valid_days,
        )
    except CertificateError as exc:
        print(f"bcvlm certs: error: {exc}", file=sys.stderr)
        return 2
    if paths.generated_sites:
        print(
            f"WARNING: the center made the private keys of {', '.join(paths.generated_sites)}; whoever holds "
            f"{paths.out_dir} can act as those sites. Prefer `bcvlm certs site-key` at each site.",
            file=sys.stderr,
        )
    print(f"CA certificate      {paths.ca_cert}  (give to every site)")
    print(f"CA key (encrypted)  {paths.ca_key}  (keep offline; never leaves the coordinating center)")
    print(f"server certificate  {paths.server_cert} + {paths.server_key}")
    for site in paths.sites:
        fingerprint = public_key_fingerprint(load_site_public_key(paths.site_public_key(site)))
        what = "private key + " if site in paths.generated_sites else ""
        print(f"site {site:<14} {paths.site_dir(site)}  ({what}ca.crt for the site; public key {fingerprint})")
    return 0
