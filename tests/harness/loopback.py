"""A whole federation on one machine (127.0.0.1): certificates, synthetic sites, `bcvlm-server` and `bcvlm-client`
processes — for deployment rehearsals, the loopback tests and the round-overhead benchmark."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from bcvlm_client.flower_process import FLOWER_ENV_DEFAULTS, free_port, process_tree, terminate_tree
from bcvlm_client.round_record import RoundRecord
from bcvlm_client.task_timing import MARKER as TASK_TIMING_MARKER
from bcvlm_model.atomic_io import read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from bcvlm_server.certs import CertificatePaths, SiteKeyPaths, create_certificates, create_site_key
from bcvlm_server.run_records import RunRecords
from bcvlm_simulation.splits import SITE_COLUMN, SplitConfig, site_names, split_sites
from bcvlm_testing.deployment_files import client_command, write_server_yaml
from bcvlm_testing.federation_sites import tiny_model_config, tiny_preprocess

PYTHON = sys.executable
CLIENT_NICENESS = 10
"""Sites train at lower CPU priority: on one 2-core machine a CPU-starved SuperLink holds its SQLite write lock past
Flower's 5 s busy_timeout ("database is locked") and the run fails; real sites run on their own machines."""
TINY_FEDERATION: dict[str, Any] = {
    "rounds": 2,
    "min_sites": 2,
    "round_timeout_s": 120.0,
    "model": config_to_dict(tiny_model_config()),
    "preprocess": config_to_dict(tiny_preprocess()),
    "text": {"max_length": 32},
    "local_train": {"local_steps": 2, "learning_rate": 1.0e-3},
    "secagg": {"enabled": True, "timeout_s": 120.0, "max_weight": 1000.0},
    "evaluation": {"min_cases": 2},
}
"""Smallest honest federation (tests): 64x32 images, 1 text layer, 2 local DP-SGD steps per round, 2 rounds."""


class LoopbackError(RuntimeError):
    """A step of the loopback federation failed or timed out."""


def run_cli(args: Sequence[str], cwd: Path, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run `bcvlm ARGS` in a subprocess; raise LoopbackError with its output when it fails."""
    done = subprocess.run(
        [PYTHON, "-m", "bcvlm_model.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout_s
    )
    if done.returncode != 0:
        raise LoopbackError(f"bcvlm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def init_site_ledger(site_yaml: Path, cwd: Path) -> None:
    """`bcvlm-client --site SITE --init-ledger`, as a site does once before its first round."""
    init_site_ledgers([site_yaml], cwd)


def init_site_ledgers(site_yamls: Sequence[Path], cwd: Path, timeout_s: float = 300.0) -> None:
    """`bcvlm-client --site SITE --init-ledger` for every site at once, as the sites would do on their own machines
    (one after the other leaves a core idle: each command is a single-threaded interpreter)."""
    started = [
        (
            site_yaml,
            subprocess.Popen(
                client_command(site_yaml, "--init-ledger"),
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for site_yaml in site_yamls
    ]
    failures = []
    for site_yaml, process in started:
        output, _ = process.communicate(timeout=timeout_s)  # one pipe per process, each drained in turn (small)
        if process.returncode != 0:
            failures.append(f"bcvlm-client --init-ledger failed for {site_yaml}:\n{output}")
    if failures:
        raise LoopbackError("\n".join(failures))


def build_synthetic_sites(
    root: Path, n_sites: int = 3, n_patients: int = 24, size: str = "64x32"
) -> tuple[dict[str, Path], Path]:
    """`bcvlm synth` + `bcvlm prepare`, then one manifest per synthetic site with train/test splits by patient."""
    run_cli(
        [
            "synth",
            "--out",
            str(root / "synth"),
            "--n-patients",
            str(n_patients),
            "--size",
            size,
            "--sites",
            str(n_sites),
            "--seed",
            "0",
            "--workers",
            "1",
            "--quiet",
        ],
        cwd=root,
    )
    run_cli(
        [
            "prepare",
            "--source",
            "synthetic",
            "--root",
            str(root / "synth"),
            "--out",
            str(root / "prepared"),
            "--size",
            size,
            "--quiet",
        ],
        cwd=root,
    )
    table = split_sites(
        read_manifest(root / "prepared" / "manifest.csv"),
        SplitConfig(
            kind="natural", natural_key="site_id", val_fraction=0.0, test_fraction=0.4, min_patients_per_site=2, seed=0
        ),
    )
    manifests = {}
    for index, name in enumerate(site_names(table)[:n_sites]):
        rows = table[table[SITE_COLUMN] == name].loc[:, list(MANIFEST_COLUMNS)]
        path = root / "sites" / f"site{index}" / "manifest.csv"
        write_manifest(rows.reset_index(drop=True), path)
        manifests[f"site{index}"] = path
    return manifests, root / "prepared" / "cache"


def marked_json_lines(path: Path, marker: str) -> list[dict[str, Any]]:
    """The JSON after `marker` on every log line of `path` that has it (the timing lines); none if no log yet."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [json.loads(line.split(marker, 1)[1]) for line in lines if marker in line]


@dataclass
class LoopbackFederation:
    """Certificates, site YAMLs and a server YAML on loopback; starts and always kills the processes it runs."""

    root: Path
    site_ids: tuple[str, ...]
    federation: dict[str, Any]
    site_privacy: dict[str, Any] = field(
        default_factory=lambda: {"enabled": True, "target_epsilon": 8.0, "delta": 1.0e-3}
    )
    n_patients: int = 24
    image_size: str = "64x32"
    compute: dict[str, Any] = field(default_factory=lambda: {"batch_size": 4, "eval_batch_size": 32})
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        # As in a real deployment: each site makes its own key pair and hands the center only the .pub. "rogue" has
        # a key the center never registers. The CA keys are encrypted with throwaway passphrases nobody needs again.
        self.site_keys: dict[str, SiteKeyPaths] = {
            site: create_site_key(self.root / "site_keys" / site, site) for site in [*self.site_ids, "rogue"]
        }
        self.certs: CertificatePaths = create_certificates(
            self.root / "certs",
            ["localhost"],
            ["127.0.0.1"],
            {site: self.site_keys[site].public_key for site in self.site_ids},
            ca_passphrase=secrets.token_urlsafe(24).encode(),
            ca_key_path=self.root / "ca_private" / "ca.key",
        )
        self.other_ca = create_certificates(
            self.root / "other_certs",
            ["localhost"],
            ["127.0.0.1"],
            {"rogue": self.site_keys["rogue"].public_key},
            ca_passphrase=secrets.token_urlsafe(24).encode(),
            ca_key_path=self.root / "other_ca_private" / "ca.key",
        )
        manifests, cache = build_synthetic_sites(
            self.root, n_sites=len(self.site_ids), n_patients=self.n_patients, size=self.image_size
        )
        self.site_yamls = {
            site: self._write_site(site, manifests[f"site{i}"], cache, init_ledger=False)
            for i, site in enumerate(self.site_ids)
        }
        if self.site_privacy.get("enabled", True):
            init_site_ledgers(list(self.site_yamls.values()), self.root)
        self.run_dir = self.root / "run"
        self.server_yaml = write_server_yaml(
            self.root,
            self.site_ids,
            {**self.federation, "run_dir": "run"},
            port=self.port,
            settings={"wait_for_sites_s": 300.0, "run_timeout_s": 900.0},
        )
        self._cache = cache
        self._manifests = manifests

    def _write_site(
        self,
        site: str,
        manifest: Path,
        cache: Path,
        key_site: str | None = None,
        ca_cert: Path | None = None,
        init_ledger: bool = True,
    ) -> Path:
        key_site = key_site or site
        folder = self.root / "site_configs"
        folder.mkdir(exist_ok=True)
        path = folder / f"{site}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "site_id": site,
                    "superlink_address": f"127.0.0.1:{self.port}",
                    "ca_cert": str(ca_cert or self.certs.ca_cert),
                    "private_key": str(self.site_keys[key_site].private_key),
                    "data": {"manifest": str(manifest), "cache_dir": str(cache)},
                    "compute": dict(self.compute),
                    "privacy": dict(self.site_privacy),
                    "state_dir": str(self.root / "state" / site),
                }
            )
        )
        if init_ledger and self.site_privacy.get("enabled", True):
            init_site_ledger(path, self.root)
        return path

    def intruder_yaml(self, name: str, key_site: str, ca_cert: Path | None = None) -> Path:
        """A site config with a key the server never registered, or with the wrong CA certificate."""
        return self._write_site(name, self._manifests["site0"], self._cache, key_site=key_site, ca_cert=ca_cert)

    def state_dir(self, site: str) -> Path:
        return self.root / "state" / site

    def ledger(self, site: str) -> dict[str, Any]:
        return read_json(self.state_dir(site) / "privacy_ledger.json")

    def _spawn(self, command: Sequence[str], log_name: str, niceness: int = 0) -> subprocess.Popen[bytes]:
        log = open(self.root / log_name, "ab")  # noqa: SIM115 - the child holds it
        env = {
            **os.environ,
            **FLOWER_ENV_DEFAULTS,
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        process = subprocess.Popen(
            list(command),
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
        )
        self.processes.append(process)
        return process

    def start_server(self, *args: str) -> subprocess.Popen[bytes]:
        source = list(args) or ["--config", str(self.server_yaml)]
        return self._spawn([PYTHON, "-m", "bcvlm_server.cli", *source], "server.out")

    def start_client(self, site_yaml: Path, *args: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            client_command(site_yaml, "--runtime-port", str(free_port()), *args),
            f"client_{site_yaml.stem}.out",
            niceness=CLIENT_NICENESS,
        )

    def start_center(self, timeout_s: float = 300.0) -> subprocess.Popen[bytes]:
        """Start `bcvlm-server` and wait until it has registered every site's key; LoopbackError with the server's
        output if it ends first. (A site started before the registration is refused and sits out its restart delay;
        that path has its own tests in tests/client/test_cli_client.py.)"""
        server = self.start_server()
        wait_until(
            lambda: (
                self.output("server.out").count("registered as node") == len(self.site_ids) or server.poll() is not None
            ),
            timeout_s,
            "the server to register the sites' keys",
        )
        self.ensure_running(server, "bcvlm-server (before the sites started)")
        return server

    def ensure_running(self, process: subprocess.Popen[bytes], what: str) -> None:
        """LoopbackError with the center's output if `process` has ended."""
        if process.poll() is not None:
            raise LoopbackError(f"{what} ended early:\n{self.output('server.out')[-3000:]}")

    def start_sites(self, *client_args: str) -> dict[str, subprocess.Popen[bytes]]:
        """Every site's `bcvlm-client` (`--restart-delay 3`, then `client_args`)."""
        return {
            site: self.start_client(self.site_yamls[site], "--restart-delay", "3", *client_args)
            for site in self.site_ids
        }

    def start_federation(
        self, *client_args: str, timeout_s: float = 300.0
    ) -> tuple[subprocess.Popen[bytes], dict[str, subprocess.Popen[bytes]]]:
        """`start_center`, then `start_sites`."""
        server = self.start_center(timeout_s)
        return server, self.start_sites(*client_args)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a process and all its descendants at once (a crash, not a clean stop)."""
        for pid in process_tree(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                terminate_tree(process.pid, grace_s=5.0)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def completed_rounds(self) -> int:
        state = self.run_dir / "state.json"
        return int(read_json(state)["last_completed_round"]) if state.is_file() else 0

    def round_metrics(self, server_round: int) -> RoundRecord:
        return RunRecords(self.run_dir).load_metrics(server_round)

    def task_timings(self, site: str) -> list[dict[str, Any]]:
        """The `task-timing` lines of a site's ClientApp processes (`bcvlm_client.task_timing`), one per message."""
        return marked_json_lines(self.state_dir(site) / "logs" / "site.log", TASK_TIMING_MARKER)

    def output(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.is_file() else ""


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 1.0) -> float:
    """Poll `condition` until true; return the seconds it took; raise LoopbackError after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise LoopbackError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)
    return time.monotonic() - start
