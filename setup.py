"""Maps the design card's folders (server/, client/, simulation/, tests/harness/) to project-owned import names."""

from setuptools import find_packages, setup

FOLDER_OF_PACKAGE = {
    "bcvlm_model": "bcvlm_model",
    "bcvlm_server": "server",
    "bcvlm_client": "client",
    "bcvlm_simulation": "simulation",
    "bcvlm_testing": "tests/harness",  # loopback federation, in-process grid, test sites: tests and benchmarks only
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for package, folder in FOLDER_OF_PACKAGE.items():
    packages.append(package)
    package_dir[package] = folder
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={package: ["**/*.yaml", "**/*.json", "**/*.html", "**/*.toml"] for package in FOLDER_OF_PACKAGE},
)
