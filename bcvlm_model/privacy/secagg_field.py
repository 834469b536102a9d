"""The SecAgg+ field for a round, and how a masked vector travels in it: the smallest power-of-two modulus that holds
the sum of every site's quantised update, and each masked value in the smallest unsigned integer type that holds
the modulus (4 bytes for up to 1024 sites at the default 2**22 quantisation levels, instead of Flower's int64).

No Flower import: the Flower wiring lives in bcvlm_client.secagg_mod and bcvlm_server.secagg_masks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MAX_MODULUS = 2**62
"""Largest modulus `bcvlm_model.privacy.mask_expansion.expand_masks` draws masks for."""
_UNSIGNED = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))


def secagg_modulus(quantization_range: int, num_sites: int) -> int:
    """Smallest power of two above `num_sites * quantization_range`.

    Flower quantises each site's (weight-scaled) update to integers in [0, quantization_range], and the server sums
    `num_sites` of them in the field: the modulus must exceed that largest sum, or the aggregate silently wraps.
    The quantised weight that travels with the update is bounded the same way (a weight up to `max_weight`).
    """
    for name, value in (("quantization_range", quantization_range), ("num_sites", num_sites)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    largest_sum = int(num_sites) * int(quantization_range)
    modulus = 1 << largest_sum.bit_length()  # > largest_sum, the smallest power of two that is
    if modulus > MAX_MODULUS:
        raise ValueError(
            f"{num_sites} sites x quantization_range {quantization_range} needs a modulus of {modulus}, "
            f"above the {MAX_MODULUS} masks are drawn for: lower secagg.quantization_range"
        )
    return modulus


def packed_dtype(modulus: int) -> np.dtype:
    """The smallest unsigned integer type that holds every value of the field [0, modulus)."""
    if isinstance(modulus, bool) or not isinstance(modulus, (int, np.integer)) or not 2 <= modulus <= MAX_MODULUS:
        raise ValueError(f"modulus must be an integer in [2, 2**62], got {modulus!r}")
    for dtype in _UNSIGNED:
        if int(modulus) - 1 <= np.iinfo(dtype).max:
            return dtype
    raise AssertionError("unreachable: MAX_MODULUS fits uint64")


def pack_masked_vector(arrays: Sequence[np.ndarray], modulus: int) -> list[np.ndarray]:
    """The masked vector (integers in [0, modulus)) as `packed_dtype(modulus)` arrays; refuses values outside."""
    dtype = packed_dtype(modulus)
    packed = []
    for index, array in enumerate(arrays):
        if array.dtype.kind not in "iu":
            raise TypeError(f"masked vector array {index} is {array.dtype}, not integers")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= modulus):
            raise ValueError(f"masked vector array {index} has values outside the field [0, {modulus})")
        packed.append(array.astype(dtype))
    return packed


def unpack_masked_vector(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Packed masked-vector arrays back to int64, the type Flower's server-side sum and unmasking work in."""
    unpacked = []
    for index, array in enumerate(arrays):
        if array.dtype.kind not in "iu":
            raise TypeError(f"masked vector array {index} is {array.dtype}, not integers")
        if array.dtype == np.dtype("<u8") and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"masked vector array {index} has values above int64")
        unpacked.append(array.astype(np.int64))
    return unpacked
