"""Model imports warmed while a ClientApp pulls a message that carries arrays, and only then."""

from __future__ import annotations

import sys
import threading
import types

from flwr.proto.message_pb2 import ObjectTree  # pylint: disable=E0611
from flwr.supernode.runtime import run_clientapp

from bcvlm_client.warm_imports import (
    import_quietly,
    tree_depth,
    warm_model_imports_while_pulling,
    warming_pull,
)


def tree(n_arrays: int) -> ObjectTree:
    """Message -> record dict -> a config record and an array record of `n_arrays` arrays, one chunk each."""
    arrays = [ObjectTree(object_id=f"a{i}", children=[ObjectTree(object_id=f"c{i}")]) for i in range(n_arrays)]
    records = [ObjectTree(object_id="config"), ObjectTree(object_id="arrays", children=arrays)]
    return ObjectTree(object_id="message", children=[ObjectTree(object_id="recorddict", children=records)])


def test_the_depth_counts_the_levels_down_to_the_chunks() -> None:
    assert tree_depth(tree(0)) == 3
    assert tree_depth(tree(1)) == 5


def test_a_packed_model_message_warms() -> None:
    calls: list[str] = []
    pull = warming_pull(lambda object_tree: "message", lambda: calls.append("warm"))
    assert pull(tree(1)) == "message"  # one packed array in one chunk: six objects
    assert calls == ["warm"]


def test_a_message_with_arrays_warms_while_it_is_pulled() -> None:
    seen: dict[str, bool] = {}
    warmed = threading.Event()
    pulled = threading.Event()

    def warm() -> None:
        warmed.set()
        seen["warm saw the pull"] = pulled.wait(5)

    def pull(object_tree: ObjectTree, fn: str) -> str:
        seen["pull saw the warm-up"] = warmed.wait(5)
        pulled.set()
        return f"{object_tree.object_id} via {fn}"

    assert warming_pull(pull, warm)(tree(5), "pull_object") == "message via pull_object"
    assert seen == {"pull saw the warm-up": True, "warm saw the pull": True}  # each ran while the other waited


def test_a_key_stage_message_does_not_warm() -> None:
    calls: list[str] = []
    pull = warming_pull(lambda object_tree: "message", lambda: calls.append("warm"))
    assert pull(tree(0)) == "message"
    assert calls == []


def test_the_pull_waits_for_the_warm_up_to_finish() -> None:
    finished = threading.Event()

    def warm() -> None:
        threading.Event().wait(0.2)
        finished.set()

    warming_pull(lambda object_tree: None, warm)(tree(5))
    assert finished.is_set()


def test_a_module_that_fails_to_import_is_left_for_the_real_import() -> None:
    import_quietly(["bcvlm_no_such_module_for_the_test", "json"])
    assert "bcvlm_no_such_module_for_the_test" not in sys.modules and "json" in sys.modules


def test_flowers_clientapp_runner_pulls_through_the_warming_pull() -> None:
    module = types.ModuleType("runner")
    module.pull_and_inflate_object_from_tree = run_clientapp.pull_and_inflate_object_from_tree
    assert warm_model_imports_while_pulling(module)
    assert module.pull_and_inflate_object_from_tree is not run_clientapp.pull_and_inflate_object_from_tree


def test_a_runner_without_the_pull_function_is_left_alone() -> None:
    module = types.ModuleType("runner")
    assert not warm_model_imports_while_pulling(module)
    assert not hasattr(module, "pull_and_inflate_object_from_tree")
