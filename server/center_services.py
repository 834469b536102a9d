"""The center's processes: the SuperLink on loopback, its own SuperExec (authenticated by a per-run-directory secret)
and the public TLS gateway that forwards only the Fleet API."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bcvlm_client.flower_process import (
    FlowerProcess,
    FlowerProcessError,
    flower_environment,
    wait_for_port,
)
from bcvlm_client.superexec_secret import ensure_superexec_secret
from bcvlm_server.fleet_gateway import GatewaySettings
from bcvlm_server.superlink import SuperLink, SuperLinkLaunch, client_address

LOOPBACK_HOST = "127.0.0.1"
"""The SuperLink's Fleet, Control and Runtime APIs listen only here."""
SUPEREXEC_POLL_S = "3"
"""Seconds between the SuperExec's task requests (Flower's default: 1). Each authenticated request writes a nonce
into the SuperLink's SQLite state, which has a 5 s lock timeout; the ServerApp task may start up to 3 s later."""


@dataclass(frozen=True)
class SuperExecLaunch:
    """The center's own `flower-superexec`, which starts the ServerApp (the SuperLink runs with --isolation process)."""

    runtime_address: str
    ca_cert: Path
    secret_file: Path
    flwr_home: Path
    log_path: Path

    def command(self, superlink_pid: int) -> list[str]:
        # No --allow-runtime-dependency-installation: the center never runs `uv sync` for a submitted app.
        # Flower's SuperExec loop in bcvlm_server.center_superexec: it outlives a passing 5xx from the SuperLink.
        return [
            sys.executable,
            "-m",
            "bcvlm_server.center_superexec",
            "--runtime-api-address",
            self.runtime_address,
            "--root-certificates",
            str(self.ca_cert),
            "--superexec-auth-secret-file",
            str(self.secret_file),
            "--parent-pid",
            str(superlink_pid),
        ]


class CenterServices:
    """Starts, watches and stops the loopback SuperLink, its SuperExec and the Fleet gateway, in that order."""

    def __init__(
        self, superlink: SuperLinkLaunch, superexec: SuperExecLaunch, gateway: GatewaySettings, gateway_log: Path
    ) -> None:
        if superlink.host != LOOPBACK_HOST:
            raise FlowerProcessError(f"the SuperLink must listen on {LOOPBACK_HOST}, not {superlink.host}")
        self.superlink = SuperLink(superlink)
        self.superexec_launch = superexec
        self.superexec: FlowerProcess | None = None
        self.gateway = FlowerProcess(
            gateway.command(), flower_environment(superlink.flwr_home), gateway_log, cwd=superlink.flwr_home
        )
        self.gateway_settings = gateway

    def start(self, timeout_s: float = 60.0) -> CenterServices:
        """Start all three; on any failure stop what was started and raise with the failing process's log."""
        try:
            ensure_superexec_secret(self.superexec_launch.secret_file)
            self.superlink.start(timeout_s)
            launch = self.superexec_launch
            self.superexec = FlowerProcess(
                launch.command(self.superlink.process.pid),
                flower_environment(launch.flwr_home, {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": SUPEREXEC_POLL_S}),
                launch.log_path,
                cwd=launch.flwr_home,
            ).start()
            self.gateway.start()
            host = client_address(self.gateway_settings.listen_host, self.gateway_settings.listen_port)
            try:
                wait_for_port(
                    host.rsplit(":", 1)[0].strip("[]"),
                    self.gateway_settings.listen_port,
                    timeout_s,
                    self.gateway.process,
                )
            except FlowerProcessError as exc:
                raise FlowerProcessError(
                    f"Fleet gateway did not start: {exc}\n{self.gateway.log_text()[-4000:]}"
                ) from exc
            if not self.superexec.running():
                raise FlowerProcessError(f"SuperExec exited at start:\n{self.superexec.log_text()[-4000:]}")
        except BaseException:
            self.stop()
            raise
        return self

    def track_descendants(self) -> None:
        """Remember the ServerApp processes (children of the SuperExec) so `stop()` ends them too."""
        self.superlink.process.track_descendants()
        if self.superexec is not None:
            self.superexec.track_descendants()

    def stop(self, grace_s: float = 10.0) -> None:
        """Gateway first (no new Fleet traffic), then the SuperExec and its ServerApp, then the SuperLink."""
        self.gateway.stop(grace_s)
        if self.superexec is not None:
            self.superexec.stop(grace_s)
        self.superlink.stop(grace_s)
