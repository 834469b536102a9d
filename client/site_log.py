"""Reading a site's own log (`state_dir/logs/site.log`): figures that stay at the site, e.g. training time."""

from __future__ import annotations

import os
import re
from pathlib import Path

SITE_LOG = Path("logs") / "site.log"
_TRAINING_TIME = re.compile(r"site=(?P<site>\S+) round=(?P<round>\d+): training took (?P<seconds>[0-9.]+) s")


def training_seconds(state_dir: str | os.PathLike[str]) -> dict[tuple[str, int], float]:
    """{(site id, round): seconds} from the site log's "training took" lines (benchmarks on the site's machine)."""
    path = Path(state_dir) / SITE_LOG
    if not path.is_file():
        return {}
    found: dict[tuple[str, int], float] = {}
    for match in _TRAINING_TIME.finditer(path.read_text(errors="replace")):
        found[(match["site"], int(match["round"]))] = float(match["seconds"])
    return found
