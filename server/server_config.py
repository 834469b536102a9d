"""ServerConfig: the coordinating center's run settings (model, data pipeline, strategy, SecAgg+, rounds, run dir)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from omegaconf import MISSING

from bcvlm_model.config_io import ConfigError, load_config, to_enum
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.metrics import DEFAULT_BINS
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.training.local_train_config import LocalTrainConfig


class Strategy(StrEnum):
    """Values of `strategy.name`: the Flower aggregation strategies a run can use."""

    fedavg = "fedavg"
    fedprox = "fedprox"
    fedadam = "fedadam"
    fedmedian = "fedmedian"
    fedtrimmedavg = "fedtrimmedavg"
    krum = "krum"

    @property
    def robust(self) -> bool:
        """Needs individual updates (median, trimmed mean, Krum): incompatible with SecAgg+."""
        return self in (Strategy.fedmedian, Strategy.fedtrimmedavg, Strategy.krum)


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"key '{key}': {message}")


@dataclass
class StrategyConfig:
    """Aggregation strategy and its hyper-parameters."""

    name: Strategy = Strategy.fedavg
    proximal_mu: float = 0.01
    """FedProx: weight of mu/2 * ||w - w_global||^2 at the sites."""
    server_learning_rate: float = 0.01
    """FedAdam: server step size (eta)."""
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    """FedAdam: adaptivity (epsilon-like) term."""
    trim_fraction: float = 0.2
    """FedTrimmedAvg: fraction cut at each end."""
    krum_num_malicious: int = 0
    """Krum: assumed number of malicious sites."""

    def __post_init__(self) -> None:
        self.name = to_enum(Strategy, self.name, "strategy.name")
        if self.proximal_mu < 0:
            _fail("strategy.proximal_mu", f"must be >= 0, got {self.proximal_mu}")
        if not 0 <= self.trim_fraction < 0.5:
            _fail("strategy.trim_fraction", f"must be in [0, 0.5), got {self.trim_fraction}")


@dataclass
class SecAggConfig:
    """Flower SecAgg+ (protects individual updates from an honest-but-curious server)."""

    enabled: bool = True
    num_shares: float = 1.0
    """Shares per secret; a float <= 1 is a fraction of the sampled sites, an int > 2 an absolute number."""
    reconstruction_threshold: float = 0.67
    """Shares needed to reconstruct; a float in (0, 1] is a fraction of num_shares, an int an absolute number."""
    clipping_range: float = 1.0
    """Each coordinate of a site's UPDATE (local - global) is clipped to +-clipping_range before quantisation."""
    quantization_range: int = 4194304
    max_weight: float = 1000.0
    """Upper bound of a site's num_examples (its weight); set >= the largest site's training-set size."""
    timeout_s: float = 600.0
    """Per-stage timeout; never None (Flower's default waits forever for a dead site)."""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            _fail("secagg.timeout_s", f"must be > 0, got {self.timeout_s}")
        if not self.clipping_range > 0:
            _fail("secagg.clipping_range", f"must be > 0, got {self.clipping_range}")
        if not (0 < self.num_shares <= 1 or (self.num_shares > 2 and float(self.num_shares).is_integer())):
            _fail("secagg.num_shares", f"must be a fraction in (0, 1] or a whole number > 2, got {self.num_shares}")
        threshold = self.reconstruction_threshold
        if not (0 < threshold <= 1 or (threshold > 1 and float(threshold).is_integer())):
            _fail("secagg.reconstruction_threshold", f"must be a fraction in (0, 1] or a whole number, got {threshold}")
        if self.num_shares > 2 and threshold > 1 and not threshold < self.num_shares:
            _fail("secagg.reconstruction_threshold", f"must be < num_shares ({self.num_shares}), got {threshold}")

    def flower_share_counts(self) -> tuple[int | float, int | float]:
        """(num_shares, reconstruction_threshold) as Flower's SecAgg+ workflow reads them: whole numbers above 1 as
        int (an absolute count), the rest as float (a fraction). The config stores both as float, and Flower reads
        a float 51.0 as "51 times the sampled sites"."""
        return _count_or_fraction(self.num_shares), _count_or_fraction(self.reconstruction_threshold)


def _count_or_fraction(value: float) -> int | float:
    return int(value) if value > 1 else float(value)


@dataclass
class UpdateGuardConfig:
    """Server-side rejection of bad updates (only possible without SecAgg+: it needs individual updates)."""

    max_update_norm: float = 100.0
    """Reject an update whose global L2 norm exceeds this; non-finite updates are always rejected."""

    def __post_init__(self) -> None:
        if not self.max_update_norm > 0:
            _fail("update_guard.max_update_norm", f"must be > 0, got {self.max_update_norm}")


@dataclass
class EvaluationConfig:
    """Federated evaluation: histogram resolution and when a metric is withheld."""

    min_cases: int = 10
    """A metric needs at least this many positive AND negative cases, else it is null with a reason."""
    specificity: float = 0.9
    """Sensitivity is reported at this specificity."""
    n_bins: int = DEFAULT_BINS

    def __post_init__(self) -> None:
        if self.min_cases < 1:
            _fail("evaluation.min_cases", f"must be >= 1, got {self.min_cases}")
        if not 0 < self.specificity <= 1:
            _fail("evaluation.specificity", f"must be in (0, 1], got {self.specificity}")
        if self.n_bins < 2:
            _fail("evaluation.n_bins", f"must be >= 2, got {self.n_bins}")


@dataclass
class ServerConfig:
    """One federated run. Written to the run directory as `effective_config.yaml`."""

    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    text: TextConfig = field(default_factory=TextConfig)
    local_train: LocalTrainConfig = field(default_factory=LocalTrainConfig)
    dp_model: bool = True
    """Make the model DP-ready (`make_dp_ready` with `dp_trainable`) at the server and every site, so sites can
    train it with DP-SGD; the sites' own privacy budgets decide the noise."""
    dp_trainable: DPReadyConfig = field(default_factory=DPReadyConfig)
    dp_target_epsilon: Optional[float] = None
    """Ask sites to stay within this epsilon; each site uses the smaller of it and its own budget (None = theirs)."""
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    secagg: SecAggConfig = field(default_factory=SecAggConfig)
    update_guard: UpdateGuardConfig = field(default_factory=UpdateGuardConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    rounds: int = 10
    min_sites: int = 2
    """Sites that must be connected before a round starts, and the minimum sampled per round."""
    fraction_fit: float = 1.0
    fraction_evaluate: float = 1.0
    round_timeout_s: float = 1800.0
    """Per-round wait for fit / evaluate replies without SecAgg+ (dead sites are dropped after it)."""
    run_dir: str = MISSING
    seed: int = 0
    init_checkpoint: Optional[str] = None
    """Start from this checkpoint's trainable weights instead of the model's initialisation."""

    def __post_init__(self) -> None:
        # Checks across sections; each section checks its own keys and enums.
        if self.secagg.enabled and self.strategy.name.robust:
            _fail("strategy.name", f"'{self.strategy.name}' needs individual updates: set secagg.enabled: false")
        if self.rounds < 1:
            _fail("rounds", f"must be >= 1, got {self.rounds}")
        if self.min_sites < 1:
            _fail("min_sites", f"must be >= 1, got {self.min_sites}")
        if self.secagg.enabled and self.min_sites < 2:
            _fail("min_sites", "SecAgg+ needs at least 2 sites per round")
        if not 0 < self.fraction_fit <= 1:
            _fail("fraction_fit", f"must be in (0, 1], got {self.fraction_fit}")
        if not 0 <= self.fraction_evaluate <= 1:
            _fail("fraction_evaluate", f"must be in [0, 1], got {self.fraction_evaluate}")
        if not self.round_timeout_s > 0:
            _fail("round_timeout_s", f"must be > 0, got {self.round_timeout_s}")
        if self.dp_target_epsilon is not None and not self.dp_target_epsilon > 0:
            _fail("dp_target_epsilon", f"must be > 0 or null, got {self.dp_target_epsilon}")


def load_server_config(path: str | os.PathLike[str] | None, overrides: tuple[str, ...] = ()) -> ServerConfig:
    """Load a server YAML; unknown keys, enum words and ranges are checked while it loads (ConfigError)."""
    return load_config(ServerConfig, path, overrides)
