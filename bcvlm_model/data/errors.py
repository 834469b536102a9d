"""Errors of the data layer: a rejected DICOM file (with its reason) and a bad data-set description."""

from __future__ import annotations


class DicomRejected(Exception):
    """A DICOM file that cannot be used; `reason` says why in a short, stable phrase."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class DataSourceError(ValueError):
    """A data-set description is unusable (missing CSV column, wrong path); the message names the file and field."""
