"""The packed wire form of the model: one flat float32 vector that round-trips exactly; anything else is refused."""

from __future__ import annotations

import numpy as np
import pytest

from bcvlm_client.array_packing import PackedModelError, pack_model, packed_length, unpack_model

SHAPES = [(3, 2), (4,), (2, 1, 3), ()]


def _model(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]


def test_a_model_packs_into_one_float32_vector_of_all_its_values() -> None:
    packed = pack_model(_model())
    assert len(packed) == 1
    assert packed[0].shape == (packed_length(SHAPES),) == (6 + 4 + 6 + 1,)
    assert packed[0].dtype == np.float32


def test_pack_then_unpack_round_trips_exactly() -> None:
    model = _model()
    unpacked = unpack_model(pack_model(model), SHAPES)
    assert [array.shape for array in unpacked] == SHAPES
    for array, original in zip(unpacked, model):
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, original)


def test_unpacked_arrays_do_not_share_memory_with_the_message() -> None:
    packed = pack_model(_model())
    unpacked = unpack_model(packed, SHAPES)
    packed[0][:] = 0.0
    assert any(np.any(array) for array in unpacked)


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_vector_of_another_length_is_refused_naming_both_lengths(delta: int) -> None:
    vector = np.zeros(packed_length(SHAPES) + delta, dtype=np.float32)
    with pytest.raises(PackedModelError, match=f"has {vector.size} values, the model has {packed_length(SHAPES)} "):
        unpack_model([vector], SHAPES)


@pytest.mark.parametrize(
    "arrays",
    [
        _model(),
        pack_model(_model()) * 2,
        [],
        [np.zeros((1, 17), dtype=np.float32)],
        [np.zeros(17, dtype=np.int64)],
    ],
    ids=["per-parameter", "two-vectors", "no-array", "2d", "integers"],
)
def test_anything_but_one_flat_float_vector_is_refused(arrays: list[np.ndarray]) -> None:
    with pytest.raises(PackedModelError):
        unpack_model(arrays, SHAPES)
