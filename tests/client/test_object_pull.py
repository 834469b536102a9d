"""A ClientApp's object pulls: asked again every poll while the SuperNode is still fetching the object."""

from __future__ import annotations

import types

import pytest
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.supercore.inflatable.inflatable_utils import ObjectPullError, ObjectUnavailableError
from flwr.supernode.runtime import run_clientapp

from bcvlm_client.object_pull import prompt_pull, use_prompt_pulls


class FakeClock:
    """A clock that moves only when the code under test sleeps, so retry counts do not depend on the machine."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def unavailable_for(calls: int, content: bytes = b"arrays") -> tuple[list[str], types.FunctionType]:
    asked: list[str] = []

    def pull(object_id: str) -> bytes:
        asked.append(object_id)
        if len(asked) <= calls:
            raise ObjectUnavailableError(object_id)
        return content

    return asked, pull


def test_an_object_that_arrives_late_is_pulled_at_the_next_poll() -> None:
    clock = FakeClock()
    asked, pull = unavailable_for(3)
    assert prompt_pull(pull, poll_s=0.2, patience_s=60.0, clock=clock, sleep=clock.sleep)("obj") == b"arrays"
    assert asked == ["obj"] * 4
    assert clock.sleeps == [0.2, 0.2, 0.2]


def test_an_object_still_missing_after_the_patience_goes_to_flowers_backoff() -> None:
    clock = FakeClock()
    asked, pull = unavailable_for(1000)
    with pytest.raises(ObjectUnavailableError):
        prompt_pull(pull, poll_s=0.5, patience_s=2.0, clock=clock, sleep=clock.sleep)("obj")
    assert len(asked) == 5  # at 0, 0.5, 1.0, 1.5 and 2.0 s
    assert clock.now == pytest.approx(2.0)


def test_an_object_that_does_not_exist_fails_without_a_retry() -> None:
    clock = FakeClock()
    asked: list[str] = []

    def pull(object_id: str) -> bytes:
        asked.append(object_id)
        raise ObjectPullError(object_id, "the object could not be found.")

    with pytest.raises(ObjectPullError):
        prompt_pull(pull, clock=clock, sleep=clock.sleep)("obj")
    assert asked == ["obj"] and clock.sleeps == []


def test_flowers_clientapp_runner_pulls_through_the_prompt_pull() -> None:
    module = types.ModuleType("runner")
    module.make_pull_object_fn_protobuf = run_clientapp.make_pull_object_fn_protobuf
    assert use_prompt_pulls(module)
    answers = iter(
        [
            types.SimpleNamespace(object_found=True, object_available=False, object_content=b""),
            types.SimpleNamespace(object_found=True, object_available=True, object_content=b"arrays"),
        ]
    )
    pull = module.make_pull_object_fn_protobuf(lambda request: next(answers), Node(node_id=1), 1)
    assert pull("obj") == b"arrays"  # Flower's own function would have raised ObjectUnavailableError first


def test_a_runner_without_the_pull_factory_is_left_alone() -> None:
    module = types.ModuleType("runner")
    assert not use_prompt_pulls(module)
    assert not hasattr(module, "make_pull_object_fn_protobuf")
