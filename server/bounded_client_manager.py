"""BoundedClientManager: Flower's ClientManager whose `sample` waits at most a timeout for the quorum.

Flower's `SimpleClientManager.sample(n, min_num_clients)` waits up to a day for `min_num_clients` connected sites, so
one lost site blocks a round (and its checkpoint) when the quorum equals the number of sites. Here the wait is
bounded by `round_timeout_s`; then training is skipped if the quorum is still missing (the round is recorded as
failed), while evaluation goes on with the sites that are there.
"""

from __future__ import annotations

import logging

from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion

LOGGER = logging.getLogger("bcvlm_server.quorum")


class BoundedClientManager(ClientManager):
    """Delegates to `inner`; `sample` waits at most `timeout_s` for `min_num_clients`."""

    def __init__(self, inner: ClientManager, timeout_s: float, *, require_quorum: bool, stage: str) -> None:
        self.inner = inner
        self.timeout_s = float(timeout_s)
        self.require_quorum = require_quorum
        self.stage = stage
        self.shortfall: str | None = None
        """Set when the quorum was missing after the wait (what happened, for the round's record)."""

    def num_available(self) -> int:
        return self.inner.num_available()

    def register(self, client: ClientProxy) -> bool:
        return self.inner.register(client)

    def unregister(self, client: ClientProxy) -> None:
        self.inner.unregister(client)

    def all(self) -> dict[str, ClientProxy]:
        return self.inner.all()

    def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
        return self.inner.wait_for(num_clients, timeout=min(timeout, self.timeout_s))  # type: ignore[arg-type]

    def sample(
        self, num_clients: int, min_num_clients: int | None = None, criterion: Criterion | None = None
    ) -> list[ClientProxy]:
        wanted = num_clients if min_num_clients is None else min_num_clients
        if self.inner.wait_for(wanted, timeout=self.timeout_s):  # type: ignore[arg-type]
            return self.inner.sample(num_clients, min_num_clients, criterion)
        available = self.inner.num_available()
        self.shortfall = f"{available} of min {wanted} sites connected after {self.timeout_s:.0f} s"
        if self.require_quorum or available == 0:
            LOGGER.warning("%s: %s: skipped", self.stage, self.shortfall)
            return []
        LOGGER.warning("%s: %s: going on with those", self.stage, self.shortfall)
        return self.inner.sample(min(num_clients, available), available, criterion)
