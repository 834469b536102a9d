"""Preprocessing agreement: a site trains from a cache prepared with the server's `preprocess`, or declines.

Without this check a site whose cache was prepared at another size decodes every DICOM on every epoch without
a word. Decoding on the fly stays possible, but only when the site's own config says so (`data.decode_on_the_fly`).
`cache_gap` is the same check for any list of images (`bcvlm simulate` runs it on the cohort before the sites).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from bcvlm_client.site_config import SiteConfig
from bcvlm_client.site_data import split_rows
from bcvlm_model.atomic_io import read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.cache import CONFIG_RECORD_NAME, cache_folder, safe_file_stem
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.preprocess_config import PreprocessConfig, preprocess_config_hash

MAX_LISTED_DIFFERENCES = 4


@dataclass(frozen=True)
class HeldPreprocessing:
    """One preprocessing found in a cache folder and how many of the wanted images it holds."""

    settings: dict[str, Any]
    config_hash: str
    covered: int


def describe_preprocess(settings: dict[str, Any], config_hash: str) -> str:
    """'512x256 (hash 0123abcd...)': the size a person recognises and the hash that identifies the settings."""
    return f"{settings.get('image_height')}x{settings.get('image_width')} (hash {config_hash})"


def differing_settings(wanted: dict[str, Any], held: dict[str, Any]) -> list[str]:
    """'key wanted-value vs held-value' for each preprocess key whose values differ (missing keys shown as None)."""
    return [
        f"{key} {wanted.get(key)!r} vs {held.get(key)!r}"
        for key in sorted(set(wanted) | set(held))
        if wanted.get(key) != held.get(key)
    ]


def _cached_stems(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.npy")} if folder.is_dir() else set()


def held_preprocessings(cache_dir: str | os.PathLike[str], image_ids: list[str]) -> list[HeldPreprocessing]:
    """Every preprocessing recorded under `cache_dir` (by `bcvlm prepare`) and how many of `image_ids` it holds."""
    stems = [safe_file_stem(image_id) for image_id in image_ids]
    held = []
    for record in sorted(Path(cache_dir).glob(f"*/{CONFIG_RECORD_NAME}")):
        present = _cached_stems(record.parent)
        held.append(
            HeldPreprocessing(
                dict(read_json(record).get("preprocess", {})),
                record.parent.name,
                sum(stem in present for stem in stems),
            )
        )
    return held


def _describe_held(held: HeldPreprocessing, wanted: dict[str, Any], total: int) -> str:
    differences = differing_settings(wanted, held.settings)
    shown = ", ".join(differences[:MAX_LISTED_DIFFERENCES])
    if len(differences) > MAX_LISTED_DIFFERENCES:
        shown += f" and {len(differences) - MAX_LISTED_DIFFERENCES} more"
    return f"{describe_preprocess(held.settings, held.config_hash)} covering {held.covered} of {total}" + (
        f" (differs in {shown}; wanted vs held)" if shown else ""
    )


def wanted_preprocess(preprocess: PreprocessConfig) -> str:
    """`describe_preprocess` of a PreprocessConfig."""
    return describe_preprocess(config_to_dict(preprocess), preprocess_config_hash(preprocess))


def cache_gap(
    image_ids: Iterable[str], cache_dir: str | os.PathLike[str], preprocess: PreprocessConfig, what: str = "images"
) -> str | None:
    """Why not every one of `image_ids` has an array made with `preprocess` under `cache_dir`, naming each
    preprocessing the cache does hold and its keys that differ (wanted vs held); None if all do.

    The text refers to `preprocess` as "it": callers name it first (`wanted_preprocess`)."""
    wanted_ids = [str(image_id) for image_id in image_ids]
    present = _cached_stems(cache_folder(cache_dir, preprocess))
    missing = sum(safe_file_stem(image_id) not in present for image_id in wanted_ids)
    if missing == 0:
        return None
    wanted = config_to_dict(preprocess)
    config_hash = preprocess_config_hash(preprocess)
    others = [held for held in held_preprocessings(cache_dir, wanted_ids) if held.config_hash != config_hash]
    held_text = "; ".join(_describe_held(held, wanted, len(wanted_ids)) for held in others) or "no other preprocessing"
    return (
        f"{missing} of {len(wanted_ids)} {what} have no array prepared with it under {Path(cache_dir)}; "
        f"the cache holds {held_text}"
    )


def preprocessing_mismatch(
    site: SiteConfig, preprocess: PreprocessConfig, train_image_ids: Iterable[str] | None = None
) -> str | None:
    """Why this site cannot train with the server's `preprocess` from its cache, naming both settings; None if it can.

    Always None when `data.decode_on_the_fly` is true (images the cache lacks are then decoded from DICOM).
    `train_image_ids` defaults to the training split of the site's manifest.
    """
    if site.data.decode_on_the_fly:
        return None
    if train_image_ids is None:
        train_image_ids = split_rows(read_manifest(site.data.manifest), site.data.train_split)["image_id"]
    asked = f"the server asks for preprocessing {wanted_preprocess(preprocess)}"
    hint = (
        "re-run `bcvlm prepare` with the server's preprocess settings, or set data.decode_on_the_fly: true to "
        "decode the DICOMs on every epoch (slow)"
    )
    if site.data.cache_dir is None:
        return f"{asked}; this site has no cache (data.cache_dir is null): {hint}"
    gap = cache_gap(train_image_ids, site.data.cache_dir, preprocess, what="training images")
    return None if gap is None else f"{asked}: {gap}. This site's cache does not match: {hint}"
