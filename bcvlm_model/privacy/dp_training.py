"""DP-SGD with Opacus over records (patients, or single images), the accountant's history carried on.

A record is one item of the loader's dataset. Under patient-level DP (`PatientRecords`) Opacus' Poisson sampler
draws whole patients, `RecordDPOptimizer` sums each patient's per-image gradients before clipping, and the
accountant runs at the patient sample rate, so the (epsilon, delta) guarantee is per patient.

The accountant's history (noise multiplier, sample rate, steps) is plain data: `accountant_state` round-trips
through JSON, so the epsilon a site has spent accumulates across rounds and process restarts (`accounting` computes
epsilon and noise from it).

The Poisson sample and the noise come from private generators with secret seeds (`dp_randomness`), never from
torch's global stream. Opacus' `secure_mode` is not used (its `torchcsprng` has no release for current torch): the
generators are torch's Philox/Mersenne streams seeded with 64 secret bits, so they cannot be replayed by anyone who
lacks the seed, but they are not a CSPRNG (floating-point attacks on Gaussian sampling are out of scope here).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from bcvlm_model.config_io import to_enum
from bcvlm_model.data.patient_records import RECORD_INDEX, PatientRecords
from bcvlm_model.privacy.accountants import Accountant
from bcvlm_model.privacy.accounting import accountant_from_state, accountant_state_to_json, epsilon_kwargs
from bcvlm_model.privacy.dp_randomness import dp_generators
from bcvlm_model.privacy.dp_ready_config import DPUpdates


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
        return float(self.engine.accountant.get_epsilon(delta, **epsilon_kwargs(self.engine.accountant.mechanism())))

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
        engine.accountant = accountant_from_state(dp.accountant, dp.accountant_state)
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
