"""A site's two long-running Flower processes as one: the SuperNode (`--isolation process`) and the site's own
SuperExec (`bcvlm_client.site_superexec`), stopped together; the SuperExec starts once the SuperLink admitted the
SuperNode."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from bcvlm_client import site_superexec
from bcvlm_client.flower_process import FlowerProcess
from bcvlm_client.superexec_secret import ensure_superexec_secret


class SiteProcesses:
    """Same surface as the FlowerProcess it replaces in `bcvlm-client` (start, process, track_descendants, stop)."""

    def __init__(
        self,
        supernode_command: Sequence[str],
        env: Mapping[str, str],
        supernode_log: Path,
        cwd: Path,
        runtime_address: str,
        site_config: Path,
        secret_file: Path,
        keeper: bool = False,
    ) -> None:
        self.env = dict(env)
        self.keeper = keeper
        """Both processes run under `bcvlm_client.process_keeper`: they end with `bcvlm-client`, even on SIGKILL."""
        self.supernode = FlowerProcess(supernode_command, self.env, supernode_log, cwd=cwd, keeper=keeper)
        self.superexec_log = supernode_log.parent / "superexec.log"
        self.cwd = cwd
        self.runtime_address = runtime_address
        self.site_config = site_config
        self.secret_file = secret_file
        self.superexec: FlowerProcess | None = None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The SuperNode's process: its exit is the site's exit."""
        return self.supernode.process

    def start(self) -> SiteProcesses:
        ensure_superexec_secret(self.secret_file)
        self.supernode.start()
        return self

    def admitted(self) -> None:
        """Start the SuperExec, whose task forkserver imports torch and the model code (about 9 CPU-s, 0.9 GB), now
        that the SuperLink admitted the SuperNode: a site refused or unable to reach the center pays it at no retry."""
        if self.superexec is not None or not self.supernode.running():
            return
        self.superexec = FlowerProcess(
            site_superexec.command(self.runtime_address, self.site_config, self.secret_file, self.supernode.pid),
            self.env,
            self.superexec_log,
            cwd=self.cwd,
            keeper=self.keeper,
        ).start()

    def track_descendants(self) -> None:
        """Remember app processes of both; a dead SuperExec stops the SuperNode, so the caller restarts both."""
        self.supernode.track_descendants()
        if self.superexec is not None:
            self.superexec.track_descendants()
            if not self.superexec.running() and self.supernode.running():
                self.supernode.stop(grace_s=5.0)

    def stop(self, grace_s: float = 10.0) -> int | None:
        """Stop the SuperExec (and its ClientApps), then the SuperNode; return the SuperNode's exit code."""
        if self.superexec is not None:
            self.superexec.stop(grace_s)
        return self.supernode.stop(grace_s)
