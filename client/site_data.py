"""A site's view of its own training data: row and patient counts, the delta bound, and the ledger's terms.

Used by `bcvlm-client --check`, `--init-ledger` and every fit, so all three agree on what the data set is.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bcvlm_client.privacy_ledger import LedgerTerms, training_set_fingerprint
from bcvlm_client.site_config import SiteConfig
from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.manifest import read_manifest

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


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The manifest rows of one split, re-indexed."""
    return manifest[manifest["split"] == split].reset_index(drop=True)


def summarise_site_data(site: SiteConfig, manifest: pd.DataFrame | None = None) -> SiteDataSummary:
    """Row and patient counts of the train and eval splits (manifest read from `site.data.manifest` if not given)."""
    table = read_manifest(site.data.manifest) if manifest is None else manifest
    train = split_rows(table, site.data.train_split)
    evaluation = split_rows(table, site.data.eval_split)
    return SiteDataSummary(
        train_rows=len(train), train_patients=int(train["patient_id"].nunique()),
        eval_rows=len(evaluation), eval_patients=int(evaluation["patient_id"].nunique()),
        data_fingerprint=training_set_fingerprint(train["patient_id"]),
    )


def delta_bound(num_records: int) -> float:
    """The largest delta a site may use for `num_records` training records."""
    return 1.0 / (DELTA_RECORDS_FACTOR * max(int(num_records), 1))


def check_delta_bound(site: SiteConfig, num_records: int) -> None:
    """Raise ConfigError naming `privacy.delta` when it exceeds 1 / (10 x training records)."""
    bound = delta_bound(num_records)
    if site.privacy.enabled and site.privacy.delta > bound:
        raise ConfigError(
            f"site '{site.site_id}': key 'privacy.delta': {site.privacy.delta:g} is above 1/(10 x {num_records} "
            f"training records) = {bound:.3g}; set privacy.delta <= {bound:.3g}")


def ledger_terms(site: SiteConfig, summary: SiteDataSummary) -> LedgerTerms:
    """The terms this site's ledger must have: its own budget and its current training set."""
    privacy = site.privacy
    return LedgerTerms(target_epsilon=float(privacy.target_epsilon), delta=float(privacy.delta),
                       accountant=privacy.accountant, data_fingerprint=summary.data_fingerprint)
