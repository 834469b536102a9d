"""Operating points from pooled validation histograms: chosen when both classes have enough cases, else withheld."""

from __future__ import annotations

import numpy as np

from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram, score_histogram
from bcvlm_server.operating_points import choose_operating_points


def _histograms(n: int = 200, seed: int = 0) -> dict[str, ScoreHistogram]:
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(float)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.1), 0, 1)
    return {task: score_histogram(scores, labels, 100) for task in TASKS}


def test_every_task_gets_a_point_reaching_the_target_specificity() -> None:
    points, record = choose_operating_points(_histograms(), target_specificity=0.9, min_cases=10)
    assert set(points) == set(TASKS)
    for task in TASKS:
        assert points[task]["validation_specificity"] >= 0.9
        assert points[task]["n_validation_cases"] == 200
        assert record["tasks"][task]["withheld"] is None


def test_no_validation_data_gives_no_point_and_says_so() -> None:
    points, record = choose_operating_points(None, target_specificity=0.9, min_cases=10)
    assert points == {}
    assert all("no validation data" in record["tasks"][task]["withheld"] for task in TASKS)


def test_empty_validation_histograms_give_no_point() -> None:
    empty = {task: ScoreHistogram.empty(100) for task in TASKS}
    points, record = choose_operating_points(empty, target_specificity=0.9, min_cases=1)
    assert points == {} and all("no validation data" in entry["withheld"] for entry in record["tasks"].values())


def test_too_few_validation_cases_withhold_the_point() -> None:
    points, record = choose_operating_points(_histograms(n=10), target_specificity=0.9, min_cases=10)
    assert points == {}
    assert "fewer than 10 validation cases" in record["tasks"][TASKS[0]]["withheld"]
