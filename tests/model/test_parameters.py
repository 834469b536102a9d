"""Federated parameters: stable names (trainable only), state round-trip, mismatch errors, Opacus wrapper unwrapped."""

from __future__ import annotations

import pytest
import torch

from bcvlm_model.model import federated_parameter_names, get_trainable_state, set_trainable_state


def test_names_are_trainable_only_and_stable(model_factory) -> None:
    model = model_factory("vlm")
    names = federated_parameter_names(model)
    assert names == federated_parameter_names(model_factory("vlm"))
    assert not any(name.startswith("text_encoder") for name in names)
    assert any(name.startswith("image_backbone.stages.7") for name in names)
    assert not any(name.startswith("image_backbone.stages.6") for name in names)
    assert names[-1] == "head.2.bias"


def test_state_round_trip_and_errors(model_factory) -> None:
    source, target = model_factory("late_concat"), model_factory("late_concat")
    state = {name: value + 0.5 for name, value in get_trainable_state(source).items()}
    set_trainable_state(target, state)
    assert all(torch.equal(a, state[n]) for n, a in get_trainable_state(target).items())
    with pytest.raises(KeyError, match="missing"):
        set_trainable_state(target, dict(list(state.items())[1:]))
    first = next(iter(state))
    with pytest.raises(ValueError, match=first):
        set_trainable_state(target, {**state, first: torch.zeros(3)})


def test_opacus_wrapper_does_not_change_names(model_factory) -> None:
    from opacus.grad_sample import GradSampleModule

    model = model_factory("image_only")
    names = federated_parameter_names(model)
    wrapped = GradSampleModule(model)
    try:
        assert federated_parameter_names(wrapped) == names
    finally:
        wrapped._close()
