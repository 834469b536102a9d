"""Test-wide settings: offline model hubs, Flower telemetry and update check off, nothing written outside tmp dirs."""

from __future__ import annotations

import os

from bcvlm_client.flower_process import apply_flower_env_defaults

apply_flower_env_defaults()  # the same settings every Flower process bcvlm starts gets
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bcvlm_model.cpu_memory import keep_freed_memory  # noqa: E402  (after the environment above)

keep_freed_memory()  # as the CLIs do: tests run the same code paths at the same speed
