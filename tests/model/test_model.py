"""BreastVLM and baselines: forward and backward at tiny size, modality use, checkpointing and bf16 options."""

from __future__ import annotations

import pytest
import torch

from bcvlm_model.losses import masked_multitask_bce
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS


def _inputs(batch: dict) -> dict:
    return {key: batch[key] for key in MODEL_INPUT_KEYS}


@pytest.mark.parametrize("kind", ["vlm", "image_only", "text_only", "late_concat", "vit"])
def test_every_kind_runs_forward_and_backward(kind: str, model_factory, tiny_batch: dict) -> None:
    model = model_factory(kind).train()
    logits = model(**_inputs(tiny_batch))
    assert logits.shape == (4, 2) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    masked_multitask_bce(logits, tiny_batch["labels"]).backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    without_grad = [name for name, p in trainable if p.grad is None or p.grad.abs().sum() == 0]
    assert without_grad == []
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


def test_vlm_reads_text_and_image_only_does_not(model_factory, tiny_batch: dict) -> None:
    other_text = dict(_inputs(tiny_batch))
    other_text["input_ids"] = torch.roll(tiny_batch["input_ids"], 1, dims=0)
    other_text["attention_mask"] = torch.roll(tiny_batch["attention_mask"], 1, dims=0)
    vlm, image_only = model_factory("vlm").eval(), model_factory("image_only").eval()
    with torch.no_grad():
        assert not torch.allclose(vlm(**_inputs(tiny_batch)), vlm(**other_text))
        assert torch.equal(image_only(**_inputs(tiny_batch)), image_only(**other_text))
        other_image = dict(_inputs(tiny_batch), image=torch.randn_like(tiny_batch["image"]))
        assert not torch.allclose(vlm(**_inputs(tiny_batch)), vlm(**other_image))


def test_vlm_has_co_attention_at_two_stages(model_factory) -> None:
    model = model_factory("vlm")
    assert len(model.co_attention) == 2 and model.image_backbone.tap_strides == [16, 32]


def test_gradient_checkpointing_gives_the_same_gradients(model_factory, tiny_batch: dict) -> None:
    plain = model_factory("vlm").train()
    checkpointed = model_factory("vlm").train()
    checkpointed.set_gradient_checkpointing(True)
    for model in (plain, checkpointed):
        masked_multitask_bce(model(**_inputs(tiny_batch)), tiny_batch["labels"]).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.requires_grad:
            assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_bf16_autocast_runs_and_returns_float32(model_factory, tiny_batch: dict) -> None:
    model = model_factory("vlm").eval()
    one = {key: value[:1] for key, value in _inputs(tiny_batch).items()}
    one["image"] = one["image"][:, :, :64, :32].contiguous()  # bf16 convolutions are slow on CPU
    with torch.no_grad():
        reference = model(**one)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            low = model(**one)
    assert low.dtype == torch.float32
    assert torch.allclose(low, reference, atol=0.1)
