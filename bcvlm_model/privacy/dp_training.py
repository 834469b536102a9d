"""DP-SGD with Opacus over records (patients, or single images): noise from a budget, accountant state carried on.

A record is one item of the loader's dataset. Under patient-level DP (`PatientRecords`) Opacus' Poisson sampler
draws whole patients, `RecordDPOptimizer` sums each patient's per-image gradients before clipping, and the
accountant runs at the patient sample rate, so the (epsilon, delta) guarantee is per patient.

The accountant's history (noise multiplier, sample rate, steps) is plain data: `accountant_state` round-trips
through JSON, so the epsilon a site has spent accumulates across rounds and process restarts.

The Poisson sample and the noise come from private generators with secret seeds (`dp_randomness`), never from
torch's global stream. Opacus' `secure_mode` is not used (its `torchcsprng` has no release for current torch): the
generators are torch's Philox/Mersenne streams seeded with 64 secret bits, so they cannot be replayed by anyone who
lacks the seed, but they are not a CSPRNG (floating-point attacks on Gaussian sampling are out of scope here).

Accountants: RDP and PRV. Opacus' GDP accountant is refused because it keeps only the last (noise, rate) pair of
its history, so a ledger replayed through it under-reports a multi-round spend.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from bcvlm_model.config_io import to_enum
from bcvlm_model.data.patient_records import RECORD_INDEX, PatientRecords
from bcvlm_model.privacy.accountants import Accountant
from bcvlm_model.privacy.dp_randomness import dp_generators
from bcvlm_model.privacy.dp_ready import DPUpdates

RDP_ALPHAS: tuple[float, ...] = (1.05, 1.1, 1.25, 1.5, 1.75, *range(2, 65), 80, 96, 128, 256)
"""RDP orders used everywhere (budget search, ledger, training). Opacus' default list has 99 fractional orders whose
evaluation dominates the cost; any order set gives a valid bound, this one is slightly looser and ~10x faster."""


def _epsilon_kwargs(accountant: str) -> dict[str, Any]:
    return {"alphas": list(RDP_ALPHAS)} if accountant == "rdp" else {}


@dataclass
class DPTrainState:
    """What one DP training call needs: the fixed noise/clip settings and the accountant history so far."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float
    accountant: Accountant = Accountant.rdp
    accountant_state: dict[str, Any] | None = field(default=None)
    insecure_seed: int | None = None
    """Derive sampling and noise from this seed (simulation only: anyone who knows it can strip the noise).
    None = secret seeds from the OS CSPRNG for every call."""
    updates: DPUpdates = DPUpdates.all
    """Which trainable parameters the DP-SGD steps change (`DPReadyConfig.updates`)."""

    def __post_init__(self) -> None:
        self.accountant = to_enum(Accountant, self.accountant, "accountant")
        self.updates = to_enum(DPUpdates, self.updates, "dp_trainable.updates")
        if not self.noise_multiplier > 0:
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")


def poisson_sample_rate(num_examples: int, batch_size: int) -> float:
    """Sample rate Opacus uses for a loader of `num_examples` with `batch_size` (1 / number of batches)."""
    if num_examples <= 0 or batch_size <= 0:
        raise ValueError(f"need num_examples > 0 and batch_size > 0, got {num_examples}, {batch_size}")
    return 1.0 / math.ceil(num_examples / batch_size)


def noise_multiplier_for_budget(
    target_epsilon: float, delta: float, sample_rate: float, total_steps: int, accountant: str = "rdp"
) -> float:
    """Noise multiplier that spends exactly `target_epsilon` (at `delta`) over `total_steps` DP-SGD steps."""
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    return _cached_noise_multiplier(
        float(target_epsilon), float(delta), float(sample_rate), int(total_steps), accountant
    )


@functools.lru_cache(maxsize=64)
def _cached_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, total_steps: int, accountant: str
) -> float:
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=total_steps,
            accountant=accountant,
            **_epsilon_kwargs(accountant),
        )
    )


NOISE_SEARCH_RELATIVE_TOLERANCE = 1e-3
MAX_USEFUL_NOISE_MULTIPLIER = 10.0
"""Above this the noise swamps any clipped gradient sum of a realistic batch: a budget that needs more noise than
this for the rounds left is treated as spent (the round is declined rather than trained into pure noise)."""


def noise_multiplier_for_remaining_budget(
    state: dict[str, Any] | None,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    remaining_steps: int,
    accountant: str = "rdp",
    *,
    relative_tolerance: float = NOISE_SEARCH_RELATIVE_TOLERANCE,
    max_noise_multiplier: float = MAX_USEFUL_NOISE_MULTIPLIER,
) -> float | None:
    """Smallest noise multiplier (within `relative_tolerance`) with which `remaining_steps` more steps keep the
    history within `target_epsilon`; None when no noise up to `max_noise_multiplier` fits.

    With an empty history this is (up to the tolerance) `noise_multiplier_for_budget`; with rounds already spent
    (earlier runs of the same site on the same data, or rounds declined in this run) the rest of the budget is
    spread over what remains.
    """
    if remaining_steps <= 0:
        raise ValueError(f"remaining_steps must be > 0, got {remaining_steps}")
    if epsilon_of_history(state, delta, accountant) >= target_epsilon:
        return None
    fits = _fits_budget(state, target_epsilon, delta, accountant, sample_rate, remaining_steps)
    # Bracket from 1.0 and bisect: each probe is one accounting pass, which dominates a site's round set-up (Opacus'
    # fractional orders are a Python series), so no separate search for a starting point.
    high = 1.0
    while not fits(high):
        high *= 2.0
        if high > 2.0 * max_noise_multiplier:
            return None
    low = high / 2.0
    while fits(low) and low > 1e-3:
        high, low = low, low / 2.0
    while (high - low) > relative_tolerance * high:
        middle = (low + high) / 2.0
        high, low = (middle, low) if fits(middle) else (high, middle)
    return high if high <= max_noise_multiplier else None


def _fits_budget(
    state: dict[str, Any] | None, target_epsilon: float, delta: float, accountant: str, sample_rate: float, steps: int
) -> Callable[[float], bool]:
    """sigma -> whether `steps` more steps at sigma keep the history within the target.

    For RDP the history's Renyi divergences are summed once (RDP composes additively, exactly as Opacus'
    RDPAccountant computes it), so each probe costs one `compute_rdp`; other accountants replay the history."""
    if accountant != "rdp":
        return lambda sigma: projected_epsilon(state, delta, accountant, sigma, sample_rate, steps) <= target_epsilon
    history_rdp = _history_rdp((state or {}).get("history", []))

    def fits(sigma: float) -> bool:
        total = history_rdp + steps * _one_step_rdp(float(sample_rate), float(sigma))
        return _rdp_epsilon(total, delta) <= target_epsilon

    return fits


@functools.lru_cache(maxsize=4096)
def _one_step_rdp(sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Renyi divergences at RDP_ALPHAS of one subsampled Gaussian step (Opacus' `compute_rdp` with steps=1).

    RDP composes additively and `compute_rdp` is exactly steps x this, so a history is a weighted sum of cached
    rows: the fractional orders are a slow Python series, and a round's set-up asks for the same (rate, sigma)
    pairs many times (budget check, noise search, ledger)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    row = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ALPHAS))
    row.setflags(write=False)
    return row


def _history_rdp(history: list) -> np.ndarray:
    """Summed Renyi divergences of an accountant history [[sigma, rate, steps], ...]."""
    total = np.zeros(len(RDP_ALPHAS))
    for sigma, rate, count in history:
        total = total + int(count) * _one_step_rdp(float(rate), float(sigma))
    return total


def accountant_state_to_json(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON form of an accountant `state_dict()` (tuples become lists)."""
    if state is None:
        return None
    return {
        "mechanism": str(state["mechanism"]),
        "history": [[float(sigma), float(rate), int(steps)] for sigma, rate, steps in state["history"]],
    }


def _check_mechanism(state: dict[str, Any], accountant: str) -> None:
    if state.get("mechanism", accountant) != accountant:
        raise ValueError(f"accountant state is for '{state.get('mechanism')}', not '{accountant}'")


def _rdp_epsilon(total_rdp: np.ndarray, delta: float) -> float:
    """Epsilon at `delta` of summed Renyi divergences at RDP_ALPHAS (Opacus' conversion)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    epsilon, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ALPHAS), rdp=total_rdp, delta=delta)
    return float(epsilon)


def _accountant_from_state(accountant: str, state: dict[str, Any] | None):
    instance = create_accountant(mechanism=accountant)
    if state is not None and state.get("history"):
        _check_mechanism(state, accountant)
        instance.load_state_dict({"mechanism": accountant, "history": [tuple(entry) for entry in state["history"]]})
    return instance


def epsilon_of_history(state: dict[str, Any] | None, delta: float, accountant: str = "rdp") -> float:
    """Epsilon spent by the recorded history (0.0 for none)."""
    if state is None or not state.get("history"):
        return 0.0
    if accountant == "rdp":  # what Opacus' RDPAccountant.get_epsilon computes, from the cached per-step rows
        _check_mechanism(state, accountant)
        return _rdp_epsilon(_history_rdp(state["history"]), delta)
    return float(_accountant_from_state(accountant, state).get_epsilon(delta, **_epsilon_kwargs(accountant)))


def projected_epsilon(
    state: dict[str, Any] | None,
    delta: float,
    accountant: str,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
) -> float:
    """Epsilon the history would reach after `steps` more DP-SGD steps at (noise_multiplier, sample_rate)."""
    history = list((state or {}).get("history", [])) + [[noise_multiplier, sample_rate, int(steps)]]
    return epsilon_of_history({"mechanism": accountant, "history": history}, delta, accountant)


class RecordDPOptimizer(DPOptimizer):
    """Opacus' flat-clipping DPOptimizer that clips per record: when a batch's images are grouped into records
    (`set_record_index`), each record's per-image gradients are summed first, so the clipped unit is the record.

    Opacus computes the per-image gradients (`grad_sample`, each the gradient of that image's own loss under
    `loss_reduction="mean"`); everything after the summation (clipping, noise, the division by the expected number of
    records, the accountant's step) is Opacus' own code.
    """

    def __init__(self, *args: Any, grouped: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.grouped = grouped
        self.record_index: torch.Tensor | None = None

    def set_record_index(self, record_index: torch.Tensor | None) -> None:
        """The record slot (0..records-1) of each row of the coming batch; required when the loader is grouped."""
        if self.grouped and record_index is None:
            raise ValueError(f"patient-level DP needs each batch's '{RECORD_INDEX}' (a PatientRecords loader)")
        self.record_index = record_index

    def clip_and_accumulate(self) -> None:
        if self.grouped:
            self._sum_grad_samples_per_record()
        super().clip_and_accumulate()

    def _sum_grad_samples_per_record(self) -> None:
        if self.record_index is None:
            raise ValueError(f"patient-level DP needs each batch's '{RECORD_INDEX}' (set_record_index)")
        index = self.record_index
        records = int(index.max()) + 1 if index.numel() else 0
        for param in self.params:
            per_row = self._get_flat_grad_sample(param)
            if per_row.shape[0] != index.shape[0]:
                raise ValueError(f"{per_row.shape[0]} per-image gradients for {index.shape[0]} indexed images")
            per_record = torch.zeros((records, *per_row.shape[1:]), dtype=per_row.dtype, device=per_row.device)
            param.grad_sample = per_record.index_add_(0, index.to(per_row.device), per_row)
        self.record_index = None


@dataclass
class PrivateTraining:
    """A model, optimizer and Poisson loader wrapped by Opacus for one training call."""

    module: nn.Module
    optimizer: RecordDPOptimizer
    loader: DataLoader
    engine: PrivacyEngine

    def epsilon(self, delta: float) -> float:
        return float(self.engine.accountant.get_epsilon(delta, **_epsilon_kwargs(self.engine.accountant.mechanism())))

    def accountant_state(self) -> dict[str, Any]:
        return accountant_state_to_json(copy.deepcopy(self.engine.accountant.state_dict()))  # type: ignore[return-value]

    def close(self) -> None:
        """Remove Opacus hooks and per-sample attributes from the wrapped model."""
        cleanup = getattr(self.module, "_close", None)
        if cleanup is not None:
            cleanup()


class TensorFieldsOnly:
    """Collate wrapper keeping only tensor fields, so Opacus can build empty Poisson batches (no id lists)."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any] | None) -> None:
        self.collate_fn = collate_fn if collate_fn is not None else default_collate

    def __call__(self, items: list[Any]) -> Any:
        if not items:  # an empty Poisson batch: `train_local` takes a pure-noise step for it
            return {}
        batch = self.collate_fn(items)
        if isinstance(batch, dict):
            return {key: value for key, value in batch.items() if torch.is_tensor(value)}
        return batch


def make_private(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, dp: DPTrainState
) -> PrivateTraining:
    """Wrap for DP-SGD over the loader's records (flat clipping, Poisson sampling), continuing the accountant in `dp`.

    The records are the loader dataset's items: patients for a `PatientRecords` dataset (each batch then carries
    `record_index`, which `train_local` hands to the optimizer), else single images. Sampling and noise use private
    generators (secret seeds unless `dp.insecure_seed` is set): Opacus' Poisson loader takes the wrapped loader's
    generator, the optimizer the noise generator.
    """
    device = next((p.device for p in model.parameters() if p.requires_grad), torch.device("cpu"))
    generators = dp_generators(device, dp.insecure_seed)
    collate = TensorFieldsOnly(loader.collate_fn)
    loader = DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        collate_fn=collate,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        generator=generators.sampling,
    )
    with warnings.catch_warnings():  # "Secure RNG turned off": we pass our own secretly seeded generators instead
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=dp.accountant)
    if dp.accountant_state is not None and dp.accountant_state.get("history"):
        engine.accountant = _accountant_from_state(dp.accountant, dp.accountant_state)
    module, dp_optimizer, dp_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True,
        noise_generator=generators.noise,
        grad_sample_mode="hooks",
    )
    # Opacus builds empty batches from the types of `dataset[0]`'s fields, which for dict items are the key strings
    # (torch.zeros(dtype=str) raises); ours returns an empty dict, which `train_local` turns into a noise-only step.
    dp_loader.collate_fn = collate
    # Opacus' own optimizer with per-record clipping in front of it, and the accountant hook `make_private` attached
    # to the one it built (same sample rate: one over the number of Poisson batches of records).
    record_optimizer = RecordDPOptimizer(
        dp_optimizer.original_optimizer,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=dp_optimizer.expected_batch_size,
        loss_reduction="mean",
        generator=generators.noise,
        grouped=isinstance(loader.dataset, PatientRecords),
    )
    record_optimizer.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=1 / len(dp_loader)))
    return PrivateTraining(module=module, optimizer=record_optimizer, loader=dp_loader, engine=engine)
