"""The tune itself: the workload, the strategy's candidates measured one at a time within the budget (or
taken from measurements.jsonl), the winner written as TUNE_DIR/repository, and the report."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from gsam.errors import GSAMError
from gsam.runtime.triton_names import TENSOR_MODEL

from .candidate import check_repository, write_candidate
from .journal import Journal
from .load import Level, StoppingRule
from .measure import Measurement, ServeSettings, load_label, measure
from .search import STRATEGIES, Objective, Score, planned
from .space import DEFAULT_GRID, Candidate, read_default
from .workload import Request, fingerprint, load_workload


@dataclass
class TuneRequest:
    repo: Path
    sizes_from: Path
    out: Path
    objective: Objective = field(default_factory=Objective)
    search: str = "quick"
    budget_min: float = 20.0
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    rates: tuple[float, ...] = ()  # open-loop loads, requests/s offered
    axes: dict[str, tuple] = field(default_factory=lambda: dict(DEFAULT_GRID))
    serve: ServeSettings = field(default_factory=ServeSettings)
    rule: StoppingRule = field(default_factory=StoppingRule)
    max_memory_mib: float | None = None
    in_place: bool = False
    confirm: int = 0  # rounds measuring the default and the winner again, interleaved
    sample: int = 64  # requests drawn from the size source
    seed: int = 0


@dataclass
class TuneResult:
    default: Candidate
    winner: Candidate | None
    measured: dict[str, dict]  # key -> measurement, in the order the strategy visited them
    scores: dict[str, Score | None]
    fresh: int  # candidates measured in this invocation (the rest came from measurements.jsonl)
    not_tried: list[str]
    seconds: float
    workload: list[Request]
    confirmed: dict = field(default_factory=dict)  # {"default": [...], "winner": [...], "kept": ...}


def _min_size(repo: Path) -> int:
    from gsam.deploy.triton.repository import config_facts
    from gsam.runtime.serving.model_config import read_model_config

    return config_facts(read_model_config(repo / TENSOR_MODEL)).min_size


def _check(request: TuneRequest) -> tuple[Candidate, int, list[Request]]:
    """The default candidate, the model's minimum side and the workload; bad input is one line."""
    from gsam.runtime.serving.server import check_ports

    check_repository(request.repo)
    if request.out.resolve() == request.repo.resolve() or request.repo.resolve() in request.out.resolve().parents:
        raise GSAMError(f"--out {request.out}: must not be inside the repository being tuned")
    if request.search not in STRATEGIES:
        raise GSAMError(f"--search {request.search!r}: expected one of {', '.join(STRATEGIES)}")
    default, min_size = read_default(request.repo), _min_size(request.repo)
    requests = load_workload(request.sizes_from, limit=request.sample, seed=request.seed)
    small = [r for r in requests if min(r.height, r.width) < min_size]
    if small:
        raise GSAMError(f"--sizes-from {request.sizes_from}: {small[0].height}x{small[0].width} is below the model's "
                        f"minimum side of {min_size}")
    if request.serve.port:
        port = request.serve.port
        check_ports({"--port": port, "--port + 1 (gRPC)": port + 1, "--port + 2 (metrics)": port + 2})
    return default, min_size, requests


def _settings(request: TuneRequest, requests: list[Request]) -> dict:
    rule = request.rule
    return {"workload": fingerprint(requests), "triton_model": request.serve.triton_model,
            "concurrency": sorted(request.concurrency), "rates": sorted(request.rates),
            "p99_ms": request.objective.p99_ms,
            "rule": [rule.min_requests, rule.window, rule.tolerance, rule.max_seconds]}


def _progress(bar: tqdm, candidate: Candidate, default: Candidate) -> Callable[[Level], None]:
    def show(level: Level) -> None:
        load = f"{level.rate:g}/s" if level.rate else f"c{level.concurrency}"
        bar.set_postfix_str(f"{candidate.short(default)} | {load}: {level.throughput:.2f} req/s, "
                            f"p99 {level.p99_ms:.0f} ms", refresh=True)
    return show


class _Driver:
    """Sends the strategy each candidate's score, measuring only what the journal does not hold, within the
    budget."""

    def __init__(self, request: TuneRequest, default: Candidate, requests: list[Request], echo) -> None:
        self.request, self.default, self.requests, self.echo = request, default, requests, echo
        self.journal = Journal(request.out / "measurements.jsonl", _settings(request, requests))
        self.cache = self.journal.load()
        self.measured: dict[str, dict] = {}
        self.fresh, self.spent = 0, []
        self.deadline = time.monotonic() + request.budget_min * 60
        # candidates are served from a folder of their own that tritonserver's user can read (gsam serve started
        # as root runs it as nobody, who may not reach TUNE_DIR)
        self.work = Path(tempfile.mkdtemp(prefix="gsam-tune-"))
        self.work.chmod(0o755)

    def _affordable(self) -> bool:
        estimate = sum(self.spent) / len(self.spent) if self.spent else 0.0
        return time.monotonic() + estimate <= self.deadline

    def measure(self, candidate: Candidate, bar: tqdm, tag: str = "") -> dict | None:
        """The candidate's measurement (from the journal when it holds one); `tag` names a repeat."""
        key = candidate.key() + tag
        if key in self.cache:
            self.measured[key] = self.cache[key]
            return self.cache[key]
        if not self._affordable():
            return None
        bar.set_postfix_str(f"{candidate.short(self.default)} | starting", refresh=True)
        work = self.work / "repository"
        write_candidate(self.request.repo, candidate, work)
        started = time.monotonic()
        result = measure(work, Measurement(key, candidate.as_dict()), self.requests,
                         concurrency=list(self.request.concurrency), slo_ms=self.request.objective.p99_ms,
                         settings=self.request.serve, rule=self.request.rule,
                         max_memory_mib=self.request.max_memory_mib, rates=self.request.rates,
                         on_level=_progress(bar, candidate, self.default)).as_dict()
        shutil.rmtree(work, ignore_errors=True)
        self.spent.append(time.monotonic() - started)
        self.fresh += 1
        self.journal.append(result)
        self.cache[key] = result
        if not tag:
            self.measured[key] = result
        return result


def _walk(request: TuneRequest, default: Candidate, min_size: int, driver: _Driver) -> list[str]:
    """Run the strategy to its end or the budget's; returns what was not tried."""
    strategy = STRATEGIES[request.search](request.axes, default, request.serve.triton_model, min_size)
    total = planned(request.search, request.axes, default, request.serve.triton_model, min_size)
    not_tried: list[str] = []
    with tqdm(total=total, desc=f"tune ({request.search})", unit="candidate") as bar:
        candidate, score = next(strategy), None
        while True:
            result = driver.measure(candidate, bar)
            if result is None:
                not_tried.append(candidate.short(default))
            score = request.objective.score(result) if result else None
            bar.update(1)
            try:
                candidate = strategy.send(score)
            except StopIteration:
                break
    return not_tried


def run_tune(request: TuneRequest, echo: Callable[[str], None] = print) -> TuneResult:
    """Measure, pick the winner, write TUNE_DIR/{repository, report.md, measurements.jsonl}."""
    from .report import write_report

    started = time.monotonic()
    default, min_size, requests = _check(request)
    request.out.mkdir(parents=True, exist_ok=True)
    driver = _Driver(request, default, requests, echo)
    if driver.cache:
        echo(f"resuming: {len(driver.cache)} candidate(s) already measured in {driver.journal.path}")
    try:
        not_tried = _walk(request, default, min_size, driver)
    finally:
        shutil.rmtree(driver.work, ignore_errors=True)
    scores = {key: request.objective.score(m) for key, m in driver.measured.items()}
    ranked = [k for k in scores if scores[k] is not None]
    winner_key = max(ranked, key=lambda k: scores[k].value) if ranked else None
    winner = Candidate(**driver.measured[winner_key]["candidate"]) if winner_key else None
    default = default.effective(request.serve.triton_model)
    confirmed = _confirm(request, driver, default, winner) if winner is not None and winner != default else {}
    if confirmed.get("kept") == "default":
        winner = default
    result = TuneResult(default, winner, driver.measured, scores, driver.fresh, not_tried,
                        time.monotonic() - started, requests, confirmed)
    write_report(request, result)
    if winner is None:
        raise GSAMError(_impossible(request, driver.measured))
    write_candidate(request.repo, winner, request.out / "repository")
    if request.in_place:
        for model in sorted(p for p in (request.out / "repository").iterdir() if p.is_dir()):
            shutil.rmtree(request.repo / model.name, ignore_errors=True)
            shutil.copytree(model, request.repo / model.name)
    return result


def _confirm(request: TuneRequest, driver: _Driver, default: Candidate, winner: Candidate) -> dict:
    """The default and the winner measured again in `request.confirm` interleaved rounds: on a machine other
    work shares, one measurement of a configuration moves by more than most differences between
    configurations. The winner is kept only if its median objective beats the default's."""
    rounds: dict[str, list[float]] = {"default": [], "winner": []}
    with tqdm(total=2 * request.confirm, desc="confirm", unit="candidate") as bar:
        for i in range(request.confirm):
            for name, candidate in (("default", default), ("winner", winner)):
                m = driver.measure(candidate, bar, tag=f"#confirm{i}")
                if m is None:
                    return {}  # the budget ran out: the search's winner stands, unconfirmed
                score = request.objective.score(m)
                rounds[name].append(score.value if score else 0.0)
                bar.update(1)
    if not request.confirm:
        return {}
    medians = {name: float(np.median(values)) for name, values in rounds.items()}
    return {**rounds, "median": medians, "searched": winner.short(default),
            "kept": "winner" if medians["winner"] > medians["default"] or not medians["default"] else "default"}


def _impossible(request: TuneRequest, measured: dict[str, dict]) -> str:
    """One line: no candidate met the SLO; the best p99 seen and at what load."""
    levels = [(lv, m) for m in measured.values() for lv in m["levels"] if not lv["errors"]]
    if not levels:
        reasons = [m["discarded"] for m in measured.values() if m.get("discarded")]
        return (f"no candidate could be measured ({reasons[0] if reasons else 'none was tried within --budget-min'}); "
                f"see {request.out / 'report.md'}")
    level, m = min(levels, key=lambda item: item[0]["p99_ms"] if math.isfinite(item[0]["p99_ms"]) else math.inf)
    return (f"no configuration meets p99 <= {request.objective.p99_ms:g} ms: the best p99 seen was "
            f"{level['p99_ms']:.0f} ms at {load_label(level)} ({level['throughput']:.2f} req/s, "
            f"{Candidate(**m['candidate']).short(Candidate())}); see {request.out / 'report.md'}")
