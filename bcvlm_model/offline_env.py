"""The offline environment defaults of every bcvlm process: no model-hub downloads, no tokenizer thread pools."""

from __future__ import annotations

import os
from typing import MutableMapping

OFFLINE_ENV_DEFAULTS: dict[str, str] = {
    # Weights and tokenizers come from installed packages or local folders only; a hub download would leak which
    # model a hospital runs and fail anyway on a site without internet.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # The Rust tokenizers' thread pool deadlocks in forked DataLoader workers and Ray workers, and warns at every fork.
    "TOKENIZERS_PARALLELISM": "false",
}
"""The one definition; the Flower launcher's set (bcvlm_client.flower_process.FLOWER_ENV_DEFAULTS) includes it."""


def apply_offline_env_defaults(environ: MutableMapping[str, str] = os.environ) -> MutableMapping[str, str]:
    """Put OFFLINE_ENV_DEFAULTS into `environ` (default: this process; call it before transformers is imported)."""
    environ.update(OFFLINE_ENV_DEFAULTS)
    return environ
