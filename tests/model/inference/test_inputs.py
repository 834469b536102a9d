"""`bcvlm predict --input manifest.csv` on a manifest that `bcvlm prepare` wrote from a relative `--root`."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from bcvlm_model.cli import main as bcvlm_main
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.generate import generate_cohort


@pytest.fixture(scope="module")
def relative_root_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-patient synthetic cohort prepared with `--root cohort` (relative) from its parent folder."""
    base = tmp_path_factory.mktemp("relative_root")
    generate_cohort(SynthConfig(n_patients=2, height=128, width=64, seed=3), base / "cohort", progress=False)
    here = Path.cwd()
    os.chdir(base)
    try:
        code = bcvlm_main(
            ["prepare", "--source", "synthetic", "--root", "cohort", "--out", "prepared", "--size", "128x64", "--quiet"]
        )
    finally:
        os.chdir(here)
    assert code == 0
    return base / "prepared" / "manifest.csv"


@pytest.mark.parametrize("input_form", ["absolute", "relative"])
def test_predict_reads_a_manifest_prepared_from_a_relative_root_anywhere(
    relative_root_manifest: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    input_form: str,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the folder prepare ran in nor the manifest's folder
    manifest = (
        os.path.relpath(relative_root_manifest, elsewhere) if input_form == "relative" else str(relative_root_manifest)
    )
    out = tmp_path / "predictions.csv"
    code = bcvlm_main(
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--input",
            manifest,
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    images = pd.read_csv(out).query("level == 'image'")
    assert len(images) == 8 and images["p_malignancy"].notna().all()
    skipped = pd.read_csv(out.with_name("predictions.skipped.csv"))
    assert skipped.empty
