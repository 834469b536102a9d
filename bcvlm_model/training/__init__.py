"""Local training and evaluation loops (no Flower): used by federated sites, simulation and baselines."""

from bcvlm_model.training.local_train_config import LocalTrainConfig
from bcvlm_model.training.loops import EvalResult, LocalTrainResult, evaluate, train_local

__all__ = ["EvalResult", "LocalTrainConfig", "LocalTrainResult", "evaluate", "train_local"]
