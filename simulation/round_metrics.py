"""Read the federated server's per-round metrics files (`rounds/round-XXXX/metrics.json`) into report rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bcvlm_model import TASKS
from bcvlm_model.atomic_io import read_json


def round_dirs(federated_dir: Path) -> list[Path]:
    """Completed round folders in round order."""
    return sorted(p for p in (federated_dir / "rounds").glob("round-*") if (p / "metrics.json").is_file())


def final_checkpoint_dir(federated_dir: Path) -> Path:
    """The last completed round's global checkpoint folder."""
    state = federated_dir / "state.json"
    if state.is_file():
        last = int(read_json(state).get("last_completed_round", 0))
        folder = federated_dir / "rounds" / f"round-{last:04d}" / "checkpoint"
        if last > 0 and folder.is_dir():
            return folder
    candidates = [p / "checkpoint" for p in round_dirs(federated_dir) if (p / "checkpoint").is_dir()]
    if not candidates:
        raise FileNotFoundError(f"no global checkpoint under {federated_dir / 'rounds'}: did the federated run fail?")
    return candidates[-1]


def _auc(entry: Any) -> float | None:
    if isinstance(entry, dict):
        value = entry.get("auc")
        return None if value is None else float(value)
    return None


def round_row(raw: dict[str, Any], server_round: int) -> dict[str, Any]:
    """One report row from the server's round file (layout in bcvlm_server.federated_strategy): pooled and per-site
    AUC per task, epsilon and declined per site, bytes up/down summed over sites, wall time. Sites are node ids."""
    evaluation = raw.get("evaluate", {})
    pooled = evaluation.get("pooled", {})
    sites = evaluation.get("sites", {})
    fit_sites = raw.get("fit", {}).get("sites", {})
    counts = raw.get("bytes", {})
    return {
        "round": int(raw.get("round", server_round)),
        "pooled_auc": {task: _auc(pooled.get(task)) for task in TASKS},
        "site_auc": {str(site): {task: _auc(values.get(task)) for task in TASKS} for site, values in sites.items()},
        "epsilon": {
            str(site): (None if value is None else float(value)) for site, value in raw.get("epsilon", {}).items()
        },
        "declined": {str(site): int(entry.get("declined", 0)) for site, entry in fit_sites.items()},
        "bytes_up": int(sum(int(entry.get("up", 0)) for entry in counts.values())),
        "bytes_down": int(sum(int(entry.get("down", 0)) for entry in counts.values())),
        "wall_time_s": float(raw.get("wall_seconds", 0.0)),
    }


def read_round_metrics(federated_dir: Path) -> list[dict[str, Any]]:
    """Every completed round's row, in order."""
    rows = []
    for folder in round_dirs(federated_dir):
        server_round = int(folder.name.split("-")[1])
        rows.append(round_row(read_json(folder / "metrics.json"), server_round))
    return rows
