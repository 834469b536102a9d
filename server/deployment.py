"""One deployment of the federation: run directory files, SuperLink start, site registration, run submission, follow-up."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bcvlm_client.flower_process import free_port
from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.config_io import ConfigError, save_effective_config
from bcvlm_server.center_services import LOOPBACK_HOST, CenterServices, SuperExecLaunch
from bcvlm_server.deployment_config import ServerDeploymentConfig, load_deployment_config
from bcvlm_server.fleet_gateway import GatewaySettings
from bcvlm_server.run_records import RunRecords
from bcvlm_server.run_status import round_line
from bcvlm_server.superlink import (
    FlowerControl,
    RunStatus,
    SuperLinkLaunch,
    client_address,
    follow_run,
    wait_for_nodes,
    write_run_config_toml,
)

FAB_TEMPLATE = Path(__file__).resolve().parent / "fab" / "pyproject.toml"
"""The Flower App description submitted with `flwr run` (components = the installed bcvlm apps)."""


@dataclass(frozen=True)
class RunDirectory:
    """Files `bcvlm-server` writes into a run directory (the ServerApp adds checkpoints, metrics, state.json)."""

    root: Path

    @property
    def deployment_config(self) -> Path:
        return self.root / "deployment.yaml"

    @property
    def server_config(self) -> Path:
        return self.root / "server_config.yaml"

    @property
    def run_config(self) -> Path:
        return self.root / "run_config.toml"

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    @property
    def superlink_home(self) -> Path:
        return self.root / "superlink"

    @property
    def superexec_secret(self) -> Path:
        """The SuperExec auth secret of this run directory (mode 0600), made at the first start."""
        return self.superlink_home / "superexec_auth.secret"

    @property
    def cli_home(self) -> Path:
        return self.root / "flwr_home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def flower_runs(self) -> Path:
        return self.root / "flower_runs.json"

    @property
    def state(self) -> Path:
        """Written by the ServerApp after each completed round (`last_completed_round`)."""
        return self.root / "state.json"

    def last_completed_round(self) -> int:
        if not self.state.is_file():
            return 0
        try:
            return int(read_json(self.state).get("last_completed_round", 0))
        except (ValueError, json.JSONDecodeError, AttributeError):
            return 0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def prepare_run_directory(cfg: ServerDeploymentConfig, resume: bool) -> RunDirectory:
    """Create/refresh the run directory: effective configs, FAB app dir and the run-config file for `flwr run`."""
    run_dir = RunDirectory(Path(cfg.federation.run_dir).resolve())
    if not resume and (run_dir.state.exists() or run_dir.deployment_config.exists()):
        raise ConfigError(
            f"run directory {run_dir.root} already holds a run: continue it with `bcvlm-server --resume "
            f"{run_dir.root}` or choose another federation.run_dir"
        )
    run_dir.root.mkdir(parents=True, exist_ok=True)
    run_dir.logs.mkdir(exist_ok=True)
    if not resume:
        save_effective_config(cfg, run_dir.deployment_config)
    save_effective_config(cfg.federation, run_dir.server_config)
    run_dir.app_dir.mkdir(exist_ok=True)
    shutil.copyfile(FAB_TEMPLATE, run_dir.app_dir / "pyproject.toml")
    write_run_config_toml(
        run_dir.run_config,
        {
            "server-config": str(run_dir.server_config),
            "run-dir": str(run_dir.root),
            "resume": bool(resume),
        },
    )
    return run_dir


def superlink_launch(cfg: ServerDeploymentConfig, run_dir: RunDirectory) -> SuperLinkLaunch:
    """The SuperLink on 127.0.0.1 only (all its APIs); sites reach its Fleet API through the gateway."""
    database = Path(cfg.superlink.database) if cfg.superlink.database else run_dir.superlink_home / "state.db"
    return SuperLinkLaunch(
        host=LOOPBACK_HOST,
        port=cfg.superlink.internal_port or free_port(LOOPBACK_HOST),
        ca_cert=Path(cfg.superlink.ca_cert),
        server_cert=Path(cfg.superlink.server_cert),
        server_key=Path(cfg.superlink.server_key),
        database=database,
        flwr_home=run_dir.superlink_home,
        log_path=run_dir.logs / "superlink.log",
        superexec_secret=run_dir.superexec_secret,
    )


def center_services(cfg: ServerDeploymentConfig, run_dir: RunDirectory, launch: SuperLinkLaunch) -> CenterServices:
    """The loopback SuperLink, the center's SuperExec and the public Fleet gateway on superlink.host:port."""
    internal = f"{LOOPBACK_HOST}:{launch.port}"
    superexec = SuperExecLaunch(
        runtime_address=internal,
        ca_cert=launch.ca_cert,
        secret_file=run_dir.superexec_secret,
        flwr_home=run_dir.superlink_home,
        log_path=run_dir.logs / "superexec.log",
    )
    gateway = GatewaySettings(
        listen_host=cfg.superlink.host,
        listen_port=cfg.superlink.port,
        upstream=f"https://{internal}",
        ca_cert=launch.ca_cert,
        server_cert=launch.server_cert,
        server_key=launch.server_key,
    )
    return CenterServices(launch, superexec, gateway, run_dir.logs / "fleet_gateway.log")


def _record_flower_run(run_dir: RunDirectory, entry: dict[str, object]) -> None:
    history = read_json(run_dir.flower_runs) if run_dir.flower_runs.is_file() else []
    history.append(entry)
    atomic_write_json(run_dir.flower_runs, history)


def run_deployment(cfg: ServerDeploymentConfig, resume: bool = False, say: Callable[[str], None] = print) -> RunStatus:
    """Start the SuperLink, register the sites, submit the run, follow it to the end, stop the SuperLink."""
    run_dir = prepare_run_directory(cfg, resume)
    log_file = run_dir.logs / "deployment.log"

    def note(message: str) -> None:
        line = f"{_now()} {message}"
        with open(log_file, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        say(message)

    launch = superlink_launch(cfg, run_dir)
    superlink = center_services(cfg, run_dir, launch)
    note(
        f"starting SuperLink on {launch.host}:{launch.port} (TLS, SuperNode auth, SuperExec auth, state "
        f"{launch.database}) and the Fleet-only gateway on {cfg.superlink.host}:{cfg.superlink.port}"
    )
    try:
        superlink.start(cfg.superlink.startup_timeout_s)
        address = client_address(launch.host, launch.port)
        control = FlowerControl(run_dir.cli_home, address, launch.ca_cert)
        records = RunRecords(run_dir.root)
        for site in cfg.sites:
            node_id = control.register_site(site.public_key, site.name)
            note(f"site '{site.name}': " + (f"registered as node {node_id}" if node_id else "already registered"))
            if node_id:  # the ServerApp and `bcvlm-server status` name sites by this map
                records.save_site_names({str(node_id): site.name})
        online = wait_for_nodes(control, len(cfg.sites), cfg.wait_for_sites_s)
        note(f"{online}/{len(cfg.sites)} sites online")
        start_round = run_dir.last_completed_round()
        run_id = control.submit_run(run_dir.app_dir, run_dir.run_config)
        _record_flower_run(
            run_dir,
            {"run_id": run_id, "submitted_at": _now(), "resume": resume, "last_completed_round_at_submit": start_round},
        )
        note(f"submitted Flower run {run_id}" + (f" (resuming after round {start_round})" if resume else ""))
        with tqdm(total=cfg.federation.rounds, initial=start_round, desc="rounds", unit="round") as bar:

            def on_tick() -> bool:
                """Report newly completed rounds; whether the last one is done (the run is about to end)."""
                superlink.track_descendants()
                done = run_dir.last_completed_round()
                if done > bar.n:
                    for server_round in range(int(bar.n) + 1, done + 1):
                        if records.metrics_path(server_round).is_file():
                            note(round_line(records.load_metrics(server_round), records.site_names()))
                    bar.update(done - bar.n)
                return done >= cfg.federation.rounds

            try:
                status = follow_run(control, run_id, cfg.run_timeout_s, on_tick=on_tick)
            finally:
                control.save_run_log(run_id, run_dir.logs / f"serverapp_run_{run_id}.log")
            on_tick()
        _record_flower_run(run_dir, {"run_id": run_id, "finished_at": _now(), "status": status.status})
        note(f"Flower run {run_id} ended: {status.status}")
        return status
    finally:
        superlink.stop()
        note("SuperLink, SuperExec and gateway stopped")


def load_for_resume(run_dir: str | Path) -> ServerDeploymentConfig:
    """The deployment config a run directory was started with (for `bcvlm-server --resume RUN_DIR`)."""
    directory = RunDirectory(Path(run_dir).resolve())
    if not directory.deployment_config.is_file():
        raise ConfigError(
            f"{directory.root} is not a bcvlm-server run directory: {directory.deployment_config} missing"
        )
    cfg = load_deployment_config(directory.deployment_config)
    if Path(cfg.federation.run_dir).resolve() != directory.root:
        # The folder was moved: keep using it where it is now.
        cfg.federation.run_dir = str(directory.root)
    return cfg
