"""The GPU check: everything gsam can verify and measure on one NVIDIA GPU, in one markdown report.

    make gpu-check            # python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.md
    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check.md   # the same code on a CPU, tiny sizes

Sections, each written to the report as soon as it is done (a killed run leaves what it finished), and a
summary at the top of what ran and what was skipped, and why, per section:
1. the machine: GPU, driver/CUDA, torch, onnxruntime providers, whether TensorRT imports, and gsam's
   GPU-stack report (gsam.gpu_stack: what the host lacks, with the fix);
2. `pytest -m gpu tests/test_gpu.py`: every test's outcome, skip reasons included (no TensorRT or no
   onnxruntime-gpu on the machine: those tests skip and say so);
3. the training step (forward, backward, Adam; median after warm-up) and its peak CUDA memory: GSAM vit_b at
   its 256x256 crop against SAM vit_b at 1024x1024 with only the mask decoder trained and with every
   parameter trained, in fp32 and under bf16 autocast (the paper's claim: GSAM trains at a fraction of SAM's
   cost);
4. torch CUDA inference of GSAM vit_b across sizes, square and not, in fp32 and under bf16 and fp16 autocast:
   median latency and peak memory;
5. TensorRT (where it imports; run before 3 and 4, which the time budget may cut): fp32 and fp16 engines of
   the tiny model with two profiles, every profile run, compared with onnxruntime and torch on the CPU,
   timed (benchmarks/gpu_engines.py);
6. onnxruntime's CUDA provider (where onnxruntime-gpu is installed): compared with its CPU provider, timed.
Weights are random (time and memory do not depend on them). A time budget (--budget-s, default 420 s, so the
whole check stays under 8 minutes) bounds the run: what would not fit is listed as not run. Needs torch,
segment-anything and pytest; everything else is optional and its section says when it is missing. It needs
no git and no network: a copy of the tree is enough.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO)]  # gsam from this checkout, installed or not

import gpu_engines  # noqa: E402
from gpu_train_memory import step  # noqa: E402


class Report:
    """The markdown report, rewritten whole (through a temporary file) after every section: the title, the
    summary of what ran and what was skipped per section, then the sections."""

    def __init__(self, path: Path, deadline: float, title: list[str]) -> None:
        self.path, self.deadline, self.title, self.parts = path, deadline, title, []
        self.outcomes: dict[str, tuple[list[str], list[str]]] = {}  # section -> (ran, skipped with why)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def ran(self, section: str, what: str) -> None:
        self.outcomes.setdefault(section, ([], []))[0].append(what)
        self.add()

    def skipped(self, section: str, what: str, why: str) -> None:
        self.outcomes.setdefault(section, ([], []))[1].append(f"{what}: {why}")
        self.add()

    def summary(self) -> list[str]:
        rows = [f"| {section} | {'; '.join(ran) or '-'} | {'; '.join(skipped) or '-'} |".replace("\n", " ")
                for section, (ran, skipped) in self.outcomes.items()]
        return ["## Summary: what ran, what was skipped and why", "", "| section | ran | skipped (why) |",
                "|---|---|---|", *rows, ""]

    def add(self, *lines: str) -> None:
        self.parts.extend(lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("\n".join([*self.title, *self.summary(), *self.parts]) + "\n")
        os.replace(tmp, self.path)


def _git_commit() -> str:
    """The checkout's commit, or why it is unknown (a copied tree has no .git; a bare machine no git)."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown (git did not run: {type(exc).__name__})"
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else "unknown (no git metadata)"


def machine(device: torch.device) -> list[str]:
    lines = [f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; host {platform.node()}, "
             f"{os.cpu_count()} CPU cores; gsam commit {_git_commit()}",
             f"- Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability "
                     f"{props.major}.{props.minor}; bf16 supported: {torch.cuda.is_bf16_supported()}")
    else:
        lines.append(f"- device: {device} (no GPU: a smoke run of the check's code, not a GPU measurement)")
    for name, probe in (("onnxruntime", "import onnxruntime as o; print(o.__version__, o.get_available_providers())"),
                        ("tensorrt", "import tensorrt as t; print(t.__version__)"),
                        ("segment_anything", "import segment_anything; print('importable')")):
        found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        why = (found.stderr.strip().splitlines() or ["?"])[-1][:160]
        lines.append(f"- {name}: {found.stdout.strip() if found.returncode == 0 else f'not importable ({why})'}")
    return lines


def gpu_stack(report: Report) -> None:
    """gsam's GPU-stack report: each layer ok, missing (with the fix) or skipped."""
    from gsam.gpu_stack import format_report, gpu_stack_report

    rows = gpu_stack_report()
    report.add("## GPU stack (gsam.gpu_stack)", "", *format_report(rows), "")
    for name, status, detail in rows:
        if status == "skip":
            report.skipped("GPU stack", name, detail)
        else:
            report.ran("GPU stack", f"{name}: {status}")


def _junit_rows(xml: Path) -> list[tuple[str, str, float, str]]:
    """(test, outcome, seconds, message) from pytest's junit XML."""
    rows = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "").splitlines()[0][:160] if child.get("message") else ""
        rows.append((case.get("name", "?"), outcome, float(case.get("time", 0)), message.replace("|", "/")))
    return rows


def gpu_tests(report: Report) -> None:
    limit = min(300.0, report.left() - 120)
    if limit < 30:
        report.add("## `pytest -m gpu`", "", "not run: the time budget was spent", "")
        report.skipped("pytest -m gpu", "tests/test_gpu.py", "the time budget was spent")
        return
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
               "tests/test_gpu.py"]
        started = time.monotonic()
        try:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=limit, env=env)
            tail, code = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"], proc.returncode
        except subprocess.TimeoutExpired:
            tail, code = [f"stopped after {limit:.0f} s (time budget)"], "timeout"
        rows = _junit_rows(xml) if xml.exists() else []
    lines = ["## `pytest -m gpu tests/test_gpu.py`", "",
             f"exit status {code}, {time.monotonic() - started:.0f} s: {tail[0]}", "",
             "| test | outcome | s | reason |", "|---|---|---|---|"]
    report.add(*lines, *[f"| {n} | {o} | {s:.1f} | {m} |" for n, o, s, m in rows], "")
    if not rows:
        report.skipped("pytest -m gpu", "tests/test_gpu.py", f"no outcomes (exit status {code}: {tail[0]})")
    for outcome in ("passed", "FAILED", "ERROR"):
        count = sum(o == outcome for _, o, _, _ in rows)
        if count:
            report.ran("pytest -m gpu", f"{count} {outcome}")
    reasons: dict[str, int] = {}
    for _, outcome, _, message in rows:
        if outcome == "skipped":
            reasons[message] = reasons.get(message, 0) + 1
    for message, count in reasons.items():
        report.skipped("pytest -m gpu", f"{count} test(s)", message)


def training(report: Report, device: torch.device, smoke: bool, batch: int) -> None:
    cases = [("gsam", "GSAM " + ("tiny" if smoke else "vit_b"), 64 if smoke else 256, "adapters + heads"),
             ("sam-decoder", "SAM vit_b", 1024, "mask decoder")] + ([] if smoke else
                                                                    [("sam-full", "SAM vit_b", 1024, "all parameters")])
    steps, warmup = (1, 0) if smoke else (8, 2)
    lines = ["## Training step: GSAM at its crop against SAM vit_b at 1024", "",
             f"Batch {1 if smoke else batch}, median of {steps} step(s) after {warmup} warm-up, Adam, random "
             "weights; "
             "peak = torch.cuda.max_memory_allocated, reset per case.", "",
             "| model | input | trained | precision | trainable M | s / step | peak GiB | s / SAM full's |",
             "|---|---|---|---|---|---|---|---|"]
    report.add(*lines)
    full: dict[str, float] = {}
    for amp in ("off", "bf16") if not smoke else ("off",):
        for case, label, size, trained in cases[::-1]:  # SAM full first: the ratio's reference
            if report.left() < 45:
                report.add(f"| {label} | {size}x{size} | {trained} | {amp} | not run: time budget | | | |")
                report.skipped("training", f"{label} {amp}", "time budget")
                continue
            try:
                seconds, peak, trainable = step(case, size, 1 if smoke else batch, amp, steps=steps, warmup=warmup,
                                                device=str(device), gsam_model="tiny" if smoke else "vit_b")
            except (RuntimeError, ValueError) as exc:  # out of memory, an unsupported mode: reported, not fatal
                report.add(f"| {label} | {size}x{size} | {trained} | {amp} | failed: {str(exc).splitlines()[0][:80]} "
                           "| | | |")
                report.ran("training", f"{label} {amp}: FAILED")
                continue
            if case == "sam-full":
                full[amp] = seconds
            ratio = f"{seconds / full[amp]:.2f}x" if amp in full else "-"
            report.add(f"| {label} | {size}x{size} | {trained} | {'fp32' if amp == 'off' else amp} | {trainable:.1f} "
                       f"| {seconds:.3f} | {peak:.2f} | {ratio} |")
            report.ran("training", f"{label} {'fp32' if amp == 'off' else amp}")
    report.add("")


def _latency(model, image: torch.Tensor, amp: str, iters: int, warmup: int) -> tuple[float, float]:
    """(median ms, peak GiB allocated (nan on the CPU)) of one forward pass under `amp`."""
    from gsam.amp import autocast

    cuda = image.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode(), autocast(image.device, amp):
        for i in range(warmup + iters):
            sync()
            start = time.perf_counter()
            model(image)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")


def inference(report: Report, device: torch.device, smoke: bool) -> None:
    from gsam.model import build_gsam

    name = "tiny" if smoke else "vit_b"
    sizes = [(64, 96), (128, 128)] if smoke else [(256, 256), (512, 512), (480, 640), (1024, 1024), (1080, 1920),
                                                  (2048, 2048)]
    amps = ("off", "bf16") if device.type == "cpu" else ("off", "bf16", "fp16")
    iters, warmup = (2, 1) if smoke else (10, 3)
    torch.manual_seed(0)
    model = build_gsam(name, num_classes=3).eval().to(device)
    report.add(f"## Inference: GSAM {name} in torch on {device}", "",
               f"Batch 1, median of {iters} forward passes after {warmup} warm-up, under torch.inference_mode; "
               "fp32, or autocast to bf16 / fp16; peak = torch.cuda.max_memory_allocated per case.", "",
               "| size | " + " | ".join(f"{'fp32' if a == 'off' else a} ms | peak GiB" for a in amps) + " |",
               "|---|" + "---|---|" * len(amps))
    for h, w in sizes:
        if report.left() < 20:
            report.add(f"| {h}x{w} | not run: time budget |")
            report.skipped("inference (torch)", f"{h}x{w}", "time budget")
            continue
        image = torch.rand(1, 3, h, w, device=device) * 255
        cells = []
        for amp in amps:
            try:
                ms, peak = _latency(model, image, amp, iters, warmup)
                cells.append(f"{ms:.1f} | {peak:.2f}")
            except RuntimeError as exc:
                cells.append(f"failed: {str(exc).splitlines()[0][:40]} |")
        report.add(f"| {h}x{w} | " + " | ".join(cells) + " |")
        report.ran("inference (torch)", f"{h}x{w} {'/'.join('fp32' if a == 'off' else a for a in amps)}")
    report.add("")


def _tiny_export(workdir: Path):
    """The tiny model (seeded) and its default (dynamo) export: what the engine sections build and compare."""
    from gsam.export.onnx import export_onnx
    from gsam.model import build_gsam

    torch.manual_seed(0)
    model = build_gsam("tiny", num_classes=3).eval()
    onnx = workdir / "tiny.onnx"
    export_onnx(model, onnx, log=lambda s: None)
    return model, onnx


def engines(report: Report, device: torch.device, smoke: bool) -> None:
    """TensorRT engines and onnxruntime's CUDA provider on the tiny model, or what each lacks."""
    cuda = device.type == "cuda"
    wanted = {"TensorRT engines": gpu_engines.tensorrt_missing(cuda),
              "onnxruntime CUDA provider": gpu_engines.provider_missing(cuda)}
    for section, missing in wanted.items():
        report.add(f"## {section}", "")
        if missing:
            report.add(f"not run: {'; '.join(missing)}", "")
            report.skipped(section, "fp32 and fp16 engines, two profiles" if section.startswith("TensorRT")
                           else "CUDA provider against the CPU provider", "; ".join(missing))
            continue
        if report.left() < 90:
            report.add("not run: the time budget was spent", "")
            report.skipped(section, "everything", "time budget")
            continue
        try:
            with tempfile.TemporaryDirectory() as tmp:
                model, onnx = _tiny_export(Path(tmp))
                lines = (gpu_engines.tensorrt_section(onnx, model, Path(tmp), smoke=smoke)
                         if section.startswith("TensorRT") else gpu_engines.provider_section(onnx, smoke=smoke))
        except Exception as exc:  # reported, not fatal: the other sections still run
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            report.add(f"failed: {type(exc).__name__}: {first}", "")
            report.ran(section, f"FAILED ({first})")
            continue
        report.add(*lines, "")
        failed = sum("FAILED" in line for line in lines)
        report.ran(section, f"{len(lines) - 2} request(s), {failed} outside tolerance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.md")
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (a smoke run of its code).")
    parser.add_argument("--smoke", action="store_true", help="Tiny model and sizes, one step: checks the code runs.")
    parser.add_argument("--batch", type=int, default=2, help="Training batch size.")
    parser.add_argument("--budget-s", type=float, default=420.0, help="Stop starting new cases after this long.")
    parser.add_argument("--skip-tests", action="store_true", help="Leave out section 2 (pytest -m gpu).")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; use --device cpu --smoke to run the check's code on the CPU")
    report = Report(args.out, time.monotonic() + args.budget_s,
                    [f"# gsam GPU check{' (smoke run on the CPU)' if device.type == 'cpu' else ''}", "",
                     f"`{' '.join(['python', 'benchmarks/gpu_check.py', *sys.argv[1:]])}`", ""])
    report.add("## Machine", "", *machine(device), "")
    report.ran("machine", "GPU, versions, imports")
    gpu_stack(report)
    if args.skip_tests:
        report.skipped("pytest -m gpu", "tests/test_gpu.py", "--skip-tests")
    else:
        gpu_tests(report)
    engines(report, device, args.smoke)
    training(report, device, args.smoke, args.batch)
    inference(report, device, args.smoke)
    report.add(f"Finished in {args.budget_s - report.left():.0f} s.")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
