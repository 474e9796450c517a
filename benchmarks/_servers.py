"""Server processes for the suite: the fast responder and the emulator host, on loopback.

Each runs in its own process so that its CPU time is its own; both are pinned to the
last CPU (and the client to the first) when the machine has at least two.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final

__all__ = [
    "CpuPlan",
    "EmulatorProcess",
    "ResponderProcess",
    "ServerCpu",
    "cpu_plan",
]

_ROOT: Final = Path(__file__).resolve().parent.parent
_START_TIMEOUT: Final = 20.0


class CpuPlan:
    """Which CPU the client and the servers run on (``None``: not pinned)."""

    __slots__ = ("client", "server")

    def __init__(self, client: int | None, server: int | None) -> None:
        self.client = client
        self.server = server

    def pin_client(self) -> None:
        if self.client is not None:
            os.sched_setaffinity(0, {self.client})

    def describe(self) -> str:
        if self.client is None:
            return "not pinned"
        return f"client on CPU {self.client}, server on CPU {self.server}"


def cpu_plan(pin: bool) -> CpuPlan:
    """Client on the first allowed CPU, server on the last, when pinning is possible."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return CpuPlan(None, None)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return CpuPlan(None, None)
    return CpuPlan(cpus[0], cpus[-1])


class ServerCpu:
    """A server's CPU seconds and request count at one moment."""

    __slots__ = ("cpu_s", "requests", "wall")

    def __init__(self, cpu_s: float, requests: int, wall: float) -> None:
        self.cpu_s = cpu_s
        self.requests = requests
        self.wall = wall


def _read_line(stream: IO[str], what: str, proc: subprocess.Popen[str]) -> str:
    line = stream.readline()
    if not line:
        code = proc.wait(timeout=5)
        raise RuntimeError(f"{what} exited (status {code}) before it was ready")
    return line.strip()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class ResponderProcess:
    """``benchmarks.responder`` in a subprocess; ``url`` once started."""

    def __init__(self, plan: CpuPlan, *, uvloop: bool = True) -> None:
        args = [sys.executable, "-m", "benchmarks.responder", "--port", "0"]
        if plan.server is not None:
            args += ["--cpu", str(plan.server)]
        if uvloop:
            args.append("--uvloop")
        self.loop = "uvloop" if uvloop else "asyncio"
        self._args = args
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.final_stats: dict[str, Any] | None = None

    def __enter__(self) -> ResponderProcess:
        proc = subprocess.Popen(self._args, cwd=_ROOT, stdout=subprocess.PIPE, text=True)
        self._proc = proc
        assert proc.stdout is not None
        line = _read_line(proc.stdout, "the responder", proc)
        if not line.startswith("LISTENING http://127.0.0.1:"):
            _stop(proc)
            raise RuntimeError(f"unexpected responder greeting: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _stop(proc)
        assert proc.stdout is not None
        for line in proc.stdout.read().splitlines():
            if line.startswith("STATS "):
                self.final_stats = json.loads(line[6:])

    def stats(self) -> ServerCpu:
        """The responder's CPU time so far, asked over a fresh loopback connection."""
        host_port = self.url.removeprefix("http://")
        host, _, port = host_port.partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/__stats")
            data = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return ServerCpu(float(data["cpu_s"]), int(data["requests"]), time.perf_counter())


class EmulatorProcess:
    """``benchmarks.emulator_host`` in a subprocess, driven by JSON lines on its stdin."""

    def __init__(self, plan: CpuPlan) -> None:
        args = [sys.executable, "-m", "benchmarks.emulator_host"]
        if plan.server is not None:
            args += ["--cpu", str(plan.server)]
        self._args = args
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        proc = subprocess.Popen(
            self._args, cwd=_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._proc = proc
        assert proc.stdout is not None
        hello = json.loads(_read_line(proc.stdout, "the emulator host", proc))
        self.url = str(hello["url"])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _stop(proc)

    def call(self, op: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its JSON answer (``{"error": ...}`` raises)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("the emulator host is not running")
        proc.stdin.write(json.dumps({"op": op, **params}) + "\n")
        proc.stdin.flush()
        answer: dict[str, Any] = json.loads(_read_line(proc.stdout, "the emulator host", proc))
        if "error" in answer:
            raise RuntimeError(f"emulator host: {answer['error']}")
        return answer

    def stats(self) -> ServerCpu:
        data = self.call("stats")
        return ServerCpu(float(data["cpu_s"]), int(data["requests"]), time.perf_counter())
