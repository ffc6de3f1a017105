"""Export GSAM to one ONNX file with dynamic batch, height and width, and prove it.

Exporter choice: the dynamo exporter (torch.export, opset 18) is the default. On GSAM it
writes about a quarter of the nodes of the TorchScript exporter (868 against 3215 for the
tiny model), with shape arithmetic folded, which is what TensorRT's parser and Triton's
model analyzer read best, and it is the exporter PyTorch maintains. It is slower (about
45 s against 1.5 s for the tiny model on 2 cores); `exporter="torchscript"` (opset 17)
remains for quick iterations. Either way the file is only kept after onnxruntime has
matched PyTorch at sizes the trace never saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from gsam import __version__
from gsam.errors import GSAMError
from gsam.io import sha256_file, staged_file
from gsam.model.facts import INPUT_DTYPES, ModelFacts
from gsam.model.run import load_trained

from .metadata import write_facts

# Non-square, odd, not multiples of window x stride (14 x 8 = 112), one larger than the trace sample.
DEFAULT_VERIFY_SIZES = [(33, 47), (300, 97), (224, 224), (257, 129), (200, 296)]
TRACE_SIZE = (96, 160)  # non-square: a square sample lets torch.export assume height == width
TRACE_BATCH = 2  # batch 1 would be specialized to a constant
EXPORTERS = ("dynamo", "torchscript")


class ExportError(GSAMError):
    """The export failed or did not verify; nothing was written at the output path."""


class SegmentationHead(nn.Module):
    """Wraps GSAM for deployment: one input `image`, outputs `logits` and the class-id `mask`.

    A uint8 `image` is cast to float first, inside the graph: a request then carries 1 byte per channel
    instead of 4, and TensorRT's parser takes UINT8 as a network input followed by a Cast."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image.float())
        return logits, self.model.predict_mask(logits)


def sample_images(shape: tuple[int, ...], input_dtype: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random RGB 0..255 images as the input takes them: float32 with fractions, or uint8."""
    if input_dtype == "uint8":
        return torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    return torch.rand(shape, generator=generator) * 255


@dataclass
class VerifyRow:
    batch: int
    height: int
    width: int
    max_abs: float
    max_rel: float
    mask_agreement: float
    error: str | None = None


@dataclass
class ExportReport:
    path: Path
    exporter: str
    opset: int
    seconds: float
    nodes: int
    size_bytes: int
    sha256: str
    rows: list[VerifyRow] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'input':>16} {'max abs err':>12} {'max rel err':>12} {'mask agree':>11}"]
        for r in self.rows:
            name = f"{r.batch}x3x{r.height}x{r.width}"
            if r.error:
                lines.append(f"{name:>16} FAILED: {r.error}")
            else:
                lines.append(f"{name:>16} {r.max_abs:12.2e} {r.max_rel:12.2e} {r.mask_agreement:10.4%}")
        return "\n".join(lines)


def _export_graph(head: nn.Module, path: Path, exporter: str, opset: int | None, *, min_size: int,
                  external_data: bool, input_dtype: str) -> int:
    sample = sample_images((TRACE_BATCH, 3, *TRACE_SIZE), input_dtype)
    names = dict(input_names=["image"], output_names=["logits", "mask"])
    if exporter == "dynamo":
        dims = {0: torch.export.Dim("batch", min=1, max=256),
                2: torch.export.Dim("height", min=min_size, max=16384),
                3: torch.export.Dim("width", min=min_size, max=16384)}
        program = torch.onnx.export(head, (sample,), dynamo=True, dynamic_shapes={"image": dims},
                                    opset_version=opset or 18, optimize=True, **names)
        program.save(str(path), external_data=external_data)
        return opset or 18
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(head, (sample,), str(path), dynamo=False, opset_version=opset or 17,
                      dynamic_axes={"image": axes, "logits": axes, "mask": {0: "batch", 1: "height", 2: "width"}},
                      **names)
    return opset or 17


def _finish_graph(path: Path, facts: ModelFacts) -> onnx.ModelProto:
    """Name the dynamic dims, attach metadata, check the graph and its shape inference."""
    model = onnx.load(str(path), load_external_data=False)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        # the channel dim is fixed: 3 for the image, the class count for logits (the TorchScript exporter
        # leaves the latter symbolic, and Triton configs and engines read it from here)
        labels = {"image": ["batch", 3, "height", "width"], "logits": ["batch", facts.num_classes, "height", "width"],
                  "mask": ["batch", "height", "width"]}[value.name]
        for dim, label in zip(dims, labels):
            if isinstance(label, int):
                dim.ClearField("dim_param")
                dim.dim_value = label
            else:
                dim.ClearField("dim_value")
                dim.dim_param = label
    write_facts(model, facts)
    # Weights were not loaded: external ones (models over 2 GB) stay references to their .data file.
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path))
    onnx.shape_inference.infer_shapes_path(str(path), str(path.with_suffix(".inferred.onnx")))
    path.with_suffix(".inferred.onnx").unlink()
    return model


def verify_onnx(model: nn.Module, path: Path, sizes: list[tuple[int, int]], batch_sizes=(1, 2), *,
                seed: int = 0, input_dtype: str = "float32") -> list[VerifyRow]:
    """Run onnxruntime and PyTorch on the same random images; one row per (size, batch)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    rows = []
    cases = [(1, h, w) for h, w in sizes] + [(b, *sizes[0]) for b in batch_sizes if b != 1]
    for batch, h, w in cases:
        images = sample_images((batch, 3, h, w), input_dtype, generator)
        with torch.no_grad():
            expected = model(images.float()).numpy()
        try:
            logits, mask = session.run(["logits", "mask"], {"image": images.numpy()})
        except Exception as exc:
            rows.append(VerifyRow(batch, h, w, float("inf"), float("inf"), 0.0, str(exc).splitlines()[0][:160]))
            continue
        if logits.shape != expected.shape:
            rows.append(VerifyRow(batch, h, w, float("inf"), float("inf"), 0.0,
                                  f"output shape {list(logits.shape)}, PyTorch gives {list(expected.shape)}"))
            continue
        max_abs = float(np.abs(logits - expected).max())
        max_rel = max_abs / max(float(np.abs(expected).max()), 1e-12)
        torch_mask = model.predict_mask(torch.from_numpy(expected)).numpy()
        rows.append(VerifyRow(batch, h, w, max_abs, max_rel, float((mask == torch_mask).mean())))
    return rows


def export_onnx(model: nn.Module, out: str | Path, *, exporter: str = "dynamo", opset: int | None = None,
                verify_sizes: list[tuple[int, int]] | None = None, tolerance: float = 1e-3, simplify: bool = False,
                input_dtype: str = "float32", facts: ModelFacts | None = None,
                log: Callable[[str], None] = print) -> ExportReport:
    """Export `model` (a GSAM) to `out`, verify it, and only then move it into place.

    Raises ExportError, leaving nothing at `out`, when export fails, any verification size
    fails or the relative error exceeds `tolerance`. `facts` (default: the model's config alone)
    go into the file's metadata: `export_checkpoint` adds the palette and the checkpoint's lineage.
    `input_dtype` "uint8" makes the `image` input UINT8 (cast inside the graph).
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"--exporter must be one of {', '.join(EXPORTERS)}; got {exporter!r}")
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f"--input-dtype must be one of {', '.join(INPUT_DTYPES)}; got {input_dtype!r}")
    config = model.config
    sizes = verify_sizes or DEFAULT_VERIFY_SIZES
    too_small = [s for s in sizes if min(s) < config.min_size]
    if too_small:
        raise ExportError(f"--verify-sizes {too_small[0][0]}x{too_small[0][1]} is below the model's minimum "
                          f"side of {config.min_size}")
    model = model.eval().cpu()
    with staged_file(out) as staged:
        started = time.perf_counter()
        log(f"exporting {config.name} with the {exporter} exporter (sample {TRACE_BATCH}x3x{TRACE_SIZE[0]}x{TRACE_SIZE[1]})...")
        facts = replace(facts or ModelFacts(config), gsam_version=__version__, input_dtype=input_dtype)
        used_opset, graph = _write_graph(model, staged, exporter, opset, simplify=simplify, facts=facts)
        seconds = time.perf_counter() - started
        log(f"verifying against PyTorch at {len(sizes)} unseen sizes and batch 2...")
        rows = verify_onnx(model, staged, sizes, input_dtype=input_dtype)
        size = sum(f.stat().st_size for f in staged.parent.iterdir() if f.name.startswith(staged.name))
        report = ExportReport(Path(out), exporter, used_opset, seconds, len(graph.graph.node), size,
                              sha256_file(staged), rows)
        failed = [r for r in rows if r.error or not r.max_rel <= tolerance]
        if failed:
            log(report.table())
            r = failed[0]
            reason = r.error or f"relative error {r.max_rel:.2e} > {tolerance:g}"
            raise ExportError(f"{out}: verification failed at {r.batch}x3x{r.height}x{r.width} ({reason}); "
                              "no file written")
    return report


def _write_graph(model: nn.Module, path: Path, exporter: str, opset: int | None, *, simplify: bool,
                 facts: ModelFacts) -> tuple[int, onnx.ModelProto]:
    """(opset, graph): the export with named dynamic dims and the facts as metadata; one-line errors."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    try:
        used_opset = _export_graph(SegmentationHead(model).eval(), path, exporter, opset, min_size=model.config.min_size,
                                   external_data=weight_bytes > 1.8e9, input_dtype=facts.input_dtype)
        if simplify:
            _simplify(path)
        return used_opset, _finish_graph(path, facts)
    except GSAMError:
        raise
    except Exception as exc:
        raise ExportError(f"{path.name}: {exporter} export failed ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0][:200]})") from None


def _simplify(path: Path) -> None:
    try:
        import onnxslim
    except ImportError:
        raise ExportError("--simplify needs onnxslim: pip install onnxslim") from None
    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))


def export_checkpoint(source: str | Path, out: str | Path, **options) -> ExportReport:
    """Export a run directory or gsam checkpoint: the model, its palette and its lineage come from the file."""
    model, facts = load_trained(source)
    return export_onnx(model, out, facts=facts, **options)
