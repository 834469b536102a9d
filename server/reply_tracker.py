"""ReplyTracker: a Grid wrapper remembering, per round and site, how its last instruction of each kind ended.

Every workflow (plain fit, each SecAgg+ stage, evaluation) goes through `send_and_receive`, so this sees sites that
failed or went silent even when a stage is abandoned and the strategy never gets their replies.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterable, Iterator

from flwr.app import Message
from flwr.serverapp.grid import Grid

from bcvlm_server.delegating_grid import DelegatingGrid
from bcvlm_server.round_outcomes import scrub_error

ReplyRecord = dict[str, Any]
"""{"state": "ok" | "error" | "no_reply", "error": class name, "reason": short text} (error fields when relevant)."""


class ReplyTracker(DelegatingGrid):
    """Delegates to `inner`; `take_round(group_id)` returns and forgets {message type: {node id: ReplyRecord}}."""

    def __init__(self, inner: Grid) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._rounds: dict[str, dict[str, dict[int, ReplyRecord]]] = {}
        self._kind_override: str | None = None

    @contextlib.contextmanager
    def recording_as(self, kind: str) -> Iterator[None]:
        """Record the instructions sent inside the block as `kind` (secure evaluation travels as SecAgg+ "train"
        messages, but a site that fails it failed its evaluation, not its training)."""
        self._kind_override = kind
        try:
            yield
        finally:
            self._kind_override = None

    def _record(self, message: Message, record: ReplyRecord) -> None:
        group = str(message.metadata.group_id)
        kind = self._kind_override or str(message.metadata.message_type).split(".")[0]
        with self._lock:
            self._rounds.setdefault(group, {}).setdefault(kind, {})[int(message.metadata.dst_node_id)] = record

    def take_round(self, group_id: str) -> dict[str, dict[int, ReplyRecord]]:
        with self._lock:
            return self._rounds.pop(str(group_id), {})

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        waited = "no reply" if timeout is None else f"no reply (site lost or too slow; waited at most {timeout:.0f} s)"
        for message in messages:
            self._record(message, {"state": "no_reply", "reason": waited})
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        by_node = {int(message.metadata.dst_node_id): message for message in messages}
        for reply in replies:
            sent = by_node.get(int(reply.metadata.src_node_id))
            if sent is None:
                continue
            if reply.has_error():
                error_class, reason = scrub_error(reply.error.code, reply.error.reason)
                self._record(sent, {"state": "error", "error": error_class, "reason": reason})
            else:
                self._record(sent, {"state": "ok"})
        return replies
