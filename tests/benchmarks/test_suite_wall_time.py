"""benchmarks/suite_wall_time.py: which files it times, how it reads pytest's summary line, how it counts machine CPU."""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import pytest

from bcvlm_testing.benchmark_scripts import BENCHMARKS, load_benchmark_script


def _script() -> ModuleType:
    return load_benchmark_script("suite_wall_time")


def test_slow_only_lists_the_files_with_slow_tests_and_no_others() -> None:
    files = _script().slow_files()
    assert "tests/server/test_cli_rehearsal_docs.py" in files
    assert "tests/model/test_atomic_io.py" not in files
    assert all("mark.slow" in (BENCHMARKS.parent / name).read_text() for name in files)


def test_outcome_counts_reads_every_kind_in_the_summary_line() -> None:
    counts = _script().outcome_counts("1 failed, 3 passed, 1 skipped, 2 errors in 9.12s (0:00:09)")
    assert counts == {"failed": 1, "passed": 3, "skipped": 1, "error": 2}


def test_make_test_times_the_whole_suite_and_refuses_file_names() -> None:
    with pytest.raises(SystemExit) as refused:
        _script().main(["--make-test", "tests/model/test_atomic_io.py"])
    assert refused.value.code == 2


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc/stat")
def test_machine_busy_cpu_seconds_grow_at_least_by_what_this_process_spends() -> None:
    script = _script()
    busy_before, own_before = script.machine_busy_cpu_seconds(), time.process_time()
    while time.process_time() - own_before < 0.5:
        pass
    spent = time.process_time() - own_before
    assert script.machine_busy_cpu_seconds() - busy_before >= 0.8 * spent  # clock ticks: 10 ms resolution
