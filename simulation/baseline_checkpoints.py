"""Saves each simulated baseline's final model as a checkpoint with operating points chosen on validation data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from torch import nn

from bcvlm_model import TASKS
from bcvlm_model.checkpoint import save_checkpoint
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_model.metrics import ScoreHistogram, auc_from_histogram, score_histogram, too_few_cases
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.text.report_config import TextConfig
from bcvlm_server.operating_points import choose_operating_points
from bcvlm_simulation.evaluation import score_model_on_sites

CHOSEN_ON = "pooled validation histograms of the sites' val splits (exact scores, simulation)"
BASELINES_DIR = "baselines"
"""Folder of the run directory holding one checkpoint per baseline (local-only: one per site)."""


def pooled_validation_histograms(
    model: nn.Module,
    val_tables: Mapping[str, pd.DataFrame],
    preprocess: PreprocessConfig,
    text: TextConfig,
    model_cfg: ModelConfig,
    cache_dir: str | None,
    batch_size: int,
    n_bins: int,
) -> dict[str, ScoreHistogram]:
    """Per task, the sum over sites of the model's validation score histograms (sites without val rows add nothing)."""
    pooled = {task: ScoreHistogram.empty(n_bins) for task in TASKS}
    tables = {site: table for site, table in val_tables.items() if not table.empty}
    for scores in score_model_on_sites(model, tables, preprocess, text, model_cfg, cache_dir, batch_size).values():
        for task in TASKS:
            pooled[task] = pooled[task] + score_histogram(scores.scores[task], scores.labels[task], n_bins)
    return pooled


def validation_aucs(validation: Mapping[str, ScoreHistogram], min_cases: int) -> dict[str, float | None]:
    """Per task, the AUC of pooled validation histograms (None below `min_cases` of either class): the figure to
    compare settings on, so that the test set is scored once and never used to choose."""
    aucs: dict[str, float | None] = {}
    for task, histogram in validation.items():
        withheld = too_few_cases(histogram.n_positive, histogram.n_negative, min_cases)
        aucs[task] = None if withheld else round(float(auc_from_histogram(histogram)), 4)
    return aucs


def save_with_operating_points(
    directory: Path,
    model: nn.Module,
    model_cfg: ModelConfig,
    preprocess: PreprocessConfig,
    text: TextConfig,
    validation: Mapping[str, ScoreHistogram],
    *,
    target_specificity: float,
    min_cases: int,
    method: str,
) -> dict[str, Any]:
    """Write the model's checkpoint with operating points chosen on `validation` the way the federated server
    chooses them; return the account of them (with the checkpoint path) for metrics.json."""
    points, record = choose_operating_points(
        validation, target_specificity=target_specificity, min_cases=min_cases, chosen_on=CHOSEN_ON
    )
    extra: dict[str, Any] = {"method": method, "federated": False}
    if points:
        extra[OPERATING_POINTS_KEY] = points
    save_checkpoint(directory, model, model_cfg, preprocess, text, extra)
    return {**record, "checkpoint": str(directory)}
