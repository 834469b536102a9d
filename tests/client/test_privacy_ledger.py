"""SitePrivacyLedger: explicit creation, monotonic epsilon, locks, data fingerprint, hash chain, declines."""

from __future__ import annotations

import json
import multiprocessing
import stat
import time
from pathlib import Path

import pytest

from bcvlm_client.privacy_ledger import (
    LEDGER_FILENAME,
    LEDGER_KEY_FILENAME,
    LedgerError,
    LedgerMissing,
    LedgerTerms,
    SitePrivacyLedger,
    init_ledger,
    training_set_fingerprint,
)
from bcvlm_model.privacy.accounting import epsilon_of_history, noise_multiplier_for_budget

DELTA = 1e-5
DATA = training_set_fingerprint(["p1", "p2", "p3"])


def _terms(target: float = 4.0, delta: float = DELTA, data: str = DATA) -> LedgerTerms:
    return LedgerTerms(target_epsilon=target, delta=delta, accountant="rdp", data_fingerprint=data)


def _charge(
    state_dir: Path, server_round: int, noise: float = 1.0, rate: float = 0.1, steps: int = 10, run_id: int = 7
) -> float:
    with SitePrivacyLedger.locked(state_dir, _terms()) as ledger:
        return ledger.charge_round(run_id, server_round, noise, rate, steps)


def _payload(state_dir: Path) -> dict:
    return json.loads((state_dir / LEDGER_FILENAME).read_text())


def _write(state_dir: Path, payload: dict) -> None:
    (state_dir / LEDGER_FILENAME).write_text(json.dumps(payload))


def test_init_creates_an_empty_ledger_and_a_private_key(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    ledger = SitePrivacyLedger.open(tmp_path, _terms())
    assert ledger.epsilon_spent == 0.0 and ledger.rounds == [] and ledger.data_fingerprint == DATA
    assert stat.S_IMODE((tmp_path / LEDGER_KEY_FILENAME).stat().st_mode) == 0o600


def test_init_refuses_to_replace_an_existing_ledger(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1)
    with pytest.raises(LedgerError, match="never reset"):
        init_ledger(tmp_path, _terms())
    assert SitePrivacyLedger.open(tmp_path).epsilon_spent > 0


def test_epsilon_grows_persists_and_survives_restart(tmp_path) -> None:
    rate, steps, rounds = 0.1, 20, 3
    noise = noise_multiplier_for_budget(4.0, DELTA, rate, rounds * steps)
    init_ledger(tmp_path, _terms())
    spent = [0.0]
    for server_round in (1, 2):
        _charge(tmp_path, server_round, noise, rate, steps)
        spent.append(SitePrivacyLedger.open(tmp_path, _terms()).epsilon_spent)  # a restart reads the file back
    assert spent[0] < spent[1] < spent[2] <= 4.0
    on_disk = _payload(tmp_path)
    history = {"mechanism": "rdp", "history": [[noise, rate, steps]] * 2}
    assert on_disk["epsilon_spent"] == pytest.approx(epsilon_of_history(history, DELTA))
    assert [entry["round"] for entry in on_disk["entries"] if entry["kind"] == "charged"] == [1, 2]


def test_a_round_beyond_the_budget_is_refused_and_a_decline_recorded(tmp_path) -> None:
    rate, steps = 0.1, 20
    noise = noise_multiplier_for_budget(4.0, DELTA, rate, steps)  # the whole budget fits one round
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1, noise, rate, steps)
    with SitePrivacyLedger.locked(tmp_path, _terms()) as ledger:
        check = ledger.check_next_round(noise, rate, steps)
        assert not check.allowed and check.epsilon_after > 4.0 and check.epsilon_now == ledger.epsilon_spent
        with pytest.raises(LedgerError, match="would reach"):
            ledger.charge_round(7, 2, noise, rate, steps)
        ledger.record_declined(7, 2, "BUDGET_EXHAUSTED", check.epsilon_after)
    reopened = SitePrivacyLedger.open(tmp_path, _terms())
    assert reopened.rounds[-1]["kind"] == "declined"
    assert reopened.epsilon_spent == pytest.approx(check.epsilon_now)


def test_writing_outside_the_lock_is_refused(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    ledger = SitePrivacyLedger.open(tmp_path, _terms())
    with pytest.raises(LedgerError, match="lock"):
        ledger.charge_round(7, 1, 1.0, 0.1, 10)


def test_a_charged_round_of_a_run_is_recognised(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1, run_id=7)
    ledger = SitePrivacyLedger.open(tmp_path, _terms())
    assert ledger.has_charged(7, 1)
    assert not ledger.has_charged(8, 1) and not ledger.has_charged(7, 2)


def test_a_missing_ledger_is_an_error_not_a_fresh_start(tmp_path) -> None:
    with pytest.raises(LedgerMissing, match="--init-ledger"):
        with SitePrivacyLedger.locked(tmp_path, _terms()):
            pass
    assert not (tmp_path / LEDGER_FILENAME).exists()


def test_a_deleted_ledger_is_not_recreated(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1)
    (tmp_path / LEDGER_FILENAME).unlink()
    with pytest.raises(LedgerMissing):
        _charge(tmp_path, 2)
    assert not (tmp_path / LEDGER_FILENAME).exists()


def test_an_unreadable_ledger_is_refused(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    (tmp_path / LEDGER_FILENAME).write_text("{not json")
    with pytest.raises(LedgerError, match="not valid JSON"):
        SitePrivacyLedger.open(tmp_path, _terms())


def test_a_changed_budget_is_refused(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    with pytest.raises(LedgerError, match="target_epsilon"):
        SitePrivacyLedger.open(tmp_path, _terms(target=8.0))
    with pytest.raises(LedgerError, match="delta"):
        SitePrivacyLedger.open(tmp_path, _terms(delta=1e-6))


def test_a_foreign_data_set_is_refused(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    other = training_set_fingerprint(["p1", "p2", "p4"])
    with pytest.raises(LedgerError, match="new-data-set"):
        SitePrivacyLedger.open(tmp_path, _terms(data=other))


def test_a_new_data_set_is_declared_and_the_old_ledger_archived(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    spent = _charge(tmp_path, 1)
    other = training_set_fingerprint(["q1", "q2"])
    init_ledger(tmp_path, _terms(data=other), new_data_set=True)
    ledger = SitePrivacyLedger.open(tmp_path, _terms(data=other))
    assert ledger.epsilon_spent == 0.0
    previous = ledger._entries[0]["previous_ledger"]
    assert previous["data_fingerprint"] == DATA and previous["epsilon_spent"] == pytest.approx(spent)
    assert (tmp_path / previous["archived_as"]).is_file()


def test_declaring_the_same_data_set_new_does_not_reset_it(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1)
    with pytest.raises(LedgerError, match="cannot be reset"):
        init_ledger(tmp_path, _terms(), new_data_set=True)


def test_an_edited_entry_is_detected(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1, steps=10)
    payload = _payload(tmp_path)
    payload["entries"][1]["steps"] = 1  # pretend less was spent
    payload["epsilon_spent"] = epsilon_of_history({"mechanism": "rdp", "history": [[1.0, 0.1, 1]]}, DELTA)
    _write(tmp_path, payload)
    with pytest.raises(LedgerError, match="MAC"):
        SitePrivacyLedger.open(tmp_path, _terms())


def test_a_removed_last_entry_is_detected(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1, noise=3.0)
    _charge(tmp_path, 2, noise=3.0)
    payload = _payload(tmp_path)
    payload["entries"].pop()
    payload["epsilon_spent"] = epsilon_of_history({"mechanism": "rdp", "history": [[3.0, 0.1, 10]]}, DELTA)
    _write(tmp_path, payload)
    with pytest.raises(LedgerError, match="removed or added"):
        SitePrivacyLedger.open(tmp_path, _terms())


def test_an_edited_total_is_detected(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    _charge(tmp_path, 1)
    payload = _payload(tmp_path)
    payload["epsilon_spent"] = 0.0
    _write(tmp_path, payload)
    with pytest.raises(LedgerError, match="edited"):
        SitePrivacyLedger.open(tmp_path, _terms())


def test_a_missing_key_is_refused(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    (tmp_path / LEDGER_KEY_FILENAME).unlink()
    with pytest.raises(LedgerError, match="key is missing"):
        SitePrivacyLedger.open(tmp_path, _terms())


def test_confirm_refuses_more_spending_than_charged(tmp_path) -> None:
    init_ledger(tmp_path, _terms())
    with SitePrivacyLedger.locked(tmp_path, _terms()) as ledger:
        ledger.charge_round(7, 1, 1.0, 0.1, 10)
        ledger.confirm_round(7, 1, {"mechanism": "rdp", "history": [[1.0, 0.1, 10]]})
        assert ledger.rounds[-1]["kind"] == "trained"
        with pytest.raises(LedgerError, match="spent"):
            ledger.confirm_round(7, 1, {"mechanism": "rdp", "history": [[1.0, 0.1, 30]]})


def _charge_many(state_dir: str, first_round: int, count: int, start_at: float) -> None:
    while time.time() < start_at:  # both processes start charging at the same moment
        time.sleep(0.001)
    for offset in range(count):
        with SitePrivacyLedger.locked(Path(state_dir), _terms(target=1000.0)) as ledger:
            history = ledger.accountant_state  # read ...
            time.sleep(0.01)  # ... a window in which an unlocked writer would interleave ...
            assert ledger.accountant_state == history
            ledger.charge_round(7, first_round + offset, 5.0, 0.01, 1)  # ... then charge


def test_concurrent_fits_in_two_processes_are_both_charged(tmp_path) -> None:
    init_ledger(tmp_path, _terms(target=1000.0))
    start_at = time.time() + 3.0
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_charge_many, args=(str(tmp_path), first, 10, start_at)) for first in (1, 100)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    ledger = SitePrivacyLedger.open(tmp_path, _terms(target=1000.0))
    charged = [entry for entry in ledger.rounds if entry["kind"] == "charged"]
    assert len(charged) == 20
    assert len(ledger.accountant_state["history"]) == 20
