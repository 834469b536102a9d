"""Scanning a DICOM folder: symlinked sub-folders are followed once, loops end, and every skipped entry is reported."""

from __future__ import annotations

import logging
import os

from bcvlm_model.data.adapters import build_manifest
from bcvlm_model.data.folder_scan import scan_dicom_folder
from bcvlm_model.data.source_config import DataSourceConfig
from bcvlm_testing.mg_fixtures import breast_pixels, write_mg

PIXELS = breast_pixels(32, 16)
TAGS = dict(ImageLaterality="L", ViewPosition="CC")
SUFFIXES = [".dcm", ".dicom", ""]


def _tree(tmp_path):
    """root/own/a.dcm, root/linked -> ../elsewhere (b.dcm), root/own/loop -> .. , root/gone.dcm -> missing."""
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    write_mg(root / "own" / "a.dcm", PIXELS, SOPInstanceUID="1.1", **TAGS)
    write_mg(elsewhere / "b.dcm", PIXELS, SOPInstanceUID="1.2", **TAGS)
    os.symlink(elsewhere, root / "linked")
    os.symlink("..", root / "own" / "loop")
    os.symlink(tmp_path / "missing.dcm", root / "gone.dcm")
    (root / "own" / "notes.txt").write_text("not an image")
    return root


def test_a_symlinked_sub_folder_is_followed(tmp_path):
    root = _tree(tmp_path)
    files = scan_dicom_folder(root, SUFFIXES).files
    assert [p.relative_to(root).as_posix() for p in files] == ["linked/b.dcm", "own/a.dcm"]


def test_a_link_loop_is_scanned_once_and_reported(tmp_path):
    root = _tree(tmp_path)
    skipped = {os.path.relpath(entry.path, root): entry for entry in scan_dicom_folder(root, SUFFIXES).skipped}
    assert "folder already scanned" in skipped["own/loop"].reason and skipped["own/loop"].could_be_image


def test_a_second_link_to_a_scanned_folder_adds_no_duplicates(tmp_path):
    root = _tree(tmp_path)
    os.symlink(tmp_path / "elsewhere", root / "zz_second_link")
    files = scan_dicom_folder(root, SUFFIXES).files
    assert sum(p.name == "b.dcm" for p in files) == 1


def test_skipped_entries_reach_rejects_or_the_log(tmp_path, caplog):
    root = _tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = build_manifest(DataSourceConfig(kind="dicom_folder", root=str(root)))
    assert sorted(result.manifest["image_id"]) == ["1.1", "1.2"]
    scan_rejects = {os.path.relpath(r["path"], root): r["reason"] for r in result.rejects.rows if r["stage"] == "scan"}
    assert scan_rejects["gone.dcm"] == "broken symbolic link" and "own/loop" in scan_rejects
    assert "skipped 1 entry (file suffix not in dicom_suffixes)" in caplog.text and "notes.txt" in caplog.text
