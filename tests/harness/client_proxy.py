"""A Flower ClientProxy that is only a node id: what the strategy's aggregate_fit/aggregate_evaluate read of a site."""

from __future__ import annotations

from flwr.server.client_proxy import ClientProxy


class NodeProxy(ClientProxy):
    """A site as the strategy's aggregate methods see it (Flower's GridClientProxy carries `node_id` the same way)."""

    def __init__(self, node_id: int) -> None:
        super().__init__(str(node_id))
        self.node_id = node_id

    def get_properties(self, *args, **kwargs):  # pragma: no cover - never called
        raise NotImplementedError

    get_parameters = fit = evaluate = reconnect = get_properties
