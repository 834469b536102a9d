"""Tests for `bcvlm certs`: site-made keys (only the .pub travels), encrypted CA key outside the files handed out,
server certificate SANs, keys in the format Flower loads, 0600, no overwrite, the explicit center-made-keys flag."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from flwr.cli.supernode.register import try_load_public_key

from bcvlm_server.certs import (
    CA_PASSPHRASE_ENV,
    CertificateError,
    CertificatePaths,
    SiteKeyPaths,
    create_certificates,
    create_site_key,
    main,
    read_ca_passphrase,
)

PASSPHRASE = b"correct horse battery staple"
SITES = ("hosp_a", "hosp-b")


@pytest.fixture(scope="module")
def site_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SiteKeyPaths]:
    """Each hospital makes its key pair in its own folder (here: separate temp folders)."""
    return {site: create_site_key(tmp_path_factory.mktemp(site) / "keys", site) for site in SITES}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, site_keys: dict[str, SiteKeyPaths]) -> CertificatePaths:
    return create_certificates(
        tmp_path_factory.mktemp("center") / "certs",
        ["superlink.example.org", "localhost"],
        ["127.0.0.1", "10.1.2.3"],
        {s: keys.public_key for s, keys in site_keys.items()},
        ca_passphrase=PASSPHRASE,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_site_key_is_owner_only_and_loads_the_way_flower_loads_it(site_keys: dict[str, SiteKeyPaths]) -> None:
    keys = site_keys["hosp_a"]
    assert _mode(keys.private_key) == 0o600 and _mode(keys.public_key) == 0o644
    # flower-supernode --auth-supernode-private-key loads an unencrypted OpenSSH key.
    private = serialization.load_ssh_private_key(keys.private_key.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert len(try_load_public_key(keys.public_key)) > 0  # what `flwr supernode register` parses (NIST curves only)
    public = serialization.load_ssh_public_key(keys.public_key.read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def test_center_bundle_holds_no_site_private_key(bundle: CertificatePaths, site_keys: dict[str, SiteKeyPaths]) -> None:
    center_files = {path.relative_to(bundle.out_dir).as_posix() for path in bundle.out_dir.rglob("*") if path.is_file()}
    assert center_files == {"ca.crt", "server.crt", "server.key"} | {
        f"sites/{s}/{name}" for s in SITES for name in ("ca.crt", "supernode_auth_key.pub")
    }
    for site, keys in site_keys.items():
        registered = serialization.load_ssh_public_key(bundle.site_public_key(site).read_bytes())
        own = serialization.load_ssh_public_key(keys.public_key.read_bytes())
        assert registered.public_numbers() == own.public_numbers()  # type: ignore[union-attr]
        assert bundle.site_ca_cert(site).read_bytes() == bundle.ca_cert.read_bytes()


def test_ca_key_is_encrypted_and_outside_the_folder_handed_out(bundle: CertificatePaths) -> None:
    assert not bundle.ca_key.resolve().is_relative_to(bundle.out_dir.resolve())
    assert _mode(bundle.ca_key) == 0o600 and _mode(bundle.server_key) == 0o600
    with pytest.raises(TypeError, match="encrypted"):
        serialization.load_pem_private_key(bundle.ca_key.read_bytes(), password=None)
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(bundle.ca_key.read_bytes(), password=b"wrong passphrase!!")
    ca_key = serialization.load_pem_private_key(bundle.ca_key.read_bytes(), password=PASSPHRASE)
    ca = x509.load_pem_x509_certificate(bundle.ca_cert.read_bytes())
    assert ca_key.public_key().public_numbers() == ca.public_key().public_numbers()  # type: ignore[union-attr]


def test_server_certificate_has_sans_and_chains_to_ca(bundle: CertificatePaths) -> None:
    ca = x509.load_pem_x509_certificate(bundle.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(bundle.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["superlink.example.org", "localhost"]
    assert sorted(map(str, sans.get_values_for_type(x509.IPAddress))) == ["10.1.2.3", "127.0.0.1", "::1"]
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "superlink.example.org"
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert server.issuer == ca.subject
    ca_public = ca.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    ca_public.verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(hashes.SHA384()))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    server_key = serialization.load_pem_private_key(bundle.server_key.read_bytes(), password=None)
    assert server_key.public_key().public_numbers() == server.public_key().public_numbers()  # type: ignore[union-attr]


def test_refuses_to_overwrite_without_force(bundle: CertificatePaths, site_keys: dict[str, SiteKeyPaths]) -> None:
    before = bundle.ca_key.read_bytes()
    with pytest.raises(CertificateError, match="--force"):
        create_certificates(
            bundle.out_dir, ["localhost"], [], {"hosp_a": site_keys["hosp_a"].public_key}, ca_passphrase=PASSPHRASE
        )
    assert bundle.ca_key.read_bytes() == before


def test_site_key_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    first = create_site_key(tmp_path, "a")
    old = first.private_key.read_bytes()
    with pytest.raises(CertificateError, match="--force"):
        create_site_key(tmp_path, "a")
    assert first.private_key.read_bytes() == old
    assert create_site_key(tmp_path, "a", force=True).private_key.read_bytes() != old


def test_center_generated_site_keys_need_the_explicit_option(tmp_path: Path) -> None:
    paths = create_certificates(
        tmp_path / "certs", ["localhost"], [], ca_passphrase=PASSPHRASE, generate_site_keys=["a"]
    )
    assert paths.generated_sites == ("a",)
    assert _mode(paths.site_private_key("a")) == 0o600
    private = serialization.load_ssh_private_key(paths.site_private_key("a").read_bytes(), password=None)
    public = serialization.load_ssh_public_key(paths.site_public_key("a").read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("names", "ips", "key", "passphrase", "ca_key", "message"),
    [
        (["localhost"], [], "../evil", PASSPHRASE, None, "invalid site name"),
        (["localhost"], ["300.1.1.1"], "a", PASSPHRASE, None, "not an IPv4 or IPv6"),
        ([], [], "a", PASSPHRASE, None, "at least one --server-name or --server-ip"),
        (["localhost"], [], None, PASSPHRASE, None, "at least one site"),
        (["localhost"], [], "a", b"short", None, "at least 12 characters"),
        (["localhost"], [], "a", PASSPHRASE, "certs/private/ca.key", "outside"),
        (["localhost"], [], "private", PASSPHRASE, None, "PRIVATE key"),
        (["localhost"], [], "ed25519", PASSPHRASE, None, "EC keys on a NIST curve"),
        (["localhost"], [], "garbage", PASSPHRASE, None, "not an OpenSSH public key"),
        (["localhost"], [], "missing", PASSPHRASE, None, "not found"),
    ],
)
def test_bad_input_names_the_problem(
    tmp_path: Path,
    names: list[str],
    ips: list[str],
    key: str | None,
    passphrase: bytes,
    ca_key: str | None,
    message: str,
) -> None:
    inbox = tmp_path / "inbox"
    good = create_site_key(inbox / "good", "a")
    ed_key = ed25519.Ed25519PrivateKey.generate().public_key()
    files = {
        "a": good.public_key,
        "../evil": good.public_key,
        "private": good.private_key,
        "ed25519": _write(
            inbox / "ed.pub", ed_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        ),
        "garbage": _write(inbox / "garbage.pub", b"not a key\n"),
        "missing": inbox / "nope.pub",
    }
    out = tmp_path / "certs"
    with pytest.raises(CertificateError, match=message):
        create_certificates(
            out,
            names,
            ips,
            {} if key is None else {key: files[key]},
            ca_passphrase=passphrase,
            ca_key_path=None if ca_key is None else tmp_path / ca_key,
        )
    assert not out.exists() and not (tmp_path / "ca_private").exists()


def test_passphrase_comes_from_file_then_environment_then_prompt(tmp_path: Path) -> None:
    secret = _write(tmp_path / "pass.txt", b"from the file 123\n")
    assert read_ca_passphrase(str(secret), environ={CA_PASSPHRASE_ENV: "from the environment"}) == b"from the file 123"
    assert read_ca_passphrase(None, environ={CA_PASSPHRASE_ENV: "from the environment"}) == b"from the environment"
    assert (
        read_ca_passphrase(None, environ={}, prompt=lambda _: "typed at a terminal", interactive=True)
        == b"typed at a terminal"
    )


def test_passphrase_is_never_defaulted(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="no passphrase was given"):
        read_ca_passphrase(None, environ={}, interactive=False)
    answers = iter(["first passphrase", "second passphrase"])
    with pytest.raises(CertificateError, match="differ"):
        read_ca_passphrase(None, environ={}, prompt=lambda _: next(answers), interactive=True)


def test_command_line_site_key_then_center(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["site-key", "--out", str(tmp_path / "site_x"), "--site", "x"]) == 0
    printed = capsys.readouterr().out
    assert "SHA256:" in printed and "send this file" in printed
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    secret = _write(tmp_path / "pass.txt", PASSPHRASE)
    out = tmp_path / "certs"
    center = [
        "--out",
        str(out),
        "--server-name",
        "localhost",
        "--site-key",
        f"x={tmp_path / 'site_x' / 'supernode_auth_key.pub'}",
    ]
    assert main([*center, "--ca-passphrase-file", str(secret)]) == 0
    assert (out / "sites" / "x" / "supernode_auth_key.pub").is_file()
    assert not (out / "sites" / "x" / "supernode_auth_key").exists()
    assert (tmp_path / "ca_private" / "ca.key").is_file()
    assert main([*center, "--ca-passphrase-file", str(secret)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_command_line_refuses_center_made_keys_without_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _write(tmp_path / "pass.txt", PASSPHRASE)
    common = ["--out", str(tmp_path / "certs"), "--server-name", "localhost", "--ca-passphrase-file", str(secret)]
    assert main([*common, "--sites", "x,y"]) == 2
    assert "--generate-site-keys" in capsys.readouterr().err and not (tmp_path / "certs").exists()
    assert main([*common, "--sites", "x,y", "--generate-site-keys"]) == 0
    assert "WARNING" in capsys.readouterr().err
    assert (tmp_path / "certs" / "sites" / "y" / "supernode_auth_key").is_file()


def test_command_line_needs_a_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CA_PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    create_site_key(tmp_path / "site_x", "x")
    assert (
        main(
            [
                "--out",
                str(tmp_path / "certs"),
                "--server-name",
                "localhost",
                "--site-key",
                f"x={tmp_path / 'site_x' / 'supernode_auth_key.pub'}",
            ]
        )
        == 2
    )
    assert "no passphrase was given" in capsys.readouterr().err
    assert not (tmp_path / "certs").exists()
