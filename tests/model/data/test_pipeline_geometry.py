"""Laterality/view from tags, chest wall to the left, breast crop and aspect-preserving resize + pad."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bcvlm_model.data.crop import breast_bounding_box, crop_to_box
from bcvlm_model.data.orientation import (
    chest_wall_side_from_content,
    chest_wall_side_from_tags,
    laterality_from_tags,
    orient_chest_wall_left,
    view_from_tags,
)
from bcvlm_model.data.pipeline import load_preprocessed, preprocess_dataset
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.resize import fitted_size, resize_and_pad
from bcvlm_testing.mg_fixtures import breast_pixels, make_mg_dataset


def _ds(**tags) -> Dataset:
    ds = Dataset()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    "tags, expected",
    [
        ({"ImageLaterality": "L", "Laterality": "R"}, "L"),  # ImageLaterality wins
        ({"Laterality": "R"}, "R"),
        ({"PatientOrientation": "L"}, "L"),  # non-standard single letter
        ({"PatientOrientation": ["A", "R"]}, "L"),  # standard LCC
        ({"PatientOrientation": ["P", "FL"]}, "R"),  # standard RMLO
        ({"PatientOrientation": "CC"}, None),
        ({}, None),
    ],
)
def test_laterality_from_tags(tags, expected):
    assert laterality_from_tags(_ds(**tags)) == expected


def test_view_from_tags_sources():
    assert view_from_tags(_ds(ViewPosition="MLO")) == "MLO"
    code = Dataset()
    code.CodeMeaning = "cranio-caudal"
    assert view_from_tags(_ds(ViewCodeSequence=Sequence([code]))) == "CC"
    assert view_from_tags(_ds(PatientOrientation="MLO")) == "MLO"
    assert view_from_tags(_ds(SeriesDescription="R CC")) == "CC"
    assert view_from_tags(_ds()) is None


def test_chest_wall_side_from_tags_and_content():
    assert chest_wall_side_from_tags(_ds(PatientOrientation=["A", "R"])) == "left"
    assert chest_wall_side_from_tags(_ds(PatientOrientation=["P", "L"])) == "right"
    assert chest_wall_side_from_tags(_ds(PatientOrientation="CC")) is None
    image = breast_pixels(chest_wall="right") / 4095.0
    assert chest_wall_side_from_content(image) == "right"
    assert chest_wall_side_from_content(orient_chest_wall_left(image, "right")) == "left"


@pytest.mark.parametrize("orientation", [None, ["P", "L"]])
def test_pipeline_puts_chest_wall_left(orientation):
    tags = {"PatientOrientation": orientation} if orientation else {}
    ds = make_mg_dataset(breast_pixels(chest_wall="right"), **tags)
    image, trace = preprocess_dataset(ds, PreprocessConfig(image_height=64, image_width=32, crop=False))
    assert trace.chest_wall_side == "right"
    assert trace.chest_wall_source == ("tags" if orientation else "content")
    assert image[:, :16].mean() > 3 * image[:, 16:].mean()


def test_crop_keeps_the_breast_and_drops_a_label():
    image = np.zeros((200, 100))
    image[40:160, 0:60] = 0.7  # breast against the left edge
    image[5:12, 85:95] = 1.0  # burnt-in label, far away
    box = breast_bounding_box(image, threshold=0.1, margin_fraction=0.0, analysis_height=200)
    top, bottom, left, right = box
    assert top <= 40 and bottom >= 160 and left == 0 and right >= 60
    assert right < 85 and top > 12
    assert crop_to_box(image, box).sum() == pytest.approx(image[40:160, 0:60].sum())


def test_resize_and_pad_preserves_aspect_and_pads_right():
    assert fitted_size(400, 100, 64, 32) == (64, 16)
    image = np.ones((400, 100), dtype=np.float32)
    out = resize_and_pad(image, 64, 32)
    assert out.shape == (64, 32) and out.dtype == np.float32
    assert np.all(out[:, :16] == 1.0) and np.all(out[:, 16:] == 0.0)
    wide = resize_and_pad(np.ones((50, 100), dtype=np.float32), 64, 32)
    assert np.all(wide[:24] == 0.0) and np.all(wide[24:40] == 1.0) and np.all(wide[40:] == 0.0)


def test_load_preprocessed_output_contract(mg_writer):
    path = mg_writer("b.dcm", breast_pixels(96, 48, chest_wall="right"), WindowCenter=2048, WindowWidth=4096)
    image = load_preprocessed(path, PreprocessConfig(image_height=40, image_width=20))
    assert image.shape == (40, 20) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image[:, :3].mean() > 0.4  # chest wall on the left after crop
