"""TUNE_DIR/report.md and its plots: the winner against the default side by side, every candidate's figures,
what was discarded and why, what the budget left untried; throughput against p99 with the SLO line and the
Pareto front, and p99 per size bucket for the winner and the default."""

from __future__ import annotations

import math
from pathlib import Path

from gsam.io import atomic_path, write_text_atomic

from .measure import load_label
from .space import Candidate
from .workload import buckets_by_size

THROUGHPUT_PLOT = "throughput_vs_p99.png"
BUCKET_PLOT = "p99_per_size.png"


def _best_level(measurement: dict, score) -> dict | None:
    """The level the objective was reached at; without one, the lowest-p99 level (to show something)."""
    levels = measurement["levels"]
    if score is not None:
        return next(lv for lv in levels if (lv["concurrency"], lv.get("rate", 0.0)) == (score.concurrency, score.rate))
    finite = [lv for lv in levels if math.isfinite(lv["p99_ms"])]
    return min(finite, key=lambda lv: lv["p99_ms"]) if finite else None


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(p99, throughput) points no other point beats on both (lower p99, higher throughput), by p99."""
    front, best = [], -math.inf
    for p99, rate in sorted(points, key=lambda p: (p[0], -p[1])):
        if rate > best:
            front.append((p99, rate))
            best = rate
    return front


def _plot_tradeoff(out: Path, result, slo_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    points = [(lv["p99_ms"], lv["throughput"]) for m in result.measured.values() for lv in m["levels"]
              if math.isfinite(lv["p99_ms"]) and not lv["errors"]]
    ax.scatter([p for p, _ in points], [t for _, t in points], s=14, color="0.6", label="candidate at a load")
    front = pareto(points)
    ax.plot([p for p, _ in front], [t for _, t in front], color="tab:green", drawstyle="steps-post", marker="s",
            markersize=11, markerfacecolor="none", label="Pareto front (nothing has lower p99 and more req/s)")
    for key, colour, name in ((result.default.key(), "tab:blue", "default"),
                              (result.winner.key() if result.winner else None, "tab:red", "winner")):
        if key in result.measured:
            levels = [lv for lv in result.measured[key]["levels"] if math.isfinite(lv["p99_ms"])]
            ax.plot([lv["p99_ms"] for lv in levels], [lv["throughput"] for lv in levels], marker="o", color=colour,
                    label=f"{name} ({', '.join(_short_load(lv) for lv in levels)})")
    ax.axvline(slo_ms, color="black", linestyle="--", label=f"SLO p99 {slo_ms:g} ms")
    ax.set(xlabel="p99 latency (ms)", ylabel="requests / s", title="Throughput against p99, every candidate")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / THROUGHPUT_PLOT) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _ordered(rows: list[tuple[str, dict | None]], order: list[str]) -> list[str]:
    present = {b for _, level in rows if level for b in level["buckets"]}
    return [b for b in order if b in present]


def _plot_buckets(out: Path, rows: list[tuple[str, dict | None]], order: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = _ordered(rows, order)
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(rows))
    for i, (name, level) in enumerate(rows):
        if level:
            values = [level["buckets"].get(b, {}).get("p99_ms", float("nan")) for b in buckets]
            ax.bar([x + i * width for x in range(len(buckets))], values, width,
                   label=f"{name} ({load_label(level)})")
    ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(buckets))], buckets)
    ax.set(xlabel="image size", ylabel="p99 latency (ms)", title="p99 per size, winner and default")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / BUCKET_PLOT) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _short_load(level: dict) -> str:
    return f"{level['rate']:g}/s" if level.get("rate") else f"c{level['concurrency']}"


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _side_by_side(result, rows: list[tuple[str, dict | None]]) -> list[str]:
    lines = ["| | " + " | ".join(name for name, _ in rows) + " |", "|---|" + "---|" * len(rows)]
    pairs = [(name, result.default if name == "default" else result.winner) for name, _ in rows]
    for axis in Candidate.__dataclass_fields__:
        lines.append(f"| {axis} | " + " | ".join(str(getattr(c, axis)) if c else "-" for _, c in pairs) + " |")
    for label, field, digits in (("requests/s", "throughput", 2), ("p50 ms", "p50_ms", 0), ("p90 ms", "p90_ms", 0),
                                 ("p99 ms", "p99_ms", 0)):
        lines.append(f"| **{label}** | " + " | ".join(_fmt(lv[field], digits) if lv else "-" for _, lv in rows) + " |")
    lines.append("| **at** | " + " | ".join(load_label(lv) if lv else "-" for _, lv in rows) + " |")
    for bucket in _ordered(rows, list(buckets_by_size(result.workload))):
        lines.append(f"| p99 ms, {bucket} | " + " | ".join(
            f"{_fmt(lv['buckets'][bucket]['p99_ms'])} (n={lv['buckets'][bucket]['n']})"
            if lv and bucket in lv["buckets"] else "-" for _, lv in rows) + " |")
    return lines


def _candidate_table(result) -> list[str]:
    lines = ["| # | candidate (vs default) | objective | at | each load: req/s, p99 ms | peak MiB | "
             "seconds | discarded |", "|---|---|---|---|---|---|---|---|"]
    for i, (key, m) in enumerate(result.measured.items(), 1):
        score = result.scores.get(key)
        loads = "; ".join(f"{_short_load(lv)}: {_fmt(lv['throughput'], 2)}, {_fmt(lv['p99_ms'])} ({lv['stop']})"
                          for lv in m["levels"])
        lines.append(f"| {i} | {Candidate(**m['candidate']).short(result.default)} | "
                     f"{_fmt(score.value, 2) if score else '-'} | {score.load if score else '-'} | {loads or '-'} "
                     f"| {_fmt(m['peak_memory_mib'])} | {_fmt(m['seconds'])} | {m.get('discarded') or ''} |")
    return lines


def _confirmation(confirmed: dict) -> list[str]:
    rounds = len(confirmed["default"])
    lines = ["## Measured again, interleaved", "",
             f"The search's winner ({confirmed['searched']}) and the default, {rounds} round(s) each, alternating; "
             "the objective of each round (0: missed):", "",
             "| | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " | median |",
             "|---|" + "---|" * (rounds + 1)]
    for name in ("default", "winner"):
        lines.append(f"| {name} | " + " | ".join(_fmt(v, 2) for v in confirmed[name])
                     + f" | {_fmt(confirmed['median'][name], 2)} |")
    kept = ("**The winner is kept**: its median beats the default's." if confirmed["kept"] == "winner" else
            "**The default is kept**: measured again, the search's winner did not beat it; TUNE_DIR/repository "
            "holds the default configuration.")
    return lines + ["", kept, ""]


def write_report(request, result) -> Path:
    """report.md with both plots beside it, in request.out."""
    out = request.out
    default_key = result.default.key()
    rows = [("default", _best_level(result.measured[default_key], result.scores.get(default_key))
             if default_key in result.measured else None)]
    if result.winner is not None and result.winner.key() != default_key:
        rows.append(("winner", _best_level(result.measured[result.winner.key()], result.scores[result.winner.key()])))
    _plot_tradeoff(out, result, request.objective.p99_ms)
    _plot_buckets(out, rows, list(buckets_by_size(result.workload)))
    buckets = buckets_by_size(result.workload)
    lines = [f"# gsam tune: {request.repo}", "",
             f"Objective: {request.objective.describe()}; search `{request.search}`; model "
             f"`{request.serve.triton_model}`; closed loop at concurrency {', '.join(map(str, request.concurrency))}"
             + (f", open loop at {', '.join(f'{r:g}' for r in request.rates)} requests/s" if request.rates else "")
             + ".",
             f"Workload: {len(result.workload)} requests from `{request.sizes_from}` ("
             + ", ".join(f"{b}: {n}" for b, n in buckets.items()) + ").",
             f"Candidates: {len(result.measured)} ({result.fresh} measured in this invocation, the rest read from "
             f"measurements.jsonl); {result.seconds / 60:.1f} min.", ""]
    if result.winner is None:
        lines += ["**No candidate met the objective.**", ""]
    elif result.winner.key() == default_key:
        lines += ["**The default configuration is the best measured.**", ""]
    lines += ["## Winner against the default", "", *_side_by_side(result, rows), "",
              f"![throughput against p99]({THROUGHPUT_PLOT})", "", f"![p99 per size]({BUCKET_PLOT})", "",
              "## Every candidate", "", *_candidate_table(result), "",
              "Engine profiles are searched only where an engine is served (gsam_trt, a GPU host); this repository "
              "computes in onnxruntime on the CPU, so none were.", ""]
    if result.confirmed:
        lines += _confirmation(result.confirmed)
    if result.not_tried:
        lines += ["## Not tried (--budget-min ran out)", "", *[f"- {c}" for c in result.not_tried], ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    return out / "report.md"
