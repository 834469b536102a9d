"""frozen_feature_training: an epoch trained from the cache gives the update of one trained without it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.features.cached_model import FROZEN_IMAGE_KEY
from bcvlm_model.features.frozen_prefix import image_prefix_outputs, plan_frozen_prefix
from bcvlm_model.features.training_hook import frozen_feature_training
from bcvlm_model.parameters import get_trainable_state
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.privacy.dp_training import DPTrainState
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator
from bcvlm_model.training.local_train_config import LocalTrainConfig
from bcvlm_model.training.loops import train_local

HEIGHT, WIDTH = 64, 32
PREPROCESS = PreprocessConfig(image_height=HEIGHT, image_width=WIDTH)


class Cases(Dataset):
    """Records with distinct images, metadata and labels (some missing), as MammographyDataset yields them."""

    def __init__(self, count: int) -> None:
        generator = torch.Generator().manual_seed(3)
        self.items = [
            {
                "image": torch.randn(1, HEIGHT, WIDTH, generator=generator),
                "metadata": {
                    "age": 40.0 + 3 * index,
                    "view": ("CC", "MLO")[index % 2],
                    "laterality": "LR"[index % 2],
                    "implant": 0.0,
                    "density": ("A", "B", None)[index % 3],
                    "manufacturer": "Hologic",
                    "machine_id": str(index % 4),
                },
                "labels": torch.tensor([float(index % 2), float("nan") if index % 3 else float(index % 4 == 0)]),
                "image_id": f"rec-{index}",
            }
            for index in range(count)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


CANONICAL = TextConfig(paraphrase=False, shuffle_within_section=False, mask_probability=0.0)


def _loader(dataset: Dataset, augment: bool = True) -> DataLoader:
    collator = ReportCollator(TextConfig() if augment else CANONICAL, train=True, seed=11)
    return DataLoader(
        dataset, batch_size=4, shuffle=True, collate_fn=collator, generator=torch.Generator().manual_seed(5)
    )


def _max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert list(first) == list(second)
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.fixture(scope="module")
def dp_model(model_factory) -> torch.nn.Module:
    return make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0))


def _train_both(
    model: torch.nn.Module, tmp_path, dp: DPTrainState | None, augment: bool, epochs: int = 2
) -> tuple[dict, dict, dict]:
    dataset = Cases(10)
    cfg = LocalTrainConfig(local_steps=0, learning_rate=5e-2, optimizer="sgd", momentum=0.0)
    start = get_trainable_state(model)
    plain = copy.deepcopy(model)
    plain_loader = _loader(dataset, augment)
    for _ in range(epochs):
        train_local(plain, plain_loader, cfg, dp=copy.deepcopy(dp), seed=1)
    cached_model = copy.deepcopy(model)
    cached = frozen_feature_training(
        cached_model, _loader(dataset, augment), tmp_path / "cache", PREPROCESS, storage_dtype="float32"
    )
    assert cached is not None and cached.warmed == len(dataset) and cached.module.plan.text_cached is not augment
    for _ in range(epochs):
        train_local(cached.module, cached.loader, cfg, dp=copy.deepcopy(dp), seed=1)
    return start, get_trainable_state(plain), get_trainable_state(cached_model)


@pytest.mark.parametrize("augment", [True, False], ids=["augmented-reports", "canonical-reports-text-cached"])
def test_cached_epochs_give_the_plain_update(dp_model, tmp_path, augment) -> None:
    start, plain, cached = _train_both(dp_model, tmp_path, dp=None, augment=augment)
    assert _max_difference(start, plain) > 1e-3  # training moved the parameters
    assert _max_difference(plain, cached) < 1e-4


def test_a_wholly_frozen_backbone_trains_from_the_cache_with_the_plain_update(model_factory, tmp_path) -> None:
    # the DP setting of the demo: no backbone stage trains, only the fusion and the heads
    model = make_dp_ready(model_factory("vlm"), DPReadyConfig(image_trainable_stages=0, text_trainable_layers=0))
    assert plan_frozen_prefix(model).image_first_trainable == len(model.image_backbone.stages)
    dp = DPTrainState(noise_multiplier=0.3, max_grad_norm=0.05, delta=1e-5, insecure_seed=17)
    start, plain, cached = _train_both(model, tmp_path, dp=dp, augment=False)
    assert _max_difference(start, plain) > 1e-3
    assert _max_difference(plain, cached) < 1e-4


@pytest.mark.parametrize("augment", [True, False], ids=["augmented-reports", "canonical-reports-text-cached"])
def test_cached_epochs_give_the_plain_update_under_opacus_clipping(dp_model, tmp_path, augment) -> None:
    dp = DPTrainState(noise_multiplier=0.3, max_grad_norm=0.05, delta=1e-5, insecure_seed=17)
    start, plain, cached = _train_both(dp_model, tmp_path, dp=dp, augment=augment)
    assert _max_difference(start, plain) > 1e-3
    assert _max_difference(plain, cached) < 1e-4


def test_second_epoch_reads_every_record_from_the_cache(dp_model, tmp_path) -> None:
    cached = frozen_feature_training(
        copy.deepcopy(dp_model), _loader(Cases(6), augment=False), tmp_path / "cache", PREPROCESS
    )
    assert cached is not None
    cfg = LocalTrainConfig(local_steps=0, learning_rate=1e-3)
    train_local(cached.module, cached.loader, cfg)
    assert cached.collator.misses["text"] == 6  # canonical reports: computed once ...
    train_local(cached.module, cached.loader, cfg)
    assert cached.collator.misses == {"image": 0, "text": 6} and cached.collator.hits == {"image": 12, "text": 6}


def test_augmented_reports_run_the_text_encoder_every_step(dp_model, tmp_path) -> None:
    cached = frozen_feature_training(copy.deepcopy(dp_model), _loader(Cases(2)), tmp_path / "cache", PREPROCESS)
    assert "input_ids" in cached.module.input_keys and "text_hidden" not in cached.module.input_keys
    assert not any(path.name.startswith("text-") for path in (tmp_path / "cache").iterdir())


def test_extra_batch_fields_pass_through(dp_model, tmp_path) -> None:
    def with_patient(items):
        batch = _loader(Cases(1)).collate_fn(items)
        batch["patient_index"] = torch.arange(len(items))
        return batch

    loader = DataLoader(Cases(4), batch_size=4, collate_fn=with_patient)
    cached = frozen_feature_training(copy.deepcopy(dp_model), loader, tmp_path / "cache", PREPROCESS)
    batch = next(iter(cached.loader))
    assert torch.equal(batch["patient_index"], torch.arange(4))
    assert "image" not in batch and set(cached.module.input_keys) <= set(batch)


def test_nothing_frozen_means_no_cache(model_factory, tmp_path) -> None:
    model = model_factory("image_only")
    model.image_backbone.set_trainable_stages(-1)
    assert frozen_feature_training(model, _loader(Cases(2)), tmp_path / "cache", PREPROCESS) is None


def test_changed_frozen_weights_recompute_the_cache(dp_model, tmp_path) -> None:
    model = copy.deepcopy(dp_model)
    first = frozen_feature_training(model, _loader(Cases(3)), tmp_path / "cache", PREPROCESS)
    with torch.no_grad():
        next(model.image_backbone.stages[0].parameters()).mul_(1.01)
    second = frozen_feature_training(model, _loader(Cases(3)), tmp_path / "cache", PREPROCESS)
    assert (first.warmed, second.warmed) == (3, 3)
    assert first.collator.image_store.folder != second.collator.image_store.folder


def test_unchanged_model_reuses_the_cache_in_a_new_process_state(dp_model, tmp_path) -> None:
    frozen_feature_training(copy.deepcopy(dp_model), _loader(Cases(3)), tmp_path / "cache", PREPROCESS)
    again = frozen_feature_training(copy.deepcopy(dp_model), _loader(Cases(3)), tmp_path / "cache", PREPROCESS)
    assert again.warmed == 0


def test_an_image_changed_under_the_same_id_is_computed_afresh(dp_model, tmp_path) -> None:
    """A cohort generated or a cache prepared again keeps its image ids: the old entries must not be served."""
    model = copy.deepcopy(dp_model).eval()
    frozen_feature_training(model, _loader(Cases(3)), tmp_path / "cache", PREPROCESS, storage_dtype="float32")
    changed = Cases(3)
    changed.items[1] = {**changed.items[1], "image": changed.items[1]["image"] + 0.5}
    again = frozen_feature_training(model, _loader(changed), tmp_path / "cache", PREPROCESS, storage_dtype="float32")
    assert again.warmed == 1
    served = again.collator([changed.items[1]])[FROZEN_IMAGE_KEY][0]
    expected = image_prefix_outputs(model, changed.items[1]["image"][None])[0][0]
    assert torch.allclose(served, expected, atol=1e-5)
