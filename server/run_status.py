"""What a run directory says about its rounds: one line per round with every site's outcome, and the failed rounds.

Used by `bcvlm-server status RUN_DIR`, by `bcvlm-server` while it follows a run, and for its exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from bcvlm_client.round_record import RoundRecord, record_to_json
from bcvlm_model.atomic_io import read_json
from bcvlm_server.round_outcomes import describe_outcome
from bcvlm_server.run_records import RunRecords


def round_line(record: RoundRecord, names: Mapping[str, str]) -> str:
    """`round 2 trained in 81.0 s: alpha trained, eval ok; beta declined (BUDGET_EXHAUSTED), eval ok`."""
    parts = []
    for node, outcome in sorted(record.site_outcomes.items()):
        parts.append(
            f"{names.get(node, 'node ' + node)} {describe_outcome(record_to_json(outcome))}"
            + (f", eval {outcome.evaluate}" if outcome.evaluate else "")
        )
    line = f"round {record.round} {record.status} in {record.wall_seconds:.1f} s"
    return line + (": " + "; ".join(parts) if parts else "")


def failed_rounds(run_dir: str | Path, first_round: int = 1) -> list[RoundRecord]:
    """Round records of the completed rounds >= `first_round` whose status is `failed`."""
    return [record for record in RunRecords(run_dir).completed_rounds_metrics(first_round) if record.failed]


def render_status(run_dir: str | Path) -> str:
    """The `bcvlm-server status RUN_DIR` report: progress, the Flower runs, one line per completed round."""
    records = RunRecords(run_dir)
    state = read_json(records.state_path) if records.state_path.is_file() else {}
    lines = [
        f"run directory {records.root}",
        f"completed rounds: {state.get('last_completed_round', 0)} of {state.get('planned_rounds', '?')}",
    ]
    flower_runs = records.root / "flower_runs.json"
    if flower_runs.is_file():
        for entry in read_json(flower_runs):
            if "finished_at" in entry:
                lines.append(f"Flower run {entry['run_id']} ended {entry['finished_at']}: {entry.get('status')}")
            else:
                lines.append(
                    f"Flower run {entry['run_id']} submitted {entry.get('submitted_at')}"
                    + (" (resume)" if entry.get("resume") else "")
                )
    names = records.site_names()
    for record in records.completed_rounds_metrics():
        lines.append(round_line(record, names))
        if record.failure:
            lines.append(f"  failed: {record.failure}")
    return "\n".join(lines)
