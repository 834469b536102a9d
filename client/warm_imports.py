"""A site's train or evaluate process imports torch and the model code while it waits for the message's arrays.

Flower 1.42 starts a fresh ClientApp process for every message. A training or evaluation message carries the global
model (one packed array, `bcvlm_client.array_packing`, in chunk objects), which the process pulls from its SuperNode
while the SuperNode may still be fetching it from the center; handling the message then spent most of its 32-56 s
(loaded 2-core machine) importing torch, timm, transformers and Opacus. Importing those in a second thread during
the pull overlaps the two. The SecAgg+ key stages carry no arrays and still never import torch. The pull returns only once the imports are done, so no two threads import at
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
DEPTH_WITH_ARRAYS = 5
"""A message tree this deep carries arrays: message -> record dict -> array record -> array -> chunk. A key-stage
message stops at its config records (depth 3), whatever the number of them; counting objects instead would miss a
packed model, which is a handful of objects."""


def tree_depth(object_tree: Any) -> int:
    """Levels of a Flower `ObjectTree` (protobuf: `object_id`, `children`), the root counted as 1."""
    return 1 + max((tree_depth(child) for child in object_tree.children), default=0)


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
    min_depth: int = DEPTH_WITH_ARRAYS,
) -> Callable[..., Any]:
    """`pull_and_inflate(object_tree, ...)` that runs `warm` in a thread meanwhile when the tree is at least
    `min_depth` levels deep (it carries arrays), and returns once both are done."""

    def pull(object_tree: Any, *args: Any, **kwargs: Any) -> Any:
        if tree_depth(object_tree) < min_depth:
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
