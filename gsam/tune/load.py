"""Requests replayed against a served model, closed-loop or open-loop, until the p99 stops moving.

Closed loop: each worker thread keeps one HTTP connection and sends the next request of the mix as soon as
its previous one is answered (the load is the concurrency). Open loop: requests arrive at a target rate
(Poisson arrivals), whether or not earlier ones were answered, and a request's latency counts from its
arrival, so time spent waiting for a free connection is counted (no coordinated omission). The requests
themselves are client.py's.
The stopping rule: after at least `min_requests` (and two passes through the mix), the p99 of everything
measured so far is compared every `window` requests (at least one pass); two comparisons in a row within
`tolerance` end the level, at the end of the pass under way. A level whose p50
is already above the SLO ends early (it cannot meet it), and every level ends at `max_seconds`.
"""

from __future__ import annotations

import http.client
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from .client import Client


@dataclass(frozen=True)
class StoppingRule:
    min_requests: int = 30
    window: int = 10
    tolerance: float = 0.05
    max_seconds: float = 30.0


@dataclass
class Level:
    """One concurrency's figures."""

    concurrency: int
    requests: int
    errors: int
    wall_s: float
    throughput: float  # answered requests per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    buckets: dict  # bucket -> {"n", "p50_ms", "p90_ms", "p99_ms"}
    stop: str  # why measuring ended: stable, over-slo, errors, time
    first_error: str | None = None
    rate: float = 0.0  # open loop: the offered requests/s (0: closed loop at `concurrency`)


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return float("nan"), float("nan"), float("nan")
    p50, p90, p99 = np.percentile(np.asarray(values), [50, 90, 99])
    return float(p50), float(p90), float(p99)


class _Run:
    """The shared state of one level: the next request, what was measured, whether to stop."""

    def __init__(self, count: int) -> None:
        self.lock = threading.Lock()
        self.next = 0
        self.count = count
        self.latencies: list[tuple[int, float]] = []  # (request index, ms)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.limit: int | None = None  # requests to issue in all (set to end on a whole pass through the mix)

    def take(self) -> int | None:
        with self.lock:
            if self.limit is not None and self.next >= self.limit:
                return None
            index = self.next % self.count
            self.next += 1
            return index

    def finish_pass(self) -> None:
        """Issue up to the end of the current pass through the mix, then no more: a level's throughput and
        percentiles weigh every size exactly as the mix does (one 1-megapixel image more or less in a short
        level would move its throughput by a large fraction)."""
        with self.lock:
            self.limit = -(-self.next // self.count) * self.count


def _worker(client: Client, run: _Run) -> None:
    connection = client.connect()
    while not run.stop.is_set():
        index = run.take()
        if index is None:
            break
        connection = _send_and_record(client, connection, run, index, time.perf_counter())
    connection.close()


def _send_and_record(client: Client, connection, run: _Run, index: int, since: float):
    """Send request `index`, record its latency from `since` (or its error); the connection to go on with."""
    try:
        error = client.send(connection, index)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    with run.lock:
        if error is None:
            run.latencies.append((index, (time.perf_counter() - since) * 1000))
        else:
            run.errors.append(error)
    if error is None:
        return connection
    connection.close()  # a failed exchange may leave the connection mid-response
    return client.connect()


def _decide(run: _Run, rule: StoppingRule, slo_ms: float, state: dict) -> str | None:
    """Why to stop now (None: keep going), looked at once per window of new answers."""
    with run.lock:
        done = len(run.latencies) + len(run.errors)
        values = [ms for _, ms in run.latencies]
    if done < state["checked"] + max(rule.window, run.count):  # compared once per pass through the mix
        return None
    state["checked"] = done
    if len(run.errors) > max(3, done // 10):
        return "errors"
    p50, _, p99 = _percentiles(values)
    if len(values) >= 10 and p50 > slo_ms:
        return "over-slo"
    if done < max(rule.min_requests, 2 * run.count):
        state["previous"] = p99
        return None
    previous, state["previous"] = state["previous"], p99
    close = previous == previous and abs(p99 - previous) <= rule.tolerance * previous
    state["stable"] = state["stable"] + 1 if close else 0
    return "stable" if state["stable"] >= 2 else None


def _until_rule(run: _Run, rule: StoppingRule, slo_ms: float, started: float) -> str:
    state, reason = {"checked": 0, "previous": float("nan"), "stable": 0}, None
    while reason is None:
        time.sleep(0.05)
        reason = _decide(run, rule, slo_ms, state)
        if reason is None and time.perf_counter() - started > rule.max_seconds:
            reason = "time"
    return reason


def closed_loop(client: Client, concurrency: int, rule: StoppingRule, slo_ms: float) -> Level:
    """One level: `concurrency` workers until the stopping rule (or max_seconds) ends it."""
    run = _Run(len(client.requests))
    threads = [threading.Thread(target=_worker, args=(client, run), daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    reason = _until_rule(run, rule, slo_ms, started)
    if reason in ("stable", "time"):
        run.finish_pass()
    else:
        run.stop.set()  # over the SLO or failing: its figures only need to say so
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return _level(client, run, concurrency, wall, reason)


def _open_worker(client: Client, run: _Run, arrivals: queue.Queue) -> None:
    """Sends arrivals as they come; a latency counts from the request's arrival, not from its send."""
    connection = client.connect()
    while not run.stop.is_set():
        try:
            index, arrived = arrivals.get(timeout=0.05)
        except queue.Empty:
            continue
        connection = _send_and_record(client, connection, run, index, arrived)
    connection.close()


def open_loop(client: Client, rate: float, rule: StoppingRule, slo_ms: float, *, connections: int = 32,
              seed: int = 0) -> Level:
    """One level at `rate` requests/s offered (Poisson arrivals), served over up to `connections` connections."""
    run, arrivals = _Run(len(client.requests)), queue.Queue()
    rng = np.random.default_rng(seed)
    threads = [threading.Thread(target=_open_worker, args=(client, run, arrivals), daemon=True)
               for _ in range(connections)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()

    def arrive() -> None:
        due = started
        while not run.stop.is_set():
            due += rng.exponential(1.0 / rate)
            time.sleep(max(0.0, due - time.perf_counter()))
            arrivals.put((run.take(), due))

    dispatcher = threading.Thread(target=arrive, daemon=True)
    dispatcher.start()
    reason = _until_rule(run, rule, slo_ms, started)
    run.stop.set()
    for thread in (dispatcher, *threads):
        thread.join()
    level = _level(client, run, 0, time.perf_counter() - started, reason)
    level.rate = rate
    return level


def _level(client: Client, run: _Run, concurrency: int, wall: float, reason: str) -> Level:
    values = [ms for _, ms in run.latencies]
    by_bucket: dict[str, list[float]] = {}
    for index, ms in run.latencies:
        by_bucket.setdefault(client.requests[index].bucket, []).append(ms)
    buckets = {}
    for name, bucket_values in by_bucket.items():
        p50, p90, p99 = _percentiles(bucket_values)
        buckets[name] = {"n": len(bucket_values), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99}
    p50, p90, p99 = _percentiles(values)
    return Level(concurrency, len(values) + len(run.errors), len(run.errors), wall, len(values) / wall, p50, p90,
                 p99, buckets, reason, run.errors[0] if run.errors else None)


def warm_up(client: Client, concurrency: int) -> str | None:
    """Each distinct size once, then one round at `concurrency`; the first error, if any."""
    seen: dict[str, int] = {}
    for index, request in enumerate(client.requests):
        seen.setdefault(request.bucket, index)
    connection = client.connect()
    try:
        for index in seen.values():
            error = client.send(connection, index)
            if error:
                return error
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    run = _Run(len(client.requests))
    threads = [threading.Thread(target=_worker, args=(client, run), daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    while len(run.latencies) + len(run.errors) < concurrency:
        time.sleep(0.02)
    run.stop.set()
    for thread in threads:
        thread.join()
    return run.errors[0] if run.errors else None
