"""The package graph is one-way: bcvlm_model <- bcvlm_client <- bcvlm_server <- bcvlm_simulation; product code never
imports the test harness (bcvlm_testing) or tests/."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER_OF_PACKAGE = {
    "bcvlm_model": "bcvlm_model",
    "bcvlm_client": "client",
    "bcvlm_server": "server",
    "bcvlm_simulation": "simulation",
}
MAY_IMPORT = {
    "bcvlm_model": set(),
    "bcvlm_client": {"bcvlm_model"},  # the client owns the federation contract (round settings, reply schema, launcher)
    "bcvlm_server": {"bcvlm_model", "bcvlm_client"},
    "bcvlm_simulation": {"bcvlm_model", "bcvlm_client", "bcvlm_server"},
}
FORBIDDEN_EVERYWHERE = {"bcvlm_testing", "tests", "federation_sites"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def package_violations(repo: Path = REPO) -> list[str]:
    problems = []
    for package, folder in FOLDER_OF_PACKAGE.items():
        for path in sorted((repo / folder).rglob("*.py")):
            for root in imported_roots(path):
                other_package = root in FOLDER_OF_PACKAGE and root != package
                if (other_package and root not in MAY_IMPORT[package]) or root in FORBIDDEN_EVERYWHERE:
                    problems.append(f"{path.relative_to(repo)} imports {root}")
    return problems


def test_packages_import_one_way_only() -> None:
    assert package_violations() == []


def test_the_model_package_knows_nothing_of_flower() -> None:
    users = [
        str(path.relative_to(REPO)) for path in (REPO / "bcvlm_model").rglob("*.py") if "flwr" in imported_roots(path)
    ]
    assert users == []


def test_the_check_sees_an_import_against_the_graph(tmp_path: Path) -> None:
    """The check can fail: a client module importing the server is reported."""
    for folder in FOLDER_OF_PACKAGE.values():
        (tmp_path / folder).mkdir()
    (tmp_path / "client" / "bad.py").write_text("from bcvlm_server.cli import main\n")
    (tmp_path / "server" / "harness.py").write_text("import bcvlm_testing.loopback\n")
    assert package_violations(tmp_path) == [
        "client/bad.py imports bcvlm_server",
        "server/harness.py imports bcvlm_testing",
    ]
