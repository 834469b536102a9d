"""SecAgg+ mask expansion with a cryptographic PRG: the whole seed keys ChaCha20 (no 32-bit fold, no Mersenne Twister).

Flower 1.42's `pseudo_rand_gen` XORs a mask seed (a 32-byte secret, or a 44-byte shared key) down to 32 bits and
feeds it to NumPy's Mersenne Twister: 2**32 possible masks per seed, and MT's output reveals its state. Here the
seed's every byte goes through HKDF-SHA256 into a 256-bit ChaCha20 key, and the keystream gives the mask words.
Both ends of the protocol (the site's mod and the server's unmasking) must use this function: `MASK_PRG_NAME` is
what they announce to each other. No Flower import: the Flower wiring lives in bcvlm_client / bcvlm_server.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASK_PRG_NAME = b"chacha20-hkdf-sha256/v1"
"""Name of this mask expansion, announced by the server in the SecAgg+ setup stage and confirmed by each site
(bytes, like the protocol's other fields: a site's replies carry no free text)."""
MASK_PRG_CONFIG_KEY = "bcvlm-mask-prg"
"""SecAgg+ setup-stage config key (server -> site) and reply key (site -> server) carrying MASK_PRG_NAME."""
MIN_SEED_BYTES = 16
"""Shorter seeds are refused: Flower's seeds are 32 random bytes or a 32-byte HKDF output in base64."""

_KDF_INFO = b"bcvlm secagg+ mask expansion v1"
_NONCE = bytes(16)
"""ChaCha20's 16-byte counter+nonce: a fixed start is safe because every key is used for one mask expansion only
(a fresh seed or key pair per site and round); both ends must derive the same stream from the same seed."""
_MAX_RANGE = 2**62
_SLACK_BYTES = 64


def mask_key(seed: bytes) -> bytes:
    """The 256-bit ChaCha20 key for `seed`: HKDF-SHA256 over all of the seed's bytes."""
    if not isinstance(seed, (bytes, bytearray)):
        raise TypeError(f"a mask seed is bytes, got {type(seed).__name__}")
    if len(seed) < MIN_SEED_BYTES:
        raise ValueError(f"a mask seed needs at least {MIN_SEED_BYTES} bytes, got {len(seed)}")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(bytes(seed))


def expand_masks(seed: bytes, num_range: int, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    """Masks uniform in [0, num_range) as int64 arrays of `shapes`, the same for the same seed.

    A drop-in for Flower's `pseudo_rand_gen(seed, num_range, dimensions_list)`. For a power-of-two range up to
    2**32 (Flower's default modulus is 2**32) each value is one 32-bit keystream word, exactly uniform; otherwise a
    64-bit word reduced modulo the range (bias below num_range / 2**64).
    """
    if isinstance(num_range, bool) or not isinstance(num_range, (int, np.integer)) or not 2 <= num_range <= _MAX_RANGE:
        raise ValueError(f"num_range must be an integer in [2, 2**62], got {num_range!r}")
    num_range = int(num_range)
    encryptor = Cipher(algorithms.ChaCha20(mask_key(seed), _NONCE), mode=None).encryptor()
    power_of_two = num_range & (num_range - 1) == 0
    word = np.dtype("<u4") if power_of_two and num_range <= 2**32 else np.dtype("<u8")
    counts = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    total = sum(counts)
    # One keystream per seed, split over the arrays in order. update_into writes it straight into the word buffer
    # (the input is zeros, so the ciphertext is the keystream); it may need one block of slack at the end.
    words = np.empty(total * word.itemsize + _SLACK_BYTES, dtype=np.uint8)
    encryptor.update_into(bytes(total * word.itemsize), words)
    stream = words[: total * word.itemsize].view(word)
    masks, start = [], 0
    for shape, count in zip(shapes, counts):
        chunk = stream[start : start + count]
        start += count
        if word.itemsize == 4:
            values = chunk.astype(np.int64)
            if num_range < 2**32:
                values &= num_range - 1
        else:
            values = (chunk % np.uint64(num_range)).astype(np.int64)
        masks.append(values.reshape(shape))
    return masks
