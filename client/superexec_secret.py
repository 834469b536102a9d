"""The SuperExec auth secret: a per-run-directory (center) or per-state-directory (site) random file, mode 0600, that
Flower's Runtime API demands from the SuperExec before it hands out a task (`--superexec-auth-secret-file`)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from bcvlm_client.flower_process import FlowerProcessError

SECRET_BYTES = 32
"""256-bit SuperExec auth secret from the OS CSPRNG (Flower derives its HMAC key from it)."""


def ensure_superexec_secret(path: Path) -> Path:
    """Create the run directory's SuperExec auth secret (mode 0600) once; reuse it after checking its mode.

    A secret readable by other local users would let them claim tasks (ServerApp, ClientApp) on the Runtime API.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            raise FlowerProcessError(f"SuperExec auth secret {path} is not a regular file") from None
        if info.st_mode & 0o077:
            raise FlowerProcessError(
                f"SuperExec auth secret {path} is readable by others (mode "
                f"{stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`"
            ) from None
        if info.st_size < SECRET_BYTES:
            raise FlowerProcessError(f"SuperExec auth secret {path} is shorter than {SECRET_BYTES} bytes") from None
        return path
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(SECRET_BYTES))
    return path
