"""`--int8-scheme auto`: the int8 scheme that is fastest where the file will run, measured on this machine.

An engine takes only the tensorrt scheme (signed activations, zero point 0). For onnxruntime on a CPU
either scheme runs, and which is faster depends on the CPU: with VNNI or AMX the cpu scheme (unsigned
activations with a zero point) ran in 0.42x of fp32's time and the tensorrt scheme in 0.89x
(BENCHMARKS.md); on a CPU without them nobody should guess. So auto times both on a small graph with
the model's kernels (two 3x3 convolutions and two token matmuls), quantized exactly as the export
quantizes, and keeps the faster; the result is cached per CPU (gsam.machine.cached_probe).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

CPU_SCHEME_MARGIN = 0.95


def _probe_graph(path: Path) -> dict[str, np.ndarray]:
    """Writes the fp32 probe model to `path`; returns its inputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    channels, side, tokens, dim = 64, 56, 784, 256
    weights = [numpy_helper.from_array((rng.standard_normal((channels, channels, 3, 3)) * 0.05).astype(np.float32),
                                       f"W{i}") for i in range(2)]
    weights += [numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.05).astype(np.float32), f"M{i}")
                for i in range(2)]
    nodes = [helper.make_node("Conv", ["X", "W0"], ["c0"], pads=[1] * 4), helper.make_node("Relu", ["c0"], ["r0"]),
             helper.make_node("Conv", ["r0", "W1"], ["Y"], pads=[1] * 4),
             helper.make_node("MatMul", ["T", "M0"], ["m0"]), helper.make_node("Relu", ["m0"], ["r1"]),
             helper.make_node("MatMul", ["r1", "M1"], ["Z"])]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels, side, side]),
              helper.make_tensor_value_info("T", TensorProto.FLOAT, [1, tokens, dim])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in ("Y", "Z")]
    graph = helper.make_graph(nodes, "int8-probe", inputs, outputs, initializer=weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return {"X": rng.standard_normal((1, channels, side, side)).astype(np.float32),
            "T": rng.standard_normal((1, tokens, dim)).astype(np.float32)}


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def measure_int8_schemes(repeats: int = 10) -> dict:
    """onnxruntime CPU time of each int8 scheme relative to fp32 on the probe graph (< 1: faster than fp32)."""
    import logging

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from gsam.machine import best_seconds_interleaved

    from .int8 import INT8_OP_TYPES, INT8_SCHEMES

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its pre-processing advice
    with tempfile.TemporaryDirectory(prefix="gsam-int8-probe-") as folder:
        paths = {"fp32": Path(folder) / "fp32.onnx"}
        feeds = _probe_graph(paths["fp32"])
        for scheme, (activation_type, symmetric) in INT8_SCHEMES.items():
            paths[scheme] = Path(folder) / f"{scheme}.onnx"
            quantize_static(str(paths["fp32"]), str(paths[scheme]), _Calibration([feeds, feeds]),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(INT8_OP_TYPES), per_channel=True,
                            activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": False})
        sessions = {name: _session(path) for name, path in paths.items()}
        runs = {name: (lambda s=session: s.run(None, feeds)) for name, session in sessions.items()}
        best = best_seconds_interleaved(runs, repeats)
    return {"fp32_ms": round(best["fp32"] * 1e3, 3),
            **{scheme: round(best[scheme] / best["fp32"], 3) for scheme in INT8_SCHEMES}}


def int8_scheme_timings() -> dict:
    """The cached probe of this machine (see measure_int8_schemes)."""
    from gsam.machine import cached_probe

    return cached_probe("onnxruntime-int8-schemes", measure_int8_schemes)


def choose_int8_scheme(requested: str, target: str = "onnxruntime") -> tuple[str, str]:
    """(scheme, reason): `requested` kept unless "auto"; auto takes tensorrt for an engine ("tensorrt" target),
    else the scheme measured faster in onnxruntime on this CPU."""
    from gsam.machine import cpu_facts

    if requested != "auto":
        return requested, "as asked"
    if target == "tensorrt":
        return "tensorrt", "the file is for a TensorRT engine, which takes signed activations only"
    timings, cpu = int8_scheme_timings(), cpu_facts()
    # tensorrt's file also builds engines, so cpu must win clearly, not by the probe's noise
    scheme = "cpu" if timings["cpu"] < CPU_SCHEME_MARGIN * timings["tensorrt"] else "tensorrt"
    dot = "with" if cpu.int8_dot_product else "without"
    return scheme, (f"onnxruntime on this {cpu.kind} CPU, {dot} VNNI/AMX: the cpu scheme measured "
                    f"{timings['cpu']:.2f}x and the tensorrt scheme {timings['tensorrt']:.2f}x of fp32's time")
