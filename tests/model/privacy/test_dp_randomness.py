"""Secret DP randomness: Poisson samples and noise are not reproducible from torch's global seed; the insecure seed is."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bcvlm_model.privacy.dp_randomness import SEED_BITS, dp_generators, secret_seed
from bcvlm_model.privacy.dp_training import DPTrainState, make_private

GLOBAL_SEED = 1234
"""What a server could know: the config seed plus the round number it chose."""


def _loader() -> DataLoader:
    features = torch.arange(200, dtype=torch.float32).unsqueeze(1)
    return DataLoader(TensorDataset(features, torch.zeros(200)), batch_size=20)


def _sampled_and_noise(insecure_seed: int | None) -> tuple[list[list[float]], torch.Tensor]:
    """One pass of Poisson batches and one pure-noise step (zero loss), after seeding torch's global stream."""
    torch.manual_seed(GLOBAL_SEED)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    private = make_private(
        model,
        optimizer,
        _loader(),
        DPTrainState(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, insecure_seed=insecure_seed),
    )
    try:
        sampled = [batch[0].squeeze(1).tolist() for batch in private.loader]
        before = model.weight.detach().clone()
        features = torch.ones(4, 1)
        (private.module(features) * 0.0).sum().backward()
        private.optimizer.step()
        noise = model.weight.detach() - before
    finally:
        private.close()
    return sampled, noise


def test_secret_seeds_use_all_64_bits_and_differ() -> None:
    seeds = {secret_seed() for _ in range(64)}
    assert len(seeds) == 64
    assert max(seeds).bit_length() > SEED_BITS - 8 and max(seeds) < 2**SEED_BITS


def test_replaying_a_fit_with_the_same_global_seed_samples_and_noises_differently() -> None:
    """The replay that worked before: seed torch as the site did (config seed + round) and run the same fit."""
    first_sample, first_noise = _sampled_and_noise(None)
    second_sample, second_noise = _sampled_and_noise(None)
    assert first_sample != second_sample
    assert not torch.equal(first_noise, second_noise)
    assert first_noise.abs().sum() > 0


def test_the_insecure_seed_reproduces_sample_and_noise() -> None:
    first_sample, first_noise = _sampled_and_noise(99)
    second_sample, second_noise = _sampled_and_noise(99)
    assert first_sample == second_sample
    assert torch.equal(first_noise, second_noise)


def test_generators_from_one_insecure_seed_are_independent_streams() -> None:
    generators = dp_generators("cpu", insecure_seed=5)
    assert generators.sampling.initial_seed() != generators.noise.initial_seed()


class _DictItems(torch.utils.data.Dataset):
    """Dict items like the mammography dataset's (tensors and a string id)."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        return {"x": torch.tensor([float(index)]), "labels": torch.zeros(1), "image_id": f"i{index}"}


def test_empty_poisson_batches_of_dict_items_come_out_empty() -> None:
    model = nn.Linear(1, 1)
    private = make_private(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        DataLoader(_DictItems(), batch_size=1),  # sample rate 1/3: (2/3)^3 of batches are empty
        DPTrainState(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5),
    )
    try:
        batches = [batch for _ in range(20) for batch in private.loader]
    finally:
        private.close()
    assert any(batch == {} for batch in batches)
    assert all(set(batch) <= {"x", "labels"} for batch in batches)
