"""A site's ClientApp pulls its message's arrays from the SuperNode every 0.2 s while they are still arriving.

Flower 1.42's SuperNode hands a message to the SuperExec before it has pulled the message's objects (its arrays)
from the SuperLink, and the `flwr-clientapp` process then asks for each missing object with an exponential backoff
of about 1, 2, 4, 8 and then 10 s (`flwr.supercore.inflatable.inflatable_utils.pull_objects`). For a training or
evaluation message, whose arrays take the center seconds to push, the process sat ~25 s in that backoff after the
arrays were there (19-33 s per site and exchange, measured on a loaded 2-core machine). Asking again every 0.2 s
for a bounded time, then leaving the rest to Flower's own backoff, costs one local HTTP request per poll.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Callable

from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

OBJECT_POLL_S = 0.2
OBJECT_PATIENCE_S = 120.0
"""How long one object is asked for every OBJECT_POLL_S before Flower's backoff (and its limits) take over."""

PullObjectFn = Callable[[str], bytes]


def prompt_pull(
    pull_object: PullObjectFn,
    poll_s: float = OBJECT_POLL_S,
    patience_s: float = OBJECT_PATIENCE_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PullObjectFn:
    """`pull_object` retried every `poll_s` while it raises ObjectUnavailableError, for at most `patience_s`; then
    the error goes to the caller. Any other error (an object that does not exist) goes to the caller at once."""
    if poll_s <= 0 or patience_s < 0:
        raise ValueError(f"poll_s must be > 0 and patience_s >= 0, got {poll_s} and {patience_s}")

    def pull(object_id: str) -> bytes:
        deadline = clock() + patience_s
        while True:
            try:
                return pull_object(object_id)
            except ObjectUnavailableError:
                if clock() >= deadline:
                    raise
                sleep(poll_s)

    return pull


def use_prompt_pulls(run_clientapp_module: ModuleType) -> bool:
    """Make Flower's ClientApp runner (`flwr.supernode.runtime.run_clientapp`) pull objects through `prompt_pull`.

    Returns False, changing nothing, where the module has no `make_pull_object_fn_protobuf` (another Flower
    version): only the speed depends on it."""
    make = getattr(run_clientapp_module, "make_pull_object_fn_protobuf", None)
    if not callable(make):
        return False

    def make_prompt_pull_object_fn(*args: object, **kwargs: object) -> PullObjectFn:
        return prompt_pull(make(*args, **kwargs))

    run_clientapp_module.make_pull_object_fn_protobuf = make_prompt_pull_object_fn
    return True
