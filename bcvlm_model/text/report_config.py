"""Configuration of the metadata report (fields, missing-value policy, augmentation, tokenizer length)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bcvlm_model.config_io import ConfigError, to_enum
from bcvlm_model.model_config import PACKAGE_DEFAULT

TEMPLATE_VERSION = "1.0"
"""Version of the phrase templates in `bcvlm_model.text.report_template`; stored in every checkpoint."""

DEFAULT_REPORT_FIELDS: tuple[str, ...] = (
    "age",
    "implant",
    "view",
    "manufacturer",
    "machine_id",
    "laterality",
    "density",
)
"""Manifest columns rendered by default (density only when present, unless missing="say")."""

SITE_IDENTIFYING_FIELDS: tuple[str, ...] = ("manufacturer", "manufacturer_model", "machine_id", "site_id", "source")
"""Fields that name the hospital, its vendor or its unit; `drop_site_fields` removes them from the report text."""


class MissingPolicy(StrEnum):
    """Values of `text.missing`: how a missing value appears in the report."""

    say = "say"
    """Rendered as "not recorded"."""
    omit = "omit"
    """The phrase is left out."""


@dataclass
class TextConfig:
    """How a manifest row becomes the short report the text encoder reads."""

    template_version: str = TEMPLATE_VERSION
    """Template version the config was written for; rendering refuses a different version."""
    fields: list[str] = field(default_factory=lambda: list(DEFAULT_REPORT_FIELDS))
    """Manifest columns to render, grouped into sections patient / exam / breast by the template."""
    allow_label_fields: bool = False
    """Allow fields that the leakage guard refuses (label/outcome columns). Only for leakage experiments."""
    missing: MissingPolicy = MissingPolicy.say
    """Missing values (see MissingPolicy)."""
    omit_missing_fields: list[str] = field(default_factory=lambda: ["density"])
    """Fields left out when missing even if missing="say" (density is training-only in RSNA data)."""
    paraphrase: bool = True
    """Training augmentation: pick a random paraphrase per field."""
    shuffle_within_section: bool = True
    """Training augmentation: shuffle phrase order inside each section."""
    mask_probability: float = 0.15
    """Training augmentation: probability of dropping a whole field from the report."""
    max_length: int = 64
    """Token budget (truncation length) for the report."""
    tokenizer: str = PACKAGE_DEFAULT
    """Tokenizer folder; PACKAGE_DEFAULT = the text encoder's folder (all-MiniLM-L6-v2 by default)."""
    drop_site_fields: bool = False
    """Ablation: leave SITE_IDENTIFYING_FIELDS out of the report even when listed in `fields`. They identify the
    hospital, so a model can read a site's prevalence from them: a pooled-AUC shortcut that does not rank cases."""

    def __post_init__(self) -> None:
        self.missing = to_enum(MissingPolicy, self.missing, "text.missing")
        if not 0.0 <= self.mask_probability <= 1.0:
            raise ConfigError(f"key 'text.mask_probability': must be in [0, 1], got {self.mask_probability}")


ReportTemplateConfig = TextConfig
"""Alias: the same dataclass under the name the template code uses."""
