"""Cached batches: a text cache entry is named by the report's tokens, so a text-config change gives new entries."""

from __future__ import annotations

from dataclasses import replace

from bcvlm_model.features.cached_batches import text_entry_name
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator


def _entry_names(items: list[dict], cfg: TextConfig) -> list[str]:
    batch = ReportCollator(cfg, train=False)(items)
    counts = batch["attention_mask"].sum(dim=1).tolist()
    return [
        text_entry_name(batch["input_ids"][r, :n], batch["token_type_ids"][r, :n], batch["position_ids"][r, :n])
        for r, n in enumerate(counts)
    ]


def test_drop_site_fields_changes_every_text_cache_entry_name(make_items) -> None:
    items = make_items(3)
    with_fields = _entry_names(items, TextConfig())
    assert with_fields == _entry_names(items, TextConfig())  # the name is stable for one config
    without = _entry_names(items, replace(TextConfig(), drop_site_fields=True))
    assert all(a != b for a, b in zip(with_fields, without))
