"""What every benchmark script puts in its JSON about the machine, and how it prints and saves that JSON."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from bcvlm_model.atomic_io import atomic_write_text


def machine_facts(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """CPU count, platform and the load average before the measurement and now (figures under load say so)."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_avg_before": [round(value, 2) for value in load_before],
        "load_avg_after": [round(value, 2) for value in os.getloadavg()],
    }


def emit(result: dict[str, Any], out: str | os.PathLike[str] | None) -> None:
    """Print the result as JSON and, with `out`, write it there atomically."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        atomic_write_text(Path(out), text + "\n")
