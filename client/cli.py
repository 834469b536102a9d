"""`bcvlm-client --site cfg.yaml`: validates a hospital's site config and runs its Flower SuperNode."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Callable, Sequence

import tomli_w

from bcvlm_client.flower_process import FlowerProcess, flower_environment, flower_executable, free_port
from bcvlm_client.privacy_ledger import LedgerError, SitePrivacyLedger, init_ledger
from bcvlm_client.site_config import SiteConfig, refuse_simulation_only_settings, validate_site_config
from bcvlm_client.site_data import (
    SiteDataSummary,
    check_delta_bound,
    data_availability,
    ledger_terms,
    summarise_site_data,
)
from bcvlm_client.site_processes import SiteProcesses
from bcvlm_client.supernode_supervisor import (
    ADMITTED,
    KEY_REFUSED,
    RestartBackoff,
    refusal_message,
    thread_environment,
)
from bcvlm_model.atomic_io import atomic_write_text
from bcvlm_model.config_io import ConfigError, load_config, resolve_relative_paths, save_effective_config
from bcvlm_model.cpu_memory import keep_freed_memory
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.privacy.privacy_unit import unit_description

SITE_PATH_KEYS: tuple[str, ...] = ("ca_cert", "private_key", "data.manifest", "data.cache_dir", "state_dir")
"""SiteConfig keys holding paths; relative values are resolved against the YAML file's folder."""

EFFECTIVE_CONFIG_NAME = "site_config.effective.yaml"
NODE_CONFIG_NAME = "node_config.toml"
DEFAULT_RUNTIME_PORT = 9094
SUPEREXEC_SECRET_NAME = "superexec_auth.secret"


def load_site_for_deployment(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SiteConfig:
    """Load a site YAML, make its paths absolute (relative = next to the YAML) and check them.

    Unknown keys, wrong types, missing values and missing files raise ConfigError naming the key.
    """
    source = Path(path)
    cfg = load_config(SiteConfig, source, overrides)
    resolve_relative_paths(cfg, SITE_PATH_KEYS, source.resolve().parent)
    validate_site_config(cfg, source=str(path), check_paths=True)
    refuse_simulation_only_settings(cfg, source=str(path))
    return cfg


def check_site_data(cfg: SiteConfig) -> SiteDataSummary:
    """Manifest counts, readable images and the delta bound; ConfigError names the problem."""
    summary = summarise_site_data(cfg)
    if summary.train_rows == 0:
        raise ConfigError(
            f"site '{cfg.site_id}': the manifest {cfg.data.manifest} has no rows with split "
            f"'{cfg.data.train_split}' (key 'data.train_split'): this site has nothing to train on"
        )
    check_delta_bound(cfg, summary)
    return summary


def describe_data_availability(cfg: SiteConfig) -> list[str]:
    """Lines on cache coverage and missing DICOMs; ConfigError when training images cannot be read at all."""
    availability = data_availability(cfg)
    lines = [
        f"cache {cache.image_size}: {cache.train_cached} training and {cache.eval_cached} evaluation images "
        f"({cache.folder})"
        for cache in availability.caches
    ] or ["cache: none (images are decoded on the fly)"]
    if availability.dicoms_missing:
        lines.append(
            f"data: {availability.dicoms_missing} DICOM files not found (cached arrays are used where "
            "present; the server must then ask for a cached preprocessing)"
        )
    if availability.unreadable_train:
        raise ConfigError(
            f"site '{cfg.site_id}': {len(availability.unreadable_train)} training images have neither "
            f"a DICOM file nor a cached array (first: {availability.unreadable_train[0]}); "
            "re-run bcvlm prepare or fix data.manifest / data.cache_dir"
        )
    return lines


def describe_ledger(cfg: SiteConfig, summary: SiteDataSummary) -> str:
    """One line on the ledger: spent/target epsilon, or why it is not usable (LedgerError raised)."""
    if not cfg.privacy.enabled:
        return "privacy ledger: DP is off at this site (privacy.enabled: false)"
    ledger = SitePrivacyLedger.open(cfg.state_dir, ledger_terms(cfg, summary))
    return (
        f"privacy ledger: epsilon {ledger.epsilon_spent:.3f} of {ledger.target_epsilon} spent "
        f"(delta {ledger.delta:g}, {ledger.accountant}, unit {ledger.privacy_unit}) over all runs on this "
        f"training set; {ledger.path}"
    )


@dataclass(frozen=True)
class SuperNodeLaunch:
    """The site's `flower-supernode` command and the files it is started with."""

    command: list[str]
    flwr_home: Path
    effective_config: Path
    node_config: Path
    log_path: Path
    runtime_address: str = ""
    superexec_secret: Path | None = None
    """Shared by the SuperNode and the site's SuperExec (bcvlm_client.site_superexec), which checks every FAB."""


def prepare_supernode(
    cfg: SiteConfig,
    runtime_port: int = DEFAULT_RUNTIME_PORT,
    max_retries: int | None = None,
    max_wait_time_s: float | None = None,
) -> SuperNodeLaunch:
    """Write the effective site config + node config into the state dir and build the SuperNode command line."""
    state_dir = Path(cfg.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    effective = save_effective_config(cfg, state_dir / EFFECTIVE_CONFIG_NAME)
    node_config = atomic_write_text(state_dir / NODE_CONFIG_NAME, tomli_w.dumps({"site-config": str(effective)}))
    command = [flower_executable("flower-supernode"), "--superlink", cfg.superlink_address]
    if cfg.insecure:
        command += ["--insecure"]
    else:
        command += ["--root-certificates", str(cfg.ca_cert), "--auth-supernode-private-key", str(cfg.private_key)]
    command += [
        "--node-config",
        str(node_config),
        # Process isolation: the site's own SuperExec (site_processes.SiteProcesses) runs ClientApps, approved FABs only.
        "--isolation",
        "process",
        "--superexec-auth-secret-file",
        str(state_dir / SUPEREXEC_SECRET_NAME),
        "--host",
        "127.0.0.1",
        "--port",
        str(runtime_port),
    ]
    # Runtime dependency installation is off by default on a SuperNode; we never pass
    # --allow-runtime-dependency-installation, so a run's app cannot install packages at the site.
    if max_retries is not None:
        command += ["--max-retries", str(max_retries)]
    if max_wait_time_s is not None:
        command += ["--max-wait-time", str(max_wait_time_s)]
    return SuperNodeLaunch(
        command=command,
        flwr_home=state_dir / "flwr_home",
        effective_config=effective,
        node_config=node_config,
        log_path=state_dir / "logs" / "supernode.log",
        runtime_address=f"127.0.0.1:{runtime_port}",
        superexec_secret=state_dir / SUPEREXEC_SECRET_NAME,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcvlm-client",
        description="Run this hospital's Flower SuperNode for the bcvlm federation (training stays on site).",
    )
    parser.add_argument("--site", required=True, help="site config YAML (see site_configs/)")
    parser.add_argument(
        "--check", action="store_true", help="validate the site config, its data and its privacy ledger, then exit"
    )
    parser.add_argument(
        "--init-ledger",
        action="store_true",
        help="create this site's privacy ledger (once, before the first round), then exit",
    )
    parser.add_argument(
        "--new-data-set",
        action="store_true",
        help="with --init-ledger: the training set changed; archive the old ledger and start a "
        "new, declared budget for the new data set",
    )
    parser.add_argument(
        "--runtime-port",
        type=int,
        default=None,
        help="local port of the SuperNode's app runtime API (127.0.0.1 only; default: a free port "
        "picked at each start, so several sites can share a machine)",
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=None,
        help="give up after this many failed connection attempts (default: retry forever)",
    )
    parser.add_argument(
        "--max-wait-time",
        type=float,
        default=None,
        help="give up reconnecting after this many seconds (default: no limit)",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=-1,
        help="restart the SuperNode at most this many times after it ends without this site asking "
        "(SuperLink down or replaced by a new run, this site not registered yet); -1 = always",
    )
    parser.add_argument(
        "--restart-delay",
        type=float,
        default=5.0,
        help="seconds before a restart (default 5); doubled after each quick exit",
    )
    parser.add_argument(
        "--max-restart-delay", type=float, default=600.0, help="the longest wait between restarts (default 600)"
    )
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. compute.batch_size=4")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `bcvlm-client`."""
    keep_freed_memory()  # inherited by the Flower processes this starts
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        cfg = load_site_for_deployment(args.site, args.overrides)
    except ConfigError as exc:
        print(f"bcvlm-client: invalid site config: {exc}", file=sys.stderr)
        return 2
    if args.runtime_port is not None and not 1 <= args.runtime_port <= 65535:
        print(f"bcvlm-client: --runtime-port must be 1..65535, got {args.runtime_port}", file=sys.stderr)
        return 2
    if args.new_data_set and not args.init_ledger:
        print("bcvlm-client: --new-data-set only goes with --init-ledger", file=sys.stderr)
        return 2
    try:
        summary = check_site_data(cfg)
        if args.init_ledger:
            if not cfg.privacy.enabled:
                raise ConfigError("key 'privacy.enabled' is false: a site without DP keeps no privacy ledger")
            path = init_ledger(cfg.state_dir, ledger_terms(cfg, summary), new_data_set=args.new_data_set)
            print(
                f"site '{cfg.site_id}': privacy ledger created at {path} (epsilon budget "
                f"{cfg.privacy.target_epsilon}, delta {cfg.privacy.delta:g}, {summary.train_patients} training "
                f"patients, {unit_description(cfg.privacy.unit)}); keep it and "
                f"{Path(path).with_name('privacy_ledger.key')} across runs and restarts"
            )
            return 0
        ledger_line = describe_ledger(cfg, summary)
        data_lines = describe_data_availability(cfg) if args.check else []
    except (ConfigError, LedgerError, DataSourceError) as exc:
        print(f"bcvlm-client: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"site config OK: site '{cfg.site_id}', SuperLink {cfg.superlink_address}, state in {cfg.state_dir}")
        print(
            f"data: {summary.train_rows} training images of {summary.train_patients} patients, "
            f"{summary.eval_rows} evaluation images of {summary.eval_patients} patients, "
            f"{summary.val_rows} validation images of {summary.val_patients} patients (operating points)"
        )
        print("\n".join(data_lines))
        print(ledger_line)
        return 0
    launch = prepare_supernode(cfg, args.runtime_port or DEFAULT_RUNTIME_PORT, args.max_retries, args.max_wait_time)
    print(
        f"site '{cfg.site_id}': starting SuperNode -> {cfg.superlink_address} "
        f"(TLS {'off' if cfg.insecure else 'on'}); log: {launch.log_path}",
        flush=True,
    )
    environment = flower_environment(launch.flwr_home, thread_environment(cfg))
    backoff = RestartBackoff(args.restart_delay, max(args.restart_delay, args.max_restart_delay))

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    supernode: SiteProcesses | None = None
    restarts = 0
    try:
        while True:
            log_offset = launch.log_path.stat().st_size if launch.log_path.is_file() else 0
            # A fresh runtime port per start unless one was given: several sites on one host never collide, and a
            # port still held by a dying predecessor is never reused.
            launch = prepare_supernode(cfg, args.runtime_port or free_port(), args.max_retries, args.max_wait_time)
            started = time.monotonic()
            supernode = SiteProcesses(
                launch.command,
                environment,
                launch.log_path,
                Path(cfg.state_dir),
                launch.runtime_address,
                launch.effective_config,
                launch.superexec_secret or Path(cfg.state_dir) / SUPEREXEC_SECRET_NAME,
                keeper=True,
            ).start()
            code = watch_supernode(supernode, launch.log_path, log_offset, on_admitted=supernode.admitted)
            supernode.stop()
            ran_s = time.monotonic() - started
            reason = last_error_lines(launch.log_path, log_offset)
            print(
                f"site '{cfg.site_id}': SuperNode exited with code {code}" + (f": {reason}" if reason else ""),
                file=sys.stderr,
                flush=True,
            )
            if KEY_REFUSED.search(new_log_text(launch.log_path, log_offset)):
                print(f"site '{cfg.site_id}': {refusal_message(cfg)}", file=sys.stderr, flush=True)
            if args.max_restarts >= 0 and restarts >= args.max_restarts:
                print(f"site '{cfg.site_id}': not restarting; full log: {launch.log_path}", file=sys.stderr)
                return int(code) or 1  # the site did not ask to stop: never report this as success
            restarts += 1
            delay = backoff.next_delay(ran_s)
            # Exit 0 is no reason to stay down: Flower's SuperNode exits 0 after a 401 from a new SuperLink.
            print(
                f"site '{cfg.site_id}': restarting the SuperNode in {delay:.0f} s "
                f"(restart {restarts}" + (f"/{args.max_restarts})" if args.max_restarts >= 0 else ")"),
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
    except KeyboardInterrupt:
        print(f"site '{cfg.site_id}': stopping SuperNode", flush=True)
        return 0
    finally:
        if supernode is not None:
            supernode.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_LOOP_DIED = re.compile(r"^ERROR\s*:\s*Server error '5\d\d ", re.MULTILINE)
"""Flower 1.42's SuperNode logs an HTTP 5xx from the SuperLink this way when it ends its message loop; its process
then stays alive doing nothing (the runtime API thread keeps it up), so we restart it."""
HUNG_EXIT_CODE = 70


def watch_supernode(
    supernode: FlowerProcess | SiteProcesses,
    log_path: Path,
    log_offset: int,
    poll_s: float = 1.0,
    on_admitted: Callable[[], None] | None = None,
) -> int:
    """Wait for the SuperNode to exit, remembering its app processes; stop it when its message loop has died. Call
    `on_admitted` once, when its log says the SuperLink admitted it."""
    assert supernode.process is not None
    checked = log_offset
    partial_line = ""  # a line the SuperNode was still writing at the last look
    while True:
        try:
            return supernode.process.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            pass
        supernode.track_descendants()
        size = log_path.stat().st_size if log_path.is_file() else 0
        if size > checked:
            with open(log_path, "rb") as handle:
                handle.seek(checked)
                text = partial_line + handle.read(size - checked).decode("utf-8", errors="replace")
            checked = size
            text, _, partial_line = text.rpartition("\n")
            text = _ANSI_ESCAPE.sub("", text)
            if _LOOP_DIED.search(text):
                supernode.stop(grace_s=5.0)
                return HUNG_EXIT_CODE
            if on_admitted is not None and ADMITTED.search(text):
                on_admitted()
                on_admitted = None


def new_log_text(log_path: Path, since_byte: int = 0) -> str:
    """The log's text written after `since_byte`, without terminal colour codes."""
    if not log_path.is_file():
        return ""
    with open(log_path, "rb") as handle:
        handle.seek(since_byte)
        return _ANSI_ESCAPE.sub("", handle.read().decode("utf-8", errors="replace"))


def last_error_lines(log_path: Path, since_byte: int = 0, max_lines: int = 3) -> str:
    """The SuperNode log's last error lines written after `since_byte`, joined into one line for the console."""
    text = new_log_text(log_path, since_byte)
    picked = [
        line.replace("ERROR", "").strip(" :") for line in text.splitlines() if "ERROR" in line or "[code:" in line
    ]
    return " | ".join(dict.fromkeys(picked[-max_lines:]))


if __name__ == "__main__":
    raise SystemExit(main())
