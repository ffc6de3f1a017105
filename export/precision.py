"""fp16 and int8 variants of a verified fp32 gsam ONNX file, kept only when they prove themselves.

A variant is made with onnxruntime's own tools (its float16 converter; static QDQ
quantization) and then gated like the fp32 export: onnxruntime runs it on real images at
their native sizes and on the same images resized to sizes the trace never saw, a reference (the
PyTorch model, or the fp32 file in onnxruntime) runs the same images, and the file is only
moved into place when the masks agree and the mIoU against the labels did not drop. The
parts of the graph that stay fp32 (see FP16_KEEP_FP32_OPS and `input_normalization_nodes`)
were chosen by measurement; docs/facts.md says why each is there.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from ..errors import GSAMError
from ..io import sha256_file
from .metadata import read_onnx_facts, rewrite_onnx_facts
from .onnx import DEFAULT_VERIFY_SIZES, ExportError

VARIANT_PRECISIONS = ("fp16", "int8")
DEFAULT_MIN_AGREEMENT = {"fp16": 0.995, "int8": 0.99}
# Ops whose float inputs and outputs stay fp32 in an fp16 variant: LayerNormalization sums
# squares over the channels and Softmax exponentiates and sums over every key, which overflows
# fp16 or loses the differences it can hold (vit_b without them gives NaN logits). Also
# blocking the convolutional LayerNorm's chain (ReduceMean, Pow, Sqrt) measured worse.
FP16_KEEP_FP32_OPS = ("LayerNormalization", "Softmax")
# Only these are quantized in an int8 variant: they hold nearly all the compute.
INT8_OP_TYPES = ("MatMul", "Conv")
_WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class GateThresholds:
    """What a variant must reach on the gate images; min_agreement None = the precision's default."""

    min_agreement: float | None = None
    max_miou_drop: float = 0.5  # mIoU points (0..100 scale)

    def agreement_for(self, precision: str) -> float:
        return DEFAULT_MIN_AGREEMENT[precision] if self.min_agreement is None else self.min_agreement


@dataclass
class GateRow:
    kind: str  # "labelled" (the dataset's images) or "unseen size" (those images resized to untraced sizes)
    height: int
    width: int
    agreement: float
    max_abs: float


@dataclass
class GateReport:
    path: Path
    precision: str
    rows: list[GateRow] = field(default_factory=list)
    mask_agreement: float = 0.0  # pixel-weighted, over the real (labelled) images
    unseen_agreement: float | None = None  # pixel-weighted, over the images resized to unseen sizes
    max_logit_error: float = 0.0  # largest |variant - reference| logit
    reference_miou: float | None = None  # 0..1, against the labels
    variant_miou: float | None = None
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    size_bytes: int = 0
    sha256: str = ""
    seconds: float = 0.0
    passed: bool = False

    @property
    def miou_drop(self) -> float | None:
        """Reference minus variant mIoU in points (positive = the variant is worse)."""
        if self.reference_miou is None or self.variant_miou is None:
            return None
        return 100 * (self.reference_miou - self.variant_miou)

    def failure(self) -> str | None:
        """The first figure that misses its threshold, or None."""
        need = self.thresholds.agreement_for(self.precision)
        if not self.mask_agreement >= need:
            return f"mask agreement {self.mask_agreement:.4%} < {need:.2%}"
        if self.unseen_agreement is not None and not self.unseen_agreement >= need:
            return f"mask agreement at unseen sizes {self.unseen_agreement:.4%} < {need:.2%}"
        drop = self.miou_drop
        if drop is not None and not drop <= self.thresholds.max_miou_drop:
            return f"mIoU drop {drop:.2f} points > {self.thresholds.max_miou_drop:g}"
        return None

    def metadata(self) -> dict[str, str]:
        """The gate figures as stored in the variant's metadata."""
        values = {"gate_mask_agreement": f"{self.mask_agreement:.6f}", "gate_max_logit_error": f"{self.max_logit_error:.4g}",
                  "gate_images": str(len(self.rows))}
        if self.unseen_agreement is not None:
            values["gate_unseen_agreement"] = f"{self.unseen_agreement:.6f}"
        if self.miou_drop is not None:
            values |= {"gate_reference_miou": f"{self.reference_miou:.6f}", "gate_variant_miou": f"{self.variant_miou:.6f}",
                       "gate_miou_drop": f"{self.miou_drop:.4f}"}
        return values

    def table(self) -> str:
        groups: dict[str, list[GateRow]] = {}
        for row in self.rows:
            groups.setdefault(row.kind, []).append(row)
        lines = [f"{self.precision} gate against the reference:",
                 f"{'images':>24} {'count':>6} {'mask agree':>11} {'worst image':>12} {'max abs err':>12}"]
        for kind, rows in groups.items():
            pixels = sum(r.height * r.width for r in rows)
            pooled = sum(r.agreement * r.height * r.width for r in rows) / pixels
            lines.append(f"{kind:>24} {len(rows):6d} {pooled:10.4%} {min(r.agreement for r in rows):11.4%} "
                         f"{max(r.max_abs for r in rows):12.3e}")
        need = self.thresholds.agreement_for(self.precision)
        unseen = "" if self.unseen_agreement is None else f", at unseen sizes {self.unseen_agreement:.4%}"
        lines.append(f"mask agreement {self.mask_agreement:.4%}{unseen} (each needs >= {need:.2%}); "
                     f"largest logit error {self.max_logit_error:.3e}")
        if self.miou_drop is not None:
            lines.append(f"mIoU reference {100 * self.reference_miou:.2f}, {self.precision} {100 * self.variant_miou:.2f}, "
                         f"drop {self.miou_drop:+.2f} points (needs <= {self.thresholds.max_miou_drop:g})")
        else:
            lines.append("mIoU: no labels given")
        lines.append("PASSED" if self.passed else f"FAILED: {self.failure()}")
        return "\n".join(lines)


def _as_batch(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def _check_images(images: list[np.ndarray], what: str, min_size: int) -> None:
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise GSAMError(f"{what} image {i}: expected uint8 RGB [H, W, 3], got {image.dtype} {list(image.shape)}")
        if min(image.shape[:2]) < min_size:
            raise GSAMError(f"{what} image {i}: {image.shape[0]}x{image.shape[1]} is below the model's minimum side "
                            f"of {min_size}")


def input_normalization_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Float nodes between the `image` input and the first weighted layers (the pixel normalization,
    padding and resizing the convolutions read), found by following the image's data edges."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, frontier, seen = [], ["image"], set()
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type in _WEIGHTED_OPS or node.op_type == "Shape" or id(node) in seen:
                continue
            seen.add(id(node))
            found.append(node)
            frontier.extend(node.output)
    return found


def first_convolutions(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The weighted layers that read the (normalized) image itself."""
    normalized = {"image"} | {out for node in input_normalization_nodes(graph) for out in node.output}
    return [n for n in graph.node if n.op_type in _WEIGHTED_OPS and n.input and n.input[0] in normalized]


def convert_fp16(model: onnx.ModelProto, keep_ops=FP16_KEEP_FP32_OPS) -> onnx.ModelProto:
    """fp16 weights and activations, fp32 I/O, fp32 islands for `keep_ops` and the input normalization."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    blocked_nodes = [n.name for n in input_normalization_nodes(model.graph)]
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(keep_ops),
                                     node_block_list=blocked_nodes)
    _tidy_converted_graph(model.graph)
    return model


def _tidy_converted_graph(graph: onnx.GraphProto) -> None:
    """Repair what the fp16 converter leaves: it appends its Casts at the end (the ONNX checker wants
    topological order), adds one identical fp16->fp32 Cast per fp32 consumer of a tensor under one
    name (onnxruntime refuses repeated names), declares fp16 value_info for fp32 initializers, and
    passes a tensor between two fp32 nodes through fp16 (fp32->fp16->fp32 Casts): such a round trip
    only rounds, so the fp32 consumer reads the fp32 tensor instead."""
    initializers = {t.name for t in graph.initializer}
    known = {i.name for i in graph.input} | initializers | {""}
    produced_by = {out: node for node in graph.node for out in node.output}
    shortcut = {}  # fp32 tensor that went through fp16 and back -> the original fp32 tensor
    for node in graph.node:
        source = produced_by.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if (source is not None and source.op_type == "Cast" and _cast_to(node) == onnx.TensorProto.FLOAT
                and _cast_to(source) == onnx.TensorProto.FLOAT16 and source.input[0] not in initializers):
            shortcut[node.output[0]] = source.input[0]
    outputs = {o.name for o in graph.output}
    seen: set[tuple] = set()
    pending, ordered = [], []
    for node in graph.node:
        if node.op_type == "Cast" and node.output[0] in shortcut and node.output[0] not in outputs:
            continue
        for i, name in enumerate(node.input):
            if name in shortcut:
                node.input[i] = shortcut[name]
        key = (node.name, node.op_type, tuple(node.input), tuple(node.output))
        if node.op_type == "Cast" and key in seen:
            continue
        seen.add(key)
        pending.append(node)
    while pending:
        waiting = []
        for node in pending:
            if all(name in known for name in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ExportError(f"the fp16 graph has a cycle or a missing input at node {waiting[0].name}")
        pending = waiting
    while True:  # Casts the shortcuts left without a reader
        read = {name for node in ordered for name in node.input} | outputs
        unread = [n for n in ordered if n.op_type == "Cast" and n.output[0] not in read]
        if not unread:
            break
        ordered = [n for n in ordered if n not in unread]
    del graph.node[:]
    graph.node.extend(ordered)
    infos, names = [], set()
    for info in graph.value_info:
        if info.name not in names and info.name not in initializers:
            names.add(info.name)
            infos.append(info)
    del graph.value_info[:]
    graph.value_info.extend(infos)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


class _ImageReader:
    """Feeds calibration images one at a time, each at its own size (the graph's H and W are dynamic)."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self._images = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._images, None)
        return None if image is None else {"image": _as_batch(image)}


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
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if scheme not in INT8_SCHEMES:
        raise ExportError(f"int8 scheme must be one of {', '.join(INT8_SCHEMES)}; got {scheme!r}")
    activation_type, symmetric = INT8_SCHEMES[scheme]
    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    excluded = [n.name for n in first_convolutions(graph)] if exclude_first_conv else []
    quantize_static(str(fp32_onnx), str(out), _ImageReader(calib_images), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(INT8_OP_TYPES), per_channel=True,
                    activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": False})


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def run_gate(variant, reference, images: list[np.ndarray], labels: list[np.ndarray] | None,
             verify_sizes: list[tuple[int, int]], num_classes: int) -> GateReport:
    """Run the variant and the reference (both Segmenters) on the same images; figures, no decision.

    The unseen-size cases are the gate's own images resized to sizes the trace never saw: what a
    reduced precision must match is the model on its kind of images; random noise drives
    activations outside the calibrated ranges and says little about either."""
    from ..train.metrics import ConfusionMatrix
    import torch

    report = GateReport(Path(), variant.facts.precision)
    k = max(num_classes, 2)
    matrices = {"reference": ConfusionMatrix(k), "variant": ConfusionMatrix(k)}
    cases = [("labelled", image, labels[i] if labels else None) for i, image in enumerate(images)]
    cases += [("unseen size", _resized(images[i % len(images)], h, w), None) for i, (h, w) in enumerate(verify_sizes)]
    agree = {"labelled": 0, "unseen size": 0}
    pixels = dict(agree)
    for kind, image, label in cases:
        batch = _as_batch(image)
        expected, got = reference(batch), variant(batch)
        error = float(np.abs(got["logits"].astype(np.float32) - expected["logits"]).max())
        same = int((got["mask"] == expected["mask"]).sum())
        agree[kind] += same
        pixels[kind] += expected["mask"].size
        report.rows.append(GateRow(kind, image.shape[0], image.shape[1], same / expected["mask"].size, error))
        report.max_logit_error = max(report.max_logit_error, error)
        if label is not None:
            target = torch.from_numpy(np.asarray(label, dtype=np.int64))
            matrices["reference"].update(torch.from_numpy(expected["mask"][0]), target, ignore_index=-1)
            matrices["variant"].update(torch.from_numpy(got["mask"][0]), target, ignore_index=-1)
    report.mask_agreement = agree["labelled"] / max(pixels["labelled"], 1)
    if pixels["unseen size"]:
        report.unseen_agreement = agree["unseen size"] / pixels["unseen size"]
    if labels:
        report.reference_miou = matrices["reference"].compute()["miou"]
        report.variant_miou = matrices["variant"].compute()["miou"]
    return report


def make_variant(fp32_onnx: Path, out: Path, precision: str, *, reference, images: list[np.ndarray],
                 labels: list[np.ndarray] | None = None, calib_images: list[np.ndarray] | None = None,
                 thresholds: GateThresholds | None = None, log: Callable[[str], None] = print,
                 verify_sizes: list[tuple[int, int]] | None = None, int8_scheme: str = "tensorrt") -> GateReport:
    """Make the `precision` variant of `fp32_onnx`, gate it against `reference` and only then write `out`.

    `images` (uint8 RGB [H, W, 3], native sizes) and their `labels` are the gate's real images;
    those images resized to `verify_sizes` (default: the fp32 export's unseen sizes) are added for
    agreement only. int8 needs `calib_images`; `int8_scheme` (INT8_SCHEMES) is recorded in the
    file's metadata so TensorRT builds can refuse a cpu file. Raises ExportError, leaving nothing at `out`,
    when the conversion fails or a figure misses its threshold.
    """
    from ..runtime.backends import load_backend

    fp32_onnx, out = Path(fp32_onnx), Path(out)
    thresholds = thresholds or GateThresholds()
    if precision not in VARIANT_PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(VARIANT_PRECISIONS)} for a variant; got {precision!r}")
    facts = read_onnx_facts(fp32_onnx)
    if facts.precision != "fp32":
        raise ExportError(f"{fp32_onnx}: metadata field 'precision' is {facts.precision}; a variant needs an fp32 file")
    if not images:
        raise ExportError(f"{out}: the {precision} gate needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ExportError(f"{out}: {len(labels)} labels for {len(images)} gate images")
    _check_images(images, "gate", facts.min_size)
    if precision == "int8":
        if int8_scheme not in INT8_SCHEMES:
            raise ExportError(f"{out}: int8 scheme must be one of {', '.join(INT8_SCHEMES)}; got {int8_scheme!r}")
        if not calib_images:
            raise ExportError(f"{out}: int8 needs calibration images")
        _check_images(calib_images, "calibration", facts.min_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".gsam-variant-", dir=out.parent))
    try:
        staged = workdir / out.name
        started = time.perf_counter()
        log(f"making the {precision} variant of {fp32_onnx.name}...")
        try:
            if precision == "fp16":
                onnx.save(convert_fp16(onnx.load(str(fp32_onnx))), str(staged))
            else:
                quantize_int8(fp32_onnx, staged, calib_images, int8_scheme)
        except Exception as exc:
            raise ExportError(f"{out}: {precision} conversion failed ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})") from None
        fp32_sha = sha256_file(fp32_onnx)
        variant_facts = dataclasses.replace(facts, precision=precision).with_lineage(
            onnx_file=fp32_onnx.name, onnx_sha256=fp32_sha).with_extra(fp32_onnx_sha256=fp32_sha)
        if precision == "int8":
            variant_facts = variant_facts.with_extra(int8_scheme=int8_scheme)
        rewrite_onnx_facts(staged, variant_facts)
        seconds = time.perf_counter() - started
        log(f"gating it on {len(images)} image(s) at native size and {len(verify_sizes or DEFAULT_VERIFY_SIZES)} "
            "resized to unseen sizes...")
        try:
            variant = load_backend("onnxruntime", staged)
        except GSAMError as exc:
            raise ExportError(f"{out}: onnxruntime cannot run the {precision} variant ({exc})") from None
        sizes = [s for s in (verify_sizes or DEFAULT_VERIFY_SIZES) if min(s) >= facts.min_size]
        report = run_gate(variant, reference, images, labels, sizes, facts.num_classes)
        variant.close()
        report.path, report.thresholds, report.seconds = out, thresholds, seconds
        reason = report.failure()
        report.passed = reason is None
        if reason:
            log(report.table())
            raise ExportError(f"{out}: the {precision} gate failed ({reason}); no file written")
        rewrite_onnx_facts(staged, variant_facts.with_extra(**report.metadata()))
        report.size_bytes = sum(f.stat().st_size for f in workdir.iterdir())
        report.sha256 = sha256_file(staged)
        for staged_file in workdir.iterdir():
            if staged_file.name.startswith(out.name):  # the model and any external-data file
                os.replace(staged_file, out.parent / staged_file.name)
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def export_checkpoint_variant(source: str | Path, out: str | Path, precision: str, *, calib_data: str | Path | None = None,
                              calib_count: int = 32, thresholds: GateThresholds | None = None,
                              log: Callable[[str], None] = print, int8_scheme: str = "tensorrt",
                              **export_options):
    """`gsam export onnx RUN --precision P`: the fp32 export (verified as always) to a temporary file,
    then its variant gated against the PyTorch model on the run's val images (calibrated on train).

    Returns (fp32 ExportReport, GateReport). `calib_data` replaces the run's dataset folder.
    """
    from ..runtime.backends import load_backend
    from .gate_data import load_gate_images, run_data_folder
    from .onnx import export_checkpoint

    out = Path(out)
    if precision not in VARIANT_PRECISIONS:
        raise ExportError(f"--precision must be fp32, {' or '.join(VARIANT_PRECISIONS)}; got {precision!r}")
    data = Path(calib_data) if calib_data else run_data_folder(source)
    gate = load_gate_images(data, calib_count)
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".gsam-fp32-", dir=out.parent))
    try:
        fp32 = workdir / (out.stem + ".fp32.onnx")
        export_report = export_checkpoint(source, fp32, log=log, **export_options)
        reference = load_backend("torch", source)
        report = make_variant(fp32, out, precision, reference=reference, images=gate.images, labels=gate.labels,
                              calib_images=gate.calib_images if precision == "int8" else None,
                              thresholds=thresholds, log=log, int8_scheme=int8_scheme)
        return export_report, report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
