"""Supervision that sees what clients see: the tritonserver process, and each model's answer to a real
inference.

Every PROBE_INTERVAL_S, whatever the traffic, each model gets the smallest real inference it takes, and
its answer is compared with the repository's fingerprint (probe.py, fingerprint.py); a server error or an
"unknown model" on a client's request wakes the loop at once. A model that answers an error (a dead python
stub: "Stub process ... is not healthy"), answers what the fingerprint does not expect (an impostor, a
swapped model) or is unknown to tritonserver (unloaded) turns readiness off and is reloaded from the
repository on disk, unload then load, through the admin API whose key only the server object holds; one
that still fails after MAX_RELOADS reloads gets the whole server restarted. A server that exits is
restarted after a backoff; past MAX_RESTARTS in WINDOW_S, `gsam serve` gives up and exits with the cause.

A probe that times out means a busy model, not a broken one: it changes nothing. Nor does a failure of
this process's own resources (no file descriptors or memory left here: EMFILE, ENOMEM): that is said once
a minute and never counted against tritonserver. No other exception ends the supervisor: it is logged in
one line and the loop goes on. Every event is logged with its cause.
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from gsam.errors import GSAMError

from .probe import RESOURCE_ERRNOS, Probe, ProbeFailed, run_probe
from .quiet_log import one_line
from .server import ResourceShortage, TritonServer, describe_exit, free_port
from .state import ServingState

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 30.0
TICK_S = 0.25
MAX_RELOADS = 3  # per model within WINDOW_S; past it the server is restarted
MAX_RESTARTS = 5  # within WINDOW_S; past it gsam serve exits
WINDOW_S = 600.0
BACKOFF_S = (1, 2, 4, 8, 16)
RESOURCE_LOG_S = 60.0  # a shortage of this process's own resources is said at most this often


class GiveUp(GSAMError):
    """tritonserver keeps failing: gsam serve exits with the cause."""


class Supervisor:
    def __init__(self, server: TritonServer, state: ServingState, probes: dict[str, Probe],
                 log: Callable[[str], None], *, ready_timeout: float) -> None:
        self.server, self.state, self.probes, self.log = server, state, probes, log
        self.ready_timeout = ready_timeout
        self._probed = {model: 0.0 for model in probes}
        self._reloads: dict[str, collections.deque[float]] = {model: collections.deque() for model in probes}
        self._restarts: collections.deque[float] = collections.deque()
        self._busy: set[str] = set()
        self._short_said = 0.0
        # Its own threads, so that stopping never waits for a probe still under way (shutdown(wait=False)).
        self.pool = ThreadPoolExecutor(max(4, len(probes) + 2), thread_name_prefix="gsam-supervisor")

    async def _in_thread(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    async def run(self) -> None:
        """Until cancelled; GiveUp when the server keeps failing. Nothing else ends it."""
        while True:
            try:
                await self._tick()
            except (GiveUp, asyncio.CancelledError):
                raise
            except Exception as exc:
                if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
                    self._short(str(exc))
                else:
                    self.log(one_line(f"supervisor: {type(exc).__name__}: {exc}; carrying on"))
                await asyncio.sleep(TICK_S)

    def _short(self, what: str) -> None:
        if time.monotonic() - self._short_said >= RESOURCE_LOG_S:
            self._short_said = time.monotonic()
            self.log(one_line(f"gsam serve itself is short of resources ({what}); tritonserver and the models are "
                              "left as they are"))

    async def _tick(self) -> None:
        try:
            await asyncio.wait_for(self.state.wake.wait(), TICK_S)
        except asyncio.TimeoutError:
            pass
        woken = self.state.wake.is_set()
        self.state.wake.clear()
        process = self.server.process
        if process is not None and process.poll() is not None:
            await self._restart(f"tritonserver exited with {describe_exit(process.returncode)} "
                                f"({self.server.failure_reason()})")
            return
        now = time.monotonic()
        due = [model for model in self.state.models if woken or now - self._probed[model] >= PROBE_INTERVAL_S]
        await asyncio.gather(*(self._check(model) for model in due))

    async def _check(self, model: str) -> None:
        self._probed[model] = time.monotonic()
        probe, state = self.probes[model], self.state.models[model]
        try:
            seconds = await self._in_thread(run_probe, self.server.http_url, probe, PROBE_TIMEOUT_S,
                                            self.server.key_headers)
        except ProbeFailed as exc:
            if self.state.draining or not self.state.server_up:
                return
            if exc.resource:
                self._short(exc.message)
                return
            if exc.timed_out:
                if model not in self._busy:
                    self.log(f"{model} did not answer {probe.what} within {PROBE_TIMEOUT_S:g} s: busy, left as it is")
                self._busy.add(model)
                return
            await self._failing(model, exc)
            return
        self._busy.discard(model)
        if not state.answering:
            self.log(f"{model} answers ({probe.what} in {seconds * 1000:.0f} ms)")
        state.answering, state.reason, state.last_answer = True, "answering", time.monotonic()

    async def _failing(self, model: str, failure: ProbeFailed) -> None:
        state = self.state.models[model]
        state.answering, state.reason = False, failure.message
        self.log(f"{model} failed a probe: {failure.message}")
        if failure.status is not None and 400 <= failure.status < 500 and failure.status != 404:
            return  # the probe itself was refused: reloading cannot help, readiness says so
        process = self.server.process
        if process is not None and process.poll() is not None:
            return  # the next tick restarts the server
        reloads = _recent(self._reloads[model])
        if len(reloads) >= MAX_RELOADS:
            await self._restart(f"{model} still fails after {len(reloads)} reloads ({failure.message})")
            return
        await self._reload(model, failure.message)

    async def _reload(self, model: str, cause: str) -> None:
        state = self.state.models[model]
        state.reloading, state.reason = True, f"reloading after: {cause}"
        self._reloads[model].append(time.monotonic())
        self.log(f"reloading {model} (unload, then load): {cause}")
        started = time.monotonic()
        try:
            await self._in_thread(self.server.reload, model, self.ready_timeout)
        except ResourceShortage as exc:
            self._reloads[model].pop()  # not the model's failure
            self._short(str(exc))
            return
        except GSAMError as exc:
            self.log(f"reloading {model} failed: {exc}")
            return
        finally:
            state.reloading = False
        self.log(f"{model} reloaded in {time.monotonic() - started:.1f} s")
        self._probed[model] = 0.0
        self.state.wake.set()

    async def _restart(self, cause: str) -> None:
        self.state.down(f"restarting tritonserver: {cause}"[:300])
        restarts = _recent(self._restarts)
        if len(restarts) >= MAX_RESTARTS:
            raise GiveUp(f"tritonserver failed {len(restarts) + 1} times within {WINDOW_S / 60:.0f} minutes; "
                            f"giving up. Last: {cause}")
        delay = BACKOFF_S[min(len(restarts), len(BACKOFF_S) - 1)]
        self.log(f"{cause}; restarting tritonserver in {delay} s (restart {len(restarts) + 1}, at most "
                 f"{MAX_RESTARTS} within {WINDOW_S / 60:.0f} minutes)")
        restarts.append(time.monotonic())
        await asyncio.sleep(delay)
        started = time.monotonic()
        try:
            await self._in_thread(self._start_again)
        except OSError as exc:
            if exc.errno in RESOURCE_ERRNOS:  # this process could not start it: not tritonserver's failure
                restarts.pop()
                self._short(str(exc))
            else:
                self.log(one_line(f"restarting tritonserver failed: {exc}"))
            return
        except GSAMError as exc:
            self.log(f"restarting tritonserver failed: {exc}")
            return
        self.state.up(self.server.http_port, self.server.grpc_port, self.server.serving_key)
        self._probed = {model: 0.0 for model in self.probes}
        for reloads in self._reloads.values():  # a new server: its models start with a clean record
            reloads.clear()
        self.log(f"tritonserver restarted in {time.monotonic() - started:.1f} s (inside: HTTP {self.server.http_port}, "
                 f"gRPC {self.server.grpc_port})")

    def _start_again(self) -> None:
        self.server.stop()
        self.server.http_port, self.server.grpc_port = free_port(), free_port()
        self.server.start(self.ready_timeout)


def _recent(times: collections.deque[float]) -> collections.deque[float]:
    while times and time.monotonic() - times[0] > WINDOW_S:
        times.popleft()
    return times
