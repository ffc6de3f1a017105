"""One candidate measured: its repository served by the real `gsam serve` on loopback, warmed up, each
concurrency replayed until the p99 is stable, the server's peak memory sampled, then stopped."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gsam.errors import GSAMError
from gsam.runtime.triton_names import IMAGE_MODEL

from .client import Client
from .load import Level, StoppingRule, closed_loop, open_loop, warm_up
from .workload import Request


@dataclass
class ServeSettings:
    """How the tuner starts `gsam serve`: the model measured, extra arguments, a wrapper command (tests run
    it in a mount namespace) and fixed ports (None: free ones)."""

    triton_model: str = IMAGE_MODEL
    args: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    port: int | None = None
    ready_timeout: float = 180.0


@dataclass
class Measurement:
    key: str
    candidate: dict
    levels: list[dict] = field(default_factory=list)
    peak_memory_mib: float = 0.0
    startup_s: float = 0.0
    seconds: float = 0.0
    discarded: str | None = None  # why the candidate is out (it errored, ran out of memory, did not start)

    def as_dict(self) -> dict:
        return asdict(self)


class MemorySampler(threading.Thread):
    """The largest resident memory of the server's process tree (gateway, tritonserver, python stubs)."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_mib = pid, every_s, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        from gsam.bench.process_memory import tree_memory_mib

        while not self.done.wait(self.every_s):
            self.peak_mib = max(self.peak_mib, tree_memory_mib(self.pid))


def _server(repo: Path, settings: ServeSettings, max_concurrency: int):
    from gsam.runtime.serving.model_config import with_compute_models
    from gsam.runtime.serving.serve_process import ServeProcess

    models = with_compute_models(repo, [settings.triton_model])
    args = ("--max-concurrency", str(max(16, 2 * max_concurrency)), *settings.args)
    server = ServeProcess(repo, models, args=args, prefix=settings.prefix)
    if settings.port:
        server.http_port, server.grpc_port, server.metrics_port = settings.port, settings.port + 1, settings.port + 2
    return server


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else text)[:300]


def measure(repo: Path, measurement: Measurement, requests: list[Request], *, concurrency: list[int], slo_ms: float,
            settings: ServeSettings, rule: StoppingRule = StoppingRule(), max_memory_mib: float | None = None,
            rates: tuple[float, ...] = (), on_level=lambda level: None) -> Measurement:
    """Fill `measurement` with each level's figures; a candidate that fails is discarded with the reason."""
    started = time.monotonic()
    server = _server(repo, settings, max(concurrency))
    try:
        server.start(settings.ready_timeout)
    except GSAMError as exc:
        measurement.discarded = f"did not start: {_first_line(str(exc))}"
        return measurement
    except BaseException:  # interrupted while it started: no server is left behind
        server.stop()
        raise
    sampler = MemorySampler(server.process.pid)
    sampler.start()
    try:
        measurement.startup_s = time.monotonic() - started
        _measure_levels(server, measurement, requests, concurrency=concurrency, slo_ms=slo_ms, rule=rule,
                        rates=rates, on_level=on_level)
    finally:
        sampler.done.set()
        sampler.join()
        server.stop()
        measurement.peak_memory_mib = sampler.peak_mib
        measurement.seconds = time.monotonic() - started
    if measurement.discarded is None and max_memory_mib and measurement.peak_memory_mib > max_memory_mib:
        measurement.discarded = f"peak memory {measurement.peak_memory_mib:.0f} MiB above --max-memory-mib"
    return measurement


def _measure_levels(server, measurement: Measurement, requests: list[Request], *, concurrency: list[int],
                    slo_ms: float, rule: StoppingRule, rates: tuple[float, ...], on_level) -> None:
    """Closed loop at each concurrency, then open loop at each rate, each series ascending and ended at the
    first load past the SLO (more load only queues more)."""
    client = Client(server.http_port, server.models[-1], requests)
    error = warm_up(client, max(concurrency))
    if error:
        measurement.discarded = f"errors during warm-up: {error}"
        return
    series = [[(lambda c=c: closed_loop(client, c, rule, slo_ms)) for c in sorted(concurrency)],
              [(lambda r=r: open_loop(client, r, rule, slo_ms)) for r in sorted(rates)]]
    for loads in series:
        for run_level in loads:
            level: Level = run_level()
            measurement.levels.append(asdict(level))
            on_level(level)
            if level.errors:
                measurement.discarded = f"{level.errors} error(s) at {load_label(asdict(level))}: {level.first_error}"
                return
            if level.p99_ms > slo_ms:
                break


def load_label(level: dict) -> str:
    """'concurrency 4' (closed loop) or '6 requests/s offered' (open loop)."""
    return f"{level['rate']:g} requests/s offered" if level.get("rate") else f"concurrency {level['concurrency']}"
