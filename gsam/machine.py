"""What this machine can run fast, read once: the CPU's flags, and measured kernel speeds, cached.

gsam picks precisions and kernels by what the machine in front of it does, never by what the
machine it was developed on did: bf16 autocast is 2-3x faster than fp32 on a CPU with avx512_bf16
or AMX and about 10x slower on one with AVX2 only. Flags say what the CPU has; a short probe says
what torch makes of it. Probes are cached per CPU, torch release and thread count in
$GSAM_CACHE_DIR (default ~/.cache/gsam), so a command pays for one at most once per machine.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

# The CPU flags that change which kernels run fast (Linux /proc/cpuinfo names).
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "avx_vnni",
                     "amx_tile", "amx_bf16", "amx_int8", "avx512_fp16")


@dataclass(frozen=True)
class CpuFacts:
    model: str
    family: str
    model_number: str
    cores: int  # the cores this process may use
    flags: tuple[str, ...] = field(default=())  # the subset of FLAGS_THAT_MATTER the CPU has

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def int8_dot_product(self) -> bool:
        """VNNI or AMX: int8 multiply-adds in one instruction, what makes int8 faster than fp32 on a CPU."""
        return any(self.has(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def bf16_native(self) -> bool:
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def kind(self) -> str:
        """A short name for reports: which vector family the CPU's widest kernels use."""
        if self.has("amx_tile"):
            return "AMX"
        if self.has("avx512f"):
            extras = [name for flag, name in (("avx512_bf16", "bf16"), ("avx512_vnni", "VNNI")) if self.has(flag)]
            return "+".join(["AVX-512", *extras])
        if self.has("avx2"):
            return "AVX2" + ("+VNNI" if self.has("avx_vnni") else "")
        return platform.machine() or "unknown"

    def describe(self) -> str:
        return f"{self.model} ({self.kind}, {self.cores} cores)"


def _cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if found:
                break
            continue
        key, _, value = line.partition(":")
        found.setdefault(key.strip(), value.strip())
    return found


@lru_cache(maxsize=1)
def cpu_facts() -> CpuFacts:
    """This CPU, from /proc/cpuinfo where there is one (platform's name elsewhere)."""
    try:
        fields = _cpuinfo_fields(Path("/proc/cpuinfo").read_text())
    except OSError:
        fields = {}
    flags = set(fields.get("flags", "").split())
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return CpuFacts(model=fields.get("model name") or platform.processor() or platform.machine() or "unknown",
                    family=fields.get("cpu family", "?"), model_number=fields.get("model", "?"), cores=cores,
                    flags=tuple(f for f in FLAGS_THAT_MATTER if f in flags))


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + (fields[4] if len(fields) > 4 else 0), sum(fields)


def busy_cores(sample_s: float = 0.1) -> float:
    """How many cores other work keeps busy right now: /proc/stat sampled over `sample_s` (the 1-minute
    load average where there is no /proc; it lags by a minute, so it is only the fallback)."""
    before = _cpu_times()
    if before is None:
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0
    time.sleep(sample_s)
    after = _cpu_times()
    idle, total = after[0] - before[0], after[1] - before[1]
    return max(0.0, 1 - idle / total) * cpu_facts().cores if total > 0 else 0.0


def choose_threads() -> tuple[int, str]:
    """Threads for torch (and onnxruntime) in a command: one per core that other work leaves idle.

    An OpenMP team waits for its slowest thread at every operation, so a thread on a core another
    process keeps busy stalls the rest: beside one busy process a tiny-model training step took 0.59 s
    with 2 threads and 0.18 s with 1, while on an idle machine 2 threads took 0.11 s (BENCHMARKS.md).
    """
    cores, busy = cpu_facts().cores, busy_cores()
    threads = max(1, min(cores, cores - int(round(busy))))
    if threads == cores:
        return threads, f"{cores} cores, {busy:.1f} busy with other work: one thread per core"
    return threads, (f"{cores} cores, {busy:.1f} busy with other work: {threads} thread(s), one per idle core "
                     "(a thread on a busy core stalls its team at every operation)")


def apply_thread_choice() -> tuple[int, str]:
    """Set OMP_NUM_THREADS (and MKL's) for this process and its children from choose_threads, unless the user
    or a launcher such as torchrun set it; torch reads it when it starts, so call before importing torch.
    Returns the count in force and why."""
    given = os.environ.get("OMP_NUM_THREADS")
    if given is not None and given != os.environ.get("GSAM_THREADS_CHOSEN"):
        return int(given) if given.isdigit() else 0, f"OMP_NUM_THREADS={given}, set before gsam started"
    threads, reason = choose_threads() if given is None else (int(given), os.environ["GSAM_THREADS_REASON"])
    os.environ.update(OMP_NUM_THREADS=str(threads), GSAM_THREADS_CHOSEN=str(threads), GSAM_THREADS_REASON=reason)
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    return threads, reason


def cache_dir() -> Path:
    """Where measured probes are kept: $GSAM_CACHE_DIR, else $XDG_CACHE_HOME/gsam, else ~/.cache/gsam."""
    if os.environ.get("GSAM_CACHE_DIR"):
        return Path(os.environ["GSAM_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gsam"


def _probe_key(name: str) -> str:
    import torch

    cpu = cpu_facts()
    return f"{name}|{cpu.model}|{cpu.family}/{cpu.model_number}|{','.join(cpu.flags)}|torch {torch.__version__}" \
           f"|{torch.get_num_threads()} threads"


def machine_is_busy() -> bool:
    """More runnable work than cores: a probe measured now says more about the load than the kernels."""
    try:
        return os.getloadavg()[0] > cpu_facts().cores + 0.5
    except OSError:
        return False


def cached_probe(name: str, measure) -> dict:
    """measure() once per machine, torch release and thread count; later calls read the cache file.

    A probe taken while the machine is busy is used but not kept, so the next command measures again;
    an unwritable cache costs a new measurement next time, never an error.
    """
    from .io import write_text_atomic

    key, path = _probe_key(name), cache_dir() / "probes.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    if isinstance(saved.get(key), dict):
        return saved[key]
    busy = machine_is_busy()
    result = measure()
    if busy or machine_is_busy():
        return {**result, "note": "measured while the machine was busy; not cached"}
    try:
        write_text_atomic(path, json.dumps({**saved, key: result}, indent=1))
    except OSError:
        pass
    return result


def best_seconds_interleaved(steps: dict, repeats: int) -> dict[str, float]:
    """Best time of each step, the steps taking turns so that a load that comes and goes hits all alike."""
    for step in steps.values():
        step()  # kernel selection, allocation
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure_cpu_bf16_speedup(repeats: int = 5) -> dict:
    """fp32 time / bf16-autocast time of a small training step on the CPU (> 1: bf16 is faster).

    The step has the layer mix of a GSAM training step, 3x3 convolutions of a ResNet stage and linear
    layers over tokens, forward and backward, at sizes that take about 10 ms in fp32 (so even a CPU
    that emulates bf16 10x slower answers within a few seconds).
    """
    import torch

    torch.manual_seed(0)
    conv, linear = torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.Linear(256, 256)
    image, tokens = torch.randn(2, 64, 32, 32), torch.randn(2, 256, 256)

    def step(dtype):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                loss = conv(image).float().square().mean() + linear(tokens).float().square().mean()
            loss.backward()
        return run

    best = best_seconds_interleaved({"fp32": step("fp32"), "bf16": step("bf16")}, repeats)
    return {"fp32_ms": round(best["fp32"] * 1e3, 3), "bf16_ms": round(best["bf16"] * 1e3, 3),
            "speedup": round(best["fp32"] / best["bf16"], 3)}


def torch_native_bf16() -> bool:
    """torch's own answer: does oneDNN run bf16 on this CPU with native instructions."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_bf16_speedup() -> dict:
    """The cached bf16 probe of this CPU (see measure_cpu_bf16_speedup)."""
    return cached_probe("cpu-bf16-step", measure_cpu_bf16_speedup)
