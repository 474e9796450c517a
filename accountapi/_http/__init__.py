"""The I/O edge: the only package that talks to aiohttp's client.

- ``_transport``: owns the ``aiohttp.ClientSession``, sends one request, returns a plain
  `RawResponse` and turns every aiohttp/asyncio failure
  into the SDK's own error.
- ``_aiohttp_private``: every use of aiohttp's private API, in one file (the pool guard's
  connector and protocol, the session's resend switch).
- ``_deadlines``: the per-attempt deadlines; ``_content``: Content-Encoding within the
  size cap; ``_proxy``: which proxy, if any, a request goes through.

Nothing is re-exported here, so importing a pure module (``_proxy``) costs no aiohttp.
"""
