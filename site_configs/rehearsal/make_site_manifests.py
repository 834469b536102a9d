"""Rehearsal: split the prepared synthetic cohort into one manifest per hospital, each with a patient-level
train/test split (`python make_site_manifests.py`, in the rehearsal folder, after `bcvlm prepare`)."""

from pathlib import Path

from bcvlm_model.data.manifest import MANIFEST_COLUMNS, read_manifest, write_manifest
from bcvlm_simulation.splits import SITE_COLUMN, SplitConfig, site_names, split_sites

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")

table = split_sites(
    read_manifest("prepared/manifest.csv"),
    SplitConfig(
        kind="natural", natural_key="site_id", val_fraction=0.0, test_fraction=0.4, min_patients_per_site=2, seed=0
    ),
)


def absolute(path: str) -> str:
    """An image path as an absolute one (prepare may write it relative to here or to prepared/)."""
    for candidate in (Path(path), Path("prepared") / path):
        if candidate.exists():
            return str(candidate.resolve())
    return str(Path(path).resolve())


for hospital, site in zip(HOSPITALS, site_names(table), strict=True):
    rows = table[table[SITE_COLUMN] == site].loc[:, list(MANIFEST_COLUMNS)].reset_index(drop=True)
    rows["path"] = rows["path"].map(absolute)  # the hospital's manifest lives in another folder
    path = write_manifest(rows, Path(hospital) / "manifest.csv")
    counts = rows["split"].value_counts().to_dict()
    print(f"{path}: {counts.get('train', 0)} train, {counts.get('test', 0)} test images")
