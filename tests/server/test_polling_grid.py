"""PollingGrid: replies come back as soon as the last one is in (not after Flower's 3 s sleep), a silent site costs
the timeout, and only Flower's HttpGrid gets wrapped."""

from __future__ import annotations

import time

from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp

from bcvlm_server.polling_grid import PollingGrid, with_fast_replies
from bcvlm_testing.inprocess_grid import InProcessGrid

NODES = (11, 12, 13)


class LateReplies(InProcessGrid):
    """Replies become visible only after `late_s` seconds (a site still working)."""

    def __init__(self, late_s: float, silent: int | None = None) -> None:
        app = ClientApp(
            client_fn=lambda context: None, mods=[lambda msg, ctx, call_next: Message(RecordDict(), reply_to=msg)]
        )
        super().__init__(
            app, {node: {} for node in NODES}, silent_nodes=lambda message: message.metadata.dst_node_id == silent
        )
        self.visible_at = time.monotonic() + late_s
        self.pulls = 0

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        self.pulls += 1
        return super().pull_messages(message_ids) if time.monotonic() >= self.visible_at else []


def _messages(grid: InProcessGrid) -> list[Message]:
    return [grid.create_message(RecordDict(), MessageType.QUERY, node, "1") for node in NODES]


def test_replies_return_shortly_after_the_last_one_arrives() -> None:
    inner = LateReplies(late_s=0.5)
    started = time.monotonic()
    replies = list(PollingGrid(inner, poll_s=0.1).send_and_receive(_messages(inner), timeout=30))
    assert sorted(reply.metadata.src_node_id for reply in replies) == list(NODES)
    assert time.monotonic() - started < 2.0  # Flower's HttpGrid would sleep 3 s before its second pull
    assert inner.pulls >= 2


def test_a_silent_site_costs_the_timeout_and_the_others_are_returned() -> None:
    inner = LateReplies(late_s=0.0, silent=12)
    started = time.monotonic()
    replies = list(PollingGrid(inner, poll_s=0.1).send_and_receive(_messages(inner), timeout=1.0))
    assert sorted(reply.metadata.src_node_id for reply in replies) == [11, 13]
    assert 1.0 <= time.monotonic() - started < 3.0


def test_only_flowers_http_grid_is_wrapped() -> None:
    inner = LateReplies(late_s=0.0)
    assert with_fast_replies(inner) is inner
