"""FrozenFeatureStore: keyed folders, round trip in the storage dtype, atomic entries, damaged entries not trusted."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from bcvlm_model.features.frozen_cache import FrozenFeatureStore, weights_fingerprint


def test_round_trip_in_float32_is_exact(tmp_path) -> None:
    store = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a"}, "float32")
    tensors = [torch.randn(3, 4, 2), torch.randn(5)]
    store.save("rec/1", tensors)
    loaded = store.load("rec/1")
    assert [torch.equal(a, b) for a, b in zip(tensors, loaded)] == [True, True]


def test_float16_storage_rounds_to_half_precision(tmp_path) -> None:
    store = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a"}, "float16")
    tensor = torch.randn(64)
    store.save("r", [tensor])
    loaded = store.load("r")[0]
    assert loaded.dtype == torch.float32 and torch.equal(loaded, tensor.half().float())


def test_a_different_key_opens_a_different_folder(tmp_path) -> None:
    first = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a", "preprocess": {"h": 8}})
    first.save("r", [torch.ones(2)])
    second = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a", "preprocess": {"h": 16}})
    assert second.folder != first.folder and second.load("r") is None


def test_storage_dtype_is_part_of_the_key(tmp_path) -> None:
    assert (
        FrozenFeatureStore.open(tmp_path, "text", {"w": 1}, "float16").folder
        != FrozenFeatureStore.open(tmp_path, "text", {"w": 1}, "float32").folder
    )


def test_unknown_storage_dtype_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"invalid value 'bfloat16', expected one of float16, float32"):
        FrozenFeatureStore.open(tmp_path, "image", {}, "bfloat16")


def test_a_failed_write_leaves_the_old_entry_and_no_partial_file(tmp_path, monkeypatch) -> None:
    store = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a"}, "float32")
    store.save("r", [torch.zeros(4)])

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        store.save("r", [torch.ones(4)])
    assert torch.equal(store.load("r")[0], torch.zeros(4))
    assert sorted(path.name for path in store.folder.iterdir()) == ["cache_key.json", "r.npz"]


def test_a_damaged_entry_reads_as_missing(tmp_path) -> None:
    store = FrozenFeatureStore.open(tmp_path, "image", {"weights": "a"}, "float32")
    store.save("r", [torch.zeros(4)])
    store.entry_path("r").write_bytes(b"not a zip")
    assert store.load("r") is None


def test_weights_fingerprint_sees_a_changed_weight() -> None:
    layer = nn.Linear(3, 2)
    before = weights_fingerprint([layer])
    with torch.no_grad():
        layer.weight[0, 0] += 1e-6
    assert weights_fingerprint([layer]) != before
