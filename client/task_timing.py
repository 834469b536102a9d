"""Where a ClientApp process's time goes: one `task-timing {json}` line per message in the site log (process start,
entry of `approved_clientapp`, start and end of handling, whether torch was loaded before and after handling), for
the round overhead breakdown in benchmarks/deployment_round_overhead.py and for a site that wants to see it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from flwr.app import Context, Message
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

LOGGER = logging.getLogger("bcvlm_client.task_timing")
LOGGER.propagate = False  # `bcvlm_client` may write to the same site log: no line twice
MARKER = "task-timing "
_MARKS: dict[str, float] = {}


def process_started_at() -> float | None:
    """This process's start as epoch seconds (Linux: /proc/self/stat start ticks after boot + /proc/stat btime)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def mark(name: str) -> None:
    """Note the wall time of a named point in this process (e.g. `main`: our entry point started)."""
    _MARKS[name] = time.time()


def _stage(msg: Message) -> str | None:
    if not msg.has_content():
        return None
    configs = msg.content.config_records.get(RECORD_KEY_CONFIGS)
    return None if configs is None else str(configs.get(Key.STAGE))


def task_timing_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """Outermost ClientApp mod: times the handling of `msg` and logs it with the process's earlier marks."""
    torch_before = "torch" in sys.modules
    stage = _stage(msg)  # before the SecAgg+ mod consumes the message's configs
    started = time.time()
    try:
        return call_next(msg, context)
    finally:
        LOGGER.info(
            "%s%s",
            MARKER,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "message_id": msg.metadata.message_id,
                    "type": str(msg.metadata.message_type),
                    "round": str(msg.metadata.group_id),
                    "stage": stage,
                    "process_start": process_started_at(),
                    **_MARKS,
                    "handle_start": started,
                    "handle_end": time.time(),
                    "torch_before": torch_before,
                    "torch_after": "torch" in sys.modules,
                }
            ),
        )
