"""The emulator stays faithful to the service's contract: schemathesis finds no violation.

The emulator runs in its own process (schemathesis calls it synchronously) and serves the
package's own copy of the contract. That copy equals the service's shared document
(``../shared/api/openapi.yaml``); ``.ci/run`` checks so when that file is there, so the
suite itself needs nothing outside the repository.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case as _Case
from schemathesis.schemas import BaseSchema

Case = _Case[Any]

PACKAGED_SPEC = Path(__file__).resolve().parent.parent / "accountapi" / "testing" / "openapi.yaml"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, str]]:
    """A standalone emulator process: (base URL, one valid key)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accountapi.testing",
            "--port",
            "0",
            "--keys",
            "1",
            "--keys-file",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        key = proc.stdout.readline().strip()
        banner = proc.stderr.readline().strip()
        url = banner.rsplit(" ", 1)[-1]
        assert key.startswith("dpct_"), banner
        assert url.startswith("http://127.0.0.1:"), banner
        yield url, key
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, str]) -> BaseSchema:
    """The contract as the running emulator serves it at /openapi.yaml."""
    url, _ = served
    return schemathesis.openapi.from_url(f"{url}/openapi.yaml")


def test_the_emulator_serves_the_packaged_contract(served: tuple[str, str]) -> None:
    """What schemathesis checks against is the package's own copy, byte for byte."""
    import urllib.request

    url, _ = served
    with urllib.request.urlopen(f"{url}/openapi.yaml", timeout=10) as answer:  # noqa: S310
        assert answer.read() == PACKAGED_SPEC.read_bytes()


def run_operations(schema: BaseSchema, examples: int, check: Callable[[Case], object]) -> int:
    """Drive every operation of the contract with hypothesis-generated cases; count them."""
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # Err would mean an invalid contract

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
        def one(case: Case) -> None:
            nonlocal calls
            calls += 1
            check(case)

        one()
    return calls


def test_emulator_conforms_to_the_contract(api_schema: BaseSchema, served: tuple[str, str]) -> None:
    """Generated requests with a valid key get a documented status, content type and body."""
    url, key = served
    headers = {"Authorization": f"Bearer {key}"}
    calls = run_operations(
        api_schema, 15, lambda case: case.call_and_validate(base_url=url, headers=headers)
    )
    assert calls >= 2


def test_emulator_conforms_without_a_valid_key(
    api_schema: BaseSchema, served: tuple[str, str]
) -> None:
    """With a wrong key every operation answers its documented 401 error object."""
    url, _ = served
    headers = {"Authorization": "Bearer dpct_wrong_key_0000"}

    def check(case: Case) -> None:
        response = case.call_and_validate(base_url=url, headers=headers)
        assert response.status_code == 401

    assert run_operations(api_schema, 5, check) >= 2
