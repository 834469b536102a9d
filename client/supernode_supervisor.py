"""What `bcvlm-client` needs to keep a site's SuperNode running: restart backoff, telling a refused key from other
exits (with the key's fingerprint for the center), and the thread settings the SuperNode's ClientApps inherit."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from bcvlm_client.site_config import SiteConfig

KEY_REFUSED = re.compile(r"\[code: 2004\]|Failed to activate SuperNode")
"""How Flower 1.42's SuperNode logs the SuperLink's refusal to activate a node whose public key is not registered."""
ADMITTED = re.compile(r"SuperNode ID: \d+")
"""How Flower 1.42's SuperNode logs that the SuperLink activated it (`start_client_internal`, once connected)."""
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class RestartBackoff:
    """Delay before the next SuperNode start: `base_s`, doubled after each quick exit, at most `max_s`.

    A SuperNode that ran at least `healthy_after_s` (it was connected and working, e.g. until the center started a
    new SuperLink) is restarted after `base_s` again.
    """

    base_s: float
    max_s: float
    healthy_after_s: float = 120.0
    quick_exits: int = field(default=0, init=False)

    def next_delay(self, ran_s: float) -> float:
        self.quick_exits = 0 if ran_s >= self.healthy_after_s else self.quick_exits + 1
        return min(self.max_s, self.base_s * 2 ** max(0, self.quick_exits - 1))


def public_key_fingerprint(private_key_path: str | os.PathLike[str]) -> str:
    """`SHA256:…` fingerprint of the key's public half, as `ssh-keygen -lf supernode_auth_key.pub` prints it."""
    data = Path(private_key_path).read_bytes()
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None)
    openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(openssh.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def refusal_message(cfg: SiteConfig) -> str:
    """What the site is told when the SuperLink refuses its key."""
    try:
        fingerprint = public_key_fingerprint(str(cfg.private_key))
    except (OSError, ValueError, TypeError, IndexError) as exc:
        fingerprint = f"unreadable: {type(exc).__name__}"
    return (
        f"this site's key (SHA-256 fingerprint {fingerprint}) is not registered at the center: send "
        f"`{Path(str(cfg.private_key)).name}.pub` to the coordinating center"
    )


def thread_environment(cfg: SiteConfig) -> dict[str, str]:
    """OMP/MKL thread counts for the SuperNode and the ClientApps it starts (none set: inherit, torch's default)."""
    threads = cfg.compute.num_threads
    return {} if threads is None else {name: str(int(threads)) for name in THREAD_VARIABLES}
