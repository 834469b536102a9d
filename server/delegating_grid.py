"""DelegatingGrid: a Flower Grid that forwards every call to an inner Grid (base for wrappers that observe traffic)."""

from __future__ import annotations

from typing import Iterable

from flwr.app import Message
from flwr.serverapp.grid import Grid


class DelegatingGrid(Grid):
    """Forwards the whole Grid interface to `inner`; subclasses override only what they observe."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner

    def set_run(self, run_id: int) -> None:  # type: ignore[override]
        self.inner.set_run(run_id)

    @property
    def run(self):  # type: ignore[override]
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[override]
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def get_nodes(self):  # type: ignore[override]
        return self.inner.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.inner.send_and_receive(messages, timeout=timeout)
