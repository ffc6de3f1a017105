"""The objective, and the two ways to walk the space: `brute` over the declared grid, `quick`
coordinate descent from the default (one axis at a time, keeping the best value found on it).

Strategies are generators: each yields a Candidate and is sent back its Score (None: infeasible), so
the driver owns measuring, caching, the budget and the progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Generator

from .space import Candidate, grid

Strategy = Generator[Candidate, "Score | None", None]


@dataclass(frozen=True)
class Objective:
    """throughput: the most answers/s at a load whose p99 is within the SLO; latency: the lowest p99 within
    the SLO at a load answering at least `min_rps`."""

    kind: str = "throughput"
    p99_ms: float = 250.0
    min_rps: float = 0.0

    def score(self, measurement: dict) -> "Score | None":
        if measurement.get("discarded"):
            return None
        fit = [lv for lv in measurement["levels"] if not lv["errors"] and lv["p99_ms"] <= self.p99_ms
               and lv["throughput"] >= self.min_rps]
        if not fit:
            return None
        if self.kind == "throughput":
            best = max(fit, key=lambda lv: lv["throughput"])
        else:
            best = min(fit, key=lambda lv: lv["p99_ms"])
        value = best["throughput"] if self.kind == "throughput" else 1000.0 / best["p99_ms"]
        return Score(value, best["concurrency"], best["p99_ms"], best["throughput"], best.get("rate", 0.0))

    def describe(self) -> str:
        if self.kind == "throughput":
            return f"the most requests/s with p99 <= {self.p99_ms:g} ms"
        return f"the lowest p99 (within {self.p99_ms:g} ms) at >= {self.min_rps:g} requests/s"


@dataclass(frozen=True)
class Score:
    value: float  # higher is better: requests/s, or 1000 / p99 ms for the latency objective
    concurrency: int  # the load it was reached at
    p99_ms: float
    throughput: float
    rate: float = 0.0  # open loop: the offered rate it was reached at (then concurrency is 0)

    @property
    def load(self) -> str:
        return f"{self.rate:g} requests/s offered" if self.rate else f"concurrency {self.concurrency}"


def _better(a: Score | None, b: Score | None) -> bool:
    return a is not None and (b is None or a.value > b.value)


def brute(axes: dict[str, tuple], base: Candidate, triton_model: str, min_size: int) -> Strategy:
    for candidate in grid(axes, base, triton_model, min_size):
        yield candidate


# quick's order: the axes that change what the others mean first (where gsam_image computes decides whether
# gsam_python's batching and threads are used at all; instances share the cores threads divide), the
# request bound and tiling last.
QUICK_ORDER = ("compute_model", "instances", "max_batch", "preferred_batch", "queue_delay_us", "threads",
               "max_pixels", "oversize_tile", "overlap", "max_tiled_pixels")


def quick(axes: dict[str, tuple], base: Candidate, triton_model: str, min_size: int) -> Strategy:
    """Coordinate descent: from the default, try every value of one axis with the others fixed, keep the best,
    go on to the next axis in QUICK_ORDER; one pass (sum of (values - 1) + 1 candidates at most, not their
    product)."""
    current = base.effective(triton_model)
    best = yield current
    for name in sorted(axes, key=lambda n: QUICK_ORDER.index(n) if n in QUICK_ORDER else len(QUICK_ORDER)):
        values = axes[name]
        on_axis = current
        for value in values:
            candidate = replace(current, **{name: value})
            if name == "instances":
                candidate = _share_the_cores(candidate, axes.get("threads", ()))
            candidate = candidate.effective(triton_model)
            if candidate == current or candidate.problem(min_size) is not None:
                continue
            score = yield candidate
            if _better(score, best):
                best, on_axis = score, candidate
        current = on_axis


def _share_the_cores(candidate: Candidate, thread_values: tuple) -> Candidate:
    """Instances and threads divide the same cores, so they are not separable: walked with onnxruntime's
    default (every core per instance), more instances only oversubscribe. While threads is still that
    default, each instance gets its share of the cores (the nearest value on the threads axis), as gsam's
    own thread choice gives one thread per core; the threads axis is walked after and can take it back."""
    from gsam.machine import cpu_facts

    shares = [t for t in thread_values if t > 0]
    if candidate.instances <= 1 or candidate.threads != 0 or not shares:
        return candidate
    share = max(1, cpu_facts().cores // candidate.instances)
    return replace(candidate, threads=min(shares, key=lambda t: (abs(t - share), t)))


def planned(strategy: str, axes: dict[str, tuple], base: Candidate, triton_model: str, min_size: int) -> int:
    """How many candidates the strategy measures at most (for the progress bar's ETA)."""
    if strategy == "brute":
        return len(grid(axes, base, triton_model, min_size))
    return 1 + sum(max(0, len(values) - 1) for values in axes.values())


STRATEGIES = {"brute": brute, "quick": quick}
