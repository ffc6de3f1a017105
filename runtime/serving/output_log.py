"""tritonserver's output: always drained, kept in memory, copied to the user's log file while it writes.

The reader must never stop: a pipe nobody reads fills, and tritonserver dies of SIGPIPE at its next line
once it is closed. A log file that fails to write (a full disk: ENOSPC) is reported once with its cause;
its lines are dropped and counted, a write is tried again at most once a second, and once one succeeds
the count is written into the file and reported.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Callable

RETRY_S = 1.0


class OutputLog:
    def __init__(self, path: Path | None, report: Callable[[str], None], keep: int = 400) -> None:
        self.path, self.report = path, report
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.dropped = 0
        self._fd: int | None = None
        self._failing_since: float | None = None
        self._last_try = 0.0

    def open(self, append: bool) -> None:
        """Open (or truncate) the file for a new start of tritonserver; a failure is reported, not raised."""
        self.close()
        if self.path is None:
            return
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        try:
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _fail(self, exc: OSError) -> None:
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self.report(f"--log-file {self.path}: writing failed ({exc.strerror or exc}); tritonserver's output is "
                        "dropped, and counted, until a write succeeds")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]

    def line(self, text: str) -> None:
        """One line of output (with or without its newline)."""
        text = text.rstrip("\n")
        self.lines.append(text)
        if self.path is None:
            return
        if self._failing_since is not None or self._fd is None:
            now = time.monotonic()
            if now - self._last_try < RETRY_S:
                self.dropped += 1
                return
            self._last_try = now
            if self._fd is None:
                self.open(append=True)
                if self._fd is None:
                    self.dropped += 1
                    return
        try:
            if self._failing_since is not None:
                self._write(f"[gsam serve: {self.dropped} line(s) of tritonserver's output dropped: the file could "
                            "not be written]\n".encode())
            self._write((text + "\n").encode(errors="replace"))
        except OSError as exc:
            self.dropped += 1
            self._fail(exc)
            return
        if self._failing_since is not None:
            self.report(f"--log-file {self.path} writes again; {self.dropped} line(s) were dropped meanwhile")
            self._failing_since, self.dropped = None, 0


def drain(stream, log: OutputLog) -> None:
    """Read `stream` to its end whatever happens to the lines (the reader thread of a server)."""
    while True:
        try:
            raw = stream.readline()
        except (OSError, ValueError):  # closed under us: the process is gone
            break
        if not raw:
            break
        try:
            log.line(raw)
        except Exception:  # never stop reading: an unread pipe kills tritonserver
            log.dropped += 1
    try:
        stream.close()
    except OSError:
        pass
