"""SiteTrainer: one site's federated round (privacy budget check, DP training, update) and evaluation, no Flower.

Inputs are the global trainable arrays (order of `federated_parameter_names`) and the round's `RoundSettings`;
outputs are the update arrays (local - global) and whitelisted aggregate metrics (`reply_schema`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from bcvlm_model import TASKS
from bcvlm_model.cpu_memory import keep_freed_memory
from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.metrics import score_histogram
from bcvlm_model.model_config import PACKAGE_DEFAULT, ModelConfig
from bcvlm_model.parameters import federated_parameter_names, get_trainable_state, set_trainable_state
from bcvlm_model.privacy.dp_ready import DPReadyConfig
from bcvlm_model.privacy.dp_training import DPTrainState, noise_multiplier_for_budget, poisson_sample_rate
from bcvlm_model.text import ReportCollator
from bcvlm_model.training import evaluate, train_local
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import encode_histogram
from bcvlm_client.run_settings import RoundSettings, build_federated_model
from bcvlm_client.site_config import SiteConfig

LOGGER = logging.getLogger("bcvlm_client.site")

FitReply = tuple[list[np.ndarray], int, dict[str, Any]]
EvaluateReply = tuple[float, int, dict[str, Any]]


def arrays_to_state(model: nn.Module, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Name the global arrays with the model's federated parameter names (count and order must match)."""
    names = federated_parameter_names(model)
    if len(names) != len(arrays):
        raise ValueError(f"received {len(arrays)} arrays for {len(names)} trainable parameters: model configs differ")
    return {name: torch.from_numpy(np.asarray(array)) for name, array in zip(names, arrays)}


def state_to_arrays(model: nn.Module, state: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """float32 numpy arrays in `federated_parameter_names` order."""
    return [state[name].detach().cpu().float().numpy() for name in federated_parameter_names(model)]


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
        self._manifest: pd.DataFrame | None = None
        Path(site.state_dir).mkdir(parents=True, exist_ok=True)

    # --- shared pieces ------------------------------------------------------------------------------------------
    def _model(self, settings: RoundSettings) -> nn.Module:
        key = repr((settings.model, settings.dp_trainable))
        if key not in self._models:
            self._models[key] = self.model_factory(settings.model, settings.dp_trainable)
        return self._models[key]

    def _rows(self, split: str) -> pd.DataFrame:
        if self._manifest is None:
            self._manifest = read_manifest(self.site.data.manifest)
        return self._manifest[self._manifest["split"] == split].reset_index(drop=True)

    def _loader(self, settings: RoundSettings, split: str, train: bool) -> DataLoader | None:
        rows = self._rows(split)
        if len(rows) == 0:
            return None
        dataset = MammographyDataset(rows, settings.preprocess, self.site.data.cache_dir)
        tokenizer_dir = settings.model.text_encoder.path if settings.text.tokenizer == PACKAGE_DEFAULT else None
        collate = ReportCollator(
            settings.text, tokenizer_dir=tokenizer_dir, train=train, seed=self.site.seed + settings.server_round
        )
        return DataLoader(
            dataset,
            batch_size=self.site.compute.batch_size if train else self.site.compute.eval_batch_size,
            shuffle=train,
            collate_fn=collate,
            num_workers=self.site.compute.num_workers,
            generator=torch.Generator().manual_seed(self.site.seed + settings.server_round),
        )

    def ledger(self) -> SitePrivacyLedger:
        privacy = self.site.privacy
        return SitePrivacyLedger.open(
            self.site.state_dir, target_epsilon=privacy.target_epsilon, delta=privacy.delta, accountant=privacy.accountant
        )

    def _declined(self, arrays: list[np.ndarray], epsilon: float, reason: str, settings: RoundSettings) -> FitReply:
        LOGGER.warning("site=%s round=%d declines to train: %s", self.site.site_id, settings.server_round, reason)
        zeros = [np.zeros_like(np.asarray(array), dtype=np.float32) for array in arrays]
        return zeros, 0, {"loss": 0.0, "epsilon": float(epsilon), "declined": 1, "steps": 0, "train_seconds": 0.0}

    # --- fit ----------------------------------------------------------------------------------------------------
    def fit(self, arrays: list[np.ndarray], settings: RoundSettings) -> FitReply:
        """Train on the local train split from the global arrays; return the update and aggregate metrics."""
        site, privacy = self.site, self.site.privacy
        loader = self._loader(settings, site.data.train_split, train=True)
        ledger = self.ledger() if privacy.enabled else None
        epsilon_now = ledger.epsilon_spent if ledger is not None else math.inf
        if loader is None:
            return self._declined(arrays, epsilon_now, f"no '{site.data.train_split}' rows in the manifest", settings)
        num_train = len(loader.dataset)  # type: ignore[arg-type]
        steps = settings.local_train.local_steps or len(loader)
        dp_state = None
        if ledger is not None:
            sample_rate = poisson_sample_rate(num_train, site.compute.batch_size)
            noise = noise_multiplier_for_budget(
                privacy.target_epsilon, privacy.delta, sample_rate, settings.planned_rounds * steps, privacy.accountant
            )
            check = ledger.check_next_round(noise, sample_rate, steps)
            if not check.allowed:
                ledger.record_declined(settings.server_round, check)
                return self._declined(
                    arrays,
                    ledger.epsilon_spent,
                    f"epsilon would reach {check.epsilon_after:.3f} > budget {check.target_epsilon}",
                    settings,
                )
            history_before = ledger.accountant_state
            ledger.charge_round(settings.server_round, noise, sample_rate, steps)
            dp_state = DPTrainState(noise, privacy.max_grad_norm, privacy.delta, privacy.accountant, history_before)

        model = self._model(settings)
        global_state = arrays_to_state(model, arrays)
        set_trainable_state(model, global_state)
        local_cfg = replace(settings.local_train, bf16=site.compute.bf16, seed=site.seed + settings.server_round)
        started = time.perf_counter()
        result = train_local(
            model,
            loader,
            local_cfg,
            dp=dp_state,
            proximal_mu=settings.proximal_mu,
            global_state=global_state if settings.proximal_mu > 0 else None,
            device=site.compute.device,
            progress=True,
            progress_label=f"site={site.site_id} round={settings.server_round}",
        )
        seconds = time.perf_counter() - started
        if ledger is not None and result.accountant_state is not None:
            ledger.confirm_round(settings.server_round, result.accountant_state)
            epsilon_now = ledger.epsilon_spent
        local_state = get_trainable_state(model)
        update = {name: local_state[name].float() - global_state[name].float() for name in local_state}
        LOGGER.info(
            "site=%s round=%d trained %d steps (%d examples), loss %.4f, epsilon %.4f",
            site.site_id, settings.server_round, result.steps, result.num_examples, result.mean_loss, epsilon_now,
        )
        metrics = {
            "loss": float(result.mean_loss) if math.isfinite(result.mean_loss) else 0.0,
            "epsilon": float(epsilon_now),
            "declined": 0,
            "steps": int(result.steps),
            "train_seconds": float(seconds),
        }
        return state_to_arrays(model, update), int(num_train), metrics

    # --- evaluate -----------------------------------------------------------------------------------------------
    def evaluate(self, arrays: list[np.ndarray], settings: RoundSettings) -> EvaluateReply:
        """Evaluate the global model on the local evaluation split; reply with per-task histograms only."""
        loader = self._loader(settings, self.site.data.eval_split, train=False)
        metrics: dict[str, Any] = {}
        if loader is None:
            for task in TASKS:
                metrics[f"cases_{task}"] = 0
                metrics[f"hist_{task}"] = encode_histogram(score_histogram(np.zeros(0), np.zeros(0), settings.n_bins))
            return 0.0, 0, metrics
        model = self._model(settings)
        set_trainable_state(model, arrays_to_state(model, arrays))
        result = evaluate(model, loader, device=self.site.compute.device, bf16=self.site.compute.bf16)
        for task in TASKS:
            histogram = score_histogram(result.scores[task], result.labels[task], settings.n_bins)
            metrics[f"cases_{task}"] = int(result.labels[task].shape[0])
            metrics[f"hist_{task}"] = encode_histogram(histogram)
        loss = float(result.mean_loss) if math.isfinite(result.mean_loss) else 0.0
        return loss, int(result.num_examples), metrics
