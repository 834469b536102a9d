"""Operating points of the global model from the sites' pooled validation histograms (never from test data)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Mapping

from bcvlm_model import TASKS
from bcvlm_model.inference.operating_point import threshold_from_histogram
from bcvlm_model.metrics import ScoreHistogram, too_few_cases

LOGGER = logging.getLogger("bcvlm_server.operating_points")

CHOSEN_ON = "pooled validation histograms released by the sites"


def choose_operating_points(
    validation: Mapping[str, ScoreHistogram] | None,
    *,
    target_specificity: float,
    min_cases: int,
    chosen_on: str = CHOSEN_ON,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(operating points per task for the checkpoint's `extra`, the round record's account of them).

    A task gets a point only when the pooled validation histogram holds at least `min_cases` positive and
    `min_cases` negative cases; otherwise the record says why it has none. `validation` None = the sites released
    no validation histograms at all (the evaluation stage failed or was withheld).
    """
    points: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] = {"chosen_on": chosen_on, "target_specificity": float(target_specificity), "tasks": {}}
    for task in TASKS:
        histogram = None if validation is None else validation.get(task)
        n_pos = 0 if histogram is None else histogram.n_positive
        n_neg = 0 if histogram is None else histogram.n_negative
        if histogram is None or n_pos + n_neg == 0:
            reason = "no validation data: no site released a validation histogram"
        elif too_few_cases(n_pos, n_neg, min_cases) is not None:
            reason = f"fewer than {min_cases} validation cases in a class (positives={n_pos}, negatives={n_neg})"
        else:
            point = asdict(threshold_from_histogram(histogram, target_specificity))
            point["n_validation_cases"] = n_pos + n_neg
            point["chosen_on"] = chosen_on
            points[task] = point
            record["tasks"][task] = {"operating_point": point, "withheld": None}
            continue
        record["tasks"][task] = {
            "operating_point": None,
            "withheld": reason,
            "n_positive": n_pos,
            "n_negative": n_neg,
        }
    return points, record


def log_operating_points(absolute_round: int, record: Mapping[str, Any]) -> None:
    """One log line per task: the threshold chosen on validation data, or why there is none."""
    for task, entry in record["tasks"].items():
        point = entry["operating_point"]
        if point is None:
            LOGGER.warning("round %d: no operating point for %s: %s", absolute_round, task, entry["withheld"])
        else:
            LOGGER.info(
                "round %d: %s operating point %.4f from %d validation cases (specificity %.3f, sensitivity %s)",
                absolute_round,
                task,
                point["threshold"],
                point["n_validation_cases"],
                point["validation_specificity"],
                "n/a" if point["validation_sensitivity"] is None else f"{point['validation_sensitivity']:.3f}",
            )
