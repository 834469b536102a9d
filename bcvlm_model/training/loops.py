"""`train_local` and `evaluate`: the model-agnostic loops every site, simulation and baseline runs (no Flower).

Batches are `ReportCollator` dicts; the model is called with the five input tensors (batch dim first) and returns
logits [B, len(TASKS)]. FedProx's proximal gradient mu * (w - w_global) is added to the gradient AFTER the DP step
(Opacus overwrites p.grad with the clipped, noised sum, so a parameter-only loss term would be silently dropped);
it is data-independent, so adding it costs no privacy.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bcvlm_model import TASKS
from bcvlm_model.data.patient_records import RECORD_INDEX
from bcvlm_model.losses import masked_multitask_bce
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS
from bcvlm_model.privacy.dp_ready import parameters_kept_by_dp
from bcvlm_model.privacy.dp_training import DPTrainState, make_private
from bcvlm_model.training.local_train_config import LocalTrainConfig, Optimizer

"""Keys of a collated batch passed to the model, in forward-argument order."""


@dataclass
class LocalTrainResult:
    """Outcome of one `train_local` call (aggregates only)."""

    num_examples: int
    """Examples seen (sum of batch sizes over all steps)."""
    mean_loss: float
    steps: int
    epsilon_spent_total: float | None = None
    """Epsilon of the whole accountant history including this call (None without DP)."""
    accountant_state: dict[str, Any] | None = None
    seconds: float = 0.0


@dataclass
class EvalResult:
    """Per-task probabilities and labels (NaN-labelled entries removed per task) and the mean loss."""

    scores: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    mean_loss: float = float("nan")
    num_examples: int = 0


def _masked_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return masked_multitask_bce(logits, labels, reduction=reduction)


def model_input_keys(model: nn.Module) -> tuple[str, ...]:
    """Batch keys the model reads, in forward-argument order: its `input_keys` (a `FrozenFeatureModel` reads cached
    prefix outputs) or MODEL_INPUT_KEYS."""
    return tuple(getattr(model, "input_keys", MODEL_INPUT_KEYS))


def model_inputs(
    batch: Mapping[str, Any], device: torch.device, keys: tuple[str, ...] = MODEL_INPUT_KEYS
) -> dict[str, torch.Tensor]:
    """The model's input tensors of a collated batch, moved to `device` (NCHW-contiguous images)."""
    missing = [key for key in keys if key not in batch]
    if missing:
        raise KeyError(f"batch lacks model inputs {missing}; got keys {sorted(batch)}")
    inputs = {key: batch[key].to(device, non_blocking=True) for key in keys}
    for key, value in inputs.items():  # never channels-last under DP (Opacus pitfall 3)
        if value.dim() == 4:
            inputs[key] = value.contiguous()
    return inputs


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping) and "labels" in batch:
        return int(batch["labels"].shape[0])
    return 0


def _cycle(loader: DataLoader) -> Iterator[Any]:
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ValueError("the training loader yields no batches (empty dataset?)")


def build_optimizer(params: list[nn.Parameter], cfg: LocalTrainConfig) -> torch.optim.Optimizer:
    """The optimizer named in `cfg` over `params` (LocalTrainConfig has checked the name)."""
    if cfg.optimizer is Optimizer.adamw:
        return torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def proximal_pairs(
    model: nn.Module, global_state: Mapping[str, torch.Tensor], device: torch.device
) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(parameter, global value) for every trainable parameter; a missing or mis-shaped global entry is an error."""
    pairs = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name not in global_state:
            raise KeyError(f"global_state has no entry for trainable parameter '{name}'")
        reference = torch.as_tensor(global_state[name]).to(device=device, dtype=param.dtype)
        if reference.shape != param.shape:
            raise ValueError(
                f"global_state['{name}'] has shape {tuple(reference.shape)}, expected {tuple(param.shape)}"
            )
        pairs.append((param, reference))
    return pairs


@torch.no_grad()
def add_proximal_gradient(pairs: list[tuple[nn.Parameter, torch.Tensor]], mu: float) -> None:
    """p.grad += mu * (p - p_global): the gradient of mu/2 * ||w - w_global||^2."""
    for param, reference in pairs:
        term = mu * (param.detach() - reference)
        if param.grad is None:
            param.grad = term.clone()
        else:
            param.grad.add_(term)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _set_empty_grad_samples(params: list[nn.Parameter]) -> None:
    """An empty Poisson batch still takes a (pure-noise) DP step: give Opacus zero-length per-sample grads."""
    for param in params:
        param.grad_sample = torch.zeros((0, *param.shape), dtype=param.dtype, device=param.device)


def train_local(
    model: nn.Module,
    loader: DataLoader,
    cfg: LocalTrainConfig,
    *,
    dp: DPTrainState | None = None,
    proximal_mu: float = 0.0,
    global_state: Mapping[str, torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    seed: int | None = None,
    progress: bool = False,
    progress_label: str = "train",
) -> LocalTrainResult:
    """Train `model` in place for `cfg.local_steps` optimizer steps (0 = one pass); DP-SGD when `dp` is given, over
    the loader's records (patients when its dataset is `PatientRecords`, see `make_private`), changing only the
    parameters `dp.updates` names (the others are frozen for the call).

    `bf16` autocasts forward and loss (parameters and gradients stay float32). `seed` re-seeds torch's global stream
    (dropout) for reproducible non-private runs; DP sampling and noise never use that stream (`dp_randomness`).
    """
    if proximal_mu < 0:
        raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
    if proximal_mu > 0 and global_state is None:
        raise ValueError("proximal_mu > 0 needs global_state (the round's global parameters)")
    with _frozen(parameters_kept_by_dp(model, dp.updates) if dp is not None else []):
        return _train_steps(
            model, loader, cfg, dp, proximal_mu, global_state, device, bf16, seed, progress, progress_label
        )


@contextlib.contextmanager
def _frozen(parameters: list[nn.Parameter]) -> Iterator[None]:
    """`parameters` take no gradient inside the block (they stay federated parameters: names do not change)."""
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def _train_steps(
    model: nn.Module,
    loader: DataLoader,
    cfg: LocalTrainConfig,
    dp: DPTrainState | None,
    proximal_mu: float,
    global_state: Mapping[str, torch.Tensor] | None,
    device: str | torch.device,
    bf16: bool,
    seed: int | None,
    progress: bool,
    progress_label: str,
) -> LocalTrainResult:
    """`train_local`'s loop over the parameters that take gradients now."""
    device = torch.device(device)
    if seed is not None:
        torch.manual_seed(seed)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    input_keys = model_input_keys(model)
    pairs = proximal_pairs(model, global_state, device) if proximal_mu > 0 and global_state is not None else []
    steps = cfg.local_steps or len(loader)
    optimizer = build_optimizer(params, cfg)
    private = make_private(model, optimizer, loader, dp) if dp is not None else None
    train_module = private.module if private is not None else model
    active_optimizer = private.optimizer if private is not None else optimizer
    batches = _cycle(private.loader if private is not None else loader)

    started = time.perf_counter()
    loss_sum, loss_examples, num_examples = 0.0, 0, 0
    try:
        for _ in tqdm(range(steps), desc=progress_label, disable=not progress, leave=False):
            batch = next(batches)
            active_optimizer.zero_grad(set_to_none=True)
            batch_size = _batch_size(batch)
            if batch_size > 0:
                inputs = model_inputs(batch, device, input_keys)
                labels = batch["labels"].to(device)
                with _autocast(device, bf16):
                    logits = train_module(*(inputs[key] for key in input_keys))
                # Under DP the per-example form matches Opacus' loss_reduction="mean" (each example's summed task
                # losses, averaged over the batch); without DP the mean over labelled entries.
                loss = _masked_loss(logits.float(), labels, "example_mean" if private is not None else "mean")
                if torch.isfinite(loss):
                    loss_sum += float(loss.detach()) * batch_size
                    loss_examples += batch_size
                else:  # no labelled entry in this batch: a zero gradient (still a DP step)
                    loss = (logits.float() * 0.0).sum()
                loss.backward()
                num_examples += batch_size
            elif private is not None:
                _set_empty_grad_samples(params)
            else:
                continue
            if private is not None:
                if private.optimizer.grouped:  # patient-level DP: the optimizer sums each patient's rows first
                    private.optimizer.set_record_index(
                        batch[RECORD_INDEX] if batch_size > 0 else torch.zeros(0, dtype=torch.long)
                    )
                if private.optimizer.pre_step():  # clip per sample, add noise, account
                    add_proximal_gradient(pairs, proximal_mu)
                    private.optimizer.original_optimizer.step()
            else:
                add_proximal_gradient(pairs, proximal_mu)
                optimizer.step()
        epsilon = private.epsilon(dp.delta) if private is not None and dp is not None else None
        accountant_state = private.accountant_state() if private is not None else None
    finally:
        if private is not None:
            private.close()
        for param in params:
            param.grad = None
    return LocalTrainResult(
        num_examples=num_examples,
        mean_loss=loss_sum / loss_examples if loss_examples else float("nan"),
        steps=steps,
        epsilon_spent_total=epsilon,
        accountant_state=accountant_state,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: str | torch.device = "cpu",
    progress: bool = False,
    bf16: bool = False,
) -> EvalResult:
    """Sigmoid scores and labels per task over `loader`; entries whose label is NaN are dropped for that task."""
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    loss_sum, loss_examples = 0.0, 0
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            batch_size = _batch_size(batch)
            if batch_size == 0:
                continue
            inputs = model_inputs(batch, device, model_input_keys(model))
            batch_labels = batch["labels"].to(device)
            with _autocast(device, bf16):
                logits = model(*(inputs[key] for key in model_input_keys(model))).float()
            loss = _masked_loss(logits, batch_labels)
            if torch.isfinite(loss):
                loss_sum += float(loss) * batch_size
                loss_examples += batch_size
            scores.append(torch.sigmoid(logits).cpu().numpy().astype(np.float64))
            labels.append(batch_labels.float().cpu().numpy().astype(np.float64))
    finally:
        model.train(was_training)
    all_scores = np.concatenate(scores) if scores else np.zeros((0, len(TASKS)))
    all_labels = np.concatenate(labels) if labels else np.zeros((0, len(TASKS)))
    result = EvalResult(
        mean_loss=loss_sum / loss_examples if loss_examples else float("nan"), num_examples=int(all_scores.shape[0])
    )
    for column, task in enumerate(TASKS):
        keep = ~np.isnan(all_labels[:, column])
        result.scores[task] = all_scores[keep, column]
        result.labels[task] = all_labels[keep, column]
    return result
