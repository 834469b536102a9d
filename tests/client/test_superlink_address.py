"""Host parsing and the loopback test behind `insecure: true` (allowed only to a SuperLink on this machine)."""

from __future__ import annotations

import pytest

from bcvlm_client.superlink_address import is_loopback_address, superlink_host


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("superlink.example.org:9443", "superlink.example.org"),
        ("[::1]:9092", "::1"),
        ("10.0.0.5:1", "10.0.0.5"),
        ("::1", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_host_is_read_from_every_address_form(address: str, host: str) -> None:
    assert superlink_host(address) == host


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:9092", True),
        ("127.255.0.3:1", True),
        ("LOCALHOST:9092", True),
        ("[::1]:9092", True),
        ("[::ffff:127.0.0.1]:9092", True),
        ("0.0.0.0:9092", False),
        ("10.0.0.5:9092", False),
        ("[2001:db8::1]:9092", False),
        ("superlink.example.org:9443", False),
        ("localhost.evil.org:1", False),
    ],
)
def test_only_this_machine_counts_as_loopback(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback
