"""aiohttp's low-level server with a cap on open connections and a deadline for the first request head.

Without a cap, idle sockets exhaust the process's open files and every accept, upstream connection and
file open fails (EMFILE). With it, a connection past the cap is answered 503 with Retry-After and closed
at once, and the cap is set well under the open-file limit (capacity.py). A connection that has not sent
a whole request head within `header_timeout` of opening is closed; between requests aiohttp's own
`keepalive_timeout` (the same value) closes an idle or slowly-sent head.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .state import RETRY_AFTER_S

BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: %d\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


class _Busy(asyncio.Protocol):
    """A connection past the cap: 503, then closed; nothing it sends is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        body = b'{"error":"gsam serve holds as many connections as it may; retry"}'
        transport.write(BUSY % (RETRY_AFTER_S, len(body), body))  # type: ignore[attr-defined]
        transport.close()


class CappedServer(web.Server):
    """`web.Server(handler, **RequestHandler options)` holding at most `cap` connections."""

    def __init__(self, handler, *, cap: int, header_timeout: float, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.cap, self.header_timeout = cap, header_timeout
        self.open = 0  # connections whose socket is open
        self._opening = 0  # made by the factory, connection_made not yet called
        self.refused = 0
        self._started: set = set()  # handlers of open connections that got a request head

    def __call__(self):
        if self.open + self._opening >= self.cap:
            self.refused += 1
            return _Busy()
        self._opening += 1
        return super().__call__()

    def connection_made(self, handler, transport) -> None:
        self._opening = max(0, self._opening - 1)
        self.open += 1
        super().connection_made(handler, transport)
        asyncio.get_running_loop().call_later(self.header_timeout, self._expire, handler)

    def connection_lost(self, handler, exc=None) -> None:
        self.open -= 1
        self._started.discard(handler)
        super().connection_lost(handler, exc)

    def began(self, handler) -> None:
        """A request head arrived on this connection (called by the request handler)."""
        self._started.add(handler)

    def _expire(self, handler) -> None:
        if handler not in self._started and handler.transport is not None:
            handler.force_close()
