"""Walk a DICOM folder: follow symlinked sub-folders once each (no loops), and say why every other entry was skipped."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SkippedEntry:
    """A folder entry the scan did not use, and why."""

    path: str
    reason: str
    could_be_image: bool
    """True for entries that may hide images (broken link, unreadable folder, loop); False for ignored names."""


@dataclass
class FolderScan:
    """Candidate files (sorted, as reached under the root: link names kept) and the skipped entries."""

    files: list[Path] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


def _identity(path: str) -> tuple[int, int]:
    status = os.stat(path)  # follows links: two names of one folder share (device, inode)
    return status.st_dev, status.st_ino


def scan_dicom_folder(root: str | os.PathLike[str], suffixes: list[str]) -> FolderScan:
    """Files under `root` whose lower-cased suffix is in `suffixes` ('' = no suffix); hidden entries are skipped.

    Symlinked sub-folders are followed; a folder already scanned (a link loop, or a second link to the same folder)
    is skipped, so every file is reached through one path only.
    """
    wanted = {s.lower() for s in suffixes}
    scan = FolderScan()
    seen: set[tuple[int, int]] = {_identity(os.fspath(root))}
    pending = [os.fspath(root)]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            scan.skipped.append(SkippedEntry(folder, f"folder cannot be read ({exc.strerror or exc})", True))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                scan.skipped.append(SkippedEntry(entry.path, "hidden entry", False))
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                scan.skipped.append(SkippedEntry(entry.path, f"cannot be read ({exc.strerror or exc})", True))
                continue
            if entry.is_symlink() and not os.path.exists(entry.path):
                scan.skipped.append(SkippedEntry(entry.path, "broken symbolic link", True))
            elif is_dir:
                try:
                    identity = _identity(entry.path)
                except OSError as exc:
                    scan.skipped.append(
                        SkippedEntry(entry.path, f"folder cannot be read ({exc.strerror or exc})", True)
                    )
                    continue
                if identity in seen:
                    scan.skipped.append(
                        SkippedEntry(
                            entry.path,
                            f"folder already scanned (symbolic link loop, or a second link to "
                            f"{os.path.realpath(entry.path)})",
                            True,
                        )
                    )
                    continue
                seen.add(identity)
                pending.append(entry.path)
            elif not is_file:
                scan.skipped.append(SkippedEntry(entry.path, "not a regular file", True))
            elif Path(entry.name).suffix.lower() in wanted:
                scan.files.append(Path(entry.path))
            else:
                scan.skipped.append(SkippedEntry(entry.path, "file suffix not in dicom_suffixes", False))
    scan.files.sort()
    return scan
