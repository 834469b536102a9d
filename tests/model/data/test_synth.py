"""`bcvlm synth`: real MG DICOMs with proper tags, RSNA-schema CSV, oracle, seeded, site styles, lesion visibility."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from bcvlm_model.data.pipeline import preprocess_dataset
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.synth.cohort import sample_cohort
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.dicom_writer import ImageTags, build_dataset
from bcvlm_model.data.synth.generate import RSNA_COLUMNS, generate_cohort
from bcvlm_model.data.synth.render import ImageLatents, power_law_noise, render_attenuation
from bcvlm_model.data.synth.sites import VENDORS
from bcvlm_model.data.synth_cli import main as synth_main

DEMO_SIZE = (256, 128)  # simulation/conf/demo.yaml: rendered and preprocessed at this size
DEMO_LESION_CONTRAST = 2.0


def demo_input(density: int, calcified: bool, seed: int) -> np.ndarray:
    """What the demo's model sees: a rendered image written as a vendor DICOM and run through the preprocessing."""
    latents = ImageLatents("CC", "L", density, 0, 1.0, calcified, DEMO_LESION_CONTRAST)
    attenuation = render_attenuation(latents, *DEMO_SIZE, seed=seed)
    tags = ImageTags("1", "2", "1", "L", "CC", 60, False)
    buffer = io.BytesIO()
    build_dataset(attenuation, VENDORS["hologic"], tags, "explicit").save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    image, _ = preprocess_dataset(pydicom.dcmread(buffer), PreprocessConfig(*DEMO_SIZE))
    return image


def bright_specks(image: np.ndarray) -> np.ndarray:
    """Local maxima standing >= 0.15 above a 5x5 grey opening (a white top-hat): spots smaller than the tissue."""
    tophat = image - ndimage.grey_opening(image, size=(5, 5))
    return (tophat == ndimage.maximum_filter(tophat, size=3)) & (tophat >= 0.15)


def test_files_tags_and_tables(synth_cohort_dir):
    train = pd.read_csv(synth_cohort_dir / "train.csv", dtype=str)
    assert tuple(train.columns) == RSNA_COLUMNS and len(train) == 24
    assert (train.groupby("patient_id").size() == 4).all()
    assert set(zip(train["laterality"], train["view"])) == {("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")}
    oracle = pd.read_csv(synth_cohort_dir / "oracle.csv", dtype={"image_id": str})
    assert set(oracle["image_id"]) == set(train["image_id"]) and oracle["oracle_malignancy"].between(0, 1).all()
    photometric, manufacturers = set(), set()
    for row in train.itertuples():
        ds = pydicom.dcmread(synth_cohort_dir / "train_images" / row.patient_id / f"{row.image_id}.dcm")
        assert ds.Modality == "MG" and ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.ImageLaterality == row.laterality and ds.ViewPosition == row.view
        assert int(ds.PatientAge[:3]) == int(float(row.age)) and ds.BreastImplantPresent in {"YES", "NO"}
        assert ds.pixel_array.shape == (128, 64)
        photometric.add(ds.PhotometricInterpretation)
        manufacturers.add(ds.Manufacturer)
    assert photometric == {"MONOCHROME1", "MONOCHROME2"} and len(manufacturers) >= 3


def test_seeded_and_deterministic(tmp_path):
    cfg = SynthConfig(n_patients=1, height=64, width=32, seed=11)
    generate_cohort(cfg, tmp_path / "a", progress=False)
    generate_cohort(cfg, tmp_path / "b", progress=False)
    generate_cohort(SynthConfig(n_patients=1, height=64, width=32, seed=12), tmp_path / "c", progress=False)
    files_a = sorted((tmp_path / "a").rglob("*.dcm"))
    assert len(files_a) == 4
    for path in files_a:
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_cohort_statistics_sites_and_oracle():
    cohort = sample_cohort(SynthConfig(n_patients=1500, seed=3))
    assert 0.2 <= cohort["cancer"].mean() <= 0.32 and 0.14 <= cohort["calcification"].mean() <= 0.26
    assert set(cohort["site_id"]) == {"1", "2", "3"} and set(cohort["true_density"]) == {"A", "B", "C", "D"}
    by_site = cohort.groupby("site_id")
    assert by_site["cancer"].mean().max() - by_site["cancer"].mean().min() > 0.08  # sites differ in prevalence
    assert by_site["age"].mean().max() - by_site["age"].mean().min() > 5  # and in age mix
    assert by_site["vendor"].agg(lambda v: frozenset(v)).nunique() == 3
    prior_auc = roc_auc_score(cohort["cancer"], cohort["prior_malignancy"])
    oracle_auc = roc_auc_score(cohort["cancer"], cohort["oracle_malignancy"])
    assert 0.6 < prior_auc < oracle_auc and oracle_auc > 0.85  # metadata carries part of the risk, images the rest
    older = cohort["age"] >= 65
    assert cohort.loc[older, "cancer"].mean() > cohort.loc[~older, "cancer"].mean() + 0.1
    dense = cohort["true_density"].isin(["C", "D"])

    def hidden_fraction(part):
        return ((part["cancer"] == 1) & (part["mass_kind"] != 1)).sum() / part["cancer"].sum()

    assert hidden_fraction(cohort[dense]) > hidden_fraction(cohort[~dense])  # dense breasts mask cancers


def test_lesions_are_visible_and_masked_by_density():
    def contrast(density: int, kind: int, calc: bool) -> float:
        base = ImageLatents("CC", "L", density, 0, 1.0, False, 1.0)
        lesion = ImageLatents("CC", "L", density, kind, 1.0, calc, 1.0)
        with_lesion = render_attenuation(lesion, 256, 128, seed=5)
        without = render_attenuation(base, 256, 128, seed=5)
        return float(np.abs(with_lesion - without).max())

    assert contrast(0, 1, False) > contrast(3, 1, False) > 0.05
    assert contrast(0, 0, True) > contrast(3, 0, True) > 0.1
    assert contrast(0, 0, False) == 0.0


@pytest.mark.parametrize("density", [0, 2])
def test_calcification_cluster_shows_as_specks_at_demo_size(density):
    for seed in range(4):
        with_cluster, without = demo_input(density, True, seed), demo_input(density, False, seed)
        # Same seed, same tissue: the cluster's region is where the two differ; without the cluster that region
        # holds only the texture's few specks.
        region = ndimage.binary_dilation(with_cluster - without > 0.05, iterations=2)
        assert (bright_specks(with_cluster) & region).sum() >= (bright_specks(without) & region).sum() + 3


@pytest.mark.parametrize("density", [0, 2])
def test_calcification_cluster_survives_pooling_to_feature_scale(density):
    # The image encoder sees the image through stride-8 and coarser feature maps: the cluster's contrast must
    # survive 8x8 averaging (one-pixel specks fall to ~0.05 there), as a real cluster does at full resolution.
    for seed in range(4):
        difference = demo_input(density, True, seed) - demo_input(density, False, seed)
        pooled = difference.reshape(DEMO_SIZE[0] // 8, 8, DEMO_SIZE[1] // 8, 8).mean(axis=(1, 3))
        assert pooled.max() >= 0.1


def test_power_law_noise_spectrum():
    field = power_law_noise(np.random.default_rng(0), 256, 256, beta=3.0)
    power = np.abs(np.fft.fft2(field)) ** 2
    freq = np.sqrt(np.add.outer(np.fft.fftfreq(256) ** 2, np.fft.fftfreq(256) ** 2))
    low, high = power[(freq > 0.02) & (freq < 0.04)].mean(), power[(freq > 0.2) & (freq < 0.4)].mean()
    slope = np.log(low / high) / np.log(0.3 / 0.03)
    assert abs(slope - 3.0) < 0.4 and abs(field.std() - 1.0) < 1e-6


def test_cli(tmp_path, capsys):
    code = synth_main(
        [
            "--out",
            str(tmp_path),
            "--n-patients",
            "2",
            "--size",
            "64x32",
            "--sites",
            "4",
            "--seed",
            "1",
            "--lesion-contrast",
            "2",
            "--quiet",
        ]
    )
    assert code == 0 and "8 images of 2 patients at 64x32" in capsys.readouterr().out
    assert synth_main(["--out", str(tmp_path), "--size", "64by32"]) == 2
    with pytest.raises(SystemExit):
        synth_main([])
