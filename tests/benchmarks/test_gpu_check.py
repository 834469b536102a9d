"""benchmarks/gpu_check.sh --cpu-smoke: every GPU step runs at tiny size on CPU and the script prints one JSON."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bcvlm_client.flower_process import FLOWER_ENV_DEFAULTS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
STEPS = ("model_step", "inference_latency", "simulation", "frozen_feature_cache")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, **FLOWER_ENV_DEFAULTS, "RAY_DEDUP_LOGS": "0"}
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-smoke"], env=env, capture_output=True, text=True, timeout=1100, cwd=work
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-6000:]}"
    return json.loads(done.stdout)


def test_every_step_succeeds_on_cpu(smoke_report: dict) -> None:
    assert smoke_report["mode"] == "cpu-smoke" and smoke_report["device"] == "cpu"
    assert smoke_report["ok"] is True and smoke_report["failed_steps"] == []
    assert sorted(smoke_report["steps"]) == sorted(STEPS)


def test_model_step_compares_vlm_with_image_only_and_dp_with_no_dp(smoke_report: dict) -> None:
    result = smoke_report["steps"]["model_step"]["result"]
    assert result["bf16"] is True and set(result["models"]) == {"vlm", "image_only"}
    assert result["vlm_over_image_only_train"] > 0 and result["dp_over_no_dp_train"] > 0


def test_inference_latency_times_both_models(smoke_report: dict) -> None:
    models = smoke_report["steps"]["inference_latency"]["result"]["models"]
    assert all(models[name]["wall_ms_per_exam_median"] > 0 for name in ("vlm", "image_only"))


def test_simulation_runs_two_rounds(smoke_report: dict) -> None:
    rounds = smoke_report["steps"]["simulation"]["result"]["rounds"]
    assert [entry["round"] for entry in rounds] == [1, 2]
    assert all(entry["wall_time_s"] > 0 and len(entry["epsilon"]) == 2 for entry in rounds)


def test_frozen_feature_cache_times_both_paths(smoke_report: dict) -> None:
    (size,) = smoke_report["steps"]["frozen_feature_cache"]["result"]["sizes"]
    assert size["size"] == "64x32" and len(size["plain_epoch_seconds"]) == len(size["cached_epoch_seconds"]) == 2
    assert size["speedup_steady_epoch_wall"] > 0 and size["cache_bytes"] > 0
