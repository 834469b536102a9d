"""keep_freed_memory: glibc thresholds raised in-process and passed on to child processes; user settings win.

Each case runs in a fresh interpreter so the test process keeps its own allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

from bcvlm_model import cpu_memory

PROBE = (
    "from bcvlm_model.cpu_memory import keep_freed_memory; import os, subprocess, sys; "
    "applied = keep_freed_memory({threshold}); "
    "child = subprocess.run([sys.executable, '-c', 'import os; print(os.environ[\"MALLOC_MMAP_THRESHOLD_\"], "
    'os.environ["MALLOC_TRIM_THRESHOLD_"])\'], capture_output=True, text=True, check=True).stdout.split(); '
    "print(applied, *child)"
)


def _run(threshold: int, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (cpu_memory.ENV_MMAP, cpu_memory.ENV_TRIM)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(threshold=threshold)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_thresholds_apply_here_and_reach_child_processes() -> None:
    applied, mmap, trim = _run(1 << 28)
    assert (mmap, trim) == (str(1 << 28), str(1 << 28))
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert applied == "True"


def test_user_settings_win_and_bad_values_fall_back() -> None:
    applied, mmap, trim = _run(1 << 28, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="lots")
    assert (mmap, trim) == ("65536", "lots")
    assert cpu_memory._c_int("lots", 7) == 7
    assert cpu_memory._c_int(str(1 << 40), 7) == 2**31 - 1
