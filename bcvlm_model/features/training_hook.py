"""The one hook a training setup calls: wrap (model, loader) so the frozen prefix is read from the site's cache."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.features.cached_batches import FrozenFeatureCollator, warm_image_cache
from bcvlm_model.features.cached_model import FrozenFeatureModel
from bcvlm_model.features.frozen_cache import FrozenFeatureStore
from bcvlm_model.features.frozen_prefix import image_key_payload, plan_frozen_prefix, text_key_payload
from bcvlm_model.text.collator import ReportCollator

LOGGER = logging.getLogger("bcvlm_model.features")


@dataclass
class CachedTraining:
    """What to train instead of (model, loader): same parameters, batches with cached prefix outputs."""

    module: FrozenFeatureModel
    loader: DataLoader
    collator: FrozenFeatureCollator
    warmed: int
    """Image records computed by the up-front pass (0 when every record was cached already)."""


def reports_augmented(collate_fn: object) -> bool:
    """Whether the loader's collator renders augmented reports (an unknown collator counts as augmenting)."""
    if not isinstance(collate_fn, ReportCollator):
        return True
    cfg = collate_fn.template.cfg
    return bool(collate_fn.train and (cfg.paraphrase or cfg.shuffle_within_section or cfg.mask_probability > 0))


def frozen_feature_training(
    model: nn.Module,
    loader: DataLoader,
    cache_root: str | os.PathLike[str],
    preprocess: PreprocessConfig,
    storage_dtype: str = "float16",
    device: str | torch.device = "cpu",
    warm: bool = True,
) -> CachedTraining | None:
    """Wrap `model` and `loader` to train from cached frozen-prefix outputs; None when nothing is frozen.

    Call after the trainable set is final (DP-ready) and before the loop: the stores are keyed by the frozen
    weights as they are now. The image prefix is always cached (images are not augmented); the frozen text encoder
    only when the collator renders canonical reports (augmented renderings almost never repeat, so they run the
    encoder every step as without the cache). The returned loader keeps `loader`'s dataset, batch size, sampler and generator, runs
    its collate function first (augmentation and extra fields unchanged) and works in the main process (cached
    batches are cheap; misses run the frozen prefix on `device`). Opacus' `make_private` rebuilds it as usual.
    """
    plan = plan_frozen_prefix(model, reports_augmented(loader.collate_fn))
    if not plan.caches_anything:
        return None
    model.to(torch.device(device))
    root = Path(cache_root)
    image_store = (
        FrozenFeatureStore.open(root, "image", image_key_payload(model, plan, preprocess), storage_dtype)
        if plan.caches_image
        else None
    )
    text_store = (
        FrozenFeatureStore.open(root, "text", text_key_payload(model), storage_dtype) if plan.text_cached else None
    )
    warmed = 0
    if image_store is not None and warm:
        # Under patient-level DP the loader's items are patients (`PatientRecords`): warm from their images.
        images = getattr(loader.dataset, "images", loader.dataset)
        warmed = warm_image_cache(model, images, image_store, batch_size=8)
        if warmed:
            LOGGER.info(
                "frozen-feature cache: computed the image prefix of %d record(s) into %s", warmed, image_store.folder
            )
    collator = FrozenFeatureCollator(loader.collate_fn, model, plan, image_store, text_store)
    if loader.batch_size is None:  # a batch sampler of its own (e.g. one that groups by patient): keep it
        cached_loader = DataLoader(
            loader.dataset,
            batch_sampler=loader.batch_sampler,
            collate_fn=collator,
            num_workers=0,
            generator=loader.generator,
        )
    else:
        cached_loader = DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=loader.sampler,
            collate_fn=collator,
            num_workers=0,
            generator=loader.generator,
            drop_last=loader.drop_last,
        )
    module = FrozenFeatureModel(model, plan, (preprocess.image_height, preprocess.image_width))
    return CachedTraining(module=module, loader=cached_loader, collator=collator, warmed=warmed)
