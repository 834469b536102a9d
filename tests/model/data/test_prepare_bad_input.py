"""A folder mixing good and bad files: good ones reach the manifest, each bad one lands in rejects with a reason."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from bcvlm_model.data.prepare import StrictRejectError, run_prepare
from bcvlm_model.data.prepare_cli import main as prepare_main
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, make_mg_dataset, write_mg


@pytest.fixture
def mixed_folder(tmp_path):
    root = tmp_path / "in"
    tags = dict(ImageLaterality="L", ViewPosition="CC", PatientAge="055Y", Manufacturer="ACME")
    good = [write_mg(root / f"good{i}.dcm", breast_pixels(64, 32), **tags) for i in range(3)]
    (root / "corrupt.dcm").write_bytes(b"\x00" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    (root / "notes.dcm").write_text("patient list, not an image\n")
    data = write_mg(root / "truncated.dcm", breast_pixels(64, 32), **tags).read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) - 2000])
    write_mg(root / "ct.dcm", breast_pixels(64, 32), Modality="CT", ImageLaterality="L")
    no_pixels = make_mg_dataset(breast_pixels(64, 32), ImageLaterality="L")
    del no_pixels.PixelData
    no_pixels.save_as(root / "nopixels.dcm", enforce_file_format=True)
    shutil.copy(root / "good1.dcm", root / "sub_copy.dcm")  # same SOPInstanceUID -> duplicate
    return root, good


EXPECTED_REASONS = {
    "corrupt": "corrupt or non-image DICOM",
    "notes": "not a DICOM file",
    "truncated": "pixel data could not be decoded",
    "ct": "not a mammogram: Modality 'CT'",
    "nopixels": "no pixel data",
}


def test_every_bad_file_is_rejected_with_its_reason(tmp_path, mixed_folder):
    root, good = mixed_folder
    summary = run_prepare(
        DataSourceConfig(kind="dicom_folder", root=str(root)),
        PreprocessConfig(image_height=32, image_width=16),
        tmp_path / "out",
        progress=False,
    )
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv", dtype=str)
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv", dtype=str)
    assert summary.finished and summary.rejected == len(rejects) == 6
    assert sorted(manifest["path"].map(lambda p: p.rsplit("/", 1)[-1])) == sorted(p.name for p in good)
    by_file = {p.rsplit("/", 1)[-1].removesuffix(".dcm"): r for p, r in zip(rejects["path"], rejects["reason"])}
    for name, reason in EXPECTED_REASONS.items():
        assert reason in by_file[name], (name, by_file[name])
    duplicate = rejects.loc[rejects["reason"] == "duplicate image_id"]
    assert len(duplicate) == 1
    assert len(list((tmp_path / "out" / "cache").rglob("*.npy"))) == 3


def test_strict_makes_a_reject_fatal(tmp_path, mixed_folder, capsys):
    root, _ = mixed_folder
    with pytest.raises(StrictRejectError, match="--strict"):
        run_prepare(
            DataSourceConfig(kind="dicom_folder", root=str(root)),
            PreprocessConfig(image_height=32, image_width=16),
            tmp_path / "out",
            strict=True,
            progress=False,
        )
    code = prepare_main(
        [
            "--source",
            "dicom_folder",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "o2"),
            "--size",
            "32x16",
            "--strict",
            "--quiet",
        ]
    )
    assert code == 1 and "--strict" in capsys.readouterr().err


def test_cli_counts_and_wrong_paths(tmp_path, mixed_folder, capsys):
    root, _ = mixed_folder
    code = prepare_main(
        ["--source", "dicom_folder", "--root", str(root), "--out", str(tmp_path / "o"), "--size", "32x16", "--quiet"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "6 rejected" in out and "no pixel data: 1" in out
    code = prepare_main(["--source", "rsna", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")])
    assert code == 2 and "root: folder not found" in capsys.readouterr().err


def test_the_summary_counts_each_input_once_on_first_and_repeated_runs(tmp_path, mixed_folder, capsys):
    """9 files: 3 good, 6 rejected (one of them, the truncated file, only at the pixel stage)."""
    root, _ = mixed_folder
    args = ["--source", "dicom_folder", "--root", str(root), "--out", str(tmp_path / "o"), "--size", "32x16", "--quiet"]
    for ready in ("3 ready (3 processed now, 0 from the cache)", "3 ready (0 processed now, 3 from the cache)"):
        assert prepare_main(args) == 0
        out = capsys.readouterr().out
        assert "9 images: " + ready + ", 6 rejected" in out, out


def test_table_rejects_are_grouped_by_reason_not_by_line(tmp_path, capsys):
    root = tmp_path / "rsna"
    (root / "train_images" / "p1").mkdir(parents=True)
    (root / "train.csv").write_text(
        "site_id,patient_id,image_id,laterality,view\n1,p1,i1,X,CC\n1,p1,i2,Q,CC\n1,p1,i3,L,CC\n"
    )
    write_mg(root / "train_images" / "p1" / "i3.dcm", breast_pixels(64, 32))
    assert (
        prepare_main(
            ["--source", "rsna", "--root", str(root), "--out", str(tmp_path / "o"), "--size", "32x16", "--quiet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 images: 1 ready" in out and "2 rejected (unparseable laterality: 2)" in out, out
