"""The public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import inspect
import sys
import traceback
import warnings
from pathlib import Path

import pytest

import accountapi
import accountapi.gates
import accountapi.testing

PUBLIC = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponse",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AccountAPIError",
    "AccountClient",
    "AccountResource",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BalanceFailed",
    "BalanceOk",
    "BalanceResult",
    "BalanceStream",
    "BalanceSummary",
    "BalanceThresholds",
    "ClientStateError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "KeySource",
    "Limits",
    "MalformedAPIKeyError",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Profile",
    "RateLimitError",
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


# accountapi.gates: what a gate author (or a deployment choosing a gate) needs.
GATES = [
    "MAX_COOL_DOWN",
    "Clock",
    "GateTimeout",
    "KeyCoolingDown",
    "KeyGate",
    "MemoryKeyGate",
    "RedisKeyGate",
]


def test_gates_namespace_is_pinned() -> None:
    """accountapi.gates.__all__ is exactly the gate-authoring list, each name importable."""
    assert sorted(accountapi.gates.__all__) == sorted(GATES)
    for name in GATES:
        assert hasattr(accountapi.gates, name), name


def _public_exceptions() -> list[type[BaseException]]:
    return [
        obj
        for module in (accountapi, accountapi.gates, accountapi.testing)
        for name in module.__all__
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, BaseException)
    ]


def test_every_exception_is_an_account_api_error() -> None:
    """Each exported exception class, the gate signals included, derives from AccountAPIError."""
    errors = _public_exceptions()
    assert len(errors) >= 22
    assert accountapi.gates.GateTimeout in errors
    assert accountapi.gates.KeyCoolingDown in errors
    assert [e for e in errors if not issubclass(e, accountapi.AccountAPIError)] == []


def test_a_malformed_key_is_a_configuration_error_not_a_status_error() -> None:
    """Nothing was sent for a malformed key, so it is no APIStatusError (no status 401)."""
    error_type = accountapi.MalformedAPIKeyError
    assert issubclass(error_type, accountapi.ConfigurationError)
    assert issubclass(error_type, ValueError)
    assert not issubclass(error_type, accountapi.APIStatusError)
    assert not issubclass(error_type, accountapi.AuthenticationError)
    error = error_type("the API key is empty", key_hint="dpct_…abcd")
    assert (error.code, error.key_hint, error.attempts, str(error)) == (
        "key_malformed",
        "dpct_…abcd",
        0,
        "the API key is empty",
    )
    assert not hasattr(error, "status")


# Each name that left the top level, and where it lives now.
MOVED = dict.fromkeys(GATES, accountapi.gates)


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_still_imports_with_a_deprecation_warning(name: str) -> None:
    """`accountapi.<old name>` gives the same object as its new home, with a
    DeprecationWarning that names the new home and points at the caller's line."""
    with pytest.warns(DeprecationWarning, match=rf"accountapi\.{name} is deprecated") as caught:
        old = getattr(accountapi, name)
    assert old is getattr(MOVED[name], name)
    assert len(caught) == 1
    assert MOVED[name].__name__ in str(caught[0].message)
    assert caught[0].filename == __file__


def test_a_moved_name_imported_with_from_warns_at_the_import_line() -> None:
    """`from accountapi import RedisKeyGate` warns, attributed to the user's import line."""
    with pytest.warns(DeprecationWarning, match="accountapi.gates") as caught:
        from accountapi import RedisKeyGate
    assert RedisKeyGate is accountapi.gates.RedisKeyGate
    assert {(Path(w.filename).name, w.lineno) for w in caught} == {
        (Path(__file__).name, sys._getframe().f_lineno - 3)
    }


def test_moved_names_are_not_advertised() -> None:
    """The old names are neither in __all__ nor in dir(); an unknown name is still an
    AttributeError, without a warning."""
    for name in MOVED:
        assert name not in accountapi.__all__
        assert name not in dir(accountapi)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
            _ = accountapi.NoSuchName  # type: ignore[attr-defined]
        assert not hasattr(accountapi, "ConnectionPool")


def test_private_helpers_stay_private() -> None:
    """The system clock and the in-memory gate's synchronous fast paths are not public API."""
    assert not hasattr(accountapi, "SystemClock")
    assert not hasattr(accountapi.gates, "SystemClock")
    assert not hasattr(accountapi.gates.MemoryKeyGate, "try_acquire")
    assert not hasattr(accountapi.gates.MemoryKeyGate, "cool_down_nowait")
    assert not hasattr(accountapi.AccountResource, "profile_with_attempts")


def test_every_gate_has_one_shape() -> None:
    """Both shipped gates implement the whole KeyGate protocol, in_flight() included, as coroutines."""
    for gate in (accountapi.gates.MemoryKeyGate, accountapi.gates.RedisKeyGate):
        for name in ("acquire", "cool_down", "in_flight"):
            assert inspect.iscoroutinefunction(getattr(gate, name)), (gate, name)
        assert not inspect.iscoroutinefunction(gate.release)


def test_public_objects_say_they_come_from_accountapi() -> None:
    """Public classes live in private modules but document themselves; none lacks a docstring."""
    for module in (accountapi, accountapi.gates):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, name


def test_library_never_imports_the_emulator_or_cli() -> None:
    """Importing accountapi pulls in neither accountapi.testing nor the CLI's libraries."""
    import subprocess

    code = (
        "import sys, accountapi; "
        "bad = [m for m in ('accountapi.testing', 'accountapi.cli', 'click', 'rich', 'redis') if m in sys.modules]; "
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
    attrs models keep their own module (their annotations resolve there); the gate
    signals name accountapi.gates."""
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
    gate_signals = [accountapi.gates.GateTimeout, accountapi.gates.KeyCoolingDown]
    assert {cls.__module__ for cls in gate_signals} == {"accountapi.gates"}
    line = traceback.format_exception_only(accountapi.gates.KeyCoolingDown(2.0))
    assert line == [
        "accountapi.gates.KeyCoolingDown: the key is cooling down after a 429 for 2.000s more\n"
    ]


def test_gate_signals_say_where_they_live_before_accountapi_gates_is_imported() -> None:
    """The public path is set where the class is defined (accountapi.gates._protocol, a
    module of the package it names): a GateTimeout names (and pickles to) accountapi.gates."""
    import subprocess

    code = (
        "import pickle, sys, accountapi; from accountapi.gates._protocol import GateTimeout; "
        "print(GateTimeout.__module__, type(pickle.loads(pickle.dumps(GateTimeout('x')))).__qualname__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["accountapi.gates", "GateTimeout"]


def _run(code: str) -> str:
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_importing_accountapi_alone_imports_no_aiohttp() -> None:
    """`import accountapi` (and accountapi.testing) imports names on first use, so it loads
    neither aiohttp nor the client until a name is touched."""
    assert _run("import accountapi, sys; print('aiohttp' in sys.modules)") == "False"
    assert _run("import accountapi.testing, sys; print('aiohttp' in sys.modules)") == "False"
    assert (
        _run("import accountapi, sys; accountapi.RateLimitError; print('aiohttp' in sys.modules)")
        == "False"
    )
    assert (
        _run("import accountapi, sys; accountapi.AccountClient; print('aiohttp' in sys.modules)")
        == "True"
    )


def test_star_import_and_dir_offer_every_public_name() -> None:
    """`from accountapi import *` binds every name of __all__, and dir() lists them all
    before any was used (the lazy names included)."""
    code = (
        "import accountapi; names = dir(accountapi); ns = {}; "
        "exec('from accountapi import *', ns); "
        "print(sorted(set(accountapi.__all__) - set(names)), sorted(set(accountapi.__all__) - set(ns)))"
    )
    assert _run(code) == "[] []"
    for name in accountapi.__all__:
        assert name in dir(accountapi), name
    for name in accountapi.testing.__all__:
        assert name in dir(accountapi.testing), name


def test_exceptions_say_they_come_from_accountapi_before_the_name_is_used() -> None:
    """The public path is set where the exceptions are defined: an error raised by a private
    module names (and pickles to) accountapi.X though accountapi.X was never looked up."""
    code = (
        "import pickle, traceback, accountapi; from accountapi._exceptions import RateLimitError; "
        "e = pickle.loads(pickle.dumps(RateLimitError('x', status=429))); "
        "print(type(e).__module__, type(e).__qualname__, 'RateLimitError' in vars(accountapi))"
    )
    assert _run(code).split() == ["accountapi", "RateLimitError", "True"]


def test_an_unknown_testing_name_is_an_attribute_error() -> None:
    """accountapi.testing resolves its names lazily but still refuses a name it lacks."""
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        _ = accountapi.testing.NoSuchName  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", [accountapi, accountapi.testing])
def test_lazy_names_and_the_names_type_checkers_see_agree(module: object) -> None:
    """Each package's imports under TYPE_CHECKING name the same module for each name as the
    table its __getattr__ imports from at run time, for every name of __all__."""
    import ast

    path = Path(inspect.getfile(module))  # type: ignore[arg-type]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    checked: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module != "gates":
                    for alias in stmt.names:
                        checked[alias.name] = "." * stmt.level + (stmt.module or "")
    homes = vars(module)["_HOMES"]
    assert checked == homes
    assert set(homes) | {"__version__"} >= set(vars(module)["__all__"])
    assert set(homes) <= set(vars(module)["__all__"])
