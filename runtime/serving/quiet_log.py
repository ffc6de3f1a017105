"""Logging that a flood cannot turn into a second attack: one line per event, at most a few per second.

Refused requests and the libraries' own errors (aiohttp, asyncio, grpc) each become one line, control
characters escaped, no traceback; past the rate, lines are counted and the count is said with the next
line that gets through. Tracebacks of 30 lines per malformed request, or asyncio's per-accept EMFILE
error, once filled 10 MB of log in seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

LIBRARY_LOGGERS = ("aiohttp", "asyncio", "grpc")


def one_line(text: str, limit: int = 300) -> str:
    """Printable, on one line, at most `limit` characters (a client chooses what goes into messages)."""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit] + "..."


class RateLimited:
    """say() passes at most `burst` lines at once and `per_second` on average; the rest are counted."""

    def __init__(self, echo: Callable[[str], None], per_second: float = 5.0, burst: int = 20) -> None:
        self.echo, self.rate, self.burst = echo, per_second, burst
        self._tokens, self._last, self.dropped = float(burst), time.monotonic(), 0
        self._lock = threading.Lock()

    def say(self, message: str) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                self.dropped += 1
                return False
            self._tokens -= 1
            dropped, self.dropped = self.dropped, 0
        suffix = f" ({dropped} similar line(s) not shown)" if dropped else ""
        self.echo(one_line(message) + suffix)
        return True


class _OneLine(logging.Handler):
    def __init__(self, limited: RateLimited) -> None:
        super().__init__(logging.WARNING)
        self.limited = limited

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                message += f": {type(error).__name__}: {error}"
            self.limited.say(f"{record.name}: {message}")
        except Exception:  # a log line must never fail the caller
            pass


def quiet_libraries(limited: RateLimited) -> None:
    """Route warnings and errors of the serving libraries to `limited`, one line each."""
    handler = _OneLine(limited)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
