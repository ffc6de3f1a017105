"""What a GPU host has of the stack gsam's GPU paths need, and the fix for what it lacks.

`gpu_stack_report()` gives one row per layer: the NVIDIA driver, torch's CUDA, onnxruntime's CUDA
provider, TensorRT. Each row is (name, status, detail), status "ok", "missing" or "skip" (nothing to
check here, e.g. no NVIDIA GPU in the machine), and the detail of a "missing" row says how to fix it.
`gsam doctor` and `make gpu-check` print it, so a GPU host says what it lacks before a command fails on it.

Facts it relies on (docs/gpu.md cites them): CUDA 13 needs driver R580 or newer and CUDA 12 needs R525 or
newer (NVIDIA's CUDA minor-version compatibility table); onnxruntime-gpu on PyPI is built for CUDA 12 and its
`cuda` and `cudnn` extras (1.21 on) install the CUDA 12 and cuDNN 9 libraries it loads; the PyPI
`tensorrt-cu13-libs` are placeholders for the wheels on NVIDIA's index (https://pypi.nvidia.com). The checks
only read: no package is installed, no network is used.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

Row = tuple[str, str, str]

NVIDIA_INDEX = "https://pypi.nvidia.com"
# Oldest driver branch per CUDA major (NVIDIA's CUDA minor-version compatibility table).
DRIVER_FOR_CUDA = {12: 525, 13: 580}
ORT_GPU_FIX = "pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21' (CUDA 12 and cuDNN 9 libraries from PyPI)"
ORT_CLOBBER_FIX = ("pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21' "
                   "(both share the onnxruntime folder; the CPU build's files won)")


def nvidia_gpus_on_pci(root: Path = Path("/sys/bus/pci/devices")) -> int:
    """NVIDIA display/3D controllers in the machine, driver or not (vendor 0x10de, PCI class 0x03)."""
    count = 0
    for device in root.glob("*") if root.is_dir() else ():
        try:
            vendor, cls = (device / "vendor").read_text().strip(), (device / "class").read_text().strip()
        except OSError:
            continue
        count += vendor == "0x10de" and cls.startswith("0x03")
    return count


def driver_version(proc: Path = Path("/proc/driver/nvidia/version")) -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. 580.65.06): /proc, else nvidia-smi; None without one."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", proc.read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out[0] if out else None


def _torch_cuda_major() -> int | None:
    import torch

    return int(torch.version.cuda.split(".")[0]) if torch.version.cuda else None


def driver_row(version: str | None, gpus_on_pci: int, cuda_major: int | None) -> Row:
    need = DRIVER_FOR_CUDA.get(cuda_major or 13, 580)
    if version is None:
        if gpus_on_pci == 0:
            return ("NVIDIA driver", "skip", "no NVIDIA GPU in this machine (none on the PCI bus, no driver loaded)")
        return ("NVIDIA driver", "missing", f"{gpus_on_pci} NVIDIA GPU(s) on the PCI bus but no driver loaded: install "
                                           f"NVIDIA driver R{need} or newer (CUDA {cuda_major or 13} needs it)")
    branch = int(version.split(".")[0])
    if branch < need:
        return ("NVIDIA driver", "missing", f"driver {version} is older than R{need}, which CUDA {cuda_major} (this "
                                           f"torch's) needs: install driver R{need} or newer")
    return ("NVIDIA driver", "ok", f"{version} (CUDA {cuda_major or '?'} needs R{need} or newer)")


def torch_row(has_driver: bool) -> Row:
    import torch

    if not torch.version.cuda:
        return ("torch CUDA", "missing", f"torch {torch.__version__} is a CPU-only build: install a CUDA build "
                                        "of torch (pip install torch, from PyPI on Linux x86-64, is one)")
    if not torch.cuda.is_available():
        status = "missing" if has_driver else "skip"
        why = "the driver is loaded but torch sees no device (CUDA_VISIBLE_DEVICES, or a driver too old for it)" \
            if has_driver else "no NVIDIA driver here"
        return ("torch CUDA", status, f"torch {torch.__version__} (CUDA {torch.version.cuda}): {why}")
    gpus = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)} "
                     f"({'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
                     for i in range(torch.cuda.device_count()))
    return ("torch CUDA", "ok", f"torch {torch.__version__} (CUDA {torch.version.cuda}): {gpus}")


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cuda_provider_starts() -> bool:
    """Whether a session on a one-node model really runs on CUDA (onnxruntime falls back to the CPU quietly
    when the provider's libraries do not load)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    return "CUDAExecutionProvider" in session.get_providers()


def onnxruntime_row(has_gpu: bool) -> Row:
    name = "onnxruntime CUDA provider"
    gpu, cpu = _installed("onnxruntime-gpu"), _installed("onnxruntime")
    if gpu is None:
        cpu_note = f" (onnxruntime {cpu} is the CPU build)" if cpu else ""
        return (name, "missing", f"onnxruntime-gpu is not installed{cpu_note}: {ORT_GPU_FIX}")
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError as exc:
        return (name, "missing", f"onnxruntime-gpu {gpu} does not import ({exc}): {ORT_CLOBBER_FIX}")
    if "CUDAExecutionProvider" not in providers:
        fix = ORT_CLOBBER_FIX if cpu else ORT_GPU_FIX
        return (name, "missing", f"onnxruntime-gpu {gpu} is installed but the module has no CUDA provider: {fix}")
    if not has_gpu:
        return (name, "skip", f"onnxruntime-gpu {gpu} has the CUDA provider; no GPU to start it")
    try:
        started = _cuda_provider_starts()
    except Exception as exc:  # onnxruntime's own errors are not ImportError
        return (name, "missing", f"the CUDA provider failed ({str(exc).splitlines()[0][:160]}): {ORT_GPU_FIX}")
    if not started:
        return (name, "missing", "the CUDA provider did not start (its CUDA 12 / cuDNN 9 libraries did not load; "
                                 f"onnxruntime fell back to the CPU): {ORT_GPU_FIX}")
    return (name, "ok", f"onnxruntime-gpu {gpu}: a session runs on CUDAExecutionProvider")


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # already imported without a spec
        return module in sys.modules


def tensorrt_row(pinned: str) -> Row:
    fix = f"pip install 'gsam[gpu]' --extra-index-url {NVIDIA_INDEX} (TensorRT's libraries come from NVIDIA's index)"
    if not _findable("tensorrt"):
        return ("TensorRT", "missing", f"TensorRT is not installed: {fix}")
    try:
        import tensorrt

        version: str = tensorrt.__version__
    except (ImportError, OSError) as exc:
        return ("TensorRT", "missing", f"tensorrt is installed but does not import ({str(exc).splitlines()[0][:160]}); "
                                       f"its libraries are missing: {fix}")
    same = version.split(".")[:3] == pinned.split(".")[:3]
    note = "the version gsam[gpu] pins" if same else (f"gsam[gpu] pins {pinned}; an engine only loads in the TensorRT "
                                                      "that built it, so serve with the Triton release that ships it")
    return ("TensorRT", "ok", f"TensorRT {version} ({note})")


def gpu_stack_report() -> list[Row]:
    """(name, "ok" | "missing" | "skip", detail with the fix) for the driver, torch's CUDA, onnxruntime's CUDA
    provider and TensorRT, read from this machine."""
    import torch

    from gsam.deploy.container.releases import GPU_EXTRA_TENSORRT

    driver, on_pci = driver_version(), nvidia_gpus_on_pci()
    rows = [driver_row(driver, on_pci, _torch_cuda_major()), torch_row(driver is not None),
            onnxruntime_row(torch.cuda.is_available()), tensorrt_row(GPU_EXTRA_TENSORRT)]
    if driver is None and on_pci == 0:  # a CPU host: nothing of the GPU stack is missing here
        rows = [(n, "skip", f"no NVIDIA GPU here; on a GPU host: {d}") if s == "missing" else (n, s, d)
                for n, s, d in rows]
    return rows


def format_report(rows: list[Row]) -> list[str]:
    """Markdown table lines."""
    return ["| layer | status | detail |", "|---|---|---|",
            *[f"| {name} | {status} | {detail.replace('|', '/')} |" for name, status, detail in rows]]
