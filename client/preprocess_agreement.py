"""Preprocessing agreement: a site trains from a cache prepared with the server's `preprocess`, or declines.

Without this check a site whose cache was prepared at another size decodes every DICOM on every epoch without
a word. Decoding on the fly stays possible, but only when the site's own config says so (`data.decode_on_the_fly`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from bcvlm_client.site_config import SiteConfig
from bcvlm_client.site_data import CacheCoverage, data_availability, split_rows
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.cache import cache_folder, safe_file_stem
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.preprocess_config import PreprocessConfig, preprocess_config_hash

MAX_LISTED_DIFFERENCES = 4


def describe_preprocess(settings: dict[str, Any], config_hash: str) -> str:
    """'512x256 (hash 0123abcd...)': the size a person recognises and the hash that identifies the settings."""
    return f"{settings.get('image_height')}x{settings.get('image_width')} (hash {config_hash})"


def differing_settings(server: dict[str, Any], site: dict[str, Any]) -> list[str]:
    """'key server-value vs site-value' for each preprocess key whose values differ (missing keys shown as None)."""
    return [f"{key} {server.get(key)!r} vs {site.get(key)!r}" for key in sorted(set(server) | set(site))
            if server.get(key) != site.get(key)]


def _describe_site_cache(cache: CacheCoverage, server: dict[str, Any], train_rows: int) -> str:
    differences = differing_settings(server, cache.preprocess)
    shown = ", ".join(differences[:MAX_LISTED_DIFFERENCES])
    if len(differences) > MAX_LISTED_DIFFERENCES:
        shown += f" and {len(differences) - MAX_LISTED_DIFFERENCES} more"
    return (f"{describe_preprocess(cache.preprocess, cache.folder.name)} covering {cache.train_cached} of "
            f"{train_rows} training images" + (f"; differs from the server's in {shown}" if shown else ""))


def preprocessing_mismatch(site: SiteConfig, preprocess: PreprocessConfig,
                           train_image_ids: Iterable[str] | None = None) -> str | None:
    """Why this site cannot train with the server's `preprocess` from its cache, naming both settings; None if it can.

    Always None when `data.decode_on_the_fly` is true (images the cache lacks are then decoded from DICOM).
    `train_image_ids` defaults to the training split of the site's manifest.
    """
    if site.data.decode_on_the_fly:
        return None
    if train_image_ids is None:
        manifest = read_manifest(site.data.manifest)
        train_image_ids = split_rows(manifest, site.data.train_split)["image_id"]
    wanted = [str(image_id) for image_id in train_image_ids]
    server_settings = config_to_dict(preprocess)
    server_text = describe_preprocess(server_settings, preprocess_config_hash(preprocess))
    if site.data.cache_dir is None:
        return (f"the server asks for preprocessing {server_text}; this site has no cache (data.cache_dir is null) and "
                "data.decode_on_the_fly is false")
    folder = cache_folder(site.data.cache_dir, preprocess)
    present = {path.stem for path in folder.glob("*.npy")} if folder.is_dir() else set()
    missing = sum(safe_file_stem(image_id) not in present for image_id in wanted)
    if missing == 0:
        return None
    caches = [cache for cache in data_availability(site).caches if cache.folder != folder]
    site_text = ("; ".join(_describe_site_cache(cache, server_settings, len(wanted)) for cache in caches)
                 or "no other preprocessing")
    return (f"the server asks for preprocessing {server_text}, but {missing} of {len(wanted)} training images have no "
            f"array prepared with it under {Path(site.data.cache_dir)}; this site's cache holds {site_text}. Re-run "
            "`bcvlm prepare` with the server's preprocess settings, or set data.decode_on_the_fly: true to decode "
            "the DICOMs on every epoch (slow)")
