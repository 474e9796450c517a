"""``accountapi`` and ``python -m accountapi``: the command line, from the ``cli`` extra.

click and rich are imported only here, lazily, so the library never needs them; without
them this prints how to install them and exits 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["console", "main"]


def console() -> int:
    """The ``accountapi`` command: `main()` in a process that ends with its status."""
    return main(owns_process=True)


def main(argv: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """Run the command line and return its exit status (see ``accountapi --help``)."""
    try:
        from .cli import run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("click", "rich"):
            raise
        print(
            "accountapi: the command line needs click and rich: install the cli extra "
            "(pip install '.[cli]' from a clone, 'accountapi[cli]' from an index)",
            file=sys.stderr,
        )
        return 2
    return run(argv, owns_process=owns_process)


if __name__ == "__main__":
    sys.exit(console())
