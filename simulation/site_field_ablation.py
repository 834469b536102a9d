"""Site-field ablation: the centralized baseline retrained with the site-identifying fields dropped from the report
text (`text.drop_site_fields`), and its paired difference to the centralized baseline that reads them.

`manufacturer` and `machine_id` name the hospital, so a model can read the site's prevalence from the text; that
raises pooled AUC (scores on one scale across hospitals) without ranking cases better within any hospital. The
centralized model is the method that sees every site at once, where the shortcut pays; the federated run is not
repeated because it is the demo's most expensive step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import pandas as pd

from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.text.report_config import TextConfig
from bcvlm_simulation.baselines import TrainingRecipe, train_centralized
from bcvlm_simulation.bootstrap import method_intervals
from bcvlm_simulation.evaluation import SiteScores, score_model_on_sites

METHOD = "centralized_no_site_fields"
"""The ablation's name in metrics.json and the report."""
REFERENCE = "centralized"
"""The method it is compared with: the same training, with the site fields in the text."""


def ablation_text(text: TextConfig) -> TextConfig:
    """The run's text config with the site-identifying fields dropped; ValueError when they are dropped already."""
    if text.drop_site_fields:
        raise ValueError(
            "baselines.no_site_fields=true but server.text.drop_site_fields=true already: every method reads reports "
            "without site fields, so the ablation would repeat the centralized baseline. Set one of them to false"
        )
    return replace(text, drop_site_fields=True)


def train_and_score_without_site_fields(
    model_cfg: ModelConfig,
    trains: Mapping[str, pd.DataFrame],
    tests: Mapping[str, pd.DataFrame],
    recipe: TrainingRecipe,
    preprocess: PreprocessConfig,
    text: TextConfig,
    cache_dir: str | None,
    batch_size: int,
) -> dict[str, SiteScores]:
    """Train the centralized baseline on reports without site fields and score it on every site's test set (read
    with the same reports); the recipe is otherwise the centralized baseline's."""
    without = ablation_text(text)
    model = train_centralized(model_cfg, trains, replace(recipe, text=without), label="centralized, no site fields")
    return score_model_on_sites(model, tests, preprocess, without, model_cfg, cache_dir, batch_size)


def ablation_differences(
    scores_of: Mapping[str, Mapping[str, SiteScores]],
    summaries: Mapping[str, Mapping[str, Any]],
    tests: Mapping[str, pd.DataFrame],
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """(without site fields - with them), pooled and mean per-site: the point difference of the two summaries and its
    95% CI on the patient resamples every other interval uses (same seed); {} when either method was not run."""
    if METHOD not in scores_of or REFERENCE not in scores_of:
        return {}
    out: dict[str, Any] = {}
    for key in ("pooled_auc", "mean_site_auc"):
        ours, theirs = summaries[METHOD][key], summaries[REFERENCE][key]
        out[f"{key}_minus_{REFERENCE}"] = {
            task: None if ours.get(task) is None or theirs.get(task) is None else ours[task] - theirs[task]
            for task in ours
        }
    pair = {name: scores_of[name] for name in (REFERENCE, METHOD)}
    intervals = method_intervals(pair, tests, resamples, seed, reference=REFERENCE)[METHOD]
    out.update({key: value for key, value in intervals.items() if f"_minus_{REFERENCE}_" in key})
    return out
