"""SecAgg+ mask expansion: the whole seed counts (no 32-bit fold), same seed same masks, uniform in [0, range)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

from bcvlm_model.privacy.mask_expansion import expand_masks

SHAPES = [(64, 3), (), (1000,)]


def _same_fold_as(seed: bytes) -> bytes:
    """Another seed that Flower folds to the same 32 bits: flip the same bits in two of its 4-byte words."""
    delta = int.from_bytes(os.urandom(4), "little") | 1
    words = [int.from_bytes(seed[i : i + 4], "little") for i in range(0, len(seed), 4)]
    words[0] ^= delta
    words[1] ^= delta
    return b"".join(word.to_bytes(4, "little") for word in words)


def test_seeds_flower_folds_together_give_different_masks() -> None:
    seed = os.urandom(32)
    twin = _same_fold_as(seed)
    assert twin != seed
    # Flower 1.42 expands both to the same masks: only 32 bits of the seed matter there.
    assert all(
        np.array_equal(a, b) for a, b in zip(pseudo_rand_gen(seed, 2**32, SHAPES), pseudo_rand_gen(twin, 2**32, SHAPES))
    )
    ours, theirs = expand_masks(seed, 2**32, SHAPES), expand_masks(twin, 2**32, SHAPES)
    assert not np.array_equal(ours[0], theirs[0]) and not np.array_equal(ours[2], theirs[2])


def test_the_same_seed_gives_the_same_masks_in_the_given_shapes() -> None:
    seed = os.urandom(44)
    first, second = expand_masks(seed, 2**32, SHAPES), expand_masks(bytes(seed), 2**32, SHAPES)
    assert [a.shape for a in first] == SHAPES and all(a.dtype == np.int64 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("num_range", [2**32, 2**22, 1000, 2**40 + 3])
def test_masks_are_uniform_over_the_range(num_range: int) -> None:
    values = np.concatenate([a.ravel() for a in expand_masks(os.urandom(32), num_range, [(200_000,), (50_000,)])])
    assert values.min() >= 0 and values.max() < num_range
    # 16 equal-width bins: each holds 1/16 of 250k values (std ~ 120); 6 standard deviations of slack.
    counts = np.bincount((values.astype(np.float64) * 16 / num_range).astype(np.int64), minlength=16)
    assert np.abs(counts - 250_000 / 16).max() < 6 * np.sqrt(250_000 / 16)


@pytest.mark.parametrize(
    ("seed", "num_range", "error"),
    [
        (b"short", 2**32, ValueError),
        ("text seed, not bytes", 2**32, TypeError),
        (bytes(32), 1, ValueError),
        (bytes(32), 2**63, ValueError),
        (bytes(32), True, ValueError),
    ],
)
def test_bad_input_is_refused(seed: object, num_range: object, error: type) -> None:
    with pytest.raises(error):
        expand_masks(seed, num_range, [(3,)])  # type: ignore[arg-type]
