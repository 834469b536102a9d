"""Read the federated server's round records (`rounds/round-XXXX/metrics.json`) into report rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bcvlm_client.round_record import ROUND_RECORD_FILE, RoundRecord, load_round_record
from bcvlm_model import TASKS
from bcvlm_model.atomic_io import read_json


def round_dirs(federated_dir: Path) -> list[Path]:
    """Completed round folders in round order."""
    return sorted(p for p in (federated_dir / "rounds").glob("round-*") if (p / ROUND_RECORD_FILE).is_file())


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


def round_row(record: RoundRecord) -> dict[str, Any]:
    """One report row from the server's round record: pooled and per-site AUC per task, epsilon and declined per
    site, bytes up/down summed over sites, wall time. Sites are node ids."""
    return {
        "round": record.round,
        "pooled_auc": {
            task: record.evaluate.pooled[task].auc if task in record.evaluate.pooled else None for task in TASKS
        },
        "site_auc": {
            site: {task: values[task].auc if task in values else None for task in TASKS}
            for site, values in record.evaluate.sites.items()
        },
        "epsilon": dict(record.epsilon),
        "declined": {site: entry.declined for site, entry in record.fit.sites.items()},
        "bytes_up": sum(entry.up for entry in record.bytes.values()),
        "bytes_down": sum(entry.down for entry in record.bytes.values()),
        "wall_time_s": record.wall_seconds,
    }


def read_round_metrics(federated_dir: Path) -> list[dict[str, Any]]:
    """Every completed round's row, in order."""
    return [round_row(load_round_record(folder / ROUND_RECORD_FILE)) for folder in round_dirs(federated_dir)]
