"""Tests for atomic writes (bcvlm_model.atomic_io): a failed write leaves the old file and no temp files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcvlm_model import atomic_io


def test_json_roundtrip(tmp_path: Path) -> None:
    path = atomic_io.atomic_write_json(tmp_path / "a" / "b.json", {"epsilon": 1.5, "round": 2})
    assert atomic_io.read_json(path) == {"epsilon": 1.5, "round": 2}


def test_failed_write_keeps_previous_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ledger.json"
    atomic_io.atomic_write_text(target, "old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_io.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]
