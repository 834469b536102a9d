"""Tests mirror the product tree: tests/<package>/<subpackage>/test_<module>[_<aspect>].py names a module (or
subpackage) that exists in that package folder, so a newcomer finds a module's tests by its path."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCT_FOLDER_OF_TEST_FOLDER = {
    "model": "bcvlm_model",
    "client": "client",
    "server": "server",
    "simulation": "simulation",
    "benchmarks": "benchmarks",
}
REPOSITORY_WIDE_TESTS = {"test_package_graph.py", "test_tree_mirror.py"}


def product_names(folder: Path) -> set[str]:
    """Modules (any suffix: benchmarks hold shell scripts) and subpackages directly in one product folder."""
    if not folder.is_dir():
        return set()
    names = {path.stem for path in folder.iterdir() if path.is_file() and not path.name.startswith("_")}
    names |= {path.name for path in folder.iterdir() if path.is_dir() and not path.name.startswith(("_", "."))}
    return names


def mirrors(test_name: str, names: set[str]) -> bool:
    """test_<name>.py or test_<name>_<aspect>.py for one of the product names."""
    stem = test_name.removeprefix("test_").removesuffix(".py")
    return any(stem == name or stem.startswith(f"{name}_") for name in names)


def unmirrored_tests(repo: Path = REPO) -> list[str]:
    tests = repo / "tests"
    problems = []
    for path in sorted(tests.rglob("test_*.py")):
        relative = path.relative_to(tests)
        if len(relative.parts) == 1:
            if relative.name not in REPOSITORY_WIDE_TESTS:
                problems.append(f"tests/{relative}: not under a package folder")
            continue
        top, *subfolders = relative.parts[:-1]
        if top not in PRODUCT_FOLDER_OF_TEST_FOLDER:
            problems.append(f"tests/{relative}: tests/{top} mirrors no product package")
            continue
        product = repo / PRODUCT_FOLDER_OF_TEST_FOLDER[top]
        folder = product.joinpath(*subfolders)
        if not mirrors(relative.name, product_names(folder)):
            problems.append(f"tests/{relative}: no module of that name in {folder.relative_to(repo)}/")
    return problems


def test_every_test_file_mirrors_a_module() -> None:
    assert unmirrored_tests() == []


def test_the_check_sees_a_test_without_its_module(tmp_path: Path) -> None:
    """The check can fail: a test named after a module that does not exist is reported, its sibling is not."""
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "site_config.py").write_text("")
    (tmp_path / "tests" / "client").mkdir(parents=True)
    (tmp_path / "tests" / "client" / "test_site_config_examples.py").write_text("")
    (tmp_path / "tests" / "client" / "test_site_configs.py").write_text("")
    assert unmirrored_tests(tmp_path) == [
        "tests/client/test_site_configs.py: no module of that name in client/",
    ]
