"""SimulationConfig: the Hydra structured-config schema of `bcvlm simulate` and its loader (`key=value` overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bcvlm_client.site_config import ComputeConfig, PrivacyBudgetConfig, SiteEvaluationConfig
from bcvlm_model.config_io import ConfigError
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.training.local_train_config import Optimizer
from bcvlm_server.server_config import ServerConfig
from bcvlm_simulation.splits import SplitConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"
"""Packaged Hydra configs: simulate.yaml (generic), demo.yaml (the main job), scale50.yaml, tiny.yaml (tests)."""
SCHEMA_NAME = "simulation_schema"


@dataclass
class CohortConfig:
    """Where the images come from: a prepared manifest, or the synthetic cohort made on the fly."""

    manifest: str = ""
    """A manifest.csv written by `bcvlm prepare` (RSNA, VinDr, ...); empty = generate the synthetic cohort."""
    cache_dir: Optional[str] = None
    """Preprocessed-image cache of that manifest (None = decode DICOMs on the fly)."""
    synth: SynthConfig = field(default_factory=SynthConfig)
    """Synthetic cohort settings (used only when `manifest` is empty)."""
    synth_dir: str = ""
    """Folder for the synthetic DICOMs, manifest and cache; empty = <run_dir>/cohort. Reused when complete."""


@dataclass
class SiteSettings:
    """What every virtual site gets in its SiteConfig besides its data (compute, privacy budget, evaluation release)."""

    compute: ComputeConfig = field(default_factory=ComputeConfig)
    privacy: PrivacyBudgetConfig = field(default_factory=PrivacyBudgetConfig)
    evaluation: SiteEvaluationConfig = field(default_factory=SiteEvaluationConfig)


@dataclass
class ResourcesConfig:
    """Ray resources: each virtual site's ClientApp gets this share (Flower gives all sites the same share)."""

    num_cpus_per_site: float = 1.0
    num_gpus_per_site: float = 0.0
    ray_num_cpus: int = 0
    """CPUs the local Ray may use in all (0 = every core of this machine); unused with `ray_address`."""
    ray_num_gpus: int = 0
    ray_address: Optional[str] = None
    """Join this existing Ray cluster instead of starting a local Ray: "auto" (the cluster `ray start` made on this
    machine) or "<head ip>:<port>" (the GCS address `ray start --head` prints). Its nodes declare their own CPUs and GPUs; the sites are
    spread over them with the per-site shares above (`ray_num_cpus`/`ray_num_gpus` are then unused). None = start
    a local Ray of this run's own, even where another cluster runs on this machine."""

    def __post_init__(self) -> None:
        if not self.num_cpus_per_site > 0:
            raise ValueError(f"resources.num_cpus_per_site must be > 0, got {self.num_cpus_per_site}")
        if self.num_gpus_per_site < 0:
            raise ValueError(f"resources.num_gpus_per_site must be >= 0, got {self.num_gpus_per_site}")
        if self.ray_address is not None and not str(self.ray_address).strip():
            raise ValueError("resources.ray_address must not be empty (null = start a local Ray)")


@dataclass
class BaselinesConfig:
    """Comparisons trained in the same run on the same test sets, for the same total number of local epochs."""

    centralized: bool = True
    """One model on the union of all sites' training data."""
    local_only: bool = True
    """One model per site on that site's data alone."""
    image_only: bool = True
    """The fusion ablation: image-only model (kind=image_only), centralized on the union of training data."""
    dp_centralized: bool = False
    """One model on the union of all sites' training data under DP-SGD with one site's budget (`site.privacy`:
    epsilon, delta, clip, unit), from the same start: the fair reference for what federation costs. Needs DP on."""
    private: bool = False
    """Train the baselines with DP-SGD too (same per-site budget); False = non-private references."""
    no_site_fields: bool = False
    """The site-field ablation: the centralized baseline again, with `text.drop_site_fields` (no manufacturer or
    machine in the report), and its paired difference to `centralized`. Needs `centralized`."""

    def __post_init__(self) -> None:
        if self.no_site_fields and not self.centralized:
            raise ValueError(
                "baselines.no_site_fields=true is compared with the centralized baseline: set baselines.centralized=true"
            )


def _public_synth() -> SynthConfig:
    return SynthConfig(n_patients=60, seed=1)


@dataclass
class PretrainConfig:
    """Non-private pretraining of the trainable parts on a public cohort before the private training.

    DP-SGD noise grows with the number of parameters trained under DP, so a fusion trained from random
    initialisation on a few hundred private images learns little; starting from weights trained on public data
    (CBIS-DDSM, VinDr-Mammo, or the synthetic stand-in) is the standard DP recipe. The federated run
    (`server.init_checkpoint`) and every baseline start from the same public weights of their model kind.
    """

    enabled: bool = False
    cohort: CohortConfig = field(default_factory=lambda: CohortConfig(synth=_public_synth()))
    """The public cohort: a prepared manifest, or a synthetic cohort with its own seed (other patients)."""
    epochs: int = 3
    """Passes over the public training rows."""
    optimizer: Optional[Optimizer] = None
    """Optimizer of the public pretraining (None = `server.local_train.optimizer`). The public data pays no privacy
    budget, so it can use what trains fastest (AdamW) while the sites keep DP-SGD's optimizer."""
    learning_rate: Optional[float] = None
    """Learning rate of the public pretraining (None = `server.local_train.learning_rate`)."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"pretrain.epochs must be >= 1, got {self.epochs}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"pretrain.learning_rate must be > 0, got {self.learning_rate}")


@dataclass
class SimulationConfig:
    """One simulated federation: cohort, split into virtual sites, federated run, baselines, report."""

    run_dir: str = "runs/simulation"
    seed: int = 0
    """Seeds the split, every site, the server, the baselines and Ray's workers."""
    overwrite: bool = False
    """Allow reusing a run_dir that already holds a finished run (its results are replaced)."""
    cohort: CohortConfig = field(default_factory=CohortConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    site: SiteSettings = field(default_factory=SiteSettings)
    server: ServerConfig = field(default_factory=lambda: ServerConfig(run_dir="${run_dir}/federated"))
    """The coordinating center's config: model, preprocessing, text, local training, strategy, SecAgg+, rounds."""
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    progress: bool = True
    """Progress bars and per-step site lines."""
    bootstrap_resamples: int = 1000
    """Patient-clustered bootstrap resamples for every AUC's 95% CI and the paired differences (seeded by `seed`)."""


def register_schema() -> None:
    """Register the schema in Hydra's ConfigStore so YAMLs can extend it (`defaults: [simulation_schema, _self_]`)."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=SimulationConfig)


def load_simulation_config(
    config_name: str = "simulate",
    overrides: Sequence[str] = (),
    config_dir: str | Path | None = None,
) -> SimulationConfig:
    """Compose `config_name` from `config_dir` (default: the packaged conf/) with `key=value` overrides, validated."""
    register_schema()
    folder = Path(config_dir).resolve() if config_dir else CONF_DIR
    if not folder.is_dir():
        raise ConfigError(f"config folder not found: {folder}")
    try:
        with initialize_config_dir(config_dir=str(folder), version_base=None):
            composed = compose(config_name=config_name, overrides=list(overrides))
        return OmegaConf.to_object(composed)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as exc:
        message = " ".join(str(exc).split()) if str(exc) else type(exc).__name__
        root = exc
        while root.__cause__ is not None:
            root = root.__cause__
        detail = " ".join(str(root).split())
        if detail not in message:  # Hydra says only "Error merging override k=v": add the key, value and choices
            message = f"{message}: {detail}"
        raise ConfigError(f"{folder / config_name}.yaml + overrides {list(overrides)}: {message}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{folder / config_name}.yaml + overrides {list(overrides)}: {exc}") from exc
