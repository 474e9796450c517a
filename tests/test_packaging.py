"""Packaging facts that protect users: dependency floors and the runtime dependency set."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())


def _floor(name: str) -> tuple[int, ...]:
    for dep in PYPROJECT["project"]["dependencies"]:
        match = re.fullmatch(rf"{name}\s*>=\s*([0-9.]+)", dep)
        if match:
            return tuple(int(p) for p in match.group(1).split("."))
    raise AssertionError(f"no >= floor for {name}")


def test_aiohttp_floor_excludes_known_cve_releases() -> None:
    """aiohttp >= 3.14.3: earlier releases carry published CVEs (response splitting, redirect auth)."""
    assert _floor("aiohttp") >= (3, 14, 3)
    installed = tuple(int(p) for p in version("aiohttp").split(".")[:3])
    assert installed >= (3, 14, 3)


def test_runtime_dependencies_are_exactly_the_chosen_four() -> None:
    """aiohttp, attrs, cattrs and tenacity only; everything else is an optional extra."""
    names = sorted(
        re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in PYPROJECT["project"]["dependencies"]
    )
    assert names == ["aiohttp", "attrs", "cattrs", "tenacity"]


def test_typed_marker_ships() -> None:
    """py.typed is in the package so type checkers use our hints."""
    assert (Path(__file__).parent.parent / "accountapi" / "py.typed").exists()


def test_ci_runs_the_readme_test_command_with_a_coverage_floor() -> None:
    """.ci/run runs the README's Development test command as written, and that command
    measures line and branch coverage of accountapi with a floor that fails the run."""
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    block = re.search(r"```console\n(.*?)```", readme[readme.index("## Development") :], re.S)
    assert block is not None
    command = block.group(1).strip().splitlines()[-1]
    assert command.split()[:2] == ["pytest", "--cov"]
    assert command in (root / ".ci" / "run").read_text().splitlines()
    coverage = PYPROJECT["tool"]["coverage"]
    assert coverage["run"]["source"] == ["accountapi"]
    assert coverage["run"]["branch"] is True
    assert coverage["report"]["fail_under"] >= 90


def test_ci_floor_pins_are_the_declared_floors() -> None:
    """.ci/floors.txt pins exactly the ">=" floor of every runtime dependency, so the
    floors run in .ci/run tests what pyproject.toml promises."""
    root = Path(__file__).resolve().parent.parent
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for requirement in declared:
        name, _, version = requirement.partition(">=")
        floors[name.strip().lower()] = version.strip()
    pinned = {}
    for line in (root / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip().lower()] = version.strip()
    assert set(pinned) == set(floors)

    def release(version: str) -> list[int]:  # "24.1" and "24.1.0" are one release
        parts = [int(part) for part in version.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return parts

    for name, version in floors.items():
        assert release(pinned[name]) == release(version), (name, pinned[name], version)
