"""The SecAgg+ field: a modulus that holds the sum of every site's quantised update, and the smallest unsigned type
that carries a masked value in it."""

from __future__ import annotations

import numpy as np
import pytest

from bcvlm_model.privacy.secagg_field import (
    pack_masked_vector,
    packed_dtype,
    secagg_modulus,
    unpack_masked_vector,
)


@pytest.mark.parametrize(
    ("quantization_range", "num_sites", "expected"),
    [(2**22, 3, 2**24), (2**22, 4, 2**23 * 4), (2**22, 1024, 2**33), (100, 2, 256)],
)
def test_modulus_is_the_smallest_power_of_two_above_the_largest_sum(
    quantization_range: int, num_sites: int, expected: int
) -> None:
    assert secagg_modulus(quantization_range, num_sites) == expected


@pytest.mark.parametrize(
    ("modulus", "dtype"), [(2**8, "uint8"), (2**9, "uint16"), (2**24, "uint32"), (2**32, "uint32"), (2**33, "uint64")]
)
def test_packed_type_is_the_smallest_unsigned_type_holding_the_field(modulus: int, dtype: str) -> None:
    assert packed_dtype(modulus) == np.dtype(dtype)


def test_default_settings_for_three_sites_travel_in_four_bytes_per_value() -> None:
    assert packed_dtype(secagg_modulus(2**22, 3)).itemsize == 4


def test_packing_round_trips_values_of_the_field() -> None:
    modulus = 2**24
    arrays = [np.array([0, 1, modulus - 1], dtype=np.int64), np.arange(12, dtype=np.int64).reshape(3, 4)]
    packed = pack_masked_vector(arrays, modulus)
    assert all(array.dtype == np.dtype("uint32") for array in packed)
    for got, sent in zip(unpack_masked_vector(packed), arrays):
        assert got.dtype == np.int64 and np.array_equal(got, sent)


def test_a_value_outside_the_field_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the field"):
        pack_masked_vector([np.array([2**24], dtype=np.int64)], 2**24)


def test_a_float_vector_is_refused() -> None:
    with pytest.raises(TypeError, match="not integers"):
        unpack_masked_vector([np.zeros(3)])


def test_too_many_sites_for_the_mask_range_is_refused_with_the_setting_to_change() -> None:
    with pytest.raises(ValueError, match="quantization_range"):
        secagg_modulus(2**40, 2**30)
