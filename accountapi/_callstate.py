"""One call's state across its attempts, shared by the call path and what it reports to
(shared reads, telemetry, the bulk engine), so that none of them imports the call path
for the type."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

    from yarl import URL

    from ._config import Timeout
    from ._http._transport import RawResponse
    from ._keys import Credential

__all__ = ["Call"]

T = TypeVar("T")


class Call(Generic[T]):
    """One call's state across its attempts: the key, the request, the deadline, how
    many requests were sent and the answer its value was decoded from.

    `CallPath.request()` returns it beside the value: ``sent`` is what a result's
    ``attempts`` reports, and ``answer`` (the 2xx response) is what ``balances()`` keeps
    for repeats and the span records the status of.
    """

    __slots__ = (
        "answer",
        "deadline",
        "key",
        "method",
        "parse",
        "sent",
        "task",
        "timeouts",
        "url",
    )

    def __init__(
        self,
        key: Credential,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], T],
        timeouts: Timeout,
        deadline: float | None,
        task: asyncio.Task[Any] | None,
    ) -> None:
        self.key = key
        self.method = method
        self.url = url
        self.parse = parse
        self.timeouts = timeouts
        self.deadline = deadline  # monotonic; None without Timeout.total
        self.sent = 0  # requests handed to the transport, across attempts
        self.answer: RawResponse | None = None  # the 2xx answer, once there is one
        # The task the call runs in (None outside one): its attempts' deadlines cancel it.
        self.task = task
