"""Each engine's own kernel rate at each precision, measured in the run that uses it, for the engines it uses.

A benchmark row's "fraction of peak" means something only against the engine that ran it:
torch's fp32 matmul (MKL) and onnxruntime's (MLAS) can differ by 2x on the same CPU, torch's
convolutions (oneDNN) can beat its matmul on an AMD CPU, and bf16 or int8 kernels run several
times faster than fp32 where the CPU has them and several times slower where it does not. So the
peak of "engine/precision" is the faster of a square matmul and a 3x3 convolution in that engine,
with the run's thread count, measured only for the rows the run has (a bf16 peak costs minutes on
a CPU that emulates bf16, and an fp32 run never needs it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Rows are keyed "engine/precision"; Triton rows run onnxruntime inside the server.
ENGINE_OF_BACKEND = {"torch": "torch", "onnxruntime": "onnxruntime", "triton-http": "onnxruntime",
                     "triton-grpc": "onnxruntime", "triton-image": "onnxruntime", "sam-vit-b@1024": "onnxruntime"}
MATMUL_N = 1024
CONV = (64, 56)  # channels, side: a 3x3 convolution of a mid-network ResNet stage


def peak_key(backend: str, precision: str) -> str | None:
    """The peak a row is compared with, e.g. ("triton-grpc", "int8") -> "onnxruntime/int8"; None if unmeasured."""
    engine = ENGINE_OF_BACKEND.get(backend)
    return f"{engine}/{precision}" if engine else None


@dataclass(frozen=True)
class Peak:
    gflops: float
    kernel: str  # which probe was faster, e.g. "matmul 1024" or "conv3x3 64ch 56x56"


def _best_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # first call: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _conv_flops(batch: int = 1) -> float:
    channels, side = CONV
    return 2 * batch * channels * channels * 9 * side * side


def torch_peak(dtype: str = "fp32", repeats: int = 3) -> Peak:
    """torch.mm (MKL) and a 3x3 conv2d (oneDNN) on the CPU with torch's current thread count."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    n, (channels, side) = MATMUL_N, CONV
    a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
    image, weight = torch.randn(1, channels, side, side).to(kind), torch.randn(channels, channels, 3, 3).to(kind)
    with torch.inference_mode():
        rates = {f"matmul {n}": 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), repeats),
                 f"conv3x3 {channels}ch {side}x{side}":
                     _conv_flops() / _best_seconds(lambda: torch.conv2d(image, weight, padding=1), repeats)}
    kernel = max(rates, key=rates.__getitem__)
    return Peak(rates[kernel] / 1e9, kernel)


def _onnx_graphs(dtype: str) -> dict[str, tuple[object, dict[str, np.ndarray], float]]:
    """One-node models per kernel: (model, feeds, FLOPs). int8 is MatMulInteger only (ConvInteger is not what
    a QDQ model runs)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    n, (channels, side) = MATMUL_N, CONV

    def model(node, inputs, initializer, output_type):
        graph = helper.make_graph([node], "peak", inputs, [helper.make_tensor_value_info("Y", output_type, None)],
                                  initializer=initializer)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)

    if dtype == "int8":
        weight = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a = rng.integers(0, 256, (n, n), dtype=np.uint8)
        return {f"matmul {n}": (model(node, [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])], [weight],
                                      TensorProto.INT32), {"A": a}, 2 * n**3)}
    matmul = model(helper.make_node("MatMul", ["A", "B"], ["Y"]),
                   [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
                   [numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")], TensorProto.FLOAT)
    conv = model(helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1]),
                 [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels, side, side])],
                 [numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3), dtype=np.float32), "W")],
                 TensorProto.FLOAT)
    return {f"matmul {n}": (matmul, {"A": rng.standard_normal((n, n), dtype=np.float32)}, 2 * n**3),
            f"conv3x3 {channels}ch {side}x{side}":
                (conv, {"X": rng.standard_normal((1, channels, side, side), dtype=np.float32)}, _conv_flops())}


def onnxruntime_peak(dtype: str = "fp32", repeats: int = 3, threads: int | None = None) -> Peak:
    """onnxruntime's CPU MatMul and Conv (fp32) or MatMulInteger (int8, multiply-adds counted as for fp32)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    rates = {}
    for kernel, (model, feeds, flops) in _onnx_graphs(dtype).items():
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rates[kernel] = flops / _best_seconds(lambda: session.run(None, feeds), repeats)
    kernel = max(rates, key=rates.__getitem__)
    return Peak(rates[kernel] / 1e9, kernel)


MEASURES = {"torch": lambda precision, threads: torch_peak(precision),
            "onnxruntime": lambda precision, threads: onnxruntime_peak(precision, threads=threads)}


class Peaks:
    """The peaks a run needs, each measured the first time a row asks for it (and said so in the log)."""

    def __init__(self, threads: int | None = None, log: Callable[[str], None] = print) -> None:
        self.threads, self.log, self.measured = threads, log, {}

    def get(self, key: str | None) -> float | None:
        """GFLOP/s of `key` ("engine/precision"), measured now if this run has not yet; None if not measurable."""
        peak = self.peak(key)
        return peak.gflops if peak is not None else None

    def peak(self, key: str | None) -> Peak | None:
        if key is None:
            return None
        if key not in self.measured:
            engine, precision = key.split("/")
            measure = MEASURES.get(engine)
            if measure is None or (engine, precision) not in {("torch", "fp32"), ("torch", "bf16"),
                                                               ("onnxruntime", "fp32"), ("onnxruntime", "int8")}:
                self.measured[key] = None
            else:
                from gsam.machine import cpu_facts

                self.log(f"measuring the {key} kernel rate on this {cpu_facts().kind} CPU (matmul and 3x3 conv) ...")
                self.measured[key] = measure(precision, self.threads)
                self.log(f"  {key}: {self.measured[key].gflops:.0f} GFLOP/s ({self.measured[key].kernel})")
        return self.measured[key]

    def as_dict(self) -> dict[str, float]:
        return {key: peak.gflops for key, peak in self.measured.items() if peak is not None}

    def kernels(self) -> dict[str, str]:
        return {key: peak.kernel for key, peak in self.measured.items() if peak is not None}
