"""The model's input keys: the batch entries `BreastVLM.forward` takes, in its argument order (the one list)."""

from __future__ import annotations

MODEL_INPUT_KEYS: tuple[str, ...] = ("image", "input_ids", "attention_mask", "token_type_ids", "position_ids")
"""Positional inputs of `BreastVLM.forward`, as the ReportCollator names them in a batch."""

IMAGE_INPUT_KEYS: tuple[str, ...] = MODEL_INPUT_KEYS[:1]
"""The image part of MODEL_INPUT_KEYS."""

TEXT_INPUT_KEYS: tuple[str, ...] = MODEL_INPUT_KEYS[1:]
"""The tokenized-report part of MODEL_INPUT_KEYS (explicit [B, T] ids: Opacus needs them per sample)."""
