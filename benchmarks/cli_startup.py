"""How long ``accountapi --help`` takes beyond importing click and rich.

    python -m benchmarks.cli_startup [--runs 5]

Two measures, each the best of ``--runs`` fresh interpreters (the best run is the one
least disturbed by other processes; startup noise only ever adds time):

- *wall*: ``python -m accountapi --help`` minus ``python -c "import click, rich.console,
  rich.progress"``, both timed around the whole process, so interpreter start-up
  cancels and the difference is everything ``--help`` does that click and rich do not:
  our imports, anything they pull in, and rendering the help.
- *importtime*: the self time ``python -X importtime`` reports for every module that
  ``--help`` imports and that the click/rich baseline does not import.

Every interpreter reads compiled bytecode, as an installed package does: the runs share
a bytecode cache in a temporary folder (``PYTHONPYCACHEPREFIX``, filled by one warm-up run
of each command), even where ``PYTHONDONTWRITEBYTECODE`` is set; ``--no-bytecode``
measures with every module compiled from source instead.

Each is reported as PASS or MISS against the 0.1 s target of issue 25; the exit status
is 0 either way (a benchmark reports, it never asserts).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Final

TARGET: Final = 0.1  # seconds beyond click and rich
_BASELINE: Final = ("-c", "import click, rich.console, rich.progress")
_HELP: Final = ("-m", "accountapi", "--help")
_LINE: Final = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \|( *)(\S+)$")


def _env(cache: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _wall(args: Sequence[str], env: Mapping[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], stdout=subprocess.DEVNULL, env=env, check=True, timeout=60
    )
    return time.perf_counter() - started


def _import_times(args: Sequence[str], env: Mapping[str, str]) -> dict[str, float]:
    """Each module the command imports, with its self time in seconds."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        check=True,
        timeout=60,
    )
    return {m[3]: int(m[1]) / 1e6 for line in out.stderr.splitlines() if (m := _LINE.match(line))}


def _verdict(seconds: float) -> str:
    return "PASS" if seconds < TARGET else "MISS"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_startup")
    parser.add_argument("--runs", type=int, default=5, help="interpreters per measure")
    parser.add_argument("--list", type=int, default=10, help="show the N slowest extra modules")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source each run"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as cache:
        env = _env(None if args.no_bytecode else cache)
        for command in (_BASELINE, _HELP):  # fills the bytecode cache
            _wall(command, env)

        baseline = min(_wall(_BASELINE, env) for _ in range(args.runs))
        help_ = min(_wall(_HELP, env) for _ in range(args.runs))
        wall = help_ - baseline

        base_modules = set(_import_times(_BASELINE, env))
        runs = [
            {name: t for name, t in _import_times(_HELP, env).items() if name not in base_modules}
            for _ in range(args.runs)
        ]
    best = min(runs, key=lambda run: sum(run.values()))
    extra = sum(best.values())

    bytecode = "from source" if args.no_bytecode else "from cached bytecode"
    print(f"{sys.executable}: best of {args.runs} runs each, modules {bytecode}")
    print(f"  click+rich imports          {baseline:6.3f} s (python -c '{_BASELINE[1]}')")
    print(f"  accountapi --help           {help_:6.3f} s (python -m accountapi --help)")
    print(f"  beyond click+rich, wall     {wall:6.3f} s  {_verdict(wall)} (target < {TARGET} s)")
    print(
        f"  beyond click+rich, imports  {extra:6.3f} s  {_verdict(extra)} "
        f"({len(best)} modules, -X importtime self times)"
    )
    for name, seconds in sorted(best.items(), key=lambda item: -item[1])[: args.list]:
        print(f"    {seconds * 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
