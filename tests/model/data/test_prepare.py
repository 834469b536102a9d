"""`bcvlm prepare`: a run killed halfway then restarted yields the same cache as an uninterrupted run; config-keyed cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from bcvlm_model.data.cache import cache_folder, load_cached_array
from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.prepare import run_prepare
from bcvlm_model.data.prepare_cli import main as prepare_main
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.source_config import DataSourceConfig

CFG = PreprocessConfig(image_height=64, image_width=32)

KILLER = textwrap.dedent("""
    import os, signal, sys
    from bcvlm_model.data.prepare import run_prepare
    from bcvlm_model.data.preprocess_config import PreprocessConfig
    from bcvlm_model.data.source_config import DataSourceConfig
    done = []
    def hook(image_id):
        done.append(image_id)
        if len(done) == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
    run_prepare(DataSourceConfig(kind="synthetic", root=sys.argv[1]), PreprocessConfig(image_height=64, image_width=32),
                sys.argv[2], workers=1, progress=False, on_image_done=hook)
""")


def _arrays(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


def test_killed_run_restarted_equals_uninterrupted_run(tmp_path, synth_cohort_dir):
    source = DataSourceConfig(kind="synthetic", root=str(synth_cohort_dir))
    reference = run_prepare(source, CFG, tmp_path / "ref", workers=1, progress=False)
    assert reference.finished and reference.processed == 24

    out = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(synth_cohort_dir), str(out), "9"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert killed.returncode == -9, killed.stderr
    folder = cache_folder(out / "cache", CFG)
    assert len(_arrays(folder)) == 9 and not (out / "manifest.csv").exists()
    (folder / ".100008.npy.abc.tmp").write_bytes(b"half a file")  # what a kill inside a write leaves

    resumed = run_prepare(source, CFG, out, workers=2, progress=False)
    assert resumed.finished and resumed.skipped == 9 and resumed.processed == 15
    assert not list(folder.glob(".*.tmp"))
    assert _arrays(folder) == _arrays(reference.cache_dir)
    assert (out / "manifest.csv").read_bytes() == (tmp_path / "ref" / "manifest.csv").read_bytes()

    again = run_prepare(source, CFG, out, workers=1, progress=False)
    assert again.processed == 0 and again.skipped == 24


def test_changed_config_never_reuses_arrays(tmp_path, synth_cohort_dir):
    source = DataSourceConfig(kind="synthetic", root=str(synth_cohort_dir))
    first = run_prepare(source, CFG, tmp_path, progress=False, max_new_images=3)
    assert not first.finished and first.processed == 3 and not (tmp_path / "manifest.csv").exists()
    other = PreprocessConfig(image_height=64, image_width=32, crop=False)
    second = run_prepare(source, other, tmp_path, progress=False, max_new_images=2)
    assert second.cache_dir != first.cache_dir and second.skipped == 0
    dataset_cfg = PreprocessConfig(image_height=64, image_width=32, intensity_mean=0.1)  # normalisation only
    assert cache_folder(tmp_path / "cache", dataset_cfg) == first.cache_dir


def test_cli_and_dataset_read_the_cache(tmp_path, synth_cohort_dir, capsys):
    code = prepare_main(
        [
            "--source",
            "synthetic",
            "--root",
            str(synth_cohort_dir),
            "--out",
            str(tmp_path),
            "--size",
            "64x32",
            "--workers",
            "2",
            "--quiet",
        ]
    )
    assert code == 0 and "24 processed" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert len(manifest) == 24 and (manifest["source"] == "synthetic").all()
    assert manifest["oracle_malignancy"].notna().all() and manifest["calcification"].notna().all()
    cached = MammographyDataset(manifest, CFG, cache_dir=tmp_path / "cache")
    live = MammographyDataset(manifest, CFG)
    for index in (0, 5):
        a, b = cached[index], live[index]
        assert a["image"].shape == (1, 64, 32) and a["labels"].shape == (2,)
        np.testing.assert_allclose(a["image"].numpy(), b["image"].numpy(), atol=1.0 / 65535 / CFG.intensity_std + 1e-6)
        assert a["image_id"] == manifest.loc[index, "image_id"]
        assert a["labels"][0].item() == manifest.loc[index, "malignancy"]
        assert set(a["metadata"]) >= {"age", "density", "view", "laterality"}
        assert "malignancy" not in a["metadata"] and "oracle_malignancy" not in a["metadata"]
    stored = load_cached_array(next(cache_folder(tmp_path / "cache", CFG).glob("*.npy")))
    assert stored.dtype == np.float32 and 0 <= stored.min() and stored.max() <= 1
    assert pd.read_csv(tmp_path / "rejects.csv").empty


def test_a_changed_source_file_is_processed_again(tmp_path, synth_cohort_dir):
    root = tmp_path / "cohort"
    shutil.copytree(synth_cohort_dir, root)
    source = DataSourceConfig(kind="synthetic", root=str(root))
    out = tmp_path / "out"
    first = run_prepare(source, CFG, out, workers=1, progress=False)
    manifest = read_manifest(out / "manifest.csv")
    (id_a, path_a), (id_b, path_b) = list(zip(manifest["image_id"], manifest["path"]))[:2]
    arrays = _arrays(first.cache_dir)
    assert arrays[f"{id_a}.npy"] != arrays[f"{id_b}.npy"]

    Path(path_a).write_bytes(b"not a DICOM any more")  # the file under image id A is replaced by a broken one
    broken = run_prepare(source, CFG, out, workers=1, progress=False)
    assert (broken.processed, broken.skipped, broken.rejected) == (1, 23, 1)
    assert id_a not in set(read_manifest(out / "manifest.csv")["image_id"])

    Path(path_a).write_bytes(Path(path_b).read_bytes())  # repaired, with other pixels: the old array must not return
    repaired = run_prepare(source, CFG, out, workers=1, progress=False)
    assert (repaired.processed, repaired.skipped, repaired.rejected) == (1, 23, 0)
    assert _arrays(first.cache_dir)[f"{id_a}.npy"] == arrays[f"{id_b}.npy"]
    assert id_a in set(read_manifest(out / "manifest.csv")["image_id"])


def test_a_relative_source_root_gives_absolute_manifest_paths(tmp_path, synth_cohort_dir, monkeypatch):
    """The issue a center hit: paths relative to where `prepare` ran broke every reader started elsewhere."""
    monkeypatch.chdir(synth_cohort_dir.parent)
    code = prepare_main(
        [
            "--source",
            "synthetic",
            "--root",
            synth_cohort_dir.name,
            "--out",
            str(tmp_path / "out"),
            "--size",
            "64x32",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    raw = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert all(Path(path).is_absolute() and Path(path).is_file() for path in raw["path"])


def test_decoder_threads_share_the_cores_the_workers_leave_idle():
    from bcvlm_model.data.prepare import decode_threads_per_worker

    assert [decode_threads_per_worker(workers, cores=8) for workers in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
