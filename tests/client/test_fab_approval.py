"""The site's verdict on app bundles, on FABs built by Flower's own `flwr build` code from app folders."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from bcvlm_client.fab_approval import FabRefused, fab_sha256, require_approved, review_fab
from bcvlm_server.deployment import FAB_TEMPLATE


def app_folder(root: Path, clientapp: str = "bcvlm_client.client_app:app", files: dict[str, str] | None = None) -> Path:
    """bcvlm's own pyproject.toml with another clientapp and extra files (what a crafted app would bring)."""
    root.mkdir(parents=True, exist_ok=True)
    text = FAB_TEMPLATE.read_text().replace('clientapp = "bcvlm_client.client_app:app"', f'clientapp = "{clientapp}"')
    (root / "pyproject.toml").write_text(text)
    for name, body in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body)
    return root


def test_the_fab_bcvlm_server_submits_is_approved() -> None:
    verdict = review_fab(build_fab_from_disk(FAB_TEMPLATE.parent))
    assert verdict.approved, verdict.reason


def test_a_fab_carrying_python_is_refused(tmp_path: Path) -> None:
    fab = build_fab_from_disk(app_folder(tmp_path, files={"bcvlm_client/client_app.py": "app = None\n"}))
    verdict = review_fab(fab)
    assert not verdict.approved
    assert "carries code" in verdict.reason and "bcvlm_client/client_app.py" in verdict.reason


def test_a_fab_naming_another_clientapp_is_refused(tmp_path: Path) -> None:
    verdict = review_fab(build_fab_from_disk(app_folder(tmp_path, clientapp="json.tool:main")))
    assert not verdict.approved
    assert "'json.tool:main'" in verdict.reason


def test_a_fab_with_files_beyond_the_code_free_set_is_refused(tmp_path: Path) -> None:
    # A folder named like the package, holding no .py: still refused (only pyproject.toml and .info/CONTENT pass).
    verdict = review_fab(build_fab_from_disk(app_folder(tmp_path, files={"bcvlm_client/notes.md": "x\n"})))
    assert not verdict.approved and "bcvlm_client/notes.md" in verdict.reason


def test_compiled_code_counts_as_code() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pyproject.toml", FAB_TEMPLATE.read_text())
        archive.writestr("bcvlm_client/client_app.cpython-311.so", b"\x7fELF")
    verdict = review_fab(buffer.getvalue())
    assert not verdict.approved and "client_app.cpython-311.so" in verdict.reason


def test_bytes_that_are_not_a_zip_are_refused() -> None:
    verdict = review_fab(b"#!/bin/sh\nrm -rf /\n")
    assert not verdict.approved and "not a valid FAB" in verdict.reason


def test_a_fab_on_the_site_allow_list_is_approved(tmp_path: Path) -> None:
    fab = build_fab_from_disk(app_folder(tmp_path, files={"task.py": "x = 1\n"}))
    assert not review_fab(fab).approved
    verdict = review_fab(fab, approved_sha256=[fab_sha256(fab)])
    assert verdict.approved and "approved_fab_sha256" in verdict.reason


def test_the_allow_list_is_by_exact_hash(tmp_path: Path) -> None:
    fab = build_fab_from_disk(app_folder(tmp_path, files={"task.py": "x = 1\n"}))
    other = build_fab_from_disk(app_folder(tmp_path / "b", files={"task.py": "x = 2\n"}))
    assert not review_fab(fab, approved_sha256=[fab_sha256(other)]).approved


def test_require_approved_raises_with_the_reason_and_hash(tmp_path: Path) -> None:
    fab = build_fab_from_disk(app_folder(tmp_path, clientapp="json.tool:main"))
    with pytest.raises(FabRefused, match=f"sha256={fab_sha256(fab)}.*json.tool:main"):
        require_approved(fab)
