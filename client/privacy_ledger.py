"""SitePrivacyLedger: the site's DP spend on its own disk, append-only, hash-chained, locked; epsilon only grows.

Scope: all runs of this site on one training set (identified by a fingerprint of its patient ids). The ledger is
created once, explicitly (`bcvlm-client --site X --init-ledger`); a missing, unreadable, edited or truncated ledger,
or one written for other data or another budget, is an error, never a fresh start at epsilon 0.

Each entry carries the HMAC-SHA256 of its content and of the previous entry's MAC under a site-local key
(`privacy_ledger.key`, mode 0600), and the file carries a MAC over its length and last entry, so an entry edited,
removed or appended without the key is detected. Someone holding the key (the site's own administrator) can still
rewrite it, and restoring an older complete copy of both files is not detected: back them up together.

Every read-check-charge-write happens under an exclusive `flock` on `privacy_ledger.lock`, so two fits that run at
once (two processes, two runs) are both charged. A round is charged BEFORE its DP steps run, so a crash mid-round
can only over-count the privacy spent, never under-count it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.privacy.accounting import epsilon_of_history, projected_epsilon
from bcvlm_model.privacy.privacy_unit import IMAGE_UNIT_WARNING, PrivacyUnit

LEDGER_FILENAME = "privacy_ledger.json"
LEDGER_KEY_FILENAME = "privacy_ledger.key"
LEDGER_LOCK_FILENAME = "privacy_ledger.lock"
LEDGER_VERSION = 2
EPSILON_SLACK = 1e-9
KEY_BYTES = 32


class LedgerError(RuntimeError):
    """The ledger is missing, inconsistent with the site's settings or data, or was tampered with."""


class LedgerMissing(LedgerError):
    """No ledger in the state dir: it is created once with `bcvlm-client --site X --init-ledger`."""


@dataclass(frozen=True)
class LedgerTerms:
    """What a ledger accounts for: the budget, the accountant, the privacy unit and the training set."""

    target_epsilon: float
    delta: float
    accountant: str
    data_fingerprint: str
    privacy_unit: str = PrivacyUnit.patient.value


@dataclass(frozen=True)
class BudgetCheck:
    """Whether the next round fits the budget, with the epsilon it would reach."""

    allowed: bool
    epsilon_now: float
    epsilon_after: float
    target_epsilon: float


def training_set_fingerprint(patient_ids: Iterable[str]) -> str:
    """SHA-256 of the sorted distinct training patient ids: names the data set a ledger accounts for."""
    joined = "\n".join(sorted({str(patient) for patient in patient_ids}))
    return "sha256:" + hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _mac(key: bytes, payload: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(payload), hashlib.sha256).hexdigest()


def _read_key(state_dir: Path) -> bytes:
    path = state_dir / LEDGER_KEY_FILENAME
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise LedgerError(f"{path}: the ledger's key is missing, so the ledger cannot be verified") from None
    except ValueError:
        raise LedgerError(f"{path}: not a hex key") from None


@contextlib.contextmanager
def _exclusive_lock(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LEDGER_LOCK_FILENAME, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def init_ledger(state_dir: str | os.PathLike[str], terms: LedgerTerms, *, new_data_set: bool = False) -> Path:
    """Create the site's ledger (and its key); refuse to replace one unless `new_data_set` declares other data.

    With `new_data_set`, the old ledger (which must be for another training set) is archived next to it and the
    new one records its fingerprint and spend.
    """
    folder = Path(state_dir)
    with _exclusive_lock(folder):
        path = folder / LEDGER_FILENAME
        previous = None
        if path.exists():
            if not new_data_set:
                raise LedgerError(
                    f"{path} already exists; a ledger is never reset. A different training set needs "
                    "a new, declared budget: --init-ledger --new-data-set"
                )
            old = SitePrivacyLedger._load(folder)
            if old.data_fingerprint == terms.data_fingerprint:
                raise LedgerError(
                    f"{path} already accounts for this training set ({terms.data_fingerprint}); "
                    "its budget cannot be reset by declaring it new"
                )
            archived = path.with_name(f"privacy_ledger.{time.strftime('%Y%m%dT%H%M%S')}.json")
            os.replace(path, archived)
            previous = {
                "archived_as": archived.name,
                "data_fingerprint": old.data_fingerprint,
                "epsilon_spent": old.epsilon_spent,
            }
        key_path = folder / LEDGER_KEY_FILENAME
        if not key_path.exists():
            descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(KEY_BYTES))
        ledger = SitePrivacyLedger(folder, _read_key(folder), [], locked=True)
        weaker = {"unit_note": IMAGE_UNIT_WARNING} if terms.privacy_unit == PrivacyUnit.image.value else {}
        ledger._append({"kind": "open", **asdict(terms), **weaker, "previous_ledger": previous})
        ledger._locked = False
    return path


class SitePrivacyLedger:
    """The verified entries of one site's ledger; write methods work only inside `SitePrivacyLedger.locked`."""

    def __init__(self, state_dir: Path, key: bytes, entries: list[dict[str, Any]], *, locked: bool) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LEDGER_FILENAME
        self._key = key
        self._entries = entries
        self._locked = locked

    # --- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, state_dir: str | os.PathLike[str], terms: LedgerTerms | None = None) -> "SitePrivacyLedger":
        """A verified read-only view (checked against `terms` when given)."""
        folder = Path(state_dir)
        with _exclusive_lock(folder):
            ledger = cls._load(folder)
        if terms is not None:
            ledger._check_terms(terms)
        return ledger

    @classmethod
    @contextlib.contextmanager
    def locked(cls, state_dir: str | os.PathLike[str], terms: LedgerTerms) -> Iterator["SitePrivacyLedger"]:
        """Hold the ledger's exclusive lock; the ledger yielded is read after the lock was taken."""
        folder = Path(state_dir)
        with _exclusive_lock(folder):
            ledger = cls._load(folder)
            ledger._check_terms(terms)
            ledger._locked = True
            try:
                yield ledger
            finally:
                ledger._locked = False

    @classmethod
    def _load(cls, folder: Path) -> "SitePrivacyLedger":
        path = folder / LEDGER_FILENAME
        if not path.exists():
            raise LedgerMissing(
                f"no privacy ledger at {path}. A site's ledger is created once, before its first "
                "round: bcvlm-client --site <site.yaml> --init-ledger. If this site has trained "
                "before, the ledger was deleted: restore it (with its key) from a backup."
            )
        try:
            payload = read_json(path)
        except ValueError as exc:
            raise LedgerError(f"{path}: not valid JSON ({exc}); refusing to start with an unreadable ledger") from exc
        if not isinstance(payload, dict) or payload.get("version") != LEDGER_VERSION:
            raise LedgerError(
                f"{path}: not a version-{LEDGER_VERSION} ledger (written by an older bcvlm or not a "
                "ledger); archive it and create a new one with --init-ledger"
            )
        ledger = cls(folder, _read_key(folder), list(payload.get("entries", [])), locked=False)
        ledger._verify(payload)
        return ledger

    def _verify(self, payload: dict[str, Any]) -> None:
        previous = ""
        for index, stored in enumerate(self._entries):
            body = {key: value for key, value in stored.items() if key != "mac"}
            if body.get("seq") != index or body.get("prev") != previous:
                raise LedgerError(f"{self.path}: entry {index} is out of sequence; the ledger was edited")
            if not hmac.compare_digest(str(stored.get("mac", "")), _mac(self._key, body)):
                raise LedgerError(
                    f"{self.path}: entry {index} ({body.get('kind')}, round {body.get('round')}) does "
                    "not match its MAC; the ledger was edited"
                )
            previous = stored["mac"]
        if not self._entries or self._entries[0].get("kind") != "open":
            raise LedgerError(f"{self.path}: the ledger has no opening entry")
        if not hmac.compare_digest(str(payload.get("seal", "")), self._seal()):
            raise LedgerError(f"{self.path}: entries were removed or added without the ledger's key")
        recorded = payload.get("epsilon_spent")
        if not isinstance(recorded, (int, float)) or not math.isclose(
            recorded, self.epsilon_spent, rel_tol=1e-6, abs_tol=1e-9
        ):
            raise LedgerError(
                f"{self.path}: epsilon_spent={recorded} does not match its entries "
                f"({self.epsilon_spent}); the ledger was edited"
            )

    def _seal(self) -> str:
        last = self._entries[-1]["mac"] if self._entries else ""
        return _mac(self._key, {"entries": len(self._entries), "last": last})

    def _check_terms(self, terms: LedgerTerms) -> None:
        header = self._entries[0]
        if header.get("data_fingerprint") != terms.data_fingerprint:
            raise LedgerError(
                f"{self.path}: the ledger accounts for training set {header.get('data_fingerprint')} but this site's "
                f"training set is {terms.data_fingerprint}. A different data set needs a new, declared budget: "
                "bcvlm-client --site <site.yaml> --init-ledger --new-data-set (the old ledger is archived)."
            )
        wanted = asdict(terms)
        for name in ("target_epsilon", "delta", "accountant", "privacy_unit"):
            if header.get(name) != wanted[name]:
                raise LedgerError(
                    f"{self.path}: the ledger was written for {name}={header.get(name)!r} but the site config says "
                    f"{wanted[name]!r}. A privacy budget cannot be changed silently: restore the original setting."
                )

    # --- read-only views ----------------------------------------------------------------------------------------
    @property
    def target_epsilon(self) -> float:
        return float(self._entries[0]["target_epsilon"])

    @property
    def delta(self) -> float:
        return float(self._entries[0]["delta"])

    @property
    def accountant(self) -> str:
        return str(self._entries[0]["accountant"])

    @property
    def privacy_unit(self) -> str:
        return str(self._entries[0]["privacy_unit"])

    @property
    def data_fingerprint(self) -> str:
        return str(self._entries[0]["data_fingerprint"])

    @property
    def terms(self) -> LedgerTerms:
        """The terms this ledger was opened with."""
        return LedgerTerms(
            target_epsilon=self.target_epsilon,
            delta=self.delta,
            accountant=self.accountant,
            data_fingerprint=self.data_fingerprint,
            privacy_unit=self.privacy_unit,
        )

    @property
    def accountant_state(self) -> dict[str, Any]:
        history = [
            [entry["noise_multiplier"], entry["sample_rate"], entry["steps"]]
            for entry in self._entries
            if entry["kind"] == "charged"
        ]
        return {"mechanism": self.accountant, "history": history}

    @property
    def epsilon_spent(self) -> float:
        return epsilon_of_history(self.accountant_state, self.delta, self.accountant)

    @property
    def rounds(self) -> list[dict[str, Any]]:
        """Every charged, trained and declined entry, oldest first."""
        return [dict(entry) for entry in self._entries[1:]]

    def has_charged(self, run_id: int, server_round: int) -> bool:
        """Was this round of this run already charged (trained or about to)?"""
        return any(
            entry["kind"] == "charged" and entry["run_id"] == int(run_id) and entry["round"] == int(server_round)
            for entry in self._entries
        )

    # --- budget -------------------------------------------------------------------------------------------------
    def check_next_round(self, noise_multiplier: float, sample_rate: float, steps: int) -> BudgetCheck:
        """Would `steps` more DP-SGD steps keep epsilon within the target?"""
        after = projected_epsilon(
            self.accountant_state, self.delta, self.accountant, noise_multiplier, sample_rate, steps
        )
        return BudgetCheck(after <= self.target_epsilon + EPSILON_SLACK, self.epsilon_spent, after, self.target_epsilon)

    def charge_round(
        self, run_id: int, server_round: int, noise_multiplier: float, sample_rate: float, steps: int
    ) -> float:
        """Record the coming round's DP-SGD steps before training; returns the new total epsilon."""
        check = self.check_next_round(noise_multiplier, sample_rate, steps)
        if not check.allowed:
            raise LedgerError(
                f"round {server_round} would reach epsilon {check.epsilon_after:.4f} > target {self.target_epsilon}"
            )
        self._append(
            {
                "kind": "charged",
                "run_id": int(run_id),
                "round": int(server_round),
                "steps": int(steps),
                "noise_multiplier": float(noise_multiplier),
                "sample_rate": float(sample_rate),
                "epsilon_after": check.epsilon_after,
            }
        )
        return check.epsilon_after

    def confirm_round(self, run_id: int, server_round: int, accountant_state: dict[str, Any]) -> None:
        """After training: the accountant's own history must not exceed what was charged."""
        charged = self.epsilon_spent
        actual = epsilon_of_history(accountant_state, self.delta, self.accountant)
        if actual > charged * (1 + 1e-6) + EPSILON_SLACK:
            raise LedgerError(f"round {server_round}: training spent epsilon {actual} > charged {charged}")
        self._append({"kind": "trained", "run_id": int(run_id), "round": int(server_round), "epsilon_after": charged})

    def record_declined(self, run_id: int, server_round: int, reason: str, projected: float | None = None) -> None:
        """Note a round the site declined (epsilon unchanged); `projected` = the epsilon it would have reached."""
        self._append(
            {
                "kind": "declined",
                "run_id": int(run_id),
                "round": int(server_round),
                "reason": reason,
                "epsilon_after": self.epsilon_spent,
                "projected_epsilon": projected,
            }
        )

    # --- persistence --------------------------------------------------------------------------------------------
    def _append(self, fields: dict[str, Any]) -> None:
        if not self._locked:
            raise LedgerError("the ledger is written only while its lock is held (SitePrivacyLedger.locked)")
        body = {
            **fields,
            "seq": len(self._entries),
            "prev": self._entries[-1]["mac"] if self._entries else "",
            "time": time.time(),
        }
        self._entries.append({**body, "mac": _mac(self._key, body)})
        atomic_write_json(
            self.path,
            {
                "version": LEDGER_VERSION,
                "epsilon_spent": self.epsilon_spent,
                "entries": self._entries,
                "seal": self._seal(),
            },
        )
