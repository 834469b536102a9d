"""The synthetic public population: other scanners than the hospitals, no age recorded, its own prevalence."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from bcvlm_model.data.adapters.rsna import build_synthetic_manifest
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_model.data.synth.cohort import sample_cohort
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.generate import generate_cohort
from bcvlm_model.data.synth.sites import VENDORS
from bcvlm_model.text.report_config import TextConfig
from bcvlm_model.text.report_template import render_report


def _intensity_style(vendor: str) -> tuple[object, ...]:
    style = VENDORS[vendor]
    return (style.bits_stored, style.photometric, style.gamma, style.low_fraction, style.high_fraction, style.voi)


@pytest.fixture(scope="module")
def public_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("public")
    generate_cohort(SynthConfig(n_patients=3, height=64, width=32, population="public", seed=4), out, progress=False)
    return out


def test_public_vendors_and_intensity_styles_are_disjoint_from_the_sites() -> None:
    hospitals = set(sample_cohort(SynthConfig(n_patients=400, n_sites=6))["vendor"])
    public = set(sample_cohort(SynthConfig(n_patients=400, population="public"))["vendor"])
    assert public and hospitals
    assert not public & hospitals
    assert not {VENDORS[v].manufacturer for v in public} & {VENDORS[v].manufacturer for v in hospitals}
    assert not {_intensity_style(v) for v in public} & {_intensity_style(v) for v in hospitals}


def test_the_public_cohort_records_no_age(public_dir: Path) -> None:
    table = pd.read_csv(public_dir / "train.csv")
    assert len(table) == 12 and table["age"].isna().all()
    for path in sorted((public_dir / "train_images").rglob("*.dcm")):
        assert "PatientAge" not in pydicom.dcmread(path, stop_before_pixels=True), path


def test_the_hospital_cohort_records_age(tmp_path: Path) -> None:
    generate_cohort(SynthConfig(n_patients=2, height=64, width=32, seed=4), tmp_path, progress=False)
    assert pd.read_csv(tmp_path / "train.csv")["age"].notna().all()


@pytest.mark.parametrize("prevalence", [0.1, 0.45])
def test_the_public_cohort_has_the_configured_prevalence(prevalence: float) -> None:
    cohort = sample_cohort(SynthConfig(n_patients=1500, population="public", malignancy_prevalence=prevalence))
    breasts = cohort.drop_duplicates(["patient_id", "laterality"])
    assert breasts["cancer"].mean() == pytest.approx(prevalence, abs=0.03)


def test_a_public_report_says_age_not_recorded(public_dir: Path) -> None:
    manifest = build_synthetic_manifest(DataSourceConfig(kind="synthetic", root=str(public_dir))).manifest
    text = render_report(manifest.iloc[0].to_dict(), TextConfig())
    assert "age not recorded" in text and "not recorded old" not in text
