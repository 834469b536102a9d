"""Restart backoff, the refused-key message (fingerprint as ssh-keygen prints it) and the thread environment."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from bcvlm_client.site_config import SiteConfig
from bcvlm_client.supernode_supervisor import (
    KEY_REFUSED,
    RestartBackoff,
    public_key_fingerprint,
    refusal_message,
    thread_environment,
)
from bcvlm_testing.deployment_files import loopback_certificates


def test_backoff_doubles_after_quick_exits_up_to_the_cap() -> None:
    backoff = RestartBackoff(base_s=5.0, max_s=30.0, healthy_after_s=60.0)
    assert [backoff.next_delay(1.0) for _ in range(5)] == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_backoff_starts_over_after_a_supernode_that_ran_well() -> None:
    backoff = RestartBackoff(base_s=5.0, max_s=300.0, healthy_after_s=60.0)
    backoff.next_delay(1.0), backoff.next_delay(1.0)
    assert backoff.next_delay(3600.0) == 5.0  # e.g. connected for an hour, then the center started a new run


def test_fingerprint_matches_the_public_key_file(tmp_path: Path) -> None:
    certs = loopback_certificates(tmp_path / "certs", generate_site_keys=["hosp"])
    blob = base64.b64decode(certs.site_public_key("hosp").read_text().split()[1])
    expected = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert public_key_fingerprint(certs.site_private_key("hosp")) == expected


def test_refusal_message_names_the_public_key_file(tmp_path: Path) -> None:
    certs = loopback_certificates(tmp_path / "certs", generate_site_keys=["hosp"])
    site = SiteConfig(site_id="hosp", private_key=str(certs.site_private_key("hosp")), state_dir=str(tmp_path))
    message = refusal_message(site)
    assert message.startswith("this site's key (SHA-256 fingerprint SHA256:")
    assert message.endswith("is not registered at the center: send `supernode_auth_key.pub` to the coordinating center")


def test_refusal_is_recognised_in_the_supernode_log() -> None:
    assert KEY_REFUSED.search("ERROR :  Exit Code: 305 [code: 2004] Failed to activate SuperNode.")
    assert not KEY_REFUSED.search("WARNING :   Connection attempt failed, retrying in 0.91 seconds")


def test_threads_reach_the_supernode_environment_only_when_set() -> None:
    site = SiteConfig(site_id="hosp", state_dir="/tmp/x")
    assert thread_environment(site) == {}
    site.compute.num_threads = 1
    assert thread_environment(site) == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
