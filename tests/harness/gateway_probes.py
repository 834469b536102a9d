"""Probes of a running `bcvlm-server` from outside: raw HTTPS calls and real `flwr` commands sent to its public
address and to its loopback SuperLink, to tell what each address serves (tests/server/test_fleet_gateway.py)."""

from __future__ import annotations

import socket
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.runtime.runtime_http_client import RuntimeHttpClient

from bcvlm_client.flower_process import flower_environment, flower_executable
from bcvlm_server.superlink import FlowerControl

CONTROL_PATH = "/v1/control/list-runs"
RUNTIME_PATH = "/v1/runtime/acquire-task"
FLEET_PATH = "/v1/fleet/get-run"
SMUGGLED_PATHS = (
    "/v1/fleet/../control/list-runs",
    "/v1/fleet/%2e%2e/control/list-runs",
    "/v1/fleet//../../v1/control/list-runs",
)


@dataclass(frozen=True)
class GatewayProbes:
    """What the public and the internal address answered while a run was in progress."""

    status: dict[tuple[str, str], int]
    """(where, path) -> HTTP status of an empty POST; ("public", "GET " + FLEET_PATH) for a GET."""
    public_flwr_errors: dict[str, str]
    """`flwr` command -> its output when sent to the public address ("" if Flower reported success)."""
    internal_runs_listed: bool
    runtime_without_secret_error: str
    listening: set[str]
    """Local addresses (hex, as in /proc/net/tcp*) listening on the internal port."""


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


def runtime_error_without_secret(internal_port: int, ca_cert: Path) -> str:
    """The error a Runtime API call without the SuperExec's secret gets from the loopback SuperLink ("" if none)."""
    client = RuntimeHttpClient.from_server_address(
        f"127.0.0.1:{internal_port}", insecure=False, root_certificates=ca_cert.read_bytes(), interceptors=[]
    )
    try:
        client.AcquireTask(AcquireTaskRequest())
        return ""
    except Exception as exc:  # noqa: BLE001 - any refusal is what we look for; the tests read its text
        return f"{type(exc).__name__}: {exc} {getattr(getattr(exc, 'response', None), 'text', '')}"
    finally:
        client.close()


def probe_gateway(
    work: Path,
    public_port: int,
    internal_port: int,
    ca_cert: Path,
    run_id: int,
    app_dir: Path,
    run_config: Path,
    unregistered_key: Path,
) -> GatewayProbes:
    """Send every probe to both addresses of a center whose run `run_id` is in progress; `work` holds the Flower
    homes of the `flwr` commands."""
    status = {
        (where, path): http_status(port, path, ca_cert)
        for where, port in (("public", public_port), ("internal", internal_port))
        for path in (CONTROL_PATH, RUNTIME_PATH, FLEET_PATH, *SMUGGLED_PATHS)
    }
    status[("public", f"GET {FLEET_PATH}")] = http_status(public_port, FLEET_PATH, ca_cert, "GET")
    commands = {
        "ls": ["ls", "bcvlm", "--run-id", str(run_id), "--format", "json"],
        "run": ["run", str(app_dir), "bcvlm", "--run-config", str(run_config), "--format", "json"],
        "stop": ["stop", str(run_id), "bcvlm", "--format", "json"],
        "log": ["log", str(run_id), "bcvlm", "--show"],
        "supernode register": ["supernode", "register", str(unregistered_key), "bcvlm", "--format", "json"],
    }
    # The commands at once, each from its own Flower home: each is mostly a CLI start.
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        answers = {
            name: pool.submit(
                flwr_output, work / "public_cli" / name.replace(" ", "_"), f"127.0.0.1:{public_port}", ca_cert, args
            )
            for name, args in commands.items()
        }
        public_errors = {name: answer.result() for name, answer in answers.items()}
    internal = FlowerControl(work / "internal_cli", f"127.0.0.1:{internal_port}", ca_cert)
    return GatewayProbes(
        status=status,
        public_flwr_errors=public_errors,
        internal_runs_listed=internal.run_status(run_id).run_id == run_id,
        runtime_without_secret_error=runtime_error_without_secret(internal_port, ca_cert),
        listening=listening_addresses(internal_port),
    )
