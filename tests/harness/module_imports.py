"""What importing a module loads: the CLIs that only supervise, check or read files must start without torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Sequence

HEAVY_MODULES = ("torch", "opacus", "timm", "transformers")
"""Packages that take seconds of CPU to import (torch alone about two)."""


def heavy_modules_loaded_by(module: str, heavy: Sequence[str] = HEAVY_MODULES) -> list[str]:
    """Which of `heavy` a fresh interpreter has loaded after `import module`."""
    script = f"import sys, {module}; print(' '.join(name for name in {list(heavy)!r} if name in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"`import {module}` failed:\n{done.stderr[-3000:]}")
    return done.stdout.split()
