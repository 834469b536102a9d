"""The model on the wire: every model-carrying message holds the federated parameters as ONE flat float32 array.

Flower 1.42 moves each array of a message as its own objects, and a receiver that starts pulling before the sender
has pushed them all backs off exponentially (1 s doubling to 10 s, not configurable); one array instead of one per
parameter cuts those waits. The order is `federated_parameter_names`; the receiver knows the shapes (the server from
its global arrays, a site from its model), so only the values travel. Checkpoints and the server's `global_arrays`
stay per-parameter: only the wire format is packed. Shared by the server and the sites (the federation contract).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Shape = tuple[int, ...]


class PackedModelError(ValueError):
    """A model message is not one flat float array of the length the receiving model needs."""


def packed_length(shapes: Sequence[Shape]) -> int:
    """Number of values a packed model of parameters with these `shapes` holds."""
    return sum(math.prod(shape) for shape in shapes)


def pack_model(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The per-parameter `arrays` as the message's array list: one contiguous float32 vector."""
    if not arrays:
        return [np.zeros(0, dtype=np.float32)]
    return [np.concatenate([np.asarray(array, dtype=np.float32).ravel() for array in arrays])]


def packed_form(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The one vector of a model message's `arrays`, checked to be a packed model: a single 1-D float array."""
    if len(arrays) != 1:
        raise PackedModelError(f"a model message carries one packed array, this one carries {len(arrays)}")
    vector = np.asarray(arrays[0])
    if vector.ndim != 1:
        raise PackedModelError(f"the packed model must be 1-D, it has shape {vector.shape}")
    if vector.dtype.kind != "f":
        raise PackedModelError(f"the packed model has dtype {vector.dtype}, expected a float dtype")
    return vector


def packed_vector(arrays: Sequence[np.ndarray], expected_length: int) -> np.ndarray:
    """`packed_form(arrays)`, also checked to hold exactly `expected_length` values."""
    vector = packed_form(arrays)
    if vector.size != expected_length:
        raise PackedModelError(
            f"the packed model has {vector.size} values, the model has {expected_length} federated parameter values"
        )
    return vector


def unpack_model(arrays: Sequence[np.ndarray], shapes: Sequence[Shape]) -> list[np.ndarray]:
    """A model message's `arrays` (one packed vector) back to float32 arrays of `shapes`, in order."""
    vector = packed_vector(arrays, packed_length(shapes)).astype(np.float32, copy=False)
    unpacked = []
    offset = 0
    for shape in shapes:
        size = math.prod(shape)
        # copies, so no parameter keeps the whole received vector alive or aliases its neighbours
        unpacked.append(vector[offset : offset + size].reshape(shape).copy())
        offset += size
    return unpacked
