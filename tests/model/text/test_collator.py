"""ReportCollator: explicit [B,T] ids, NCHW images, labels kept with NaN, eval deterministic, train augmented."""

from __future__ import annotations

import torch

from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator


def test_batch_has_explicit_ids_and_contiguous_images(tiny_batch: dict) -> None:
    batch, length = tiny_batch["input_ids"].shape
    assert batch == 4
    for key in ("attention_mask", "token_type_ids", "position_ids"):
        assert tiny_batch[key].shape == (batch, length) and tiny_batch[key].dtype == torch.long
    assert torch.equal(tiny_batch["position_ids"][2], torch.arange(length))
    assert tiny_batch["image"].shape == (4, 1, 128, 64) and tiny_batch["image"].is_contiguous()
    assert torch.isnan(tiny_batch["labels"][0, 1]) and tiny_batch["labels"][1, 0] == 1.0
    assert tiny_batch["image_id"] == ["img-0", "img-1", "img-2", "img-3"]


def test_eval_is_deterministic_and_train_augments(make_items) -> None:
    items = make_items(3)
    evaluation = ReportCollator(TextConfig(), train=False)
    assert torch.equal(evaluation(items)["input_ids"], evaluation(items)["input_ids"])
    train = ReportCollator(TextConfig(), train=True, seed=3)
    reports = [tuple(train.render_batch(items)) for _ in range(1)]
    for _ in range(6):
        train(items)
        reports.append(tuple(train.render_batch(items)))
    assert len(set(reports)) > 1
    replay = ReportCollator(TextConfig(), train=True, seed=3)
    assert tuple(replay.render_batch(items)) == reports[0]


def test_max_length_truncates(make_items) -> None:
    collator = ReportCollator(TextConfig(), max_length=8)
    assert collator(make_items(2))["input_ids"].shape[1] == 8
