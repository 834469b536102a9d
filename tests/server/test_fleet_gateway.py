"""The public address serves only the Fleet API: a real `bcvlm-server` (loopback SuperLink + SuperExec + gateway) and
two `bcvlm-client` sites train one round through the gateway, while Control and Runtime calls sent to the public
address fail and the same calls on the loopback SuperLink port work (so the probes can tell the difference)."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.error import ApiErrorCode
from flwr.supercore.runtime.runtime_http_client import RuntimeHttpClient

from bcvlm_client.flower_process import flower_environment, flower_executable, free_port
from bcvlm_model.atomic_io import read_json
from bcvlm_server.superlink import FlowerControl
from bcvlm_testing.loopback import TINY_FEDERATION, LoopbackFederation, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SITES = ("alpha", "beta")
CONTROL_PATH = "/v1/control/list-runs"
RUNTIME_PATH = "/v1/runtime/acquire-task"
SMUGGLED_PATHS = (
    "/v1/fleet/../control/list-runs",
    "/v1/fleet/%2e%2e/control/list-runs",
    "/v1/fleet//../../v1/control/list-runs",
)


def http_status(port: int, path: str, ca_cert: Path, method: str = "POST") -> int:
    """Status code of one raw HTTPS request to 127.0.0.1:port (raw, so the path reaches the server unnormalised)."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/protobuf"
                f"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode("ascii")
            )
            status_line = tls.recv(4096).split(b"\r\n", 1)[0]
    return int(status_line.split()[1])


def flwr_output(home: Path, address: str, ca_cert: Path, args: list[str]) -> str:
    """Output of one real `flwr` command sent to `address` ("" when Flower reports success)."""
    control = FlowerControl(home, address, ca_cert)  # writes the connection `bcvlm` into home/config.toml
    done = subprocess.run(
        [flower_executable("flwr"), *args],
        env=flower_environment(control.flwr_home),
        cwd=control.flwr_home,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    return "" if done.returncode == 0 and '"success": true' in output else output


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a TCP socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).is_file():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


@dataclass
class Observed:
    fed: LoopbackFederation
    public_port: int
    internal_port: int
    server_code: int
    status: dict[tuple[str, str], int]
    public_flwr_errors: dict[str, str]
    internal_runs_listed: bool
    runtime_without_secret_error: str
    listening: set[str]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    # One round without SecAgg+ (its extra stages cost minutes here and are covered by test_deployment_loopback).
    federation = {**TINY_FEDERATION, "rounds": 1, "secagg": {**TINY_FEDERATION["secagg"], "enabled": False}}
    fed = LoopbackFederation(tmp_path_factory.mktemp("gateway"), SITES, federation)
    internal_port = free_port()
    raw = yaml.safe_load(fed.server_yaml.read_text())
    raw["superlink"]["internal_port"] = internal_port
    fed.server_yaml.write_text(yaml.safe_dump(raw))
    ca_cert = fed.certs.ca_cert
    try:
        server, _ = fed.start_federation()
        wait_until(
            lambda: (fed.run_dir / "flower_runs.json").is_file() or server.poll() is not None,
            600,
            "the run to be submitted",
        )
        status = {
            (where, path): http_status(port, path, ca_cert)
            for where, port in (("public", fed.port), ("internal", internal_port))
            for path in (CONTROL_PATH, RUNTIME_PATH, "/v1/fleet/get-run", *SMUGGLED_PATHS)
        }
        status[("public", "GET /v1/fleet/get-run")] = http_status(fed.port, "/v1/fleet/get-run", ca_cert, "GET")
        run_id = int(read_json(fed.run_dir / "flower_runs.json")[0]["run_id"])
        commands = {
            "ls": ["ls", "bcvlm", "--run-id", str(run_id), "--format", "json"],
            "run": [
                "run",
                str(fed.run_dir / "app"),
                "bcvlm",
                "--run-config",
                str(fed.run_dir / "run_config.toml"),
                "--format",
                "json",
            ],
            "stop": ["stop", str(run_id), "bcvlm", "--format", "json"],
            "log": ["log", str(run_id), "bcvlm", "--show"],
            "supernode register": [
                "supernode",
                "register",
                str(fed.site_keys["rogue"].public_key),
                "bcvlm",
                "--format",
                "json",
            ],
        }
        # The commands at once, each from its own Flower home: each is mostly a CLI start.
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            answers = {
                name: pool.submit(
                    flwr_output,
                    fed.root / "public_cli" / name.replace(" ", "_"),
                    f"127.0.0.1:{fed.port}",
                    ca_cert,
                    args,
                )
                for name, args in commands.items()
            }
            public_errors = {name: answer.result() for name, answer in answers.items()}
        internal = FlowerControl(fed.root / "internal_cli", f"127.0.0.1:{internal_port}", ca_cert)
        internal_listed = internal.run_status(run_id).run_id == run_id
        client = RuntimeHttpClient.from_server_address(
            f"127.0.0.1:{internal_port}", insecure=False, root_certificates=ca_cert.read_bytes(), interceptors=[]
        )
        try:
            client.AcquireTask(AcquireTaskRequest())
            runtime_error = ""
        except Exception as exc:  # noqa: BLE001 - any refusal is what we look for; its text is checked below
            runtime_error = f"{type(exc).__name__}: {exc} {getattr(getattr(exc, 'response', None), 'text', '')}"
        finally:
            client.close()
        listening = listening_addresses(internal_port)
        code = server.wait(timeout=900)
        return Observed(
            fed=fed,
            public_port=fed.port,
            internal_port=internal_port,
            server_code=code,
            status=status,
            public_flwr_errors=public_errors,
            internal_runs_listed=internal_listed,
            runtime_without_secret_error=runtime_error,
            listening=listening,
        )
    finally:
        fed.stop_all()


def test_sites_train_through_the_gateway(observed: Observed) -> None:
    assert observed.server_code == 0, observed.fed.output("server.out")[-3000:]
    assert observed.fed.completed_rounds() == 1
    for site in SITES:
        entries = observed.fed.ledger(site)["entries"]
        assert [entry["round"] for entry in entries if entry["kind"] == "trained"] == [1], site
    gateway_log = (observed.fed.run_dir / "logs" / "fleet_gateway.log").read_text()
    assert "POST /v1/fleet/pull-messages" in gateway_log and "POST /v1/fleet/push-messages" in gateway_log


def test_fleet_calls_are_forwarded(observed: Observed) -> None:
    # An unsigned get-run reaches the SuperLink (which refuses it), so it is not the gateway's 404.
    assert observed.status[("public", "/v1/fleet/get-run")] not in (404, 405, 502)
    assert observed.status[("public", "/v1/fleet/get-run")] == observed.status[("internal", "/v1/fleet/get-run")]
    assert observed.status[("public", "GET /v1/fleet/get-run")] == 405


def test_control_api_is_not_served_on_the_public_address(observed: Observed) -> None:
    assert observed.status[("internal", CONTROL_PATH)] == 200
    assert observed.status[("public", CONTROL_PATH)] == 404


def test_runtime_api_is_not_served_on_the_public_address(observed: Observed) -> None:
    assert observed.status[("internal", RUNTIME_PATH)] != 404
    assert observed.status[("public", RUNTIME_PATH)] == 404


@pytest.mark.parametrize("path", SMUGGLED_PATHS)
def test_dot_segments_do_not_smuggle_control_calls(observed: Observed, path: str) -> None:
    assert observed.status[("public", path)] == 404


def test_flwr_commands_fail_through_the_public_address(observed: Observed) -> None:
    assert observed.internal_runs_listed
    for command, error in observed.public_flwr_errors.items():
        assert "404" in error, (command, error)


def test_runtime_api_needs_the_superexec_secret(observed: Observed) -> None:
    secret = observed.fed.run_dir / "superlink" / "superexec_auth.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.stat().st_size >= 32
    # Flower's answer when the SuperExec auth headers are missing or wrong: 401, RUNTIME_AUTHENTICATION_FAILED.
    assert "401 Unauthorized" in observed.runtime_without_secret_error
    assert f'"code":{int(ApiErrorCode.RUNTIME_AUTHENTICATION_FAILED)}' in observed.runtime_without_secret_error


def test_superlink_listens_only_on_loopback(observed: Observed) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 in /proc/net byte order
    assert observed.listening and observed.listening <= loopback, observed.listening
