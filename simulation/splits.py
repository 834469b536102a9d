"""Virtual-site splits of a manifest, always grouped by patient: natural, IID, Dirichlet label skew, quantity skew."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import pandas as pd

from bcvlm_model import TASKS
from bcvlm_model.config_io import ConfigError, to_enum
from bcvlm_model.data.split_guard import check_patients_disjoint

LOGGER = logging.getLogger(__name__)

SITE_COLUMN = "sim_site"
"""Column added by `split_sites`: the virtual site a row belongs to."""


class SplitKind(StrEnum):
    """Values of `split.kind`: how patients are spread over virtual sites."""

    natural = "natural"
    iid = "iid"
    dirichlet = "dirichlet"
    quantity = "quantity"


class NaturalKey(StrEnum):
    """Values of `split.natural_key`: the manifest column that names a natural site."""

    site_id = "site_id"
    machine_id = "machine_id"
    manufacturer = "manufacturer"
    manufacturer_model = "manufacturer_model"
    source = "source"


class SmallSitePolicy(StrEnum):
    """Values of `split.natural_small_sites`: what happens to a natural site below `min_patients_per_site`."""

    drop = "drop"
    keep = "keep"


class SplitError(ValueError):
    """The manifest or the split settings cannot produce the requested virtual sites."""


@dataclass
class SplitConfig:
    """How a manifest is cut into virtual sites, then each site into train/val/test by patient."""

    kind: SplitKind = SplitKind.natural
    natural_key: NaturalKey = NaturalKey.site_id
    num_sites: int = 3
    dirichlet_alpha: float = 0.5
    dirichlet_task: str = "malignancy"
    quantity_sigma: float = 1.0
    min_patients_per_site: int = 4
    # natural splits: a site with fewer patients than min_patients_per_site is dropped ("drop") or kept ("keep");
    # both say so in a warning naming the site.
    natural_small_sites: SmallSitePolicy = SmallSitePolicy.drop
    # Keep the data set's own split column (VinDr, CBIS-DDSM train/test): its test patients stay test, val is
    # drawn from its training patients (val_fraction) unless it has a val split; test_fraction is not used.
    # False replaces it with a new split, and says so when the manifest had one.
    keep_official: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0
    # Mixed federation: source -> tasks whose labels that source's sites keep (others are masked to NaN).
    # e.g. {"rsna": ["malignancy"], "vindr": ["calcification"]}; empty keeps every label.
    tasks_by_source: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = to_enum(SplitKind, self.kind, "split.kind")
        self.natural_key = to_enum(NaturalKey, self.natural_key, "split.natural_key")
        self.natural_small_sites = to_enum(SmallSitePolicy, self.natural_small_sites, "split.natural_small_sites")
        if self.kind == SplitKind.dirichlet and self.dirichlet_task not in TASKS:
            raise ConfigError(
                f"key 'split.dirichlet_task': invalid value '{self.dirichlet_task}', expected one of {', '.join(TASKS)}"
            )
        if self.kind == SplitKind.dirichlet and self.dirichlet_alpha <= 0:
            raise ConfigError(f"key 'split.dirichlet_alpha': must be > 0, got {self.dirichlet_alpha}")
        if self.kind != SplitKind.natural and self.num_sites < 1:
            raise ConfigError(f"key 'split.num_sites': must be >= 1, got {self.num_sites}")
        if (
            not 0 <= self.val_fraction < 1
            or not 0 < self.test_fraction < 1
            or self.val_fraction + self.test_fraction >= 1
        ):
            raise ConfigError(
                f"key 'split.val_fraction': split.val_fraction={self.val_fraction} and "
                f"split.test_fraction={self.test_fraction}: need 0 <= val_fraction, 0 < test_fraction (every site "
                "needs a test set) and val + test < 1 (training data)"
            )
        for source, tasks in self.tasks_by_source.items():
            unknown = sorted(set(tasks) - set(TASKS))
            if unknown:
                raise ConfigError(
                    f"key 'split.tasks_by_source': '{source}' names unknown task(s) {unknown}; tasks are {TASKS}"
                )


def _validate(manifest: pd.DataFrame, cfg: SplitConfig) -> None:
    """What only the manifest can tell (the settings themselves were checked when the SplitConfig was made)."""
    needed = {"patient_id", "image_id"}
    if cfg.kind == SplitKind.natural:
        needed |= (
            {"manufacturer", "machine_id"} if cfg.natural_key == NaturalKey.manufacturer_model else {cfg.natural_key}
        )
    if cfg.kind == SplitKind.dirichlet:
        needed.add(cfg.dirichlet_task)
    missing = sorted(needed - set(manifest.columns))
    if missing:
        raise SplitError(f"manifest lacks column(s) needed by split kind '{cfg.kind}': {', '.join(missing)}")
    if manifest["image_id"].duplicated().any():
        raise SplitError("manifest has duplicated image_id values")
    if manifest["patient_id"].isna().any():
        raise SplitError("manifest has rows without patient_id; patient grouping needs it on every row")


def _patient_mode(manifest: pd.DataFrame, key: pd.Series) -> pd.Series:
    """Per patient, the most frequent value of `key` (ties -> smallest), so a patient lands in exactly one site."""
    frame = pd.DataFrame({"patient_id": manifest["patient_id"].astype(str), "key": key.astype(str)})
    counts = frame.groupby(["patient_id", "key"]).size().reset_index(name="n")
    counts = counts.sort_values(["patient_id", "n", "key"], ascending=[True, False, True])
    return counts.drop_duplicates("patient_id").set_index("patient_id")["key"]


def _natural_key_values(manifest: pd.DataFrame, key: str) -> pd.Series:
    if key == "manufacturer_model":
        return (
            manifest["manufacturer"].fillna("unknown").astype(str)
            + "/"
            + manifest["machine_id"].fillna("unknown").astype(str)
        )
    return manifest[key].fillna("unknown").astype(str)


def _patient_labels(manifest: pd.DataFrame, task: str) -> pd.Series:
    """Per patient: 1 if any image is positive, 0 if labelled and none positive, -1 if never labelled."""
    frame = pd.DataFrame({"patient_id": manifest["patient_id"].astype(str), "y": manifest[task].astype(float)})
    grouped = frame.groupby("patient_id")["y"]
    label = grouped.max().fillna(-1).astype(int)
    return label


def _site_name(index: int, total: int) -> str:
    return f"site_{index:0{max(2, len(str(total - 1)))}d}"


def _assign_natural(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    values = _patient_mode(manifest, _natural_key_values(manifest, cfg.natural_key))
    return values.map(lambda v: f"{cfg.natural_key}-{v}")


def _assign_iid(patients: np.ndarray, cfg: SplitConfig, rng: np.random.Generator) -> pd.Series:
    if len(patients) < cfg.num_sites * cfg.min_patients_per_site:
        raise SplitError(
            f"{len(patients)} patients cannot give {cfg.num_sites} sites with >= {cfg.min_patients_per_site} patients each"
        )
    order = rng.permutation(len(patients))
    sites = np.empty(len(patients), dtype=object)
    for rank, idx in enumerate(order):
        sites[idx] = _site_name(rank % cfg.num_sites, cfg.num_sites)
    return pd.Series(sites, index=patients)


def _assign_quantity(patients: np.ndarray, cfg: SplitConfig, rng: np.random.Generator) -> pd.Series:
    n, k = len(patients), cfg.num_sites
    floor = cfg.min_patients_per_site
    if n < k * floor:
        raise SplitError(f"{n} patients cannot give {k} sites with >= {floor} patients each")
    weights = rng.lognormal(mean=0.0, sigma=cfg.quantity_sigma, size=k)
    extra = np.floor(weights / weights.sum() * (n - k * floor)).astype(int)
    extra[np.argmax(weights)] += (n - k * floor) - extra.sum()
    sizes = extra + floor
    order = rng.permutation(n)
    sites = np.empty(n, dtype=object)
    start = 0
    for site_index, size in enumerate(sizes):
        for idx in order[start : start + size]:
            sites[idx] = _site_name(site_index, k)
        start += size
    return pd.Series(sites, index=patients)


def _assign_dirichlet(labels: pd.Series, cfg: SplitConfig, rng: np.random.Generator, tries: int = 100) -> pd.Series:
    """Per label class, spread patients over sites with proportions drawn from Dirichlet(alpha)."""
    k = cfg.num_sites
    if len(labels) < k * cfg.min_patients_per_site:
        raise SplitError(f"{len(labels)} patients cannot give {k} sites with >= {cfg.min_patients_per_site} each")
    classes = sorted(labels.unique())
    for _ in range(tries):
        sites = pd.Series(index=labels.index, dtype=object)
        for cls in classes:
            members = labels.index[labels == cls].to_numpy()
            members = members[rng.permutation(len(members))]
            proportions = rng.dirichlet(np.full(k, cfg.dirichlet_alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).round().astype(int)
            for site_index, chunk in enumerate(np.split(members, cuts)):
                sites.loc[chunk] = _site_name(site_index, k)
        sizes = sites.value_counts().reindex([_site_name(i, k) for i in range(k)], fill_value=0)
        if sizes.min() >= cfg.min_patients_per_site:
            return sites
    raise SplitError(
        f"Dirichlet(alpha={cfg.dirichlet_alpha}) gave a site with < {cfg.min_patients_per_site} patients in {tries} "
        "draws; raise alpha, lower num_sites or min_patients_per_site"
    )


def _drop_small_natural_sites(table: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Natural sites below `min_patients_per_site`: dropped (or kept, per `natural_small_sites`), said in a warning."""
    patients = table.groupby(SITE_COLUMN)["patient_id"].nunique()
    small = patients[patients < cfg.min_patients_per_site].sort_index()
    if small.empty:
        return table
    listed = ", ".join(f"{site} ({count})" for site, count in small.items())
    if cfg.natural_small_sites == "keep":
        LOGGER.warning(
            "natural split: %d site(s) have fewer than split.min_patients_per_site=%d patients and are "
            "kept (split.natural_small_sites=keep): %s",
            len(small),
            cfg.min_patients_per_site,
            listed,
        )
        return table
    kept = table[~table[SITE_COLUMN].isin(small.index)]
    if kept.empty:
        raise SplitError(
            f"natural split on '{cfg.natural_key}': every site has fewer than "
            f"split.min_patients_per_site={cfg.min_patients_per_site} patients ({listed})"
        )
    LOGGER.warning(
        "natural split: dropped %d site(s) with fewer than split.min_patients_per_site=%d patients "
        "(%d images; set split.natural_small_sites=keep to keep them): %s",
        len(small),
        cfg.min_patients_per_site,
        len(table) - len(kept),
        listed,
    )
    return kept.copy()


def _official_split_of_patients(manifest: pd.DataFrame) -> pd.Series | None:
    """Per patient, the data set's own split (None when no row has one); a patient in two splits is refused."""
    if "split" not in manifest.columns or not manifest["split"].notna().any():
        return None
    check_patients_disjoint(manifest, "manifest (split.keep_official=true)")
    rows = manifest.loc[manifest["split"].notna()]
    return rows.groupby(rows["patient_id"].astype(str))["split"].first().astype(str)


def _split_keeping_official(
    labels: pd.Series, official: pd.Series, site: str, cfg: SplitConfig, rng: np.random.Generator
) -> pd.Series:
    """Official test (and val) patients keep their split; val is drawn from the rest when the data set has none."""
    given = official.reindex(labels.index)
    split = pd.Series("train", index=labels.index, dtype=object)
    split[given == "test"] = "test"
    split[given == "val"] = "val"
    if (split == "test").sum() == 0:
        raise SplitError(
            f"split.keep_official=true: site '{site}' has no patient in the data set's test split; "
            "use another split.natural_key or split.keep_official=false"
        )
    if not (official == "val").any() and cfg.val_fraction > 0:
        pool = labels[split == "train"]
        for cls in sorted(pool.unique()):
            members = pool.index[pool == cls].to_numpy()
            members = members[rng.permutation(len(members))]
            split.loc[members[: int(round(len(members) * cfg.val_fraction))]] = "val"
    if (split == "train").sum() == 0:
        raise SplitError(f"split.keep_official=true: site '{site}' keeps no patient for training")
    return split


def _split_within_site(labels: pd.Series, cfg: SplitConfig, rng: np.random.Generator) -> pd.Series:
    """Patient-level train/val/test inside one site, stratified by the patient's label."""
    split = pd.Series("train", index=labels.index, dtype=object)
    for cls in sorted(labels.unique()):
        members = labels.index[labels == cls].to_numpy()
        members = members[rng.permutation(len(members))]
        n_test = int(round(len(members) * cfg.test_fraction))
        n_val = int(round(len(members) * cfg.val_fraction))
        if len(members) >= 3 and cls == 1:  # keep at least one positive patient in test and train
            n_test = max(n_test, 1)
        split.loc[members[:n_test]] = "test"
        split.loc[members[n_test : n_test + n_val]] = "val"
    if (split == "test").sum() == 0 and len(split) >= 2:
        split.iloc[0] = "test"
    if (split == "train").sum() == 0:
        raise SplitError("a site has too few patients to keep any for training")
    return split


def _stratification_labels(manifest: pd.DataFrame) -> pd.Series:
    """Patient label used to stratify train/val/test: first task that has any label, 2*malig+calc style combined."""
    combined = None
    for task in TASKS:
        if task in manifest.columns and manifest[task].notna().any():
            labels = _patient_labels(manifest, task).clip(lower=0)
            combined = labels if combined is None else combined * 2 + labels
    if combined is None:
        patients = manifest["patient_id"].astype(str).unique()
        return pd.Series(0, index=patients)
    return combined


def split_sites(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Return a copy of `manifest` with `sim_site` (virtual site) and `split` (train/val/test) set per patient
    (natural sites below `min_patients_per_site` are left out unless `natural_small_sites=keep`)."""
    _validate(manifest, cfg)
    rng = np.random.default_rng(cfg.seed)
    table = manifest.copy()
    table["patient_id"] = table["patient_id"].astype(str)
    official = _official_split_of_patients(table) if cfg.keep_official else None
    if cfg.keep_official and official is None:
        raise SplitError("split.keep_official=true but the manifest has no split values to keep")
    if not cfg.keep_official and "split" in table.columns and table["split"].notna().any():
        counts = table["split"].dropna().astype(str).value_counts().sort_index()
        LOGGER.warning(
            "the manifest's own split (%s) is replaced by a new patient-level split (val_fraction=%s, "
            "test_fraction=%s); set split.keep_official=true to keep it",
            ", ".join(f"{name}: {n} images" for name, n in counts.items()),
            cfg.val_fraction,
            cfg.test_fraction,
        )
    patients = np.array(sorted(table["patient_id"].unique()), dtype=object)
    if cfg.kind == "natural":
        site_of_patient = _assign_natural(table, cfg)
    elif cfg.kind == "iid":
        site_of_patient = _assign_iid(patients, cfg, rng)
    elif cfg.kind == "quantity":
        site_of_patient = _assign_quantity(patients, cfg, rng)
    else:
        site_of_patient = _assign_dirichlet(_patient_labels(table, cfg.dirichlet_task).reindex(patients), cfg, rng)
    table[SITE_COLUMN] = table["patient_id"].map(site_of_patient).astype(str)
    if cfg.kind == "natural":
        table = _drop_small_natural_sites(table, cfg)

    strat = _stratification_labels(table)
    split_of_patient = pd.Series(dtype=object)
    for site in sorted(table[SITE_COLUMN].unique()):
        site_patients = sorted(table.loc[table[SITE_COLUMN] == site, "patient_id"].unique())
        labels = strat.reindex(site_patients)
        within = (
            _split_keeping_official(labels, official, site, cfg, rng)
            if official is not None
            else _split_within_site(labels, cfg, rng)
        )
        split_of_patient = pd.concat([split_of_patient, within])
    table["split"] = table["patient_id"].map(split_of_patient).astype(str)
    check_patients_disjoint(table, "split_sites")  # by construction; kept as the guard every reader relies on

    if cfg.tasks_by_source:
        for source, kept in cfg.tasks_by_source.items():
            rows = table["source"].astype(str) == source
            for task in TASKS:
                if task not in kept and task in table.columns:
                    table.loc[rows, task] = np.nan
    return table


def site_names(table: pd.DataFrame) -> list[str]:
    """Virtual sites in partition order (partition-id k <-> k-th name)."""
    return sorted(table[SITE_COLUMN].astype(str).unique())


def split_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per virtual site: patients, images per split, labelled and positive images per task, manufacturers."""
    rows = []
    for site in site_names(table):
        part = table[table[SITE_COLUMN] == site]
        row: dict[str, object] = {
            "site": site,
            "patients": int(part["patient_id"].nunique()),
            "images": int(len(part)),
        }
        for split in ("train", "val", "test"):
            row[f"images_{split}"] = int((part["split"] == split).sum())
        for task in TASKS:
            values = part[task].astype(float) if task in part.columns else pd.Series(np.nan, index=part.index)
            row[f"{task}_labelled"] = int(values.notna().sum())
            row[f"{task}_positive"] = int((values == 1).sum())
            row[f"{task}_positive_test"] = int(((values == 1) & (part["split"] == "test")).sum())
        manufacturers = part["manufacturer"].dropna().astype(str).unique() if "manufacturer" in part else []
        row["manufacturers"] = ";".join(sorted(manufacturers))
        rows.append(row)
    return pd.DataFrame(rows)
