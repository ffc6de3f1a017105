"""The int8 variant of a gsam ONNX graph: onnxruntime's static QDQ quantization of MatMul and Conv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from gsam.model.segmenter import to_model_input

from .onnx import ExportError
from .onnx_graph import first_convolutions

# Only these are quantized in an int8 variant: they hold nearly all the compute.
INT8_OP_TYPES = ("MatMul", "Conv")


class _ImageReader:
    """Feeds calibration images one at a time, each at its own size (the graph's H and W are dynamic),
    as the graph's `image` input takes them (float32, or uint8 for a uint8-input export)."""

    def __init__(self, images: list[np.ndarray], uint8: bool) -> None:
        self._images, self._uint8 = iter(images), uint8

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        if image is None:
            return None
        batch = to_model_input(image)
        return {"image": batch.astype(np.uint8) if self._uint8 else batch}


# How int8 activations are stored: (onnxruntime QuantType name, symmetric around 0).
#   tensorrt: signed int8 with a zero point of 0, the only form TensorRT's explicit quantization takes
#             (it runs in onnxruntime as well);
#   cpu:      unsigned int8 with a fitted zero point (U8S8), which TensorRT refuses; in onnxruntime
#             on an x86 CPU it ran in 0.37-0.56x of fp32's time where tensorrt's ran in 0.80-1.19x
#             (BENCHMARKS.md).
INT8_SCHEMES = {"tensorrt": ("QInt8", True), "cpu": ("QUInt8", False)}


def quantize_int8(fp32_onnx: Path, out: Path, calib_images: list[np.ndarray], scheme: str = "tensorrt",
                  exclude_first_conv: bool = True) -> None:
    """Static QDQ int8 of MatMul and Conv (per-channel int8 weights, float biases), calibrated with
    MinMax on `calib_images`; activations as INT8_SCHEMES[scheme] says.

    MinMax reduces each tensor to its range per image, so images of any size can be fed one at a
    time. `quant_pre_process` is not run: its symbolic shape inference cannot follow the dynamic
    height/width arithmetic, and without it the result was identical. Biases stay float because
    TensorRT takes no int32 biases.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if scheme not in INT8_SCHEMES:
        raise ExportError(f"int8 scheme must be one of {', '.join(INT8_SCHEMES)}; got {scheme!r}")
    activation_type, symmetric = INT8_SCHEMES[scheme]
    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    excluded = [n.name for n in first_convolutions(graph)] if exclude_first_conv else []
    uint8 = graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    quantize_static(str(fp32_onnx), str(out), _ImageReader(calib_images, uint8), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(INT8_OP_TYPES), per_channel=True,
                    activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": False})
