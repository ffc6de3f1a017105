"""`gsam doctor`: what this machine has, and what gsam will choose on it, each with the reason.

The first thing to run when something is slow, and what a bug report asks for: the CPU and the flags
that decide which kernels are fast, torch's and onnxruntime's view of it, GPUs, TensorRT and
tritonserver; then the choices gsam makes here (amp, int8 scheme, threads, backend), measured where a
measurement decides. Everything is read lazily and a missing library is a row, never an error.
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata
from pathlib import Path

from .machine import FLAGS_THAT_MATTER, apply_thread_choice, cpu_facts


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> dict:
    cpu = cpu_facts()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"model": cpu.model, "family": cpu.family, "model_number": cpu.model_number, "kind": cpu.kind,
            "cores": cpu.cores, "load_average_1min": load,
            "flags": {flag: cpu.has(flag) for flag in FLAGS_THAT_MATTER}}


def _torch() -> dict:
    import torch

    from .machine import torch_native_bf16

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1), "bf16": torch.cuda.is_bf16_supported()})
    return {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16_kernels": torch_native_bf16(), "threads": torch.get_num_threads(),
            "cuda_build": torch.version.cuda, "gpus": gpus}


def _onnxruntime() -> dict:
    if importlib.util.find_spec("onnxruntime") is None:
        return {"version": None, "providers": [], "note": "not installed: pip install onnxruntime"}
    import onnxruntime

    return {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}


def _tensorrt() -> dict:
    """Installed or not; whether it loads (and what it needs) is gsam.gpu_stack's TensorRT row."""
    if importlib.util.find_spec("tensorrt") is None:
        return {"version": None, "note": "not installed (GPU hosts: pip install 'gsam[gpu]', docs/gpu.md)"}
    return {"version": next(filter(None, (_version(name) for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12",
                                                                     "tensorrt-cu13-bindings"))), "installed")}


def _tritonserver() -> dict:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return {"binary": None, "note": "not installed: pip install 'gsam[serve]' (bundles tritonserver)"}
    binary = Path(list(spec.submodule_search_locations)[0]) / "tritonserver" / "bin" / "tritonserver"
    return {"binary": str(binary) if binary.is_file() else None, "nvidia-pytriton": _version("nvidia-pytriton"),
            **({} if binary.is_file() else {"note": "nvidia-pytriton is installed without its tritonserver"})}


def _choices(torch_facts: dict, ort_facts: dict, trt_facts: dict) -> dict:
    """What gsam runs here by default, each with the measured or read reason."""
    import torch

    from gsam.export.int8_choice import choose_int8_scheme

    from .amp import choose_amp

    device = torch.device("cuda" if torch_facts["gpus"] else "cpu")
    amp = choose_amp("auto", device)
    scheme, scheme_why = choose_int8_scheme("auto", "tensorrt" if trt_facts.get("version") and device.type == "cuda"
                                            else "onnxruntime")
    count, why = apply_thread_choice()
    threads = {"value": count, "reason": why}
    if device.type == "cuda" and trt_facts.get("version"):
        backend = ("tensorrt", "a GPU and TensorRT: engines from `gsam export tensorrt`")
    elif device.type == "cuda" and "CUDAExecutionProvider" in ort_facts["providers"]:
        backend = ("onnxruntime (CUDA)", "a GPU and onnxruntime's CUDA provider; no TensorRT")
    elif device.type == "cuda":
        backend = ("torch (CUDA)", "a GPU, but neither TensorRT nor onnxruntime-gpu (docs/gpu.md)")
    else:
        backend = ("onnxruntime", "no GPU: onnxruntime is gsam's fastest CPU backend (BENCHMARKS.md)")
    amp_reason = amp.reason + ("; `gsam train` keeps it only if the model's own step is faster in bf16"
                               if device.type == "cpu" and amp.mode == "bf16" else "")
    return {"device": str(device),
            "amp": {"value": amp.mode, "reason": amp_reason},
            "int8_scheme": {"value": scheme, "reason": scheme_why},
            "threads": threads,
            "backend": {"value": backend[0], "reason": backend[1]}}


def _gpu_stack() -> list[dict]:
    """What a GPU host still lacks (gsam.gpu_stack), where that module is part of this install."""
    if importlib.util.find_spec("gsam.gpu_stack") is None:
        return []
    from . import gpu_stack

    return [{"name": name, "status": status, "detail": detail} for name, status, detail in gpu_stack.gpu_stack_report()]


def machine_report() -> dict:
    """Everything `gsam doctor` prints, as one JSON-ready mapping."""
    torch_facts, ort_facts, trt_facts = _torch(), _onnxruntime(), _tensorrt()
    return {"gsam": _version("gsam"), "cpu": _cpu(), "torch": torch_facts, "onnxruntime": ort_facts,
            "tensorrt": trt_facts, "tritonserver": _tritonserver(), "gpu_stack": _gpu_stack(),
            "choices": _choices(torch_facts, ort_facts, trt_facts)}


def format_report(report: dict) -> str:
    """The report as aligned lines, one fact per line, sections in the order a reader checks them."""
    cpu, torch_facts, ort = report["cpu"], report["torch"], report["onnxruntime"]
    flags = ", ".join(f"{flag} {'yes' if has else 'no'}" for flag, has in cpu["flags"].items())
    lines = [f"gsam {report['gsam']}",
             "machine",
             f"  cpu            {cpu['model']} (family {cpu['family']} model {cpu['model_number']}), "
             f"{cpu['cores']} cores, load {cpu['load_average_1min']}",
             f"  kernels        {cpu['kind']}: {flags}",
             f"  torch          {torch_facts['version']}, CPU capability {torch_facts['cpu_capability']}, native bf16 "
             f"kernels {'yes' if torch_facts['native_bf16_kernels'] else 'no'}, {torch_facts['threads']} threads",
             f"  onnxruntime    {ort['version'] or 'missing'}: {', '.join(ort['providers']) or ort.get('note', '')}"]
    gpus = torch_facts["gpus"]
    described = [f"{g['index']}: {g['name']}, compute {g['compute_capability']}, {g['memory_gib']} GiB" for g in gpus]
    lines.append("  gpus           " + ("; ".join(described) or "none (torch sees no CUDA device)"))
    trt, triton = report["tensorrt"], report["tritonserver"]
    lines.append(f"  tensorrt       {trt['version'] or 'missing'}" + (f" ({trt['note']})" if trt.get("note") else ""))
    lines.append(f"  tritonserver   {triton['binary'] or 'missing'}"
                 + (f" ({triton['note']})" if triton.get("note") else ""))
    for row in report["gpu_stack"]:
        lines.append(f"  {row['name']:<14} {row['status']}: {row['detail']}")
    lines.append("gsam chooses here")
    for name, choice in report["choices"].items():
        if isinstance(choice, dict):
            lines.append(f"  {name:<14} {choice['value']} ({choice['reason']})")
        else:
            lines.append(f"  {name:<14} {choice}")
    return "\n".join(lines)
