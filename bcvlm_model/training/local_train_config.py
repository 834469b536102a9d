"""LocalTrainConfig: the optimiser and step budget of one local training call (one federated round at a site)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bcvlm_model.config_io import ConfigError, to_enum


class Optimizer(StrEnum):
    """Values of `local_train.optimizer` (and `pretrain.optimizer` in a simulation)."""

    adamw = "adamw"
    sgd = "sgd"


@dataclass
class LocalTrainConfig:
    """Settings of `train_local`; sent by the server to every site each round.

    Precision and seeding are not here: they belong to whoever runs the loop (a site's own compute config), and a
    server must not be able to choose a site's random streams."""

    local_steps: int = 0
    """Optimizer steps per call; 0 = one pass over the loader (len(loader) steps)."""
    optimizer: Optimizer = Optimizer.adamw
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    """SGD momentum (ignored by AdamW)."""

    def __post_init__(self) -> None:
        self.optimizer = to_enum(Optimizer, self.optimizer, "local_train.optimizer")
        if self.local_steps < 0:
            raise ConfigError(f"key 'local_train.local_steps': must be >= 0, got {self.local_steps}")
        if self.learning_rate <= 0:
            raise ConfigError(f"key 'local_train.learning_rate': must be > 0, got {self.learning_rate}")
