"""Package discovery for setuptools; everything else is declared in pyproject.toml.

Every sub-package under each top-level folder is found (none is listed by hand), and the two
folders whose names are not import names map onto ``lean_*`` names, so every top-level name the
wheel installs starts with ``lean_``.
"""

from setuptools import find_packages, setup

# import name -> folder in this repository
ROOTS = {
    "lean_core": "lean_core",
    "lean_chain": "lean_chain",
    "lean_index": "lean_index",
    "lean_backends": "backends",
    "lean_benchmarks": "benchmarks",
    "lean_cli": "lean_cli",
}


def _packages() -> list[str]:
    found = []
    for name, folder in ROOTS.items():
        for package in find_packages(include=[folder, f"{folder}.*"]):
            found.append(name + package[len(folder):])
    return found


setup(packages=_packages(), package_dir={name: folder for name, folder in ROOTS.items() if name != folder})
