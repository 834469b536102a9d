"""The site's verdict on a run's app bundle (FAB): approved only if it carries no code and names the installed
bcvlm ClientApp, or if its SHA-256 is on the site's allow-list."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tomllib
import zipfile
from dataclasses import dataclass
from typing import Collection

CLIENTAPP_REF = "bcvlm_client.client_app:app"
"""The ClientApp a code-free FAB must name: the module of the bcvlm package this site installed."""
CODE_FREE_MEMBERS = frozenset({"pyproject.toml", ".info/CONTENT"})
"""All a code-free FAB may hold: what `flwr run` packs from bcvlm-server's app folder (server/fab/pyproject.toml).
An allow-list of names rather than a deny-list of suffixes: Python also imports .pyc, .so and namespace folders."""
MAX_FAB_BYTES = 10 * 1024 * 1024
"""Flower's own FAB size limit."""


class FabRefused(RuntimeError):
    """The site refuses to run this FAB; the message says why (it reaches the server in the ClientApp's error reply)."""


@dataclass(frozen=True)
class FabVerdict:
    """Whether a FAB may run at this site, why, and its SHA-256 (what the allow-list holds)."""

    approved: bool
    sha256: str
    reason: str


def fab_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _refuse(sha256: str, reason: str) -> FabVerdict:
    return FabVerdict(approved=False, sha256=sha256, reason=reason)


def review_fab(content: bytes, approved_sha256: Collection[str] = ()) -> FabVerdict:
    """Decide on a FAB's bytes, exactly as the SuperNode would hand them to `flwr-clientapp`."""
    digest = fab_sha256(content)
    if digest in {value.lower() for value in approved_sha256}:
        return FabVerdict(approved=True, sha256=digest, reason="its SHA-256 is on the site's approved_fab_sha256 list")
    if len(content) > MAX_FAB_BYTES:
        return _refuse(digest, f"it is {len(content)} bytes, over Flower's {MAX_FAB_BYTES}-byte FAB limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return _refuse(digest, f"it is not a valid FAB (zip): {exc}")
    python = sorted(name for name in names if name.endswith((".py", ".pyc", ".pyw", ".pyd", ".so")))
    if python:
        return _refuse(digest, f"it carries code: {', '.join(python[:5])}" + (" ..." if len(python) > 5 else ""))
    extra = sorted(set(names) - CODE_FREE_MEMBERS)
    if extra or len(names) != len(set(names)):
        return _refuse(digest, f"it holds files a code-free bcvlm FAB does not: {', '.join(extra[:5]) or 'duplicates'}")
    if "pyproject.toml" not in names:
        return _refuse(digest, "it has no pyproject.toml")
    try:
        project = tomllib.loads(archive.read("pyproject.toml").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return _refuse(digest, f"its pyproject.toml does not parse: {exc}")
    components = project.get("tool", {}).get("flwr", {}).get("app", {}).get("components", {})
    clientapp = components.get("clientapp") if isinstance(components, dict) else None
    if clientapp != CLIENTAPP_REF:
        return _refuse(digest, f"it names clientapp {clientapp!r}, not the installed {CLIENTAPP_REF!r}")
    if importlib.util.find_spec(CLIENTAPP_REF.split(":", 1)[0]) is None:
        return _refuse(digest, f"{CLIENTAPP_REF} is not installed at this site")
    return FabVerdict(
        approved=True, sha256=digest, reason=f"it carries no code and names the installed {CLIENTAPP_REF}"
    )


def require_approved(content: bytes, approved_sha256: Collection[str] = ()) -> FabVerdict:
    """`review_fab`, raising FabRefused when the FAB is not approved."""
    verdict = review_fab(content, approved_sha256)
    if not verdict.approved:
        raise FabRefused(
            f"site refuses FAB sha256={verdict.sha256}: {verdict.reason}. A site approves a FAB that "
            f"holds only pyproject.toml naming {CLIENTAPP_REF}, or one listed in approved_fab_sha256"
        )
    return verdict
