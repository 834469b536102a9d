"""A site's ClientApp process that runs a run's app only after the site approved its FAB: Flower's own
`run_clientapp`, with the FAB check in front of the FAB's installation and import.

Started by the site's SuperExec (`bcvlm_client.site_superexec`, forked from its forkserver) in place of
`flwr-clientapp`, with the same arguments plus `--site-config`. A refused FAB is never installed, put on `sys.path`
or imported: the check raises inside `run_clientapp`, whose own error path then answers the server's message with an
error reply carrying the reason and marks the task failed, so the server learns why.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from flwr.common.args import add_args_flwr_app_common, try_obtain_flwr_app_token
from flwr.supercore.tls import validate_and_resolve_root_certificates
from flwr.supernode.runtime import run_clientapp as flower_clientapp

from bcvlm_client import task_timing
from bcvlm_client.fab_approval import FabRefused, require_approved
from bcvlm_client.site_log import SITE_LOG
from bcvlm_model.file_logging import attach_log_file

LOGGER = logging.getLogger("bcvlm_client.fab_approval")
"""Relative to the site's state_dir: the same log the ClientApp writes."""


def site_approval_settings(site_config: Path) -> tuple[list[str], Path]:
    """The site's `approved_fab_sha256` list and log file, from the effective site config bcvlm-client wrote."""
    raw = yaml.safe_load(site_config.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or "state_dir" not in raw:
        raise FabRefused(f"site config {site_config} is unreadable: no state_dir; refusing every FAB")
    approved = raw.get("approved_fab_sha256") or []
    if not isinstance(approved, list) or not all(isinstance(value, str) for value in approved):
        raise FabRefused(f"site config {site_config}: approved_fab_sha256 must be a list of hex strings")
    return list(approved), Path(raw["state_dir"]) / SITE_LOG


def checked_install(approved_sha256: Sequence[str], install: Callable[..., Any]) -> Callable[..., Any]:
    """Flower's `install_from_fab`, preceded by the site's verdict on the very bytes it would install."""

    def install_if_approved(fab_file: Any, *args: Any, **kwargs: Any) -> Any:
        task_timing.mark("fab_check")  # the message and the FAB are pulled by now
        content = fab_file if isinstance(fab_file, bytes) else Path(fab_file).read_bytes()
        try:
            verdict = require_approved(content, approved_sha256)
        except FabRefused as exc:
            LOGGER.error("%s", exc)
            raise
        LOGGER.info("running FAB sha256=%s: %s", verdict.sha256, verdict.reason)
        return install(fab_file, *args, **kwargs)

    return install_if_approved


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bcvlm_client.approved_clientapp",
        description="Run a ClientApp task only for a FAB this site approved.",
    )
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--site-config", required=True, type=Path)
    add_args_flwr_app_common(parser=parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point; exits through Flower's `flwr_exit` like `flwr-clientapp`."""
    task_timing.mark("main")
    args = build_parser().parse_args(argv)
    approved, site_log = site_approval_settings(args.site_config)
    attach_log_file(LOGGER, site_log)
    attach_log_file(task_timing.LOGGER, site_log)
    LOGGER.setLevel(logging.INFO)
    # Fail closed: if Flower stops calling `install_from_fab` by this name, run nothing rather than run unchecked.
    if not callable(getattr(flower_clientapp, "install_from_fab", None)):
        raise SystemExit(
            "flwr.supernode.runtime.run_clientapp has no install_from_fab: cannot check FABs; "
            "refusing to run (Flower version mismatch)"
        )
    flower_clientapp.install_from_fab = checked_install(approved, flower_clientapp.install_from_fab)
    flower_clientapp.run_clientapp(
        runtime_api_address=args.runtime_api_address,
        token=try_obtain_flwr_app_token(args),
        insecure=args.insecure,
        certificates=validate_and_resolve_root_certificates(args.root_certificates, args.insecure),
        parent_pid=args.parent_pid,
        runtime_dependency_install=False,  # a site never installs a run's dependencies
    )


if __name__ == "__main__":
    main()
