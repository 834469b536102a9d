"""DP-SGD training state: settings checked when the state is built."""

from __future__ import annotations

import pytest

from bcvlm_model.privacy.dp_training import DPTrainState


def test_an_unknown_accountant_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="accountant"):
        DPTrainState(1.0, 1.0, 1e-5, accountant="moments")
