"""keep_freed_memory: glibc thresholds raised in-process and passed on to child processes; user settings win.

Each case runs in a fresh interpreter so the test process keeps its own allocator settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


ON_GLIBC = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))


def test_user_settings_win() -> None:
    applied, mmap, trim = _run(1 << 28, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="131072")
    assert (mmap, trim) == ("65536", "131072")
    if ON_GLIBC:
        assert applied == "True"


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt is glibc's")
def test_unreadable_or_huge_user_values_still_apply_a_valid_threshold() -> None:
    """A word falls back to the default and a value beyond a C int is clamped: mallopt accepts both."""
    applied, mmap, trim = _run(1 << 28, MALLOC_MMAP_THRESHOLD_="lots", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
    assert (applied, mmap, trim) == ("True", "lots", str(1 << 40))
