"""The public address serves only the Fleet API: in the loopback deployment (bcvlm_testing.loopback_scenario, a real
`bcvlm-server` with its loopback SuperLink, SuperExec and gateway), the sites train through the gateway, while Control
and Runtime calls sent to the public address fail and the same calls on the loopback SuperLink port work (so the
probes can tell the difference)."""

from __future__ import annotations

import stat

import pytest
from flwr.supercore.error import ApiErrorCode

from bcvlm_testing.gateway_probes import CONTROL_PATH, FLEET_PATH, RUNTIME_PATH, SMUGGLED_PATHS, GatewayProbes
from bcvlm_testing.loopback_scenario import TRAINING_SITES, ObservedDeployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture
def probes(deployment: ObservedDeployment) -> GatewayProbes:
    return deployment.gateway


def test_sites_train_through_the_gateway(deployment: ObservedDeployment) -> None:
    assert deployment.resumed_code == 0, deployment.fed.output("server.out")[-3000:]
    for site in TRAINING_SITES:
        entries = deployment.fed.ledger(site)["entries"]
        assert 1 in [entry["round"] for entry in entries if entry["kind"] == "trained"], site
    gateway_log = (deployment.run_directory.logs / "fleet_gateway.log").read_text()
    assert "POST /v1/fleet/pull-messages" in gateway_log and "POST /v1/fleet/push-messages" in gateway_log


def test_fleet_calls_are_forwarded(probes: GatewayProbes) -> None:
    # An unsigned get-run reaches the SuperLink (which refuses it), so it is not the gateway's 404.
    assert probes.status[("public", FLEET_PATH)] not in (404, 405, 502)
    assert probes.status[("public", FLEET_PATH)] == probes.status[("internal", FLEET_PATH)]
    assert probes.status[("public", f"GET {FLEET_PATH}")] == 405


def test_control_api_is_not_served_on_the_public_address(probes: GatewayProbes) -> None:
    assert probes.status[("internal", CONTROL_PATH)] == 200
    assert probes.status[("public", CONTROL_PATH)] == 404


def test_runtime_api_is_not_served_on_the_public_address(probes: GatewayProbes) -> None:
    assert probes.status[("internal", RUNTIME_PATH)] != 404
    assert probes.status[("public", RUNTIME_PATH)] == 404


@pytest.mark.parametrize("path", SMUGGLED_PATHS)
def test_dot_segments_do_not_smuggle_control_calls(probes: GatewayProbes, path: str) -> None:
    assert probes.status[("public", path)] == 404


def test_flwr_commands_fail_through_the_public_address(probes: GatewayProbes) -> None:
    assert probes.internal_runs_listed
    for command, error in probes.public_flwr_errors.items():
        assert "404" in error, (command, error)


def test_the_superexec_secret_is_private_to_the_center(deployment: ObservedDeployment) -> None:
    secret = deployment.run_directory.superexec_secret
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_size >= 32


def test_runtime_api_needs_the_superexec_secret(probes: GatewayProbes) -> None:
    # Flower's answer when the SuperExec auth headers are missing or wrong: 401, RUNTIME_AUTHENTICATION_FAILED.
    assert "401 Unauthorized" in probes.runtime_without_secret_error
    assert f'"code":{int(ApiErrorCode.RUNTIME_AUTHENTICATION_FAILED)}' in probes.runtime_without_secret_error


def test_superlink_listens_only_on_loopback(probes: GatewayProbes) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 in /proc/net byte order
    assert probes.listening and probes.listening <= loopback, probes.listening
