"""benchmarks/dp_updates_validation.py: the choice reads validation AUCs only and takes the best mean over seeds."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from bcvlm_testing.benchmark_scripts import load_benchmark_script


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_benchmark_script("dp_updates_validation")


def _metrics(validation: float, test: float) -> dict[str, Any]:
    method = {
        "validation_pooled_auc": {"malignancy": validation, "calcification": validation - 0.1},
        "pooled_auc": {"malignancy": test, "calcification": test},
    }
    return {"methods": {"federated": method, "public_pretrained": method}}


def test_a_row_holds_validation_figures_only(script: ModuleType) -> None:
    row = script.validation_row(_metrics(validation=0.8, test=0.99))
    assert row["federated"] == {"malignancy": 0.8, "calcification": pytest.approx(0.7)}
    assert 0.99 not in [value for method in row.values() for value in method.values()]


def test_the_choice_is_the_best_mean_over_seeds_and_tasks(script: ModuleType) -> None:
    rows = {
        "all": {"0": script.validation_row(_metrics(0.9, 0.5)), "1": script.validation_row(_metrics(0.6, 0.5))},
        "head": {"0": script.validation_row(_metrics(0.8, 0.9)), "1": script.validation_row(_metrics(0.8, 0.9))},
    }
    scores = script.choose(rows)
    assert scores == {"all": pytest.approx(0.7), "head": pytest.approx(0.75)}
    assert max(scores, key=scores.get) == "head"
