"""benchmarks/demo_seeds.py: one seed's row of the table from a run's metrics.json (paired CIs mirrored correctly)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from bcvlm_testing.benchmark_scripts import load_benchmark_script


@pytest.fixture(scope="module")
def demo_seeds() -> ModuleType:
    return load_benchmark_script("demo_seeds")


def _method(auc: float, minus_federated: list[float] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "pooled_auc": {"malignancy": auc, "calcification": 0.6},
        "mean_site_auc": {"malignancy": auc - 0.01, "calcification": 0.6},
        "pooled_auc_ci": {"malignancy": [auc - 0.1, auc + 0.1], "calcification": [0.5, 0.7]},
        "mean_site_auc_ci": {"malignancy": [auc - 0.1, auc + 0.1], "calcification": [0.5, 0.7]},
    }
    if minus_federated is not None:
        for level in ("pooled_auc", "mean_site_auc"):
            entry[f"{level}_minus_federated_ci"] = {"malignancy": minus_federated, "calcification": [-0.1, 0.1]}
    return entry


def _metrics() -> dict[str, Any]:
    return {
        "run": {"wall_time_s": 300.0},
        "methods": {
            "federated": _method(0.9, None),
            "public_pretrained": _method(0.8, [-0.15, -0.05]),  # public start below federated on every resample
            "local_only": _method(0.92, [-0.03, 0.07]),
            "dp_centralized": _method(0.91, [-0.05, 0.08]),
        },
    }


def test_federated_minus_public_start_mirrors_the_paired_interval(demo_seeds: ModuleType) -> None:
    row = demo_seeds.seed_row(_metrics(), 320.0)
    public = row["malignancy"]["federated_minus"]["public_pretrained"]["pooled_auc"]
    assert public["value"] == pytest.approx(0.1)
    assert public["ci95"] == [0.05, 0.15] and public["ci_above_0"]
    assert row["targets"]["federated_minus_public_start_ci_above_0_pooled"]


def test_federated_below_local_only_misses_that_target(demo_seeds: ModuleType) -> None:
    row = demo_seeds.seed_row(_metrics(), 320.0)
    local = row["malignancy"]["federated_minus"]["local_only"]["mean_site_auc"]
    assert local["value"] == pytest.approx(-0.02) and local["ci95"] == [-0.07, 0.03]
    assert not row["targets"]["federated_at_least_local_only_mean_site"]
    assert row["malignancy"]["federated_minus"]["centralized"] == {"mean_site_auc": None, "pooled_auc": None}
