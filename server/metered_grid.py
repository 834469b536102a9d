"""MeteredGrid: a Grid wrapper counting payload bytes sent to and received from each node (per round)."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp.grid import Grid

from bcvlm_server.delegating_grid import DelegatingGrid


def content_nbytes(content: RecordDict) -> int:
    """Payload size of a message: array bytes, bytes/str values, 8 bytes per other scalar."""
    total = 0
    for record in content.array_records.values():
        for array in record.values():
            total += len(array.data)
    for records in (content.config_records, content.metric_records):
        for record in records.values():
            for value in record.values():
                items = value if isinstance(value, list) else [value]
                for item in items:
                    total += len(item) if isinstance(item, (bytes, str)) else 8
    return total


class MeteredGrid(DelegatingGrid):
    """Delegates to `inner`; `take_counts()` returns and resets {node_id: {"up": bytes, "down": bytes}}."""

    def __init__(self, inner: Grid) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self._down: dict[int, int] = defaultdict(int)
        self._up: dict[int, int] = defaultdict(int)

    def _count_out(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        with self._lock:
            for message in messages:
                if message.has_content():
                    self._down[message.metadata.dst_node_id] += content_nbytes(message.content)
        return messages

    def _count_in(self, messages: Iterable[Message]) -> list[Message]:
        messages = list(messages)
        with self._lock:
            for message in messages:
                if message.has_content():
                    self._up[message.metadata.src_node_id] += content_nbytes(message.content)
        return messages

    def take_counts(self) -> dict[int, dict[str, int]]:
        with self._lock:
            nodes = set(self._down) | set(self._up)
            counts = {node: {"up": int(self._up.get(node, 0)), "down": int(self._down.get(node, 0))} for node in nodes}
            self._down.clear()
            self._up.clear()
        return counts

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(self._count_out(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._count_in(self.inner.pull_messages(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self._count_in(self.inner.send_and_receive(self._count_out(messages), timeout=timeout))
