"""Shared fixtures for model tests: the tiny preset's models built once per session, a collated batch."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pytest
import torch

from bcvlm_model.model_config import ImageEncoderConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator
from bcvlm_testing.federation_sites import tiny_model_config

TINY_HEIGHT, TINY_WIDTH = 128, 64


def case_items(count: int, seed: int = 0) -> list[dict]:
    """Dataset-shaped items with varied metadata and partially missing labels."""
    generator = torch.Generator().manual_seed(seed)
    views, sides, densities = ["CC", "MLO"], ["L", "R"], ["A", "B", None, "D"]
    items = []
    for index in range(count):
        labels = torch.tensor([float(index % 2), float("nan") if index % 3 == 0 else 1.0])
        items.append(
            {
                "image": torch.randn(1, TINY_HEIGHT, TINY_WIDTH, generator=generator),
                "metadata": {
                    "age": 45.0 + 7 * index,
                    "view": views[index % 2],
                    "laterality": sides[(index // 2) % 2],
                    "implant": float(index == 3),
                    "density": densities[index % 4],
                    "manufacturer": "Hologic",
                    "machine_id": str(48 + index),
                },
                "labels": labels,
                "image_id": f"img-{index}",
            }
        )
    return items


@pytest.fixture(scope="session")
def model_factory() -> Callable[[str], torch.nn.Module]:
    """Build (once per session and kind) a tiny model with the real pretrained encoders; returns a fresh copy."""
    import copy

    from bcvlm_model.model import build_model

    cache: dict[str, torch.nn.Module] = {}

    def make(kind: str = "vlm") -> torch.nn.Module:
        if kind not in cache:
            torch.manual_seed(0)
            cfg = (
                tiny_model_config(kind)
                if kind != "vit"
                else replace(
                    tiny_model_config("image_only"),
                    image_encoder=ImageEncoderConfig(
                        name="vit_small_patch16_224",
                        weights="none",
                        trainable_stages=-1,
                        feature_stages=[-1],
                    ),
                )
            )
            cache[kind] = build_model(cfg)
        return copy.deepcopy(cache[kind])

    return make


@pytest.fixture(scope="session")
def make_items() -> Callable[..., list[dict]]:
    """`case_items(count, seed=0)` as a fixture (test modules do not import conftest)."""
    return case_items


@pytest.fixture(scope="session")
def eval_collator() -> ReportCollator:
    return ReportCollator(TextConfig(), train=False)


@pytest.fixture(scope="session")
def tiny_batch(eval_collator: ReportCollator) -> dict:
    return eval_collator(case_items(4))
