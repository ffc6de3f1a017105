"""Does `gsam tune` find a configuration that beats the default, and does `quick` find what `brute` does?

Builds a repository of the tiny model with `gsam triton build`'s defaults, writes a mixed-size dataset of
real JPEG files (256x256, 480x640 and 1024x1280 = 1.3 MP), then tunes it twice on the same machine, one
after the other: `--search brute` over the grid below, then `--search quick` (coordinate descent from the
default) over the same axes, each with its own TUNE_DIR so quick measures everything itself. Then, because
other work on a shared machine moves single measurements by 2-3x, the default, brute's winner and quick's
winner are measured again in `--rounds` interleaved rounds (default, brute, quick, default, ...), and their
objectives compared by median. Rerunning with the same --out resumes both searches from their
measurements.jsonl and measures only the rounds. Prints a JSON summary (benchmarks/results/tune/summary.json)
and copies both reports and their plots to benchmarks/results/tune/.

    python benchmarks/tune_quick_vs_brute.py --out /tmp/tune-bench --p99-ms 1500

Run as root on a machine whose Python sits under a private /root (pyenv), tritonserver's user (nobody)
cannot run it: run the script inside the mount namespace tests/support/serving.py describes, or as a user.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gsam.deploy.triton.repository import build_repository
from gsam.machine import cpu_facts
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL
from gsam.tune.candidate import write_candidate
from gsam.tune.load import StoppingRule
from gsam.tune.measure import Measurement, ServeSettings, measure
from gsam.tune.run import TuneRequest, run_tune
from gsam.tune.search import Objective
from gsam.tune.space import Candidate

GRID = {"instances": (1, 2, 3), "threads": (0, 1, 2), "compute_model": (TENSOR_MODEL, "in-process")}
MIX = (((256, 256), 6), ((480, 640), 3), ((1024, 1280), 1))
# Shorter than gsam tune's default rule (30 requests, 5%, 30 s a load), so 24 candidates fit in 15 minutes.
RULE = StoppingRule(min_requests=20, window=10, tolerance=0.10, max_seconds=10.0)
RESULTS = Path(__file__).resolve().parent / "results" / "tune"


def write_mix(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, ((h, w), count) in enumerate(MIX):
        for j in range(count):
            y, x = np.mgrid[0:h, 0:w]
            image = np.stack([x * (j + 1) % 256, y * 2 % 256, (x + y) % 256], -1)
            image = np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"image_{i}_{j}.jpg", quality=90)
    return folder


def tiny_onnx(path: Path) -> Path:
    import torch

    from gsam.export.onnx import export_onnx
    from gsam.model import build_gsam

    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=3, class_names=("background", "disc", "square")).eval()
    export_onnx(model, path, exporter="torchscript", log=lambda s: None)
    return path


def tune(search: str, args, repo: Path, data: Path):
    budget = args.brute_budget_min if search == "brute" else args.quick_budget_min
    request = TuneRequest(repo, data, args.out / search, Objective("throughput", args.p99_ms), search,
                          budget, tuple(args.concurrency), axes=dict(GRID), serve=ServeSettings(IMAGE_MODEL),
                          rule=RULE)
    started = time.monotonic()
    return run_tune(request, echo=print), time.monotonic() - started


def confirm(args, repo: Path, data: Path, candidates: dict[str, Candidate]) -> dict[str, list]:
    """Each candidate's objective in `args.rounds` interleaved rounds, on the same workload and rule."""
    from gsam.tune.workload import load_workload

    requests = load_workload(data)
    objective = Objective("throughput", args.p99_ms)
    found: dict[str, list] = {name: [] for name in candidates}
    for round_ in range(args.rounds):
        for name, candidate in candidates.items():
            work = write_candidate(repo, candidate, args.out / "confirm" / "repository")
            m = measure(work, Measurement(candidate.key(), candidate.as_dict()), requests,
                        concurrency=list(args.concurrency), slo_ms=args.p99_ms, settings=ServeSettings(IMAGE_MODEL),
                        rule=RULE).as_dict()
            score = objective.score(m)
            found[name].append({"round": round_, "objective_rps": score.throughput if score else 0.0,
                                "at": score.load if score else None,
                                "levels": [(lv["concurrency"], round(lv["throughput"], 2), round(lv["p99_ms"]))
                                           for lv in m["levels"]], "discarded": m["discarded"]})
            print(name, found[name][-1], flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--onnx", type=Path, help="A gsam ONNX file (default: the tiny model, exported here).")
    parser.add_argument("--p99-ms", type=float, default=1500.0)
    parser.add_argument("--brute-budget-min", type=float, default=11.0)
    parser.add_argument("--quick-budget-min", type=float, default=4.5)
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved confirmation rounds.")
    parser.add_argument("--concurrency", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.out.chmod(0o755)
    onnx = args.onnx or args.out / "tiny.onnx"
    if not onnx.is_file():
        tiny_onnx(onnx)
    repo = args.out / "triton_models"
    build_repository(onnx, repo, log=lambda s: None)  # gsam triton build's defaults
    data = write_mix(args.out / "mix")
    brute, brute_s = tune("brute", args, repo, data)
    quick, quick_s = tune("quick", args, repo, data)
    summary = {"cpu": cpu_facts().model, "cpu_kind": cpu_facts().kind, "p99_ms": args.p99_ms,
               "concurrency": args.concurrency, "grid": GRID}
    for name, result, seconds in (("brute", brute, brute_s), ("quick", quick, quick_s)):
        default, winner = result.scores.get(result.default.key()), result.scores[result.winner.key()]
        summary[name] = {"measured": len(result.measured), "minutes": seconds / 60,
                         "not_tried": result.not_tried, "winner": result.winner.short(result.default),
                         "winner_rps": winner.throughput, "winner_p99_ms": winner.p99_ms,
                         "winner_concurrency": winner.concurrency,
                         "default_rps": default.throughput if default else None,
                         "default_p99_ms": default.p99_ms if default else None,
                         "default_concurrency": default.concurrency if default else None}
    summary["quick_over_brute_objective"] = summary["quick"]["winner_rps"] / summary["brute"]["winner_rps"]
    summary["quick_over_brute_candidates"] = summary["quick"]["measured"] / summary["brute"]["measured"]
    (args.out / "confirm").mkdir(parents=True, exist_ok=True)
    (args.out / "confirm").chmod(0o755)
    rounds = confirm(args, repo, data, {"default": brute.default, "brute": brute.winner, "quick": quick.winner})
    medians = {name: float(np.median([r["objective_rps"] for r in rows])) for name, rows in rounds.items()}
    summary["confirm"] = {"rounds": rounds, "median_objective_rps": medians,
                          "brute_over_default": medians["brute"] / medians["default"] if medians["default"] else None,
                          "quick_over_brute": medians["quick"] / medians["brute"] if medians["brute"] else None}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in ("brute", "quick"):
        for plot in ("throughput_vs_p99.png", "p99_per_size.png"):
            shutil.copyfile(args.out / name / plot, RESULTS / f"{name}_{plot}")
        report = (args.out / name / "report.md").read_text()
        for plot in ("throughput_vs_p99.png", "p99_per_size.png"):
            report = report.replace(f"({plot})", f"({name}_{plot})")
        (RESULTS / f"{name}_report.md").write_text(report)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
