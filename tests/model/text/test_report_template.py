"""Report template: canonical rendering is deterministic, augmentation varies, missing values are consistent."""

from __future__ import annotations

import random
import re
from dataclasses import replace

import pytest

from bcvlm_model.text import NOT_RECORDED, TEMPLATE_VERSION, TextConfig, render_report

CASE = {
    "age": 61.0,
    "view": "MLO",
    "laterality": "R",
    "implant": 0.0,
    "density": "C",
    "manufacturer": "Hologic",
    "machine_id": "49",
    "site_id": "1",
    "patient_id": "p1",
}


def test_canonical_rendering_is_deterministic_and_sectioned() -> None:
    text = render_report(CASE, TextConfig())
    assert text == render_report(dict(reversed(list(CASE.items()))), TextConfig())
    assert text == (
        "Patient: age 61 years; breast implant absent. Exam: mediolateral oblique (MLO) view; "
        "manufacturer Hologic; machine 49. Breast: right breast; density C, heterogeneously dense."
    )
    assert "p1" not in text  # only configured fields are rendered


def test_augmentation_varies_the_text_over_seeds() -> None:
    cfg = TextConfig(mask_probability=0.2)
    texts = {render_report(CASE, cfg, random.Random(seed)) for seed in range(40)}
    assert len(texts) > 20
    assert render_report(CASE, cfg, random.Random(7)) == render_report(CASE, cfg, random.Random(7))
    shuffled_only = replace(cfg, paraphrase=False, mask_probability=0.0)
    orders = {render_report(CASE, shuffled_only, random.Random(seed)) for seed in range(20)}
    assert len(orders) > 1 and all(sorted(t) == sorted(next(iter(orders))) for t in orders)


def test_field_masking_follows_the_configured_probability() -> None:
    cfg = TextConfig(mask_probability=0.5, paraphrase=False, shuffle_within_section=False)
    shown = [("age 61" in render_report(CASE, cfg, random.Random(seed))) for seed in range(400)]
    assert 0.4 < sum(shown) / len(shown) < 0.6
    assert (
        render_report(CASE, replace(cfg, mask_probability=1.0), random.Random(0)) == "No clinical information recorded."
    )


def test_missing_values_are_said_or_left_out_consistently() -> None:
    partial = {**CASE, "age": float("nan"), "manufacturer": None, "density": None}
    said = render_report(partial, TextConfig())
    assert said.count(NOT_RECORDED) == 2 and "age not recorded" in said and "density" not in said
    omitted = render_report(partial, TextConfig(missing="omit"))
    assert NOT_RECORDED not in omitted and "age" not in omitted and "manufacturer" not in omitted
    every_density = render_report(partial, TextConfig(omit_missing_fields=[]))
    assert "density not recorded" in every_density


def test_version_mismatch_and_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="template_version"):
        render_report(CASE, TextConfig(template_version="0.9"))
    with pytest.raises(ValueError, match="text.missing"):
        render_report(CASE, TextConfig(missing="blank"))
    assert TEMPLATE_VERSION == TextConfig().template_version


EVERY_FIELD = ("age", "implant", "view", "manufacturer", "machine_id", "laterality", "density", "site_id")
WHOLE_MISSING_PHRASE = re.compile(r"^[a-z][a-z ]* not recorded$")


def _phrases(text: str) -> list[str]:
    """The phrases of a rendered report: sections split on '. ', titles and separators removed."""
    phrases = []
    for section in text.rstrip(".").split(". "):
        phrases += section.split(": ", 1)[1].split("; ")
    return phrases


def test_every_missing_field_renders_a_whole_phrase_in_every_paraphrase() -> None:
    """Seen in real data: "not recorded old", "unit made by not recorded"."""
    cfg = TextConfig(fields=list(EVERY_FIELD), omit_missing_fields=[], mask_probability=0.0)
    missing = {name: None for name in EVERY_FIELD}
    texts = {render_report(missing, cfg)} | {render_report(missing, cfg, random.Random(seed)) for seed in range(200)}
    for text in texts:
        phrases = _phrases(text)
        assert len(phrases) == len(EVERY_FIELD), text
        assert all(WHOLE_MISSING_PHRASE.match(phrase) for phrase in phrases), text
    assert len(texts) > 10  # the paraphrases of missing values were exercised


def test_the_canonical_report_with_every_field_missing() -> None:
    cfg = TextConfig(fields=list(EVERY_FIELD), omit_missing_fields=[])
    assert render_report({}, cfg) == (
        "Patient: age not recorded; breast implant not recorded. Exam: view not recorded; manufacturer not recorded; "
        "machine not recorded; site id not recorded. Breast: laterality not recorded; density not recorded."
    )


SITE_CASE = {
    **CASE,
    "manufacturer": "Vendorex",
    "manufacturer_model": "Scanmaster",
    "site_id": "hospital-north",
    "source": "rsna",
    "machine_id": "unit-77",
}
SITE_VALUES = ("Vendorex", "Scanmaster", "hospital-north", "rsna", "unit-77")
ALL_SITE_FIELDS = [*TextConfig().fields, "manufacturer_model", "site_id", "source"]


def test_drop_site_fields_leaves_every_site_field_out_of_the_report() -> None:
    kept = TextConfig(fields=ALL_SITE_FIELDS, mask_probability=0.0)
    dropped = replace(kept, drop_site_fields=True)
    assert all(value in render_report(SITE_CASE, kept) for value in SITE_VALUES)  # they are there without the switch
    texts = [render_report(SITE_CASE, dropped)] + [
        render_report(SITE_CASE, dropped, random.Random(s)) for s in range(30)
    ]
    for text in texts:
        assert not any(value in text for value in SITE_VALUES), text
        assert not re.search(r"manufacturer|vendor|machine|unit made by|site|source", text), text
    assert "age 61 years" in texts[0] and "right breast" in texts[0]  # the other fields stay
