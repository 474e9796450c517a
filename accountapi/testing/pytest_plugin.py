"""The ``accountapi`` pytest fixtures, for a project that names them in ``pytest_plugins``.

Installing ``accountapi`` already registers them (the ``pytest11`` entry point names the
top-level module ``pytest_accountapi``, which pytest can import without importing the
SDK); this module is the same fixtures under the package's name, for
``pytest_plugins = ["accountapi.testing.pytest_plugin"]`` or ``-p`` with the entry point
disabled. See ``pytest_accountapi`` for what each fixture does.
"""

import contextlib

from pytest_accountapi import _accountapi_client_anyio as _accountapi_client_anyio
from pytest_accountapi import (
    accountapi_client,
    accountapi_clock,
    accountapi_defaults,
    accountapi_emulator,
    accountapi_key,
    accountapi_sync_client,
)
from pytest_accountapi import pytest_collection_modifyitems as pytest_collection_modifyitems

__all__ = [
    "accountapi_client",
    "accountapi_clock",
    "accountapi_defaults",
    "accountapi_emulator",
    "accountapi_key",
    "accountapi_sync_client",
]

with contextlib.suppress(ImportError):  # defined only where pytest-asyncio is installed
    from pytest_accountapi import _accountapi_client_class_loop as _accountapi_client_class_loop
    from pytest_accountapi import (
        _accountapi_client_function_loop as _accountapi_client_function_loop,
    )
    from pytest_accountapi import (
        _accountapi_client_module_loop as _accountapi_client_module_loop,
    )
    from pytest_accountapi import (
        _accountapi_client_package_loop as _accountapi_client_package_loop,
    )
    from pytest_accountapi import (
        _accountapi_client_session_loop as _accountapi_client_session_loop,
    )
