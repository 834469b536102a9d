"""Virtual-site splits on RSNA- and VinDr-layout manifests: patient grouping, natural sites, Dirichlet skew."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.split_guard import PatientOverlapError
from bcvlm_simulation.splits import SITE_COLUMN, SplitConfig, SplitError, split_sites, split_summary


def rsna_layout_manifest(n_patients: int = 120, seed: int = 0) -> pd.DataFrame:
    """Manifest rows as the RSNA adapter produces them: 2 site ids, 10 machine ids, 4 images per patient."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        site = "1" if p % 3 else "2"
        machine = f"{21 + p % 10}"
        cancer = float(rng.random() < 0.2)
        for view in ("CC", "MLO"):
            for side in ("L", "R"):
                rows.append(
                    {
                        "source": "rsna",
                        "site_id": site,
                        "patient_id": f"{10000 + p}",
                        "study_id": f"{10000 + p}",
                        "image_id": f"{p}_{side}{view}",
                        "path": f"train_images/{10000 + p}/{p}_{side}{view}.dcm",
                        "laterality": side,
                        "view": view,
                        "age": float(40 + p % 40),
                        "density": "B",
                        "implant": 0.0,
                        "manufacturer": None,
                        "machine_id": machine,
                        "malignancy": cancer if side == "L" else 0.0,
                        "calcification": np.nan,
                        "malignancy_label_kind": "biopsy-proven",
                        "split": None,
                        "oracle_malignancy": np.nan,
                        "oracle_calcification": np.nan,
                    }
                )
    return pd.DataFrame(rows)


def vindr_layout_manifest(n_studies: int = 80, seed: int = 1) -> pd.DataFrame:
    """Manifest rows as the VinDr adapter produces them: study = patient, manufacturer/model from metadata.csv."""
    rng = np.random.default_rng(seed)
    vendors = [("SIEMENS", "MAMMOMAT Inspiration"), ("IMS s.r.l.", "Giotto Image 3DL"), ("Planmed", "Planmed Nuance")]
    rows = []
    for s in range(n_studies):
        maker, model = vendors[s % 3]
        calc = float(rng.random() < 0.25)
        for view in ("CC", "MLO"):
            for side in ("L", "R"):
                rows.append(
                    {
                        "source": "vindr",
                        "site_id": "vindr",
                        "patient_id": f"study{s:04d}",
                        "study_id": f"study{s:04d}",
                        "image_id": f"img{s:04d}{side}{view}",
                        "path": f"images/study{s:04d}/img{s:04d}{side}{view}.dicom",
                        "laterality": side,
                        "view": view,
                        "age": np.nan,
                        "density": "C",
                        "implant": np.nan,
                        "manufacturer": maker,
                        "machine_id": model,
                        "malignancy": float(rng.random() < 0.05),
                        "calcification": calc if side == "R" else 0.0,
                        "malignancy_label_kind": "proxy: BI-RADS 4-5",
                        "split": "training",
                        "oracle_malignancy": np.nan,
                        "oracle_calcification": np.nan,
                    }
                )
    return pd.DataFrame(rows)


def assert_patient_grouping(table: pd.DataFrame) -> None:
    sites_per_patient = table.groupby("patient_id")[SITE_COLUMN].nunique()
    splits_per_patient = table.groupby("patient_id")["split"].nunique()
    assert sites_per_patient.max() == 1, "a patient is in two virtual sites"
    assert splits_per_patient.max() == 1, "a patient is in two of train/val/test"
    assert set(table["split"]) <= {"train", "val", "test"}


@pytest.mark.parametrize("kind", ["natural", "iid", "dirichlet", "quantity"])
def test_every_split_kind_groups_by_patient_on_rsna_layout(kind: str) -> None:
    table = split_sites(rsna_layout_manifest(), SplitConfig(kind=kind, num_sites=4, seed=3))
    assert_patient_grouping(table)
    assert len(table) == len(rsna_layout_manifest())
    for site in table[SITE_COLUMN].unique():
        site_splits = set(table.loc[table[SITE_COLUMN] == site, "split"])
        assert {"train", "test"} <= site_splits, f"{site} lacks train or test: {site_splits}"


def test_natural_split_by_site_id_follows_site_id() -> None:
    manifest = rsna_layout_manifest()
    table = split_sites(manifest, SplitConfig(kind="natural", natural_key="site_id"))
    assert sorted(table[SITE_COLUMN].unique()) == ["site_id-1", "site_id-2"]
    assert (table[SITE_COLUMN] == "site_id-" + table["site_id"].astype(str)).all()


def test_natural_split_by_machine_and_vindr_manufacturer_model() -> None:
    table = split_sites(rsna_layout_manifest(), SplitConfig(kind="natural", natural_key="machine_id"))
    assert table[SITE_COLUMN].nunique() == 10
    vindr = split_sites(vindr_layout_manifest(), SplitConfig(kind="natural", natural_key="manufacturer_model"))
    assert_patient_grouping(vindr)
    assert vindr[SITE_COLUMN].nunique() == 3
    for site, part in vindr.groupby(SITE_COLUMN):
        assert part["manufacturer"].nunique() == 1, site


def label_share_spread(alpha: float, seeds: range) -> float:
    """Mean over seeds of the spread (max - min) of the per-site positive-patient share."""
    manifest = rsna_layout_manifest(n_patients=300)
    spreads = []
    for seed in seeds:
        cfg = SplitConfig(kind="dirichlet", num_sites=4, dirichlet_alpha=alpha, seed=seed, min_patients_per_site=2)
        table = split_sites(manifest, cfg)
        assert_patient_grouping(table)
        per_patient = table.groupby("patient_id").agg(site=(SITE_COLUMN, "first"), y=("malignancy", "max"))
        share = per_patient.groupby("site")["y"].mean()
        spreads.append(float(share.max() - share.min()))
    return float(np.mean(spreads))


def test_dirichlet_split_skews_label_mix_as_alpha_falls() -> None:
    skewed = label_share_spread(alpha=0.1, seeds=range(5))
    near_iid = label_share_spread(alpha=100.0, seeds=range(5))
    assert skewed > near_iid + 0.15, (skewed, near_iid)


def test_quantity_skew_gives_unequal_site_sizes() -> None:
    table = split_sites(
        rsna_layout_manifest(n_patients=200), SplitConfig(kind="quantity", num_sites=5, quantity_sigma=1.5)
    )
    sizes = table.groupby(SITE_COLUMN)["patient_id"].nunique()
    assert sizes.min() >= 4 and sizes.max() >= 2 * sizes.min()


def test_mixed_federation_masks_labels_by_source_and_summary_counts() -> None:
    manifest = pd.concat([rsna_layout_manifest(60), vindr_layout_manifest(40)], ignore_index=True)
    cfg = SplitConfig(
        kind="natural", natural_key="source", tasks_by_source={"rsna": ["malignancy"], "vindr": ["calcification"]}
    )
    table = split_sites(manifest, cfg)
    assert table.loc[table["source"] == "rsna", "calcification"].isna().all()
    assert table.loc[table["source"] == "vindr", "malignancy"].isna().all()
    assert table.loc[table["source"] == "vindr", "calcification"].notna().all()
    summary = split_summary(table).set_index("site")
    assert summary.loc["source-rsna", "images"] == 240
    assert summary.loc["source-rsna", "calcification_labelled"] == 0
    assert summary.loc["source-vindr", "calcification_positive"] == int((manifest["calcification"] == 1).sum())
    assert summary.loc["source-vindr", "manufacturers"].count(";") == 2
    assert summary["patients"].sum() == manifest["patient_id"].nunique()


def test_an_unknown_natural_key_names_the_key_and_the_allowed_values() -> None:
    with pytest.raises(
        ConfigError, match=r"key 'split.natural_key': invalid value 'hospital', expected one of site_id"
    ):
        SplitConfig(kind="natural", natural_key="hospital")


def test_a_dirichlet_split_needs_a_positive_alpha() -> None:
    with pytest.raises(ConfigError, match="dirichlet_alpha"):
        SplitConfig(kind="dirichlet", dirichlet_alpha=0.0)


def test_too_few_patients_for_the_sites_is_a_split_error() -> None:
    with pytest.raises(SplitError, match="patients"):
        split_sites(rsna_layout_manifest(n_patients=10), SplitConfig(kind="iid", num_sites=50))


def with_official_split(manifest: pd.DataFrame, test_every: int = 4) -> pd.DataFrame:
    """Give every patient a data-set split as VinDr / CBIS-DDSM manifests carry it: every 4th patient is test."""
    table = manifest.copy()
    number = table["patient_id"].astype(int) - 10000
    table["split"] = np.where(number % test_every == 0, "test", "train")
    return table


def test_keep_official_keeps_the_data_sets_test_patients() -> None:
    manifest = with_official_split(rsna_layout_manifest())
    table = split_sites(
        manifest, SplitConfig(kind="natural", natural_key="site_id", keep_official=True, val_fraction=0.2)
    )
    official_test = set(manifest.loc[manifest["split"] == "test", "patient_id"])
    assert set(table.loc[table["split"] == "test", "patient_id"]) == official_test
    assert table.loc[table["split"] == "val", "patient_id"].nunique() > 0  # drawn from official training patients
    assert_patient_grouping(table)


def test_replacing_an_official_split_is_said(caplog) -> None:
    manifest = with_official_split(rsna_layout_manifest())
    with caplog.at_level("WARNING"):
        table = split_sites(manifest, SplitConfig(kind="natural", natural_key="site_id"))
    assert "the manifest's own split (test: 120 images, train: 360 images) is replaced" in caplog.text
    assert "split.keep_official=true" in caplog.text
    assert set(table.loc[table["split"] == "test", "patient_id"]) != set(
        manifest.loc[manifest["split"] == "test", "patient_id"]
    )


def test_a_manifest_without_a_split_is_not_said_to_be_replaced(caplog) -> None:
    with caplog.at_level("WARNING"):
        split_sites(rsna_layout_manifest(), SplitConfig(kind="natural", natural_key="site_id"))
    assert "replaced" not in caplog.text


def test_keep_official_refuses_a_patient_in_two_official_splits() -> None:
    manifest = with_official_split(rsna_layout_manifest())
    first = manifest.index[0]
    manifest.loc[first, "split"] = "test" if manifest.loc[first, "split"] == "train" else "train"
    with pytest.raises(PatientOverlapError, match="both 'test' and 'train'"):
        split_sites(manifest, SplitConfig(kind="natural", natural_key="site_id", keep_official=True))


def test_keep_official_refuses_a_site_without_official_test_patients() -> None:
    manifest = with_official_split(rsna_layout_manifest())
    manifest.loc[manifest["site_id"] == "2", "split"] = "train"
    with pytest.raises(SplitError, match="site 'site_id-2' has no patient in the data set's test split"):
        split_sites(manifest, SplitConfig(kind="natural", natural_key="site_id", keep_official=True))


def test_natural_sites_below_the_minimum_are_dropped_and_named(caplog) -> None:
    manifest = rsna_layout_manifest(n_patients=60)
    manifest.loc[manifest["patient_id"].isin(["10001", "10002"]), "machine_id"] = "99"  # a 2-patient machine
    with caplog.at_level("WARNING"):
        table = split_sites(manifest, SplitConfig(kind="natural", natural_key="machine_id", min_patients_per_site=4))
    assert "machine_id-99" not in set(table[SITE_COLUMN])
    assert not table["patient_id"].isin(["10001", "10002"]).any()
    assert "dropped 1 site(s)" in caplog.text and "machine_id-99 (2)" in caplog.text


def test_natural_small_sites_keep_keeps_them_with_a_warning(caplog) -> None:
    manifest = rsna_layout_manifest(n_patients=60)
    manifest.loc[manifest["patient_id"].isin(["10001", "10002"]), "machine_id"] = "99"
    with caplog.at_level("WARNING"):
        table = split_sites(
            manifest,
            SplitConfig(kind="natural", natural_key="machine_id", min_patients_per_site=4, natural_small_sites="keep"),
        )
    assert "machine_id-99" in set(table[SITE_COLUMN]) and "machine_id-99 (2)" in caplog.text


def test_an_unknown_small_site_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"key 'split.natural_small_sites': invalid value 'merge'.*drop, keep"):
        SplitConfig(natural_small_sites="merge")
