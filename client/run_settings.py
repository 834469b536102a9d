"""RoundSettings: what the server sends a site each round (model/preprocess/text/local-train configs, round index).

The server encodes the dataclasses as JSON strings in the fit/evaluate config; `encode_round_settings` and
`RoundSettings.from_config` are the two ends of that contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from bcvlm_model.config_io import config_from_dict, config_to_dict
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.metrics import DEFAULT_BINS
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.training.local_train_config import LocalTrainConfig

CONFIG_KEYS = ("model-config", "preprocess-config", "text-config", "local-train")


@dataclass
class RoundSettings:
    """Everything a site needs from the server for one round."""

    server_round: int
    planned_rounds: int
    proximal_mu: float
    n_bins: int
    model: ModelConfig
    preprocess: PreprocessConfig
    text: TextConfig
    local_train: LocalTrainConfig
    dp_trainable: DPReadyConfig | None
    """What trains when the federation's model is DP-ready (None = the model config's own trainable set)."""
    dp: bool = True
    """The server asks the sites to train with DP-SGD (a site with DP on declines a round that says otherwise)."""
    dp_target_epsilon: float | None = None
    """A budget the server asks sites to stay within; a site uses the smaller of it and its own."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "RoundSettings":
        """Parse a fit/evaluate instruction config; a missing key is a clear error."""
        missing = [key for key in ("server-round", "planned-rounds", "dp", *CONFIG_KEYS) if key not in config]
        if missing:
            raise KeyError(f"round instructions lack {missing}: is the server a bcvlm ServerApp of the same version?")
        return cls(
            server_round=int(config["server-round"]),
            planned_rounds=int(config["planned-rounds"]),
            proximal_mu=float(config.get("proximal-mu", 0.0)),
            n_bins=int(config.get("n-bins", DEFAULT_BINS)),
            model=config_from_dict(ModelConfig, json.loads(str(config["model-config"]))),
            preprocess=config_from_dict(PreprocessConfig, json.loads(str(config["preprocess-config"]))),
            text=config_from_dict(TextConfig, json.loads(str(config["text-config"]))),
            local_train=config_from_dict(LocalTrainConfig, json.loads(str(config["local-train"]))),
            dp_trainable=_optional_dp_trainable(config.get("dp-trainable", "null")),
            dp=bool(config["dp"]),
            dp_target_epsilon=_optional_positive(config.get("dp-target-epsilon", 0.0)),
        )


def _optional_positive(value: Any) -> float | None:
    number = float(value)
    return number if number > 0 else None


def _optional_dp_trainable(payload: Any) -> DPReadyConfig | None:
    decoded = json.loads(str(payload))
    return None if decoded is None else config_from_dict(DPReadyConfig, decoded)


def encode_round_settings(
    *,
    server_round: int,
    planned_rounds: int,
    proximal_mu: float,
    n_bins: int,
    model: ModelConfig,
    preprocess: PreprocessConfig,
    text: TextConfig,
    local_train: LocalTrainConfig,
    dp_trainable: DPReadyConfig | None,
    dp: bool = True,
    dp_target_epsilon: float | None = None,
) -> dict[str, Any]:
    """The instruction config (flat scalars and JSON strings) for one round (0.0 = no requested epsilon)."""
    return {
        "dp": bool(dp),
        "dp-target-epsilon": float(dp_target_epsilon or 0.0),
        "server-round": int(server_round),
        "planned-rounds": int(planned_rounds),
        "proximal-mu": float(proximal_mu),
        "n-bins": int(n_bins),
        "model-config": json.dumps(config_to_dict(model), sort_keys=True),
        "preprocess-config": json.dumps(config_to_dict(preprocess), sort_keys=True),
        "text-config": json.dumps(config_to_dict(text), sort_keys=True),
        "local-train": json.dumps(config_to_dict(local_train), sort_keys=True),
        "dp-trainable": json.dumps(None if dp_trainable is None else config_to_dict(dp_trainable), sort_keys=True),
    }
