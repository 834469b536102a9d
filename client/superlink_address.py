"""Reading a SuperLink `host:port` address: its host, and whether it stays on this machine (loopback)."""

from __future__ import annotations

import ipaddress

LOOPBACK_HOSTNAMES: frozenset[str] = frozenset({"localhost"})


def superlink_host(address: str) -> str:
    """The host part of `host:port`, `[ipv6]:port` or a bare host (brackets removed)."""
    text = address.strip()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:  # host:port; more colons = a bare IPv6 address
        return text.rsplit(":", 1)[0]
    return text


def is_loopback_address(address: str) -> bool:
    """True when `address` names this machine: 127.0.0.0/8, ::1 (also IPv4-mapped) or localhost."""
    host = superlink_host(address).rstrip(".").lower()
    if host in LOOPBACK_HOSTNAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name may resolve anywhere
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)
