"""A site's view of its own data: row and patient counts, readable images and cache coverage, the delta bound,
and the ledger's terms.

Used by `bcvlm-client --check`, `--init-ledger` and every fit, so all three agree on what the data set is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bcvlm_client.privacy_ledger import LedgerTerms, training_set_fingerprint
from bcvlm_client.site_config import SiteConfig
from bcvlm_model.atomic_io import read_json
from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.cache import CONFIG_RECORD_NAME, safe_file_stem
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.split_guard import check_patients_disjoint
from bcvlm_model.privacy.privacy_unit import PrivacyUnit

DELTA_RECORDS_FACTOR = 10
"""delta must be at most 1 / (DELTA_RECORDS_FACTOR x number of training records)."""


@dataclass(frozen=True)
class SiteDataSummary:
    """Counts of the site's manifest splits and the fingerprint of its training set."""

    train_rows: int
    train_patients: int
    eval_rows: int
    eval_patients: int
    data_fingerprint: str


@dataclass(frozen=True)
class CacheCoverage:
    """How much of the site's data one preprocessing in the cache covers."""

    image_size: str
    folder: Path
    train_cached: int
    eval_cached: int


@dataclass(frozen=True)
class DataAvailability:
    """Which images can be read: per cached preprocessing, and images with neither a DICOM nor a cached array."""

    caches: list[CacheCoverage]
    dicoms_missing: int
    unreadable_train: list[str]
    """Training image ids with no DICOM file and no cached array in any preprocessing."""


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of one split, re-indexed."""
    return manifest[manifest["split"] == split].reset_index(drop=True)


def read_site_manifest(site: SiteConfig) -> pd.DataFrame:
    """The site's manifest, refused (PatientOverlapError) when a patient has images in two splits."""
    table = read_manifest(site.data.manifest)
    check_patients_disjoint(table, f"site '{site.site_id}': manifest {site.data.manifest}")
    return table


def summarise_site_data(site: SiteConfig, manifest: pd.DataFrame | None = None) -> SiteDataSummary:
    """Row and patient counts of the train and eval splits (manifest read from `site.data.manifest` if not given);
    a manifest with a patient in two splits is refused."""
    table = read_manifest(site.data.manifest) if manifest is None else manifest
    check_patients_disjoint(table, f"site '{site.site_id}': manifest {site.data.manifest}")
    train = split_rows(table, site.data.train_split)
    evaluation = split_rows(table, site.data.eval_split)
    return SiteDataSummary(
        train_rows=len(train),
        train_patients=int(train["patient_id"].nunique()),
        eval_rows=len(evaluation),
        eval_patients=int(evaluation["patient_id"].nunique()),
        data_fingerprint=training_set_fingerprint(train["patient_id"]),
    )


def delta_bound(num_records: int) -> float:
    """The largest delta a site may use for `num_records` training records."""
    return 1.0 / (DELTA_RECORDS_FACTOR * max(int(num_records), 1))


def training_records(site: SiteConfig, summary: SiteDataSummary) -> tuple[int, str]:
    """(count, name) of the site's DP records: training patients, or images under `privacy.unit: image`."""
    if site.privacy.unit is PrivacyUnit.image:
        return summary.train_rows, "training images"
    return summary.train_patients, "training patients"


def check_delta_bound(site: SiteConfig, summary: SiteDataSummary) -> None:
    """Raise ConfigError naming `privacy.delta` when it exceeds 1 / (10 x training records)."""
    num_records, records = training_records(site, summary)
    bound = delta_bound(num_records)
    if site.privacy.enabled and site.privacy.delta > bound:
        raise ConfigError(
            f"site '{site.site_id}': key 'privacy.delta': {site.privacy.delta:g} is above 1/(10 x {num_records} "
            f"{records}) = {bound:.3g}; set privacy.delta <= {bound:.3g}"
        )


def ledger_terms(site: SiteConfig, summary: SiteDataSummary) -> LedgerTerms:
    """The terms this site's ledger must have: its own budget and its current training set."""
    privacy = site.privacy
    return LedgerTerms(
        target_epsilon=float(privacy.target_epsilon),
        delta=float(privacy.delta),
        accountant=privacy.accountant.value,
        data_fingerprint=summary.data_fingerprint,
        privacy_unit=privacy.unit.value,
    )


def data_availability(site: SiteConfig, manifest: pd.DataFrame | None = None) -> DataAvailability:
    """Cache coverage per preprocessing found under `data.cache_dir`, and images that cannot be read at all."""
    table = read_manifest(site.data.manifest) if manifest is None else manifest
    train = split_rows(table, site.data.train_split)
    evaluation = split_rows(table, site.data.eval_split)
    caches: list[CacheCoverage] = []
    cached_anywhere: set[str] = set()
    if site.data.cache_dir is not None:
        for record in sorted(Path(site.data.cache_dir).glob(f"*/{CONFIG_RECORD_NAME}")):
            config = read_json(record).get("preprocess", {})
            present = {path.stem for path in record.parent.glob("*.npy")}
            covered = {image_id for image_id in table["image_id"] if safe_file_stem(image_id) in present}
            cached_anywhere |= covered
            caches.append(
                CacheCoverage(
                    image_size=f"{config.get('image_height')}x{config.get('image_width')}",
                    folder=record.parent,
                    train_cached=int(train["image_id"].isin(covered).sum()),
                    eval_cached=int(evaluation["image_id"].isin(covered).sum()),
                )
            )
    dicom_present = {image_id: Path(path).is_file() for image_id, path in zip(table["image_id"], table["path"])}
    unreadable = [
        image_id for image_id in train["image_id"] if not dicom_present[image_id] and image_id not in cached_anywhere
    ]
    return DataAvailability(
        caches=caches,
        dicoms_missing=sum(not present for present in dicom_present.values()),
        unreadable_train=unreadable,
    )
