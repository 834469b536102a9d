"""PollingGrid: `send_and_receive` that looks for replies every 1 s instead of the 3 s Flower's HttpGrid sleeps."""

from __future__ import annotations

import json
import logging
import time
from typing import Iterable

from flwr.app import Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.serverapp.grid import Grid
from flwr.superlink.grid import HttpGrid

from bcvlm_server.delegating_grid import DelegatingGrid

LOGGER = logging.getLogger("bcvlm_server.polling_grid")
GRID_TIMING_MARKER = "grid-timing "
REPLY_POLL_S = 1.0
"""Seconds between the ServerApp's reply polls. Flower 1.42's HttpGrid.send_and_receive hard-codes 3 s (no flag or
env var), so every exchange of a round (plain fit, four SecAgg+ stages, evaluate) waited up to 3 s after the last
site had replied. Not faster: every poll is a write transaction on the SuperLink's SQLite (`get_message_res` claims
replies with UPDATE ... RETURNING) under a 5 s lock timeout, and 10 polls a second made a CPU-starved center fail
with "database is locked" (seen at load 15 on 2 cores)."""


class PollingGrid(DelegatingGrid):
    """Same protocol as Flower's `send_and_receive` (push all, pull until every reply is in or `timeout`), built
    on the Grid's public push_messages/pull_messages with a short poll interval."""

    def __init__(self, inner: Grid, poll_s: float = REPLY_POLL_S) -> None:
        super().__init__(inner)
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s!r}")
        self.poll_s = float(poll_s)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        started = time.time()
        # A message the SuperLink refused gets no id (Flower logs it): it can never be answered, so not waited for.
        pushed = [message_id for message_id in self.inner.push_messages(messages) if message_id]
        pushed_at = time.time()
        pending = set(pushed)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        reply_at: dict[str, float] = {}
        while pending:
            pulled = list(self.inner.pull_messages(pending))
            replies.extend(pulled)
            reply_at.update((reply.metadata.reply_to_message_id, time.time()) for reply in pulled)
            pending.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
            if not pending:
                break
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(self.poll_s, remaining))
            else:
                time.sleep(self.poll_s)
        _log_timing(messages, started, pushed_at, reply_at)
        return replies


def _log_timing(messages: list[Message], started: float, pushed_at: float, reply_at: dict[str, float]) -> None:
    """One `grid-timing {json}` line per exchange: when it was pushed and when each site's reply was seen."""
    first = messages[0] if messages else None
    configs = (
        first.content.config_records.get(RECORD_KEY_CONFIGS) if first is not None and first.has_content() else None
    )
    LOGGER.info(
        "%s%s",
        GRID_TIMING_MARKER,
        json.dumps(
            {
                "type": None if first is None else str(first.metadata.message_type),
                "round": None if first is None else str(first.metadata.group_id),
                "stage": None if configs is None else str(configs.get(Key.STAGE)),
                "push_start": started,
                "pushed": pushed_at,
                "messages": {
                    str(m.metadata.message_id): {
                        "node": int(m.metadata.dst_node_id),
                        "reply": reply_at.get(str(m.metadata.message_id)),
                    }
                    for m in messages
                },
            }
        ),
    )


def with_fast_replies(grid: Grid) -> Grid:
    """`grid` wrapped in PollingGrid when it is Flower's HttpGrid (deployment); other grids are returned as they are."""
    return PollingGrid(grid) if isinstance(grid, HttpGrid) else grid
