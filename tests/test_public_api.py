"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import inspect

import accountapi
import accountapi.testing

PUBLIC = [
    "MAX_COOL_DOWN",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AccountAPIError",
    "AccountClient",
    "AccountResource",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BalanceResult",
    "BalanceStream",
    "BalanceSummary",
    "BalanceThresholds",
    "ClientStateError",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "GateTimeout",
    "InternalServerError",
    "KeyCoolingDown",
    "KeyGate",
    "KeySource",
    "Limits",
    "MalformedAPIKeyError",
    "MemoryKeyGate",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Profile",
    "RateLimitError",
    "RedisKeyGate",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "ServiceUnavailableError",
    "SyncAccountClient",
    "SyncAccountResource",
    "Timeout",
    "UnavailableForLegalReasonsError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "__version__",
    "key_hint",
]


def test_exported_names_are_pinned() -> None:
    """accountapi.__all__ is exactly the documented list."""
    assert sorted(accountapi.__all__) == sorted(PUBLIC)


def test_every_exported_name_exists() -> None:
    """Everything in __all__ can be imported from accountapi itself."""
    for name in accountapi.__all__:
        assert hasattr(accountapi, name), name


# What a KeyGate raises to the client, which turns it into APITimeoutError or
# RateLimitError: exported for gate authors, never raised to a caller of the client.
GATE_SIGNALS = (accountapi.GateTimeout, accountapi.KeyCoolingDown)


def test_every_exception_is_an_account_api_error() -> None:
    """Each exported exception class a caller can see derives from AccountAPIError."""
    errors = [
        obj
        for obj in vars(accountapi).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj not in GATE_SIGNALS
    ]
    assert len(errors) >= 20
    assert all(issubclass(e, accountapi.AccountAPIError) for e in errors)


def test_private_helpers_stay_private() -> None:
    """The system clock and the in-memory gate's synchronous fast paths are not public API."""
    assert not hasattr(accountapi, "SystemClock")
    assert not hasattr(accountapi.MemoryKeyGate, "try_acquire")
    assert not hasattr(accountapi.MemoryKeyGate, "cool_down_nowait")
    assert not hasattr(accountapi.AccountResource, "profile_with_attempts")


def test_every_gate_has_one_shape() -> None:
    """Both shipped gates implement the whole KeyGate protocol, in_flight() included, as coroutines."""
    for gate in (accountapi.MemoryKeyGate, accountapi.RedisKeyGate):
        for name in ("acquire", "cool_down", "in_flight"):
            assert inspect.iscoroutinefunction(getattr(gate, name)), (gate, name)
        assert not inspect.iscoroutinefunction(gate.release)


def test_public_objects_say_they_come_from_accountapi() -> None:
    """Public classes live in private modules but document themselves; none lacks a docstring."""
    for name in accountapi.__all__:
        obj = getattr(accountapi, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, name


def test_library_never_imports_the_emulator_or_cli() -> None:
    """Importing accountapi pulls in neither accountapi.testing nor the CLI's libraries."""
    import subprocess
    import sys

    code = (
        "import sys, accountapi; "
        "bad = [m for m in ('accountapi.testing', 'accountapi._cli', 'click', 'rich', 'redis') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_testing_surface() -> None:
    """accountapi.testing offers the emulator (also on its own thread), faults, records and
    the virtual clock."""
    assert sorted(accountapi.testing.__all__) == [
        "Emulator",
        "Fault",
        "RequestRecord",
        "ThreadedEmulator",
        "VirtualClock",
        "default_profile",
    ]


def test_exceptions_carry_their_public_module_path() -> None:
    """A traceback names accountapi.RateLimitError, not accountapi._exceptions...; the
    attrs models keep their own module (their annotations resolve there)."""
    import traceback

    exceptions = [
        value
        for name in accountapi.__all__
        if isinstance(value := getattr(accountapi, name), type) and issubclass(value, BaseException)
    ]
    assert len(exceptions) >= 20
    assert {cls.__module__ for cls in exceptions} == {"accountapi"}
    line = traceback.format_exception_only(accountapi.RateLimitError("slow down", status=429))
    assert line == ["accountapi.RateLimitError: 429: slow down\n"]
    assert accountapi.Profile.__module__ == "accountapi._models"
