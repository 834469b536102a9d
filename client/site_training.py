"""SiteTrainer: one site's federated round (admission, privacy budget, DP training, update) and evaluation, no Flower.

Inputs are the global trainable parameters as they travel (one packed vector in `federated_parameter_names` order,
`array_packing`) and the round's `RoundSettings`; outputs are the update (local - global), packed the same way, and
whitelisted aggregate metrics (`reply_schema`).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from bcvlm_client.array_packing import PackedModelError, pack_model, unpack_model
from bcvlm_client.evaluation_release import releasable_site_auc, release_histogram
from bcvlm_client.privacy_ledger import LedgerTerms, SitePrivacyLedger
from bcvlm_client.reply_schema import DeclineReason, encode_histogram, histograms_to_arrays
from bcvlm_client.round_admission import Refusal, effective_target_epsilon, refuse_round
from bcvlm_client.run_settings import RoundSettings
from bcvlm_client.site_config import SiteConfig
from bcvlm_client.site_data import check_delta_bound, ledger_terms, read_site_manifest, split_rows, summarise_site_data
from bcvlm_model import TASKS
from bcvlm_model.cpu_memory import keep_freed_memory
from bcvlm_model.features.training_hook import frozen_feature_training
from bcvlm_model.metrics import ScoreHistogram, score_histogram
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.parameters import (
    federated_parameter_names,
    federated_parameter_shapes,
    get_trainable_state,
    set_trainable_state,
)
from bcvlm_model.privacy.accounting import noise_multiplier_for_remaining_budget
from bcvlm_model.privacy.dp_ready import DPCompatibilityError, find_dp_problems
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig, DPUpdates
from bcvlm_model.privacy.dp_training import DPTrainState
from bcvlm_model.privacy.federated_model import build_federated_model
from bcvlm_model.privacy.privacy_unit import IMAGE_UNIT_WARNING, PrivacyUnit, unit_description
from bcvlm_model.training.loaders import build_loader
from bcvlm_model.training.loops import evaluate, train_local

LOGGER = logging.getLogger("bcvlm_client.site")

FitReply = tuple[list[np.ndarray], int, dict[str, Any]]
EvaluateReply = tuple[float, int, dict[str, Any]]


def arrays_to_state(model: nn.Module, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """The received packed model, unpacked to the model's federated parameters (its length must match exactly)."""
    try:
        unpacked = unpack_model(arrays, federated_parameter_shapes(model))
    except PackedModelError as exc:
        raise PackedModelError(f"the server's model does not fit this site's ({exc}): model configs differ") from None
    return {name: torch.from_numpy(array) for name, array in zip(federated_parameter_names(model), unpacked)}


def state_to_arrays(model: nn.Module, state: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """The state's federated parameters as the message carries them: one float32 vector (`array_packing`)."""
    return pack_model([state[name].detach().cpu().float().numpy() for name in federated_parameter_names(model)])


class SiteTrainer:
    """A hospital's side of the federation: trains and evaluates the global model on local data."""

    def __init__(
        self,
        site: SiteConfig,
        model_factory: Callable[[ModelConfig, DPReadyConfig | None], nn.Module] | None = None,
    ) -> None:
        keep_freed_memory()  # the ClientApp may run in a process no bcvlm CLI started (Ray worker, flwr-clientapp)
        self.site = site
        self.model_factory = model_factory or build_federated_model
        self._models: dict[str, nn.Module] = {}
        self._dp_problems: dict[str, list[str]] = {}
        self._manifest: pd.DataFrame | None = None
        Path(site.state_dir).mkdir(parents=True, exist_ok=True)
        if site.privacy.enabled and site.privacy.unit is PrivacyUnit.image:
            LOGGER.warning("site=%s: %s", site.site_id, IMAGE_UNIT_WARNING)

    # --- shared pieces ------------------------------------------------------------------------------------------
    @staticmethod
    def _model_key(settings: RoundSettings) -> str:
        return repr((settings.model, settings.dp_trainable))

    def _model(self, settings: RoundSettings) -> nn.Module:
        key = self._model_key(settings)
        if key not in self._models:
            self._models[key] = self.model_factory(settings.model, settings.dp_trainable)
        return self._models[key]

    def _dp_problems_of(self, settings: RoundSettings) -> list[str]:
        """DP-safety problems of the model these settings build, checked on the model itself, whatever was sent."""
        key = self._model_key(settings)
        if key not in self._dp_problems:
            try:
                self._dp_problems[key] = find_dp_problems(self._model(settings))
            except DPCompatibilityError as exc:  # make_dp_ready refused the trainable set the server described
                self._dp_problems[key] = [str(exc)]
        return self._dp_problems[key]

    def _rows(self, split: str) -> pd.DataFrame:
        return split_rows(self._manifest_table(), split)

    def _loader(self, settings: RoundSettings, rows: pd.DataFrame, train: bool) -> DataLoader:
        """Batches of `rows`; under DP the training loader's items are the site's privacy units (patients)."""
        compute = self.site.compute
        return build_loader(
            rows,
            settings.preprocess,
            settings.text,
            settings.model,
            cache_dir=self.site.data.cache_dir,
            decode_on_the_fly=self.site.data.decode_on_the_fly,
            batch_size=compute.batch_size if train else compute.eval_batch_size,
            train=train,
            seed=self.site.seed + settings.server_round,
            num_workers=compute.num_workers,
            privacy_unit=self.site.privacy.unit if train and self.site.privacy.enabled else None,
        )

    def _frozen_feature_training(
        self, model: nn.Module, loader: DataLoader, settings: RoundSettings
    ) -> tuple[nn.Module, DataLoader]:
        """(module, loader) to train or evaluate: from the site's frozen-feature cache when part of the model is
        frozen."""
        compute = self.site.compute
        if not compute.frozen_feature_cache:
            return model, loader
        cached = frozen_feature_training(
            model,
            loader,
            Path(self.site.state_dir) / "frozen_features",
            settings.preprocess,
            compute.frozen_feature_dtype,
            compute.device,
        )
        return (model, loader) if cached is None else (cached.module, cached.loader)

    def _manifest_table(self) -> pd.DataFrame:
        if self._manifest is None:
            self._manifest = read_site_manifest(self.site)  # refuses a patient in two splits before fit/evaluate
        return self._manifest

    def ledger_terms(self) -> LedgerTerms:
        """The terms this site's ledger must carry (its budget and its current training set)."""
        return ledger_terms(self.site, summarise_site_data(self.site, self._manifest_table()))

    def ledger(self) -> SitePrivacyLedger:
        """A verified read-only view of this site's ledger."""
        return SitePrivacyLedger.open(self.site.state_dir, self.ledger_terms())

    def _declined(
        self, arrays: list[np.ndarray], epsilon: float, refusal: Refusal, settings: RoundSettings
    ) -> FitReply:
        LOGGER.warning(
            "site=%s round=%d declines to train (%s): %s",
            self.site.site_id,
            settings.server_round,
            refusal.reason.name,
            refusal.detail,
        )
        # the packed form of a zero update, as long as what the server sent (the site may not have built its model)
        zeros = [np.zeros(sum(np.asarray(array).size for array in arrays), dtype=np.float32)]
        metrics = {"epsilon": float(epsilon), "declined": int(refusal.reason), "steps": 0}
        return zeros, 0, metrics

    def _charge(
        self, run_id: int, settings: RoundSettings, terms: LedgerTerms, sample_rate: float, steps: int
    ) -> tuple[DPTrainState | None, Refusal | None, float]:
        """Under the ledger's lock: refuse a replayed round or one the budget cannot pay for, else calibrate the
        noise to the budget left over the rounds left in this run and charge the round before it trains.

        Returns (the round's DP state, refusal, epsilon after)."""
        privacy = self.site.privacy
        with SitePrivacyLedger.locked(self.site.state_dir, terms) as ledger:
            if ledger.has_charged(run_id, settings.server_round):
                refusal = Refusal(
                    DeclineReason.ROUND_REPLAYED, f"round {settings.server_round} of run {run_id} was already trained"
                )
                ledger.record_declined(run_id, settings.server_round, refusal.reason.name)
                return None, refusal, ledger.epsilon_spent
            history = ledger.accountant_state
            remaining_rounds = settings.planned_rounds - settings.server_round + 1
            noise = noise_multiplier_for_remaining_budget(
                history,
                effective_target_epsilon(self.site, settings),
                privacy.delta,
                sample_rate,
                remaining_rounds * steps,
                privacy.accountant,
            )
            check = ledger.check_next_round(noise, sample_rate, steps) if noise is not None else None
            if check is None or not check.allowed:
                projected = check.epsilon_after if check is not None else None
                refusal = Refusal(
                    DeclineReason.BUDGET_EXHAUSTED,
                    f"epsilon {ledger.epsilon_spent:.3f} of {ledger.target_epsilon} is spent; no noise "
                    f"level lets {remaining_rounds} more round(s) of {steps} steps fit the budget",
                )
                ledger.record_declined(run_id, settings.server_round, refusal.reason.name, projected)
                return None, refusal, ledger.epsilon_spent
            epsilon_after = ledger.charge_round(run_id, settings.server_round, noise, sample_rate, steps)
        insecure_seed = self.site.seed + settings.server_round if privacy.insecure_reproducible_noise else None
        state = DPTrainState(
            noise,
            privacy.max_grad_norm,
            privacy.delta,
            privacy.accountant,
            history,
            insecure_seed=insecure_seed,
            updates=settings.dp_trainable.updates if settings.dp_trainable is not None else DPUpdates.all,
        )
        return state, None, epsilon_after

    # --- fit ----------------------------------------------------------------------------------------------------
    def fit(self, arrays: list[np.ndarray], settings: RoundSettings, run_id: int) -> FitReply:
        """Train on the local train split from the global arrays; return the update and aggregate metrics.

        Order: the server's instructions are checked against the site's limits, the model the site built is checked
        for DP safety, the server's packed model must fit it, the data and the first batch load, and only then is the
        ledger charged (under its lock).
        """
        site, privacy = self.site, self.site.privacy
        rows = self._rows(site.data.train_split)
        if rows.empty:
            refusal = Refusal(DeclineReason.NO_TRAINING_DATA, f"no '{site.data.train_split}' rows in the manifest")
            return self._declined(arrays, math.nan, refusal, settings)
        loader = self._loader(settings, rows, train=True)
        steps = settings.local_train.local_steps or len(loader)
        refusal = refuse_round(site, settings, steps)
        if refusal is None and privacy.enabled and self._dp_problems_of(settings):
            refusal = Refusal(DeclineReason.DP_UNSAFE_MODEL, "; ".join(self._dp_problems_of(settings)[:3]))
        if refusal is not None:
            return self._declined(arrays, math.nan, refusal, settings)
        model = self._model(settings)
        global_state = arrays_to_state(model, arrays)  # a model that does not fit this site's costs no budget
        check_delta_bound(site, summarise_site_data(site, self._manifest_table()))
        next(iter(loader))  # the data must load before any budget is spent

        dp_state = None
        epsilon_now = math.inf
        if privacy.enabled:
            terms = self.ledger_terms()
            sample_rate = 1.0 / len(loader)  # Opacus' Poisson rate over the loader's records (patients by default)
            dp_state, refusal, epsilon_now = self._charge(run_id, settings, terms, sample_rate, steps)
            if refusal is not None:
                return self._declined(arrays, epsilon_now, refusal, settings)

        set_trainable_state(model, global_state)
        started = time.perf_counter()
        train_module, train_loader = self._frozen_feature_training(model, loader, settings)
        result = train_local(
            train_module,
            train_loader,
            settings.local_train,
            dp=dp_state,
            proximal_mu=settings.proximal_mu,
            global_state=global_state if settings.proximal_mu > 0 else None,
            device=site.compute.device,
            bf16=site.compute.bf16,
            seed=site.seed + settings.server_round if dp_state is None or privacy.insecure_reproducible_noise else None,
            progress=True,
            progress_label=f"site={site.site_id} round={settings.server_round}",
        )
        seconds = time.perf_counter() - started
        if dp_state is not None and result.accountant_state is not None:
            with SitePrivacyLedger.locked(site.state_dir, terms) as ledger:
                ledger.confirm_round(run_id, settings.server_round, result.accountant_state)
                epsilon_now = ledger.epsilon_spent
        local_state = get_trainable_state(model)
        update = {name: local_state[name].float() - global_state[name].float() for name in local_state}
        LOGGER.info(
            "site=%s round=%d trained %d steps (%d images), loss %.4f, epsilon %.4f (%s)",
            site.site_id,
            settings.server_round,
            result.steps,
            result.num_examples,
            result.mean_loss,
            epsilon_now,
            unit_description(privacy.unit) if dp_state is not None else "no DP",
        )
        LOGGER.info("site=%s round=%d: training took %.1f s", site.site_id, settings.server_round, seconds)
        metrics = {"epsilon": float(epsilon_now), "declined": int(DeclineReason.TRAINED), "steps": int(result.steps)}
        return state_to_arrays(model, update), len(rows), metrics

    # --- evaluate -----------------------------------------------------------------------------------------------
    def _scores(self, arrays: list[np.ndarray], settings: RoundSettings, rows: pd.DataFrame) -> Any:
        """The global model's evaluation result on `rows` (None when there are none)."""
        if rows.empty:
            return None
        model = self._model(settings)
        set_trainable_state(model, arrays_to_state(model, arrays))
        # the frozen prefix of the evaluation images is the same every round: read it from the site's cache too
        module, loader = self._frozen_feature_training(model, self._loader(settings, rows, train=False), settings)
        return evaluate(module, loader, device=self.site.compute.device, bf16=self.site.compute.bf16)

    def _released_histograms(self, result: Any, n_bins: int) -> dict[str, ScoreHistogram]:
        """Per task, the histogram of `result` within the site's release bounds (empty when `result` is None)."""
        bounds = self.site.evaluation
        histograms = {}
        for task in TASKS:
            scores = result.scores[task] if result is not None else np.zeros(0)
            labels = result.labels[task] if result is not None else np.zeros(0)
            exact = score_histogram(scores, labels, n_bins)
            histograms[task] = release_histogram(exact, bounds.max_bins, bounds.min_cell_count)
        return histograms

    def released_evaluation(
        self, arrays: list[np.ndarray], settings: RoundSettings
    ) -> tuple[dict[str, ScoreHistogram], dict[str, ScoreHistogram], dict[str, Any]]:
        """Evaluate the global model on the local evaluation and validation splits; return what the site may release:
        per task the histograms within the site's bounds (`evaluation_release`) of the evaluation split and of the
        validation split (a site without validation rows releases empty ones), and the evaluation split's cases and
        the site's own AUC above its minimum (plain metrics)."""
        bounds = self.site.evaluation
        result = self._scores(arrays, settings, self._rows(self.site.data.eval_split))
        histograms = self._released_histograms(result, settings.n_bins)
        validation_result = self._scores(arrays, settings, self._rows(self.site.data.val_split))
        validation = self._released_histograms(validation_result, settings.n_bins)
        metrics: dict[str, Any] = {}
        for task in TASKS:
            metrics[f"cases_{task}"] = histograms[task].n_positive + histograms[task].n_negative
            if result is not None:
                site_auc = releasable_site_auc(result.scores[task], result.labels[task], bounds.site_auc_min_cases)
                if site_auc is not None:
                    metrics[f"auc_{task}"] = site_auc
        LOGGER.info(
            "site=%s round=%d: evaluated %d images, %d validation images; released %s, validation %s",
            self.site.site_id,
            settings.server_round,
            0 if result is None else result.num_examples,
            0 if validation_result is None else validation_result.num_examples,
            {task: metrics[f"cases_{task}"] for task in TASKS},
            {task: validation[task].n_positive + validation[task].n_negative for task in TASKS},
        )
        return histograms, validation, metrics

    def evaluate(self, arrays: list[np.ndarray], settings: RoundSettings) -> EvaluateReply:
        """Plain evaluation reply (server without SecAgg+): released histograms, cases and site AUCs, no loss."""
        histograms, validation, metrics = self.released_evaluation(arrays, settings)
        for task in TASKS:
            metrics[f"hist_{task}"] = encode_histogram(histograms[task])
            metrics[f"val_hist_{task}"] = encode_histogram(validation[task])
        cases = max(metrics[f"cases_{task}"] for task in TASKS)
        return 0.0, int(cases), metrics

    def secure_evaluation(
        self, arrays: list[np.ndarray], settings: RoundSettings, count_scale: float, weight: int
    ) -> FitReply:
        """Evaluation as a SecAgg+ "fit": the released histograms as arrays (counts / `count_scale`), to be masked and
        summed with the other sites'; every site gives the same `weight`, so the secure sum stays a plain sum."""
        if not (math.isfinite(count_scale) and count_scale >= 1) or weight < 1:
            raise ValueError(f"secure evaluation needs count-scale >= 1 and weight >= 1, got {count_scale}, {weight}")
        histograms, validation, metrics = self.released_evaluation(arrays, settings)
        released = [*histograms.values(), *validation.values()]
        largest = max(int(max(h.positives.max(), h.negatives.max())) for h in released)
        if largest > count_scale:
            raise ValueError(f"a histogram cell holds {largest} cases, above the count scale {count_scale}")
        return histograms_to_arrays(histograms, validation, count_scale), int(weight), metrics
