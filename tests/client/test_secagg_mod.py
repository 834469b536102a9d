"""The site's SecAgg+ mod takes part only when the server announces bcvlm's mask expansion, and confirms it."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from bcvlm_client.secagg_mod import full_strength_secaggplus_mod
from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY, MASK_PRG_NAME
from bcvlm_testing.inprocess_grid import InProcessGrid

NODE = 7


def _client_fn(context):  # noqa: ANN001, ANN202 - the setup stage never reaches the client
    raise AssertionError("the setup stage never reaches the ClientApp")


def _send_setup(announced: bytes | None) -> tuple[Message, InProcessGrid]:
    """One SecAgg+ setup message from the server to a site running the mod; returns the site's reply."""
    grid = InProcessGrid(ClientApp(client_fn=_client_fn, mods=[full_strength_secaggplus_mod]), {NODE: {}})
    configs = ConfigRecord(
        {
            Key.STAGE: Stage.SETUP,
            Key.SAMPLE_NUMBER: 3,
            Key.SHARE_NUMBER: 3,
            Key.THRESHOLD: 2,
            Key.CLIPPING_RANGE: 1.0,
            Key.TARGET_RANGE: 2**22,
            Key.MOD_RANGE: 2**32,
            Key.MAX_WEIGHT: 100.0,
        }
    )
    if announced is not None:
        configs[MASK_PRG_CONFIG_KEY] = announced
    message = grid.create_message(RecordDict({RECORD_KEY_CONFIGS: configs}), MessageType.TRAIN, NODE, "1")
    (reply,) = grid.send_and_receive([message])
    return reply, grid


def test_setup_reply_confirms_the_mask_expansion() -> None:
    reply, _ = _send_setup(MASK_PRG_NAME)
    configs = reply.content.config_records[RECORD_KEY_CONFIGS]
    assert configs[MASK_PRG_CONFIG_KEY] == MASK_PRG_NAME
    assert isinstance(configs[Key.PUBLIC_KEY_1], bytes) and isinstance(configs[Key.PUBLIC_KEY_2], bytes)


@pytest.mark.parametrize("announced", [None, b"chacha20-hkdf-sha256/v0"], ids=["flower-default", "other-version"])
def test_a_server_without_the_same_mask_expansion_is_refused(announced: bytes | None) -> None:
    reply, grid = _send_setup(announced)
    assert reply.has_error() and "MaskProtocolMismatch" in reply.error.reason
    assert not grid.contexts[NODE].state.config_records  # no SecAgg+ state (keys) was made for that server
