"""Hierarchical metadata-to-text template: sections patient / exam / breast, paraphrases, canonical and augmented renderings."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from bcvlm_model.text.leakage_guard import check_report_fields
from bcvlm_model.text.report_config import SITE_IDENTIFYING_FIELDS, TEMPLATE_VERSION, TextConfig

NOT_RECORDED = "not recorded"
SECTIONS: tuple[str, ...] = ("patient", "exam", "breast")

VIEW_NAMES = {
    "CC": "craniocaudal",
    "MLO": "mediolateral oblique",
    "ML": "mediolateral",
    "LM": "lateromedial",
    "XCCL": "exaggerated craniocaudal",
    "AT": "axillary tail",
}
LATERALITY_NAMES = {"L": "left", "R": "right"}
DENSITY_NAMES = {
    "A": "almost entirely fatty",
    "B": "scattered fibroglandular",
    "C": "heterogeneously dense",
    "D": "extremely dense",
}


def is_missing(value: Any) -> bool:
    """True for None, NaN, pandas NA and blank strings."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null"):
        return True
    try:
        return bool(value != value)  # pandas.NA, numpy nan scalars
    except (TypeError, ValueError):
        return False


def _age(value: Any) -> str:
    return f"{int(round(float(value)))} years"


def _implant(value: Any) -> str:
    return "present" if float(value) >= 0.5 else "absent"


def _view(value: Any) -> str:
    code = str(value).strip().upper()
    return f"{VIEW_NAMES.get(code, code)} ({code})" if code in VIEW_NAMES else code


def _laterality(value: Any) -> str:
    code = str(value).strip().upper()[:1]
    return LATERALITY_NAMES.get(code, str(value))


def _density(value: Any) -> str:
    code = str(value).strip().upper().replace("DENSITY", "").strip()
    return f"{code}, {DENSITY_NAMES[code]}" if code in DENSITY_NAMES else code


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class FieldPhrases:
    """How one field is rendered: its section, a value formatter, its paraphrases ({v} = formatted value) and the
    paraphrases said when the value is missing (each a whole phrase: "age not recorded", never "not recorded old")."""

    section: str
    format_value: Callable[[Any], str]
    phrases: tuple[str, ...]
    missing_phrases: tuple[str, ...]


def _field(
    section: str, format_value: Callable[[Any], str], phrases: tuple[str, ...], missing_subjects: tuple[str, ...]
) -> FieldPhrases:
    """FieldPhrases whose missing-value phrases are "<subject> not recorded", one per subject."""
    return FieldPhrases(
        section, format_value, phrases, tuple(f"{subject} {NOT_RECORDED}" for subject in missing_subjects)
    )


FIELD_PHRASES: dict[str, FieldPhrases] = {
    "age": _field(
        "patient",
        _age,
        ("age {v}", "patient aged {v}", "{v} old"),
        ("age", "patient age"),
    ),
    "implant": _field(
        "patient",
        _implant,
        ("breast implant {v}", "implant {v}", "implants: {v}"),
        ("breast implant", "implant status"),
    ),
    "view": _field(
        "exam",
        _view,
        ("{v} view", "view {v}", "projection {v}"),
        ("view", "projection"),
    ),
    "manufacturer": _field(
        "exam",
        _plain,
        ("manufacturer {v}", "unit made by {v}", "vendor {v}"),
        ("manufacturer", "vendor"),
    ),
    "machine_id": _field(
        "exam",
        _plain,
        ("machine {v}", "machine id {v}", "acquired on machine {v}"),
        ("machine", "machine id"),
    ),
    "laterality": _field(
        "breast",
        _laterality,
        ("{v} breast", "side {v}", "laterality {v}"),
        ("laterality", "side"),
    ),
    "density": _field(
        "breast",
        _density,
        ("density {v}", "breast density {v}", "tissue density {v}"),
        ("density", "breast density"),
    ),
}
"""Phrase table of template version TEMPLATE_VERSION; fields not listed render as "<field> <value>" in "exam"."""

SECTION_TITLES = {"patient": "Patient", "exam": "Exam", "breast": "Breast"}


def _phrases_for(field_name: str) -> FieldPhrases:
    name = field_name.replace("_", " ")
    return FIELD_PHRASES.get(field_name, _field("exam", _plain, (name + " {v}",), (name,)))


class ReportTemplate:
    """Renders manifest metadata as a sectioned report; rng=None gives the one canonical rendering."""

    def __init__(self, cfg: TextConfig) -> None:
        if cfg.template_version != TEMPLATE_VERSION:
            raise ValueError(
                f"text.template_version={cfg.template_version!r} but this code renders template {TEMPLATE_VERSION!r}"
            )
        check_report_fields(cfg.fields, cfg.allow_label_fields)
        self.cfg = cfg
        self.fields = [name for name in cfg.fields if not (cfg.drop_site_fields and name in SITE_IDENTIFYING_FIELDS)]
        """The fields rendered: `cfg.fields` less the site-identifying ones under `drop_site_fields`."""

    def render(self, metadata: Mapping[str, Any], rng: random.Random | None = None) -> str:
        """Render `metadata`; with `rng` apply training augmentation (paraphrase, shuffle, field masking)."""
        cfg = self.cfg
        by_section: dict[str, list[str]] = {name: [] for name in SECTIONS}
        for field_name in self.fields:
            spec = _phrases_for(field_name)
            value = metadata.get(field_name)
            missing = is_missing(value)
            if missing and (cfg.missing == "omit" or field_name in cfg.omit_missing_fields):
                continue
            if rng is not None and cfg.mask_probability > 0 and rng.random() < cfg.mask_probability:
                continue
            # a missing value has its own whole phrases: "{v} old" with v = "not recorded" would read "not recorded old"
            choices = spec.missing_phrases if missing else spec.phrases
            phrase = choices[rng.randrange(len(choices))] if (rng is not None and cfg.paraphrase) else choices[0]
            by_section[spec.section].append(phrase if missing else phrase.format(v=spec.format_value(value)))
        parts = []
        for section in SECTIONS:
            phrases = by_section[section]
            if not phrases:
                continue
            if rng is not None and cfg.shuffle_within_section:
                rng.shuffle(phrases)
            parts.append(f"{SECTION_TITLES[section]}: {'; '.join(phrases)}.")
        return " ".join(parts) if parts else "No clinical information recorded."


def render_report(metadata: Mapping[str, Any], cfg: TextConfig, rng: random.Random | None = None) -> str:
    """Render one case's metadata as report text (rng None = canonical deterministic rendering for evaluation)."""
    return ReportTemplate(cfg).render(metadata, rng)
