"""Admission of inference requests: at most N in flight, and at most B bytes of bodies held at once.

A request enters before its body is read, with a small reservation (its inference header); once the header
says how large the body will be once inflated, the reservation grows to that, before any tensor byte is
read. Past either cap the request is refused at once (503 with Retry-After), never queued: a queue of
stalled uploads would only move the memory elsewhere. Single-threaded (one asyncio loop), so plain counters.
"""

from __future__ import annotations


class Ticket:
    """One admitted request's share; release() once its answer is sent (idempotent)."""

    def __init__(self, admission: "Admission", nbytes: int) -> None:
        self._admission, self.nbytes, self._open = admission, nbytes, True

    def grow(self, nbytes: int) -> bool:
        """Reserve up to `nbytes` in all; False (nothing changed) when the budget cannot hold it."""
        extra = nbytes - self.nbytes
        if extra <= 0:
            return True
        if self._admission.held + extra > self._admission.max_bytes:
            self._admission.refused_bytes += 1
            return False
        self._admission.held += extra
        self.nbytes = nbytes
        return True

    def release(self) -> None:
        if self._open:
            self._open = False
            self._admission.held -= self.nbytes
            self._admission.in_flight -= 1


class Admission:
    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests, self.max_bytes = max_requests, max_bytes
        self.in_flight = self.held = 0
        self.refused_requests = self.refused_bytes = 0

    def enter(self, nbytes: int) -> Ticket | None:
        """A ticket holding `nbytes`, or None when the request cap or the byte budget is reached."""
        if self.in_flight >= self.max_requests:
            self.refused_requests += 1
            return None
        if self.held + nbytes > self.max_bytes:
            self.refused_bytes += 1
            return None
        self.in_flight += 1
        self.held += nbytes
        return Ticket(self, nbytes)
