"""The process keeper ends its command's whole tree (orphans in other sessions too) when its parent is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bcvlm_client.flower_process import process_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the keeper needs Linux")

SLEEPER = "import time; time.sleep(600)"
TREE = f"""
import subprocess, sys, time
# A child in its own session (as Flower starts SuperExec), and an orphan: its parent exits at once.
subprocess.Popen([sys.executable, "-c", {SLEEPER!r}], start_new_session=True)
subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, '-c', {SLEEPER!r}], start_new_session=True)"])
time.sleep(600)
"""
PARENT = f"""
import subprocess, sys, time
from bcvlm_client.process_keeper import keeper_command
subprocess.Popen(keeper_command([sys.executable, "-c", {TREE!r}]), start_new_session=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2 :].split()[0] != "Z"


def test_sigkill_of_the_parent_ends_the_whole_tree() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT])
    deadline = time.monotonic() + 60
    while len(process_tree(parent.pid)) < 6 and time.monotonic() < deadline:  # parent, keeper, tree, 3 sleepers
        time.sleep(0.2)
    tree = process_tree(parent.pid)
    assert len(tree) == 6, tree  # the orphan is re-parented to the keeper (a subreaper), so it is in the tree
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in tree if _running(pid)]


def test_the_keeper_passes_the_command_exit_code_through(tmp_path: Path) -> None:
    from bcvlm_client.process_keeper import keeper_command

    done = subprocess.run(keeper_command([sys.executable, "-c", "raise SystemExit(7)"]), timeout=60)
    assert done.returncode == 7
