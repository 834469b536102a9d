"""InProcessGrid: a Flower Grid that delivers messages to ClientApps in this process (tests, benchmarks, debugging).

The real ServerApp and ClientApp objects run unchanged; only the transport is a function call. Errors raised by a
ClientApp become error replies as in Flower's runtime; nodes listed in `silent_nodes` never reply (a dead site).
With `count_timeouts`, `send_and_receive` then charges its full timeout to `waited_s` (the real grid would wait it
out; this one does not sleep, so a test can count the timeouts a round costs without spending them), and nodes added
to `departed` are no longer listed (as the SuperLink stops listing a site whose heartbeats stopped).
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Callable, Iterable, Mapping

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

SERVER_NODE_ID = 1


class InProcessGrid(Grid):
    """Delivers each message to `client_app(message, node_context)` synchronously."""

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: Mapping[int, dict],
        run_config: dict | None = None,
        run_id: int = 1,
        silent_nodes: Callable[[Message], bool] | None = None,
        count_timeouts: bool = False,
        departed: set[int] | None = None,
    ) -> None:
        self.client_app = client_app
        self.run_id = run_id
        self.contexts = {
            int(node_id): Context(
                run_id=run_id,
                node_id=int(node_id),
                node_config=dict(config),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node_id, config in node_configs.items()
        }
        self.silent_nodes = silent_nodes or (lambda message: False)
        self.count_timeouts = count_timeouts
        self.departed = departed if departed is not None else set()
        self.waited_s = 0.0
        """Timeouts `send_and_receive` charged for replies that never came, in seconds (the real grid's waits)."""
        self.client_seconds = 0.0
        """Seconds spent inside the ClientApps (the sites' work)."""
        TaskIdentity.run_id = run_id  # what Flower's runtime sets in a ServerApp process
        TaskIdentity.node_id = SERVER_NODE_ID
        TaskIdentity.task_id = run_id
        self._replies: dict[str, Message] = {}

    def set_run(self, run) -> None:  # type: ignore[override]
        return None

    @property
    def run(self) -> Run:  # type: ignore[override]
        return Run.create_empty(self.run_id)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [node for node in self.contexts if node not in self.departed]

    def get_nodes(self):  # type: ignore[override]
        return []

    def _deliver(self, message: Message) -> Message | None:
        if self.silent_nodes(message):
            return None
        context = self.contexts[message.metadata.dst_node_id]
        message = copy.deepcopy(message)  # a real transport gives every node its own copy (mods mutate content)
        started = time.monotonic()
        try:
            return copy.deepcopy(self.client_app(message, context))
        except Exception as exc:  # noqa: BLE001 - mirrors Flower's ClientApp runtime
            reason = str(type(exc)) + ":<'" + str(exc) + "'>"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)
        finally:
            self.client_seconds += time.monotonic() - started

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            message.metadata.__dict__["_src_node_id"] = SERVER_NODE_ID
            message.metadata.__dict__["_run_id"] = self.run_id
            message.metadata.__dict__["_created_at"] = time.time()
            reply = self._deliver(message)
            if reply is not None:
                self._replies[message_id] = reply
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(message_id) for message_id in list(message_ids) if message_id in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.pull_messages(self.push_messages(messages)))
        if self.count_timeouts and len(replies) < len(messages):
            if timeout is None:
                raise RuntimeError("a node never replies and send_and_receive has no timeout: it would wait forever")
            self.waited_s += timeout
        return replies
