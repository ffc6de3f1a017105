"""Each engine's own matmul rate at each precision, measured in the run that uses it.

A benchmark row's "fraction of peak" means something only against the engine that ran it:
torch's fp32 matmul (MKL) and onnxruntime's (MLAS) can differ by 2x on the same CPU, and
bf16 or int8 kernels run several times faster than either. So we time a square matmul in
torch (fp32, bf16) and in onnxruntime (fp32 MatMul, int8 MatMulInteger) with the thread
count of the run, and compare each row with the rate of its own engine and precision.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

# Rows are keyed "engine/precision"; Triton rows run onnxruntime inside the server.
ENGINE_OF_BACKEND = {"torch": "torch", "onnxruntime": "onnxruntime", "triton-http": "onnxruntime",
                     "triton-grpc": "onnxruntime", "sam-vit-b@1024": "onnxruntime"}


def peak_key(backend: str, precision: str) -> str | None:
    """The peak a row is compared with, e.g. ("triton-grpc", "int8") -> "onnxruntime/int8"; None if unmeasured."""
    engine = ENGINE_OF_BACKEND.get(backend)
    return f"{engine}/{precision}" if engine else None


def _best_rate(call: Callable[[], object], n: int, repeats: int) -> float:
    call()  # first call: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def torch_matmul_gflops(dtype: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """torch.mm on the CPU with the current torch thread count (best of `repeats`)."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(kind), torch.randn(n, n).to(kind)
    return _best_rate(lambda: torch.mm(a, b), n, repeats)


def _matmul_graph(n: int, int8: bool):
    """A one-node ONNX model: A (input) times a constant B; int8 uses MatMulInteger (uint8 x int8 -> int32)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        weight = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        weight = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "matmul", [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def onnxruntime_matmul_gflops(dtype: str = "fp32", n: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """onnxruntime's CPU MatMul (fp32) or MatMulInteger (int8, multiply-adds counted as for fp32)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    model = _matmul_graph(n, dtype == "int8")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (n, n), dtype=np.uint8) if dtype == "int8" else rng.standard_normal((n, n), dtype=np.float32)
    return _best_rate(lambda: session.run(None, {"A": a}), n, repeats)


def measure_peaks(threads: int | None = None, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s per "engine/precision": torch fp32 and bf16, onnxruntime fp32 and int8."""
    return {"torch/fp32": torch_matmul_gflops("fp32", n, repeats),
            "torch/bf16": torch_matmul_gflops("bf16", n, repeats),
            "onnxruntime/fp32": onnxruntime_matmul_gflops("fp32", n, repeats, threads),
            "onnxruntime/int8": onnxruntime_matmul_gflops("int8", n, repeats, threads)}
