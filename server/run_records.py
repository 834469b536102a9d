"""RunRecords: what the ServerApp writes into a run directory and reads back to resume.

Layout: `effective_config.yaml`, `state.json` (`last_completed_round`, written last, atomically, after a round's
files), `rounds/round-XXXX/{checkpoint/, strategy_state.safetensors, strategy_state.json, metrics.json}`,
`logs/server.log`. A round counts as completed only once `state.json` names it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file
from safetensors.numpy import save as save_safetensors_bytes

from bcvlm_client.round_record import ROUND_RECORD_FILE, RoundRecord, load_round_record, save_round_record
from bcvlm_model.atomic_io import atomic_write_bytes, atomic_write_json, read_json
from bcvlm_model.config_io import save_effective_config

STATE_FILE = "state.json"
SITES_FILE = "sites.json"
"""{Flower node id: site name}, written by `bcvlm-server` when it registers the sites (absent in simulation)."""


class RunRecords:
    """Reader/writer of one run directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / "server.log"

    @property
    def sites_path(self) -> Path:
        return self.root / SITES_FILE

    def site_names(self) -> dict[str, str]:
        """{node id: site name} as `bcvlm-server` registered them; empty when unknown."""
        if not self.sites_path.is_file():
            return {}
        try:
            names = read_json(self.sites_path)
        except ValueError:
            return {}
        return {str(node): str(name) for node, name in names.items()} if isinstance(names, dict) else {}

    def save_site_names(self, names: dict[str, str]) -> Path:
        return atomic_write_json(self.sites_path, {**self.site_names(), **{str(k): v for k, v in names.items()}})

    def completed_rounds_metrics(self, first: int = 1) -> list[RoundRecord]:
        """Round records of rounds `first`..last completed (a missing file is skipped)."""
        found = []
        for server_round in range(max(1, first), self.last_completed_round() + 1):
            if self.metrics_path(server_round).is_file():
                found.append(self.load_metrics(server_round))
        return found

    def round_dir(self, server_round: int) -> Path:
        return self.root / "rounds" / f"round-{server_round:04d}"

    def checkpoint_dir(self, server_round: int) -> Path:
        return self.round_dir(server_round) / "checkpoint"

    def metrics_path(self, server_round: int) -> Path:
        return self.round_dir(server_round) / ROUND_RECORD_FILE

    # --- run state ----------------------------------------------------------------------------------------------
    def last_completed_round(self) -> int:
        if not self.state_path.is_file():
            return 0
        return int(read_json(self.state_path).get("last_completed_round", 0))

    def write_effective_config(self, config: Any) -> Path:
        return save_effective_config(config, self.root / "effective_config.yaml")

    def mark_round_completed(self, server_round: int, planned_rounds: int) -> None:
        """Written last: a round whose files exist but is not named here is redone on resume."""
        atomic_write_json(
            self.state_path,
            {"last_completed_round": int(server_round), "planned_rounds": int(planned_rounds), "time": time.time()},
        )

    # --- per-round files ----------------------------------------------------------------------------------------
    def save_strategy_state(self, server_round: int, strategy_name: str, arrays: dict[str, np.ndarray]) -> None:
        folder = self.round_dir(server_round)
        atomic_write_bytes(
            folder / "strategy_state.safetensors",
            save_safetensors_bytes({key: np.ascontiguousarray(value) for key, value in arrays.items()})
            if arrays
            else save_safetensors_bytes({"_empty": np.zeros(0, dtype=np.float32)}),
        )
        atomic_write_json(
            folder / "strategy_state.json",
            {"strategy": strategy_name, "round": int(server_round), "arrays": sorted(arrays)},
        )

    def load_strategy_state(self, server_round: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        folder = self.round_dir(server_round)
        meta = read_json(folder / "strategy_state.json")
        arrays = load_file(str(folder / "strategy_state.safetensors"))
        arrays.pop("_empty", None)
        return meta, arrays

    def save_metrics(self, server_round: int, record: RoundRecord) -> Path:
        """Write the round's record (metrics.json)."""
        return save_round_record(self.metrics_path(server_round), record)

    def load_metrics(self, server_round: int) -> RoundRecord:
        """The round's record; RoundRecordError naming the file and field when it cannot be read."""
        return load_round_record(self.metrics_path(server_round))
