"""Test-wide settings: offline model hubs, Flower telemetry off, nothing written outside tmp dirs."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bcvlm_model.cpu_memory import keep_freed_memory  # noqa: E402  (after the environment above)

keep_freed_memory()  # as the CLIs do: tests run the same code paths at the same speed
