"""Starting and stopping Flower's own processes (SuperLink, SuperNode, `flwr` CLI) with a private FLWR_HOME and no phone-home."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Mapping, MutableMapping, Sequence

from bcvlm_model.offline_env import OFFLINE_ENV_DEFAULTS

SITE_SUPEREXEC_POLL_S = "0.5"
"""Seconds between a site SuperExec's task requests (see FLOWER_ENV_DEFAULTS)."""

FLOWER_ENV_DEFAULTS: dict[str, str] = {
    **OFFLINE_ENV_DEFAULTS,
    "FLWR_TELEMETRY_ENABLED": "0",
    # Without this, flower-superlink, flower-supernode, flower-superexec and the `flwr` CLI each post their version,
    # Python and OS to api.flower.ai at start (flwr/supercore/update_check.py).
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "PYTHONUNBUFFERED": "1",
    # SuperExec's wait between task requests (Flower's default 1 s; 1.42 accepts 0.01-60, run_superexec.py). At a
    # site every SecAgg+ stage and every train/evaluate message waits for it once (half of it on average), next to
    # the SuperNode's own 3 s idle poll. Each request is an authenticated HTTP call, so polling costs an idle site CPU
    # all the time: 5.6 % of a core at 0.1 s, 2.1 % at 0.5 s, 1.7 % at 1 s (benchmarks/superexec_poll_cost.py; the
    # SuperLink's share, about 3 %, did not depend on it). 0.5 s adds a quarter second per message on average.
    # The center's SuperExec overrides it (bcvlm_server.center_services): it starts one ServerApp per run.
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": SITE_SUPEREXEC_POLL_S,
}
"""Set for every Flower process we start: the offline defaults (bcvlm_model.offline_env), telemetry and update check
off, unbuffered logs.
The one definition: everything that starts Flower (processes, in-process simulation, tests, benchmarks) uses it."""


def apply_flower_env_defaults(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Put FLOWER_ENV_DEFAULTS into `environ` (default: this process, for Flower run in-process, e.g. simulation)."""
    environ.update(FLOWER_ENV_DEFAULTS)
    return environ


class FlowerProcessError(RuntimeError):
    """A Flower process or CLI command failed; the message carries its output."""


def flower_executable(name: str) -> str:
    """Path of a Flower console script (`flwr`, `flower-superlink`, ...) from this interpreter's environment."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FlowerProcessError(f"Flower executable '{name}' not found next to {sys.executable} or on PATH")
    return found


def flower_environment(flwr_home: str | os.PathLike[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Flower process: ours plus FLWR_HOME (so nothing touches ~/.flwr), no telemetry or update check."""
    env = dict(os.environ)
    apply_flower_env_defaults(env)
    home = Path(flwr_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env["FLWR_HOME"] = str(home)
    # Console scripts of this environment first, so Flower's own subprocesses (flower-superexec, flwr-serverapp,
    # flwr-clientapp) come from the same venv as we do.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if extra:
        env.update(extra)
    return env


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return children
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 2:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc walk; just `pid` elsewhere)."""
    children = _children_of()
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


CHILDREN_FILES = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").is_file()
"""Whether the kernel lists each thread's children (`/proc/PID/task/TID/children`, CONFIG_PROC_CHILDREN)."""


def _direct_children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # ended
    for thread in threads:
        try:
            found.extend(int(child) for child in Path(f"/proc/{pid}/task/{thread}/children").read_text().split())
        except OSError:
            continue  # the thread ended
    return found


def process_subtree(pid: int) -> list[int]:
    """`pid` and its descendants, walked down from `pid` through each thread's children list: the cost grows with the
    subtree, not with every process on the machine as `process_tree`'s scan of all of /proc does (hundreds of reads
    on a busy host, every second for each supervised process). A snapshot for periodic bookkeeping; stopping a tree
    uses `process_tree`. Falls back to it where the kernel has no children lists."""
    if not CHILDREN_FILES:
        return process_tree(pid)
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(_direct_children(current))
    return tree


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2 :].split()[0] != "Z"
    except OSError:
        return True


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): tells a live process from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def terminate_tree(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM `pid` and its descendants (Flower starts SuperExec in its own session), SIGKILL what outlives `grace_s`."""
    pids = process_tree(pid)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    # Children may have spawned more children meanwhile: collect again before the hard kill.
    survivors = [p for p in set(pids) | set(process_tree(pid)) if _alive(p)]
    _signal_all(survivors, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Block until `host:port` accepts TCP connections; fail early if `process` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise FlowerProcessError(f"process exited with code {process.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise FlowerProcessError(f"{host}:{port} did not open within {timeout_s:.0f} s")


class FlowerProcess:
    """One long-running Flower process (SuperLink or SuperNode) whose output goes to a log file."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: str | os.PathLike[str],
        cwd: str | os.PathLike[str] | None = None,
        keeper: bool = False,
    ) -> None:
        self.command = list(command)
        self.keeper = keeper
        """Run under `bcvlm_client.process_keeper`: the whole tree ends when we die, even by SIGKILL."""
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._descendants: dict[int, str] = {}

    def start(self) -> FlowerProcess:
        """Start the process in its own session (so a terminal's Ctrl-C reaches us, and we stop it in order)."""
        if self.process is not None:
            raise FlowerProcessError(f"already started: {self.command[0]}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        if self.keeper:
            from bcvlm_client.process_keeper import keeper_command

            command = keeper_command(self.command)
        else:
            command = self.command
        self.process = subprocess.Popen(
            command,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        if self.process is None:
            raise FlowerProcessError("not started")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""

    def track_descendants(self) -> None:
        """Remember the current descendants. Flower's SuperExec starts apps in a session of their own and may die
        before them; orphans leave our process tree, so `stop()` also ends the remembered ones still alive."""
        if self.process is None or self.process.poll() is not None:
            return
        for pid in process_subtree(self.process.pid)[1:]:
            started = process_start_time(pid)
            if started is not None:
                self._descendants.setdefault(pid, started)

    def _kill_remembered_orphans(self) -> None:
        for pid, started in self._descendants.items():
            if process_start_time(pid) == started and _alive(pid):
                terminate_tree(pid, grace_s=2.0)
        self._descendants.clear()

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Terminate the process and every descendant (also remembered orphans); return its exit code."""
        if self.process is None:
            return None
        self.track_descendants()
        if self.process.poll() is None:
            terminate_tree(self.process.pid, grace_s)
        self._kill_remembered_orphans()
        try:
            code = self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        return code

    def __enter__(self) -> FlowerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
