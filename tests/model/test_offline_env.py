"""The offline environment defaults: applied over whatever the environment held."""

from __future__ import annotations

from bcvlm_model.offline_env import OFFLINE_ENV_DEFAULTS, apply_offline_env_defaults


def test_applying_forces_the_model_hub_offline_over_a_user_setting() -> None:
    environ = {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "OTHER": "kept"}
    apply_offline_env_defaults(environ)
    assert environ == {**OFFLINE_ENV_DEFAULTS, "OTHER": "kept"}
    assert environ["HF_HUB_OFFLINE"] == "1" and environ["TRANSFORMERS_OFFLINE"] == "1"
