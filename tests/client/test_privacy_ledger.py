"""SitePrivacyLedger: monotonic epsilon persisted on disk, restart continues, budget changes refused, declines."""
from __future__ import annotations

import json

import pytest

from bcvlm_client.privacy_ledger import LEDGER_FILENAME, LedgerError, SitePrivacyLedger
from bcvlm_model.privacy.dp_training import epsilon_of_history, noise_multiplier_for_budget

DELTA = 1e-5


def _open(state_dir, target: float = 4.0, delta: float = DELTA) -> SitePrivacyLedger:
    return SitePrivacyLedger.open(state_dir, target_epsilon=target, delta=delta)


def test_epsilon_grows_persists_and_survives_restart(tmp_path) -> None:
    rate, steps, rounds = 0.1, 20, 3
    noise = noise_multiplier_for_budget(4.0, DELTA, rate, rounds * steps)
    ledger = _open(tmp_path)
    spent = [ledger.epsilon_spent]
    for server_round in (1, 2):
        ledger.charge_round(server_round, noise, rate, steps)
        spent.append(ledger.epsilon_spent)
        ledger = _open(tmp_path)  # a restart reads the file back
        assert ledger.epsilon_spent == pytest.approx(spent[-1])
    assert spent[0] == 0.0 and spent[0] < spent[1] < spent[2] <= 4.0
    on_disk = json.loads((tmp_path / LEDGER_FILENAME).read_text())
    assert on_disk["epsilon_spent"] == pytest.approx(spent[-1])
    assert on_disk["epsilon_spent"] == pytest.approx(epsilon_of_history(on_disk["accountant_state"], DELTA))
    assert [entry["round"] for entry in on_disk["rounds"]] == [1, 2]


def test_a_round_beyond_the_budget_is_declined_and_recorded(tmp_path) -> None:
    rate, steps = 0.1, 20
    noise = noise_multiplier_for_budget(4.0, DELTA, rate, steps)  # the whole budget fits one round
    ledger = _open(tmp_path)
    ledger.charge_round(1, noise, rate, steps)
    check = ledger.check_next_round(noise, rate, steps)
    assert not check.allowed and check.epsilon_after > 4.0 and check.epsilon_now == ledger.epsilon_spent
    with pytest.raises(LedgerError, match="would reach"):
        ledger.charge_round(2, noise, rate, steps)
    ledger.record_declined(2, check)
    reopened = _open(tmp_path)
    assert reopened.rounds[-1]["status"] == "declined"
    assert reopened.epsilon_spent == pytest.approx(ledger.epsilon_spent)


def test_changed_budget_or_edited_ledger_is_refused(tmp_path) -> None:
    ledger = _open(tmp_path)
    ledger.charge_round(1, 1.0, 0.1, 10)
    with pytest.raises(LedgerError, match="target_epsilon"):
        _open(tmp_path, target=8.0)
    with pytest.raises(LedgerError, match="delta"):
        _open(tmp_path, delta=1e-3)
    payload = json.loads((tmp_path / LEDGER_FILENAME).read_text())
    payload["epsilon_spent"] = 0.0
    (tmp_path / LEDGER_FILENAME).write_text(json.dumps(payload))
    with pytest.raises(LedgerError, match="edited"):
        _open(tmp_path)


def test_confirm_refuses_more_spending_than_charged(tmp_path) -> None:
    ledger = _open(tmp_path)
    ledger.charge_round(1, 1.0, 0.1, 10)
    ledger.confirm_round(1, {"mechanism": "rdp", "history": [[1.0, 0.1, 10]]})
    assert ledger.rounds[-1]["status"] == "trained"
    with pytest.raises(LedgerError, match="spent"):
        ledger.confirm_round(1, {"mechanism": "rdp", "history": [[1.0, 0.1, 30]]})
