"""Task timing: each message a ClientApp handles leaves one `task-timing` line with its stage and timestamps."""

from __future__ import annotations

import json
import logging
import time

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

from bcvlm_client import task_timing
from bcvlm_testing.inprocess_grid import InProcessGrid

NODE = 5


def _consume_configs(msg: Message, context, call_next):  # noqa: ANN001, ANN202 - as Flower's SecAgg+ mod does
    del msg.content.config_records[RECORD_KEY_CONFIGS]
    return Message(RecordDict(), reply_to=msg)


def test_one_line_per_message_with_stage_and_ordered_times(caplog: pytest.LogCaptureFixture) -> None:
    app = ClientApp(client_fn=lambda context: None, mods=[task_timing.task_timing_mod, _consume_configs])
    grid = InProcessGrid(app, {NODE: {}})
    message = grid.create_message(
        RecordDict({RECORD_KEY_CONFIGS: ConfigRecord({Key.STAGE: Stage.SHARE_KEYS})}), MessageType.TRAIN, NODE, "3"
    )
    task_timing.mark("main")
    task_timing.LOGGER.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=task_timing.LOGGER.name):
            grid.send_and_receive([message])
    finally:
        task_timing.LOGGER.removeHandler(caplog.handler)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith(task_timing.MARKER)]
    assert len(lines) == 1
    entry = json.loads(lines[0][len(task_timing.MARKER) :])
    assert (entry["type"], entry["round"], entry["stage"]) == ("train", "3", Stage.SHARE_KEYS)
    assert entry["process_start"] <= entry["main"] <= entry["handle_start"] <= entry["handle_end"] <= time.time()
