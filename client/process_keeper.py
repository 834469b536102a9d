"""Process keeper: `python -m bcvlm_client.process_keeper --parent PID -- COMMAND...` runs COMMAND and takes its whole
process tree down when the parent dies, even by SIGKILL, or when COMMAND ends.

Flower's SuperNode starts `flower-superexec` and `flwr-clientapp` processes, some in sessions of their own; without
this they outlive a killed `bcvlm-client`, keep training and hold its runtime port. Linux only: the keeper is a
child subreaper (orphaned descendants are re-parented to it, not to init) and gets SIGTERM when its parent dies
(PR_SET_PDEATHSIG); COMMAND itself gets SIGKILL if the keeper dies.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

from bcvlm_client.flower_process import process_tree

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class _Stop(Exception):
    """A stop signal arrived."""


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits (for a `preexec_fn`)."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def supported() -> bool:
    """Whether this system has what the keeper needs (Linux prctl and /proc)."""
    return sys.platform.startswith("linux") and os.path.isdir("/proc")


def _end_descendants(grace_s: float) -> None:
    """SIGTERM every descendant, SIGKILL those alive after `grace_s`, and reap them all."""
    deadline = time.monotonic() + grace_s
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in process_tree(os.getpid())[1:]:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        while time.monotonic() < deadline and _reap() and process_tree(os.getpid())[1:]:
            time.sleep(0.05)
        deadline = time.monotonic() + 5.0
    _reap()


def _reap() -> bool:
    """Collect exited children (re-parented orphans included); True while some child is still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def run(command: Sequence[str], parent: int, grace_s: float = 10.0) -> int:
    """Run `command` under this keeper; return its exit code (128 + signal when the keeper was stopped)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        return 128 + signal.SIGTERM

    def _stop(signum: int, _frame: object) -> None:
        raise _Stop(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        child = subprocess.Popen(list(command), preexec_fn=die_with_parent)  # noqa: PLW1509 - single-threaded
        while True:  # reap re-parented orphans as they exit, until COMMAND itself ends
            pid, status = os.waitpid(-1, 0)
            if pid == child.pid:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                child.returncode = code
                break
    except _Stop as stop:
        code = 128 + int(stop.args[0])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _end_descendants(grace_s)
    return code


def keeper_command(command: Sequence[str]) -> list[str]:
    """`command` wrapped in a keeper bound to this process (unchanged where the keeper is not supported)."""
    if not supported():
        return list(command)
    return [sys.executable, "-m", "bcvlm_client.process_keeper", "--parent", str(os.getpid()), "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bcvlm-process-keeper", description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=int, required=True, help="pid whose death ends COMMAND's process tree")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no COMMAND given")
    return run(command, args.parent, args.grace)


if __name__ == "__main__":
    raise SystemExit(main())
