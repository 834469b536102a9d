"""The site's SecAgg+ mod: Flower's `secaggplus_mod` with full-strength masks (ChaCha20 keyed by the whole seed)
that takes part only when the server announces the same mask expansion, and confirms it in its setup reply; the
masked vector is uploaded in the smallest unsigned type that holds the round's field (uint32, not int64)."""

from __future__ import annotations

import importlib
from typing import Callable

from flwr.app import ConfigRecord, Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import secaggplus_mod
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation import secaggplus_utils
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY, MASK_PRG_NAME, expand_masks
from bcvlm_model.privacy.secagg_field import pack_masked_vector

_FLOWER_MOD = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")
FIELD_STATE_KEY = "bcvlm-secagg-field"
"""context.state config record holding the round's modulus (from the setup stage) for packing the upload."""


class MaskProtocolMismatch(RuntimeError):
    """The server does not announce bcvlm's mask expansion: it would unmask with another one (or Flower's weak one)."""


def use_full_strength_masks() -> None:
    """Make Flower's site-side SecAgg+ expand masks with `expand_masks` (process-wide, idempotent).

    Flower's mod calls the module-level name `pseudo_rand_gen` for the self mask and every pairwise mask; rebinding
    that one name changes the expansion and nothing else of the protocol.
    """
    current = _FLOWER_MOD.pseudo_rand_gen
    if current is expand_masks:
        return
    if current is not secaggplus_utils.pseudo_rand_gen:
        raise RuntimeError(f"Flower's secaggplus_mod.pseudo_rand_gen was replaced by {current!r}; refusing to mask")
    _FLOWER_MOD.pseudo_rand_gen = expand_masks


def full_strength_secaggplus_mod(
    msg: Message, context: Context, call_next: Callable[[Message, Context], Message]
) -> Message:
    """`secaggplus_mod` with `expand_masks`; refuses a setup stage that does not announce MASK_PRG_NAME."""
    use_full_strength_masks()
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS) if msg.has_content() else None
    setup = (
        msg.metadata.message_type == MessageType.TRAIN and configs is not None and configs.get(Key.STAGE) == Stage.SETUP
    )
    if setup:
        announced = configs.get(MASK_PRG_CONFIG_KEY)
        if announced != MASK_PRG_NAME:
            raise MaskProtocolMismatch(
                f"the server's SecAgg+ announces mask expansion {announced!r}, this site uses {MASK_PRG_NAME!r}: "
                "its unmasking would not match (a server without it uses Flower's 32-bit-seed Mersenne Twister); "
                "the center must run the same bcvlm version"
            )
        del configs[MASK_PRG_CONFIG_KEY]  # Flower's mod sees exactly its own setup keys
        modulus = int(configs[Key.MOD_RANGE])
    stage = configs.get(Key.STAGE) if configs is not None else None
    reply = secaggplus_mod(msg, context, call_next)
    if setup and reply.has_content():
        context.state.config_records[FIELD_STATE_KEY] = ConfigRecord({Key.MOD_RANGE: modulus})
        reply.content.config_records[RECORD_KEY_CONFIGS][MASK_PRG_CONFIG_KEY] = MASK_PRG_NAME
    if stage == Stage.COLLECT_MASKED_VECTORS and reply.has_content():
        _pack_upload(reply, context)
    return reply


def _pack_upload(reply: Message, context: Context) -> None:
    """Re-encode the masked vector Flower's mod made (int64 values in [0, modulus)) in the field's smallest type."""
    field = context.state.config_records.get(FIELD_STATE_KEY)
    if field is None:
        raise RuntimeError("SecAgg+ masked-vector stage without a setup stage at this site in this run")
    out = reply.content.config_records[RECORD_KEY_CONFIGS]
    arrays = [bytes_to_ndarray(data) for data in out[Key.MASKED_PARAMETERS]]
    out[Key.MASKED_PARAMETERS] = [
        ndarray_to_bytes(array) for array in pack_masked_vector(arrays, int(field[Key.MOD_RANGE]))
    ]
