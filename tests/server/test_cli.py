"""`bcvlm-server`: a run whose rounds did not train exits non-zero naming sites and reasons; `status RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcvlm_server import cli
from bcvlm_server.run_records import RunRecords
from bcvlm_server.superlink import RunStatus
from bcvlm_testing.deployment_files import loopback_certificates, write_server_yaml
from bcvlm_testing.federation_sites import FailingTrainer, make_site, run_inprocess
from bcvlm_testing.module_imports import heavy_modules_loaded_by


def run_with_failing_sites(tmp_path: Path, secagg: bool) -> None:
    """One round of the real ServerApp with two in-process sites, alpha and beta, whose training fails, into
    `tmp_path/run`."""
    sites = {
        100: make_site(tmp_path, "site0", n_train=4, n_test=4),
        101: make_site(tmp_path, "site1", n_train=4, n_test=4, seed=1),
    }
    RunRecords(tmp_path / "run").save_site_names({"100": "alpha", "101": "beta"})
    run_inprocess(
        tmp_path,
        sites,
        "server",
        trainer_factory=FailingTrainer,
        **{"secagg.enabled": secagg, "rounds": 1, "min_sites": 2},
    )


@pytest.fixture()
def failed_run(tmp_path: Path) -> Path:
    """A run directory whose only round failed at both sites (their data is unreadable)."""
    run_with_failing_sites(tmp_path, secagg=False)
    (tmp_path / "run" / "deployment.yaml").write_text("{}\n")
    return tmp_path / "run"


def test_the_server_cli_starts_without_torch() -> None:
    """`--check`, `status` and the supervisor of the center's Flower processes need no model: each start stays
    cheap (the ServerApp process loads it)."""
    assert heavy_modules_loaded_by("bcvlm_server.cli") == []


def test_status_names_each_site_and_its_outcome(failed_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", str(failed_run)]) == cli.FAILED_ROUNDS_EXIT_CODE
    out = capsys.readouterr().out
    assert "completed rounds: 1 of 1" in out
    assert "round 1 failed in" in out
    assert "alpha failed (OSError: the site's ClientApp raised an error" in out
    assert "beta failed (OSError" in out and "eval failed (OSError" in out


def test_status_refuses_a_folder_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", str(tmp_path)]) == 2
    assert "not a bcvlm run directory" in capsys.readouterr().err


def test_status_refuses_a_round_record_it_cannot_read_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = RunRecords(tmp_path)
    records.metrics_path(1).parent.mkdir(parents=True)
    records.metrics_path(1).write_text('{"round": 1, "wall_seconds": 3.0}\n')  # a record of an older bcvlm
    records.mark_round_completed(1, planned_rounds=1)
    assert cli.main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(records.metrics_path(1)) in err and "missing field 'strategy'" in err


def test_a_run_in_which_every_site_fails_exits_non_zero_with_the_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    loopback_certificates(tmp_path / "certs", generate_site_keys=["alpha", "beta"])
    server_yaml = write_server_yaml(tmp_path, ("alpha", "beta"), {"run_dir": "run", "rounds": 1, "min_sites": 2})

    def deployment_with_failing_sites(cfg, resume=False):
        # The real ServerApp and ClientApps (in process) stand in for the SuperLink, SuperNodes and processes.
        run_with_failing_sites(tmp_path, secagg=True)
        return RunStatus(run_id=1, status="finished:completed", details={})

    monkeypatch.setattr(cli, "run_deployment", deployment_with_failing_sites)
    assert cli.main(["--config", str(server_yaml)]) == cli.FAILED_ROUNDS_EXIT_CODE
    captured = capsys.readouterr()
    assert "run completed" not in captured.out
    assert "1 round(s) did not train" in captured.err
    assert "round 1: 0 site(s) trained, min_sites 2" in captured.err
    assert "alpha failed (OSError" in captured.err and "beta failed (OSError" in captured.err
