"""Tests for bcvlm_model.file_logging: one handler per file, records reach the file."""

from __future__ import annotations

import logging
from pathlib import Path

from bcvlm_model.file_logging import attach_log_file


def test_attach_once_and_write(tmp_path: Path) -> None:
    logger = logging.getLogger("bcvlm-test-file-logging")
    path = tmp_path / "logs" / "site.log"
    attach_log_file(logger, path)
    attach_log_file(logger, path)
    assert sum(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers) == 1
    logger.info("round 1 done")
    for handler in logger.handlers:
        handler.flush()
    assert "round 1 done" in path.read_text()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
