"""The coordinating center's SuperLink: start/stop `flower-superlink`, register site keys, submit and follow a run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TypeVar

import httpx
import tomli_w

from bcvlm_client.flower_process import (
    FlowerProcess,
    FlowerProcessError,
    flower_environment,
    flower_executable,
    wait_for_port,
)
from bcvlm_model.atomic_io import atomic_write_text
from bcvlm_server.certs import CertificateError, load_site_public_key

if TYPE_CHECKING:
    from flwr.supercore.control import ControlHttpClient

CONNECTION_NAME = "bcvlm"
"""Name of the SuperLink connection in the run directory's own `config.toml` (FLWR_HOME)."""

FINISHED_PREFIX = "finished"
COMPLETED_STATUS = "finished:completed"
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class SuperLinkLaunch:
    """Everything `flower-superlink` is started with (absolute paths)."""

    host: str
    port: int
    ca_cert: Path
    server_cert: Path
    server_key: Path
    database: Path
    flwr_home: Path
    log_path: Path
    superexec_secret: Path | None = None
    """With a secret: `--isolation process`, and the Runtime API accepts only a SuperExec holding it (bcvlm-server
    starts that SuperExec itself). Without: Flower's own unauthenticated SuperExec (`--isolation subprocess`)."""

    def command(self) -> list[str]:
        """The `flower-superlink` command line: TLS, SuperNode auth, persistent state, explicit bind address."""
        if self.superexec_secret is not None:
            # Flower 1.42 ignores the secret in subprocess isolation (flwr/superlink/cli/flower_superlink.py).
            isolation = ["--isolation", "process", "--superexec-auth-secret-file", str(self.superexec_secret)]
        else:
            isolation = ["--isolation", "subprocess"]
        return [
            flower_executable("flower-superlink"),
            "--ssl-ca-certfile",
            str(self.ca_cert),
            "--ssl-certfile",
            str(self.server_cert),
            "--ssl-keyfile",
            str(self.server_key),
            "--enable-supernode-auth",
            "--database",
            str(self.database),
            "--host",
            self.host,
            "--port",
            str(self.port),
            *isolation,
            "--disable-runtime-dependency-installation",
        ]


def client_address(host: str, port: int) -> str:
    """Address a local CLI uses to reach a SuperLink bound to `host` (wildcard binds are reached on loopback)."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    return f"[{reach}]:{port}" if ":" in reach and not reach.startswith("[") else f"{reach}:{port}"


class SuperLink:
    """A running `flower-superlink` process (TLS + SuperNode authentication + SQLite state)."""

    def __init__(self, launch: SuperLinkLaunch) -> None:
        self.launch = launch
        self.process = FlowerProcess(
            launch.command(), flower_environment(launch.flwr_home), launch.log_path, cwd=launch.flwr_home
        )

    def start(self, timeout_s: float = 60.0) -> SuperLink:
        """Start the SuperLink and wait until its HTTPS port accepts connections."""
        self.launch.database.parent.mkdir(parents=True, exist_ok=True)
        self.process.start()
        host = client_address(self.launch.host, self.launch.port).rsplit(":", 1)[0].strip("[]")
        try:
            wait_for_port(host, self.launch.port, timeout_s, self.process.process)
        except FlowerProcessError as exc:
            self.process.stop()
            raise FlowerProcessError(f"SuperLink did not start: {exc}\n{self.process.log_text()[-4000:]}") from exc
        return self

    def stop(self, grace_s: float = 10.0) -> int | None:
        return self.process.stop(grace_s)

    def running(self) -> bool:
        return self.process.running()

    def __enter__(self) -> SuperLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class RunStatus:
    """One run as the SuperLink reports it (`flwr ls --run-id`)."""

    run_id: int
    status: str
    details: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.status.startswith(FINISHED_PREFIX)

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED_STATUS


class FlowerControl:
    """One SuperLink's Control API: Flower's own client in this process for registering sites and asking for node
    and run status (asked every few seconds), the `flwr` CLI through a private FLWR_HOME/config.toml (nothing touches
    ~/.flwr) for submitting a run, stopping it and fetching its log. Each `flwr` call is a fresh interpreter, about
    1 CPU-s on the center."""

    def __init__(
        self,
        flwr_home: str | os.PathLike[str],
        address: str,
        root_certificates: str | os.PathLike[str],
        command_timeout_s: float = 120.0,
    ) -> None:
        self.flwr_home = Path(flwr_home).resolve()
        self.address = address
        self.root_certificates = Path(root_certificates).resolve()
        self.command_timeout_s = command_timeout_s
        self._control_client: ControlHttpClient | None = None
        self.write_connection_config()

    def write_connection_config(self) -> Path:
        """Write `$FLWR_HOME/config.toml` with one TLS connection to our SuperLink, set as default."""
        config = {
            "superlink": {
                "default": CONNECTION_NAME,
                CONNECTION_NAME: {"address": self.address, "root-certificates": str(self.root_certificates)},
            }
        }
        return atomic_write_text(self.flwr_home / "config.toml", tomli_w.dumps(config))

    def _run_flwr(self, args: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        """Run the `flwr` CLI against this control home (its config.toml, Flower's environment, no stdin)."""
        return subprocess.run(
            [flower_executable("flwr"), *args],
            env=flower_environment(self.flwr_home),
            cwd=self.flwr_home,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )

    def _flwr(self, args: Sequence[str], timeout_s: float | None = None) -> dict[str, Any]:
        """Run `flwr ARGS --format json` and return its JSON answer; failures raise FlowerProcessError."""
        try:
            done = self._run_flwr([*args, "--format", "json"], timeout_s or self.command_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise FlowerProcessError(f"`flwr {' '.join(args)}` timed out after {exc.timeout} s") from exc
        try:
            answer = json.loads(done.stdout[done.stdout.find("{") :]) if "{" in done.stdout else None
        except json.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            raise FlowerProcessError(
                f"`flwr {' '.join(args)}` exited {done.returncode} without a JSON answer:\n{done.stdout}\n{done.stderr}"
            )
        return answer

    def register_site(self, public_key: str | os.PathLike[str], name: str) -> int | None:
        """Register a site's SSH-format EC public key (what `flwr supernode register` sends); returns its node id, None
        when the key is registered already."""
        from flwr.proto.control_pb2 import RegisterNodeRequest
        from flwr.supercore.error import ApiErrorCode, FlowerError
        from flwr.supercore.primitives.asymmetric import public_key_to_bytes

        what = f"registering site '{name}' ({public_key})"
        try:
            request = RegisterNodeRequest(public_key=public_key_to_bytes(load_site_public_key(public_key)), name=name)
        except CertificateError as exc:
            raise FlowerProcessError(f"{what} failed: {exc}") from exc
        try:
            answer = self._control_api().RegisterNode(request)
        except httpx.HTTPStatusError as exc:
            error = FlowerError.from_json(exc.response.text)
            if error is not None and error.code == ApiErrorCode.PUBLIC_KEY_ALREADY_IN_USE:
                return None
            raise FlowerProcessError(f"{what} failed: {error or exc}") from exc
        except (httpx.HTTPError, ValueError) as exc:
            raise FlowerProcessError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
        if not answer.node_id:
            raise FlowerProcessError(f"{what} failed: the SuperLink returned no node id")
        return int(answer.node_id)

    def _control_api(self) -> ControlHttpClient:
        """The Control API client the `flwr` CLI builds for this connection (TLS to our CA; no account auth)."""
        if self._control_client is None:
            from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
            from flwr.supercore.control import ControlHttpClient
            from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor

            self._control_client = ControlHttpClient.from_server_address(
                server_address=self.address,
                insecure=False,
                root_certificates=self.root_certificates.read_bytes(),
                interceptors=[CliClientHttpInterceptor(), RuntimeVersionHttpInterceptor(component_name="flwr CLI")],
            )
        return self._control_client

    def _ask(self, what: str, call: Callable[[ControlHttpClient], Answer]) -> Answer:
        """One Control API call; an unreachable or failing SuperLink raises FlowerProcessError naming `what`."""
        try:
            return call(self._control_api())
        except (httpx.HTTPError, ValueError) as exc:
            raise FlowerProcessError(f"{what} unavailable: {type(exc).__name__}: {exc}") from exc

    def node_statuses(self) -> dict[int, str]:
        """Each SuperNode the SuperLink knows, by node id, with its status (registered / online / offline / ...)."""
        from flwr.proto.control_pb2 import ListNodesRequest

        answer = self._ask("the SuperNode list", lambda api: api.ListNodes(ListNodesRequest()))
        return {int(node.node_id): str(node.status) for node in answer.nodes_info}

    def online_nodes(self) -> int:
        return sum(1 for status in self.node_statuses().values() if status == "online")

    def submit_run(self, app_dir: str | os.PathLike[str], run_config_toml: str | os.PathLike[str]) -> int:
        """`flwr run APP_DIR bcvlm -c RUN_CONFIG.toml`; returns the run id."""
        answer = self._flwr(
            [
                "run",
                str(Path(app_dir).resolve()),
                CONNECTION_NAME,
                "--run-config",
                str(Path(run_config_toml).resolve()),
            ],
            timeout_s=max(self.command_timeout_s, 300.0),
        )
        if not answer.get("success") or answer.get("run-id") is None:
            raise FlowerProcessError(f"submitting the run failed: {answer.get('error-message', answer)}")
        return int(answer["run-id"])

    def run_status(self, run_id: int) -> RunStatus:
        """The run's status as `flwr list` shows it: `status` or `status:sub_status` (e.g. finished:completed)."""
        from flwr.proto.control_pb2 import ListRunsRequest

        what = f"status of run {run_id}"
        answer = self._ask(what, lambda api: api.ListRuns(ListRunsRequest(run_id=run_id)))
        if run_id not in answer.run_dict:
            raise FlowerProcessError(f"{what} unavailable: the SuperLink does not know the run")
        state = answer.run_dict[run_id].status
        status = f"{state.status}:{state.sub_status}" if state.sub_status else state.status
        return RunStatus(run_id=run_id, status=status, details={"status-details": state.details})

    def stop_run(self, run_id: int) -> bool:
        answer = self._flwr(["stop", str(run_id), CONNECTION_NAME])
        return bool(answer.get("success"))

    def save_run_log(self, run_id: int, log_path: str | os.PathLike[str]) -> Path:
        """Write the run's full log as the SuperLink kept it (`flwr log RUN_ID --show`) to `log_path`."""
        try:
            done = self._run_flwr(["log", str(run_id), CONNECTION_NAME, "--show"], 60.0)
            text = done.stdout + (f"\n[flwr log exited {done.returncode}]\n{done.stderr}" if done.returncode else "")
        except subprocess.TimeoutExpired:
            text = f"[flwr log {run_id} --show timed out after 60 s]\n"
        return atomic_write_text(log_path, text)


def wait_for_nodes(control: FlowerControl, expected: int, timeout_s: float, poll_s: float = 2.0) -> int:
    """Wait until `expected` SuperNodes are online (or the timeout passes); return how many are online."""
    deadline = time.monotonic() + timeout_s
    online = control.online_nodes()
    while online < expected and time.monotonic() < deadline:
        time.sleep(poll_s)
        online = control.online_nodes()
    return online


def follow_run(
    control: FlowerControl,
    run_id: int,
    timeout_s: float,
    poll_s: float = 15.0,
    on_tick: Callable[[], bool] | None = None,
    max_status_failures: int = 4,
    ending_poll_s: float = 2.0,
) -> RunStatus:
    """Poll the run's status until it finishes; stop it after `timeout_s`.

    The status is asked every `poll_s` seconds; `on_tick` is called about once a second in
    between (e.g. to move a progress bar from the run directory's state file) and returns whether the run looks
    finished from there (its last round written): then the status is asked every `ending_poll_s` seconds, so a
    finished run is not kept waiting for the next slow poll. A status query that fails is asked again at the next
    poll: on a busy center the SuperLink's SQLite answers "database is locked" for a moment, and that must not end a
    run that is fine. `max_status_failures` failures in a row do end it, with the last error.
    """
    deadline = time.monotonic() + timeout_s
    failures = 0
    ending = False
    while True:
        next_poll = min(deadline, time.monotonic() + (ending_poll_s if ending else poll_s))
        while time.monotonic() < next_poll:
            time.sleep(1.0)
            if on_tick is not None and on_tick() and not ending:
                ending = True
                break
        try:
            status = control.run_status(run_id)
        except FlowerProcessError:
            failures += 1
            if failures >= max_status_failures or time.monotonic() >= deadline:
                raise
            continue
        failures = 0
        if status.finished:
            return status
        if time.monotonic() >= deadline:
            control.stop_run(run_id)
            raise FlowerProcessError(f"run {run_id} did not finish within {timeout_s:.0f} s; stopped it")


def write_run_config_toml(path: str | os.PathLike[str], run_config: Mapping[str, Any]) -> Path:
    """Write run-config overrides as TOML (the form `flwr run --run-config FILE.toml` accepts)."""
    return atomic_write_text(path, tomli_w.dumps(dict(run_config)))
