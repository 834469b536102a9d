"""Attach a log file to a logger once (site logs, server run logs): a second call for the same file is a no-op."""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def attach_log_file(logger: logging.Logger, path: str | Path, level: int = logging.INFO) -> None:
    """Send `logger`'s records to `path` (parents created), unless a handler already writes there."""
    log_path = Path(path)
    if any(getattr(handler, "baseFilename", None) == str(log_path.absolute()) for handler in logger.handlers):
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
