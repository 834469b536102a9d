"""Tests for `bcvlm certs`: CA, server certificate SANs, SuperNode auth keys in the format Flower loads, 0600, no overwrite."""
from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flwr.cli.supernode.register import try_load_public_key

from bcvlm_server.certs import CertificateError, CertificatePaths, create_certificates, main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> CertificatePaths:
    return create_certificates(tmp_path_factory.mktemp("certs"), ["superlink.example.org", "localhost"],
                               ["127.0.0.1", "10.1.2.3"], ["hosp_a", "hosp-b"])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_keys_are_owner_only(bundle: CertificatePaths) -> None:
    private = [bundle.ca_key, bundle.server_key] + [bundle.site_private_key(s) for s in bundle.sites]
    assert [_mode(p) for p in private] == [0o600] * len(private)
    assert _mode(bundle.ca_cert) == 0o644


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
    # The server key matches the certificate.
    server_key = serialization.load_pem_private_key(bundle.server_key.read_bytes(), password=None)
    assert server_key.public_key().public_numbers() == server.public_key().public_numbers()  # type: ignore[union-attr]


def test_site_keys_load_the_way_flower_loads_them(bundle: CertificatePaths) -> None:
    for site in bundle.sites:
        private = serialization.load_ssh_private_key(bundle.site_private_key(site).read_bytes(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        # `flwr supernode register` parses the public key file with this function (NIST curves only).
        registered = try_load_public_key(bundle.site_public_key(site))
        public = serialization.load_ssh_public_key(bundle.site_public_key(site).read_bytes())
        assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]
        assert len(registered) > 0
        assert bundle.site_ca_cert(site).read_bytes() == bundle.ca_cert.read_bytes()
    a, b = (bundle.site_public_key(s).read_bytes() for s in bundle.sites)
    assert a.split()[1] != b.split()[1]


def test_refuses_to_overwrite_without_force(bundle: CertificatePaths) -> None:
    before = bundle.ca_key.read_bytes()
    with pytest.raises(CertificateError, match="--force"):
        create_certificates(bundle.out_dir, ["localhost"], [], ["hosp_a"])
    assert bundle.ca_key.read_bytes() == before


def test_force_replaces_keys(tmp_path: Path) -> None:
    first = create_certificates(tmp_path, ["localhost"], [], ["a"])
    old = first.site_private_key("a").read_bytes()
    second = create_certificates(tmp_path, ["localhost"], [], ["a"], force=True)
    assert second.site_private_key("a").read_bytes() != old
    assert _mode(second.site_private_key("a")) == 0o600


@pytest.mark.parametrize(
    ("names", "ips", "sites", "message"),
    [
        (["localhost"], [], ["../evil"], "invalid site name"),
        (["localhost"], [], ["a", "a"], "duplicate"),
        (["localhost"], ["300.1.1.1"], ["a"], "not an IPv4 or IPv6"),
        ([], [], ["a"], "at least one --server-name or --server-ip"),
        (["localhost"], [], [], "at least one site"),
    ],
)
def test_bad_input_names_the_problem(tmp_path: Path, names: list[str], ips: list[str], sites: list[str],
                                     message: str) -> None:
    with pytest.raises(CertificateError, match=message):
        create_certificates(tmp_path, names, ips, sites)
    assert not any(tmp_path.iterdir())


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert main(["--out", str(out), "--server-name", "localhost", "--server-ip", "127.0.0.1", "--sites", "x,y"]) == 0
    assert (out / "sites" / "y" / "supernode_auth_key.pub").is_file()
    assert main(["--out", str(out), "--server-name", "localhost", "--sites", "x"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["--out", str(out), "--server-name", "localhost", "--sites", "x", "--force"]) == 0
