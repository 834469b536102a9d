"""SitePrivacyLedger: the site's DP accountant history on its own disk; epsilon only grows, restarts never reset it.

The budget is charged BEFORE training (the accountant history of the coming round is written atomically first),
so a crash mid-round can only over-count, never under-count, the privacy spent.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.privacy.dp_training import epsilon_of_history, projected_epsilon

LEDGER_FILENAME = "privacy_ledger.json"
LEDGER_VERSION = 1
EPSILON_SLACK = 1e-9


class LedgerError(RuntimeError):
    """The ledger on disk is inconsistent with the site's settings or was tampered with."""


@dataclass(frozen=True)
class BudgetCheck:
    """Whether the next round fits the budget, with the epsilon it would reach."""

    allowed: bool
    epsilon_now: float
    epsilon_after: float
    target_epsilon: float


class SitePrivacyLedger:
    """Persistent (target epsilon, delta) budget and accountant history of one site."""

    def __init__(self, path: Path, payload: dict[str, Any]) -> None:
        self.path = path
        self._payload = payload

    # --- creation / loading -------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls, state_dir: str | os.PathLike[str], *, target_epsilon: float, delta: float, accountant: str = "rdp"
    ) -> "SitePrivacyLedger":
        """Load the site's ledger, or create an empty one; refuse one written for another budget or accountant."""
        path = Path(state_dir) / LEDGER_FILENAME
        if not path.exists():
            payload = {
                "version": LEDGER_VERSION,
                "target_epsilon": float(target_epsilon),
                "delta": float(delta),
                "accountant": accountant,
                "accountant_state": {"mechanism": accountant, "history": []},
                "epsilon_spent": 0.0,
                "rounds": [],
            }
            ledger = cls(path, payload)
            ledger._write()
            return ledger
        try:
            payload = read_json(path)
        except ValueError as exc:
            raise LedgerError(f"{path}: not valid JSON ({exc}); refusing to start with an unreadable ledger") from exc
        ledger = cls(path, payload)
        ledger._check_settings(target_epsilon, delta, accountant)
        ledger._check_consistent()
        return ledger

    def _check_settings(self, target_epsilon: float, delta: float, accountant: str) -> None:
        stored = (self._payload.get("target_epsilon"), self._payload.get("delta"), self._payload.get("accountant"))
        wanted = (float(target_epsilon), float(delta), accountant)
        for name, old, new in zip(("target_epsilon", "delta", "accountant"), stored, wanted):
            if old != new:
                raise LedgerError(
                    f"{self.path}: the ledger was written for {name}={old!r} but the site config says {new!r}. "
                    "A privacy budget cannot be changed silently: restore the original setting, or move the ledger "
                    "away deliberately (documenting why) to start a new accounting."
                )

    def _check_consistent(self) -> None:
        recomputed = epsilon_of_history(self.accountant_state, self.delta, self.accountant)
        if not math.isclose(recomputed, self.epsilon_spent, rel_tol=1e-6, abs_tol=1e-9):
            raise LedgerError(
                f"{self.path}: epsilon_spent={self.epsilon_spent} does not match its accountant history "
                f"({recomputed}); the ledger was edited"
            )

    # --- read-only views ----------------------------------------------------------------------------------------
    @property
    def target_epsilon(self) -> float:
        return float(self._payload["target_epsilon"])

    @property
    def delta(self) -> float:
        return float(self._payload["delta"])

    @property
    def accountant(self) -> str:
        return str(self._payload["accountant"])

    @property
    def epsilon_spent(self) -> float:
        return float(self._payload["epsilon_spent"])

    @property
    def accountant_state(self) -> dict[str, Any]:
        state = self._payload["accountant_state"]
        return {"mechanism": state["mechanism"], "history": [list(entry) for entry in state["history"]]}

    @property
    def rounds(self) -> list[dict[str, Any]]:
        return [dict(entry) for entry in self._payload["rounds"]]

    # --- budget -------------------------------------------------------------------------------------------------
    def check_next_round(self, noise_multiplier: float, sample_rate: float, steps: int) -> BudgetCheck:
        """Would `steps` more DP-SGD steps keep epsilon within the target?"""
        after = projected_epsilon(
            self.accountant_state, self.delta, self.accountant, noise_multiplier, sample_rate, steps
        )
        return BudgetCheck(after <= self.target_epsilon + EPSILON_SLACK, self.epsilon_spent, after, self.target_epsilon)

    def charge_round(self, server_round: int, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """Record the coming round's DP-SGD steps before training; returns the new total epsilon."""
        check = self.check_next_round(noise_multiplier, sample_rate, steps)
        if not check.allowed:
            raise LedgerError(
                f"round {server_round} would reach epsilon {check.epsilon_after:.4f} > target {self.target_epsilon}"
            )
        state = self.accountant_state
        state["history"].append([float(noise_multiplier), float(sample_rate), int(steps)])
        self._set_state(state, check.epsilon_after)
        self._payload["rounds"].append(
            {
                "round": int(server_round),
                "status": "charged",
                "steps": int(steps),
                "noise_multiplier": float(noise_multiplier),
                "sample_rate": float(sample_rate),
                "epsilon_after": check.epsilon_after,
                "time": time.time(),
            }
        )
        self._write()
        return check.epsilon_after

    def confirm_round(self, server_round: int, accountant_state: dict[str, Any]) -> None:
        """After training: the accountant's own history must equal what was charged."""
        charged = epsilon_of_history(self.accountant_state, self.delta, self.accountant)
        actual = epsilon_of_history(accountant_state, self.delta, self.accountant)
        if actual > charged * (1 + 1e-6) + EPSILON_SLACK:
            raise LedgerError(f"round {server_round}: training spent epsilon {actual} > charged {charged}")
        if self._payload["rounds"] and self._payload["rounds"][-1]["round"] == int(server_round):
            self._payload["rounds"][-1]["status"] = "trained"
        self._write()

    def record_declined(self, server_round: int, check: BudgetCheck) -> None:
        """Note a round the site declined because it would exceed the budget (epsilon unchanged)."""
        self._payload["rounds"].append(
            {
                "round": int(server_round),
                "status": "declined",
                "steps": 0,
                "epsilon_after": self.epsilon_spent,
                "projected_epsilon": check.epsilon_after,
                "time": time.time(),
            }
        )
        self._write()

    # --- persistence --------------------------------------------------------------------------------------------
    def _set_state(self, state: dict[str, Any], epsilon: float) -> None:
        if epsilon + EPSILON_SLACK < self.epsilon_spent:
            raise LedgerError(f"epsilon would decrease from {self.epsilon_spent} to {epsilon}")
        self._payload["accountant_state"] = state
        self._payload["epsilon_spent"] = float(epsilon)

    def _write(self) -> None:
        atomic_write_json(self.path, self._payload)
