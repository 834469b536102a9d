"""A site's train or evaluate process imports torch and the model code while it waits for the message's arrays.

Flower 1.42 starts a fresh ClientApp process for every message. A training or evaluation message carries the global
model as one object per array and chunk, which the process pulls one request at a time from its SuperNode while the
SuperNode is still fetching them from the center: 19-33 s of waiting per message on a loaded 2-core machine, after
which handling the message spent most of its 32-56 s importing torch, timm, transformers and Opacus. Importing
those in a second thread during the wait overlaps the two. The SecAgg+ key stages carry no arrays (a handful of
objects) and still never import torch. The pull returns only once the imports are done, so no two threads import at
the same time afterwards.
"""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType
from typing import Any, Callable, Sequence

LOGGER = logging.getLogger("bcvlm_client.warm_imports")
MODEL_MODULES: tuple[str, ...] = (
    "bcvlm_client.site_training",
    "bcvlm_client.process_model",
    "bcvlm_model.model",
    "timm",
    "transformers.models.bert.modeling_bert",
)
"""What a train or evaluate message needs (`SiteTrainer`, the model and the encoders' libraries)."""
MIN_OBJECTS_WITH_ARRAYS = 8
"""A message tree with this many objects carries arrays: a key-stage message is the message, its record dict and a
few config records."""


def count_objects(object_tree: Any) -> int:
    """Objects in a Flower `ObjectTree` (protobuf: `object_id`, `children`), the root included."""
    return 1 + sum(count_objects(child) for child in object_tree.children)


def import_quietly(modules: Sequence[str]) -> None:
    """Import `modules`; a failure is left for the real import to raise where it is needed."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the handling code imports the same module and reports the error
            LOGGER.debug("warm import of %s failed: %s", name, exc)


def warming_pull(
    pull_and_inflate: Callable[..., Any],
    warm: Callable[[], None],
    min_objects: int = MIN_OBJECTS_WITH_ARRAYS,
) -> Callable[..., Any]:
    """`pull_and_inflate(object_tree, ...)` that runs `warm` in a thread meanwhile when the tree has at least
    `min_objects` objects, and returns once both are done."""

    def pull(object_tree: Any, *args: Any, **kwargs: Any) -> Any:
        if count_objects(object_tree) < min_objects:
            return pull_and_inflate(object_tree, *args, **kwargs)
        warming = threading.Thread(target=warm, name="bcvlm-warm-imports", daemon=True)
        warming.start()
        try:
            return pull_and_inflate(object_tree, *args, **kwargs)
        finally:
            warming.join()

    return pull


def warm_model_imports_while_pulling(run_clientapp_module: ModuleType) -> bool:
    """Make Flower's ClientApp runner (`flwr.supernode.runtime.run_clientapp`) import MODEL_MODULES while it pulls a
    message that carries arrays. Returns False, changing nothing, where the runner has no
    `pull_and_inflate_object_from_tree` (another Flower version): only the speed depends on it."""
    pull_and_inflate = getattr(run_clientapp_module, "pull_and_inflate_object_from_tree", None)
    if not callable(pull_and_inflate):
        return False
    run_clientapp_module.pull_and_inflate_object_from_tree = warming_pull(
        pull_and_inflate, lambda: import_quietly(MODEL_MODULES)
    )
    return True
