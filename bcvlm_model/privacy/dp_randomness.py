"""Secret DP randomness: the Poisson sample and the Gaussian noise come from private generators seeded by the OS CSPRNG.

Whoever could predict these streams could replay the sampling and subtract the noise from a DP update. The seeds
are therefore drawn fresh for every training call from `secrets` (the operating system's CSPRNG) and never derived
from anything a coordinating center knows or chooses (round numbers, config seeds, run ids). A reproducible stream
exists only for simulation, behind a seed that is named insecure wherever it is set.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

SEED_BITS = 64
"""`torch.Generator.manual_seed` takes an unsigned 64-bit seed: every seed uses all of it."""


def secret_seed() -> int:
    """A fresh 64-bit seed from the operating system's CSPRNG."""
    return secrets.randbits(SEED_BITS)


@dataclass(frozen=True)
class DPGenerators:
    """The two private streams of one DP training call."""

    sampling: torch.Generator
    """Poisson sampling of the training records (CPU: the sampler runs in the main process)."""
    noise: torch.Generator
    """Gaussian noise added to the clipped gradient sum (on the parameters' device)."""


def dp_generators(device: str | torch.device, insecure_seed: int | None = None) -> DPGenerators:
    """Private generators for sampling and noise: secret seeds, or derived from `insecure_seed` (simulation only)."""
    device = torch.device(device)
    if insecure_seed is None:
        sampling_seed, noise_seed = secret_seed(), secret_seed()
    else:
        mask = (1 << SEED_BITS) - 1
        sampling_seed, noise_seed = (2 * insecure_seed) & mask, (2 * insecure_seed + 1) & mask
    sampling = torch.Generator(device="cpu")
    sampling.manual_seed(sampling_seed)
    noise = torch.Generator(device=device)
    noise.manual_seed(noise_seed)
    return DPGenerators(sampling=sampling, noise=noise)
