"""benchmarks/suite_wall_time.py: which files it times and how it reads pytest's summary line."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "suite_wall_time.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("suite_wall_time", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slow_only_lists_the_files_with_slow_tests_and_no_others() -> None:
    files = _script().slow_files()
    assert "tests/server/test_cli_rehearsal_docs.py" in files
    assert "tests/model/test_atomic_io.py" not in files
    assert all("mark.slow" in (SCRIPT.parents[1] / name).read_text() for name in files)


def test_outcome_counts_reads_every_kind_in_the_summary_line() -> None:
    counts = _script().outcome_counts("1 failed, 3 passed, 1 skipped, 2 errors in 9.12s (0:00:09)")
    assert counts == {"failed": 1, "passed": 3, "skipped": 1, "error": 2}
