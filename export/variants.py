"""fp16 and int8 variants of a verified fp32 gsam ONNX file, kept only when they prove themselves.

A variant is made with onnxruntime's own tools (fp16.py: its float16 converter; int8.py: static
QDQ quantization) and then gated like the fp32 export (gate.py): the variant runs on real images
at their native sizes and on the same images resized to sizes the trace never saw, a reference
(the PyTorch model, or the fp32 file) runs the same images, and the file is only moved into place
when the masks agree and the mIoU against the labels did not drop.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable

import onnx

from gsam.errors import GSAMError
from gsam.io import sha256_file, staged_file
from gsam.model.facts import ModelFacts
from gsam.model.segmenter import Segmenter
from gsam.precisions import VARIANT_PRECISIONS

from .fp16 import convert_fp16
from .gate import GateReport, GateRunners, GateThresholds, check_images, run_gate
from .gate_data import GateImages, load_gate_images, run_data_folder
from .int8 import INT8_SCHEMES, quantize_int8
from .metadata import read_onnx_facts, rewrite_onnx_facts
from .onnx import DEFAULT_VERIFY_SIZES, ExportError, ExportReport, export_checkpoint


def make_variant(fp32_onnx: Path, out: Path, precision: str, *, reference: Segmenter,
                 candidate: Callable[[Path], Segmenter], data: GateImages, thresholds: GateThresholds | None = None,
                 log: Callable[[str], None] = print, verify_sizes: list[tuple[int, int]] | None = None,
                 int8_scheme: str = "tensorrt") -> GateReport:
    """Make the `precision` variant of `fp32_onnx`, gate it against `reference` and only then write `out`.

    `candidate(path)` opens an ONNX file for the gate; `data.images` with their labels are the gate's
    real images, resized to `verify_sizes` (default: the fp32 export's unseen sizes) for agreement
    only. int8 needs `data.calib_images`; `int8_scheme` (INT8_SCHEMES) is recorded in the file's
    metadata so TensorRT builds can refuse a cpu file. Raises ExportError, leaving nothing at `out`,
    when the conversion fails or a figure misses its threshold.
    """
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    facts = _check_request(fp32_onnx, out, precision, data, int8_scheme)
    with staged_file(out) as staged:
        started = time.perf_counter()
        log(f"making the {precision} variant of {fp32_onnx.name}...")
        variant_facts = _convert(fp32_onnx, staged, precision, facts, calib_images=data.calib_images,
                                 int8_scheme=int8_scheme)
        seconds = time.perf_counter() - started
        sizes = [s for s in (verify_sizes or DEFAULT_VERIFY_SIZES) if min(s) >= facts.min_size]
        log(f"gating it on {len(data.images)} image(s) at native size and {len(sizes)} resized to unseen sizes...")
        report = _gate(staged, candidate, reference, data, sizes)
        report.path, report.thresholds, report.seconds = out, thresholds or GateThresholds(), seconds
        reason = report.failure()
        report.passed = reason is None
        if reason:
            log(report.table())
            raise ExportError(f"{out}: the {precision} gate failed ({reason}); no file written; {_gate_hint(reason)}")
        rewrite_onnx_facts(staged, variant_facts.with_extra(**report.metadata()))
        report.size_bytes = sum(f.stat().st_size for f in staged.parent.iterdir() if f.name.startswith(staged.name))
        report.sha256 = sha256_file(staged)
    return report


def _gate_hint(reason: str) -> str:
    """The flag that moves the bar the variant missed: a barely trained model, whose pixels sit near class
    boundaries, can miss a bar that a trained one clears."""
    if reason.startswith("mIoU"):
        return "a model trained longer usually passes; or accept a larger drop with --max-miou-drop POINTS"
    return "a model trained longer usually passes; or lower the bar with --min-agreement (a fraction, e.g. 0.97)"


def _check_request(fp32_onnx: Path, out: Path, precision: str, data: GateImages, int8_scheme: str) -> ModelFacts:
    """The fp32 file's facts, after one-line errors for anything the variant cannot be made from."""
    if precision not in VARIANT_PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(VARIANT_PRECISIONS)} for a variant; got {precision!r}")
    facts = read_onnx_facts(fp32_onnx)
    if facts.precision != "fp32":
        raise ExportError(f"{fp32_onnx}: metadata field 'precision' is {facts.precision}; a variant needs an fp32 file")
    if not data.images:
        raise ExportError(f"{out}: the {precision} gate needs at least one image")
    if data.labels is not None and len(data.labels) != len(data.images):
        raise ExportError(f"{out}: {len(data.labels)} labels for {len(data.images)} gate images")
    check_images(data.images, "gate", facts.min_size)
    if precision == "int8":
        if int8_scheme not in INT8_SCHEMES:
            raise ExportError(f"{out}: int8 scheme must be one of {', '.join(INT8_SCHEMES)}; got {int8_scheme!r}")
        if not data.calib_images:
            raise ExportError(f"{out}: int8 needs calibration images")
        check_images(data.calib_images, "calibration", facts.min_size)
    return facts


def _convert(fp32_onnx: Path, staged: Path, precision: str, facts: ModelFacts, *,
             calib_images: list | None, int8_scheme: str) -> ModelFacts:
    """Write the converted graph at `staged` with its facts and lineage; returns those facts."""
    try:
        if precision == "fp16":
            onnx.save(convert_fp16(onnx.load(str(fp32_onnx))), str(staged))
        else:
            quantize_int8(fp32_onnx, staged, calib_images or [], int8_scheme)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ExportError(f"{staged.name}: {precision} conversion failed ({type(exc).__name__}: {reason})") from None
    fp32_sha = sha256_file(fp32_onnx)
    variant_facts = dataclasses.replace(facts, precision=precision).with_lineage(
        onnx_file=fp32_onnx.name, onnx_sha256=fp32_sha).with_extra(fp32_onnx_sha256=fp32_sha)
    if precision == "int8":
        variant_facts = variant_facts.with_extra(int8_scheme=int8_scheme)
    rewrite_onnx_facts(staged, variant_facts)
    return variant_facts


def _gate(staged: Path, candidate: Callable[[Path], Segmenter], reference: Segmenter, data: GateImages,
          sizes: list[tuple[int, int]]) -> GateReport:
    try:
        variant = candidate(staged)
    except GSAMError as exc:
        raise ExportError(f"{staged.name}: the variant cannot run ({exc})") from None
    try:
        return run_gate(variant, reference, data.images, data.labels, sizes)
    finally:
        variant.close()


def export_checkpoint_variant(source: str | Path, out: str | Path, precision: str, *, runners: GateRunners,
                              calib_data: str | Path | None = None, calib_count: int = 32,
                              thresholds: GateThresholds | None = None, log: Callable[[str], None] = print,
                              int8_scheme: str = "tensorrt", **export_options) -> tuple[ExportReport, GateReport]:
    """`gsam export onnx RUN --precision P`: the fp32 export (verified as always) to a temporary file,
    then its variant gated against the PyTorch model on the run's val images (calibrated on train).

    `calib_data` replaces the run's dataset folder.
    """
    out = Path(out)
    if precision not in VARIANT_PRECISIONS:
        raise ExportError(f"--precision must be fp32, {' or '.join(VARIANT_PRECISIONS)}; got {precision!r}")
    data = load_gate_images(Path(calib_data) if calib_data else run_data_folder(source), calib_count)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gsam-fp32-", dir=out.parent) as workdir:
        fp32 = Path(workdir) / (out.stem + ".fp32.onnx")
        export_report = export_checkpoint(source, fp32, log=log, **export_options)
        report = make_variant(fp32, out, precision, reference=runners.reference(Path(source)),
                              candidate=runners.candidate, data=data, thresholds=thresholds, log=log,
                              int8_scheme=int8_scheme)
    return export_report, report


def variant_of_fp32_file(fp32_onnx: str | Path, out: str | Path, precision: str, *, runners: GateRunners,
                         run: str | Path | None = None, calib_data: str | Path | None = None, calib_count: int = 32,
                         thresholds: GateThresholds | None = None, log: Callable[[str], None] = print,
                         int8_scheme: str = "tensorrt") -> GateReport:
    """`gsam export onnx [RUN --onnx] model.onnx --precision P`: a variant of an existing verified fp32 export,
    which is not exported again (minutes for vit_b). With `run` the file must be that run's export (by sha256)
    and the gate's reference is the run's PyTorch model; alone, the reference is the fp32 file in onnxruntime."""
    from .reuse import check_fp32_export_of

    fp32_onnx = Path(fp32_onnx)
    if run is not None:
        check_fp32_export_of(run, fp32_onnx)
        calib_data = calib_data or run_data_folder(run)
    elif calib_data is None:
        raise ExportError(f"{fp32_onnx}: an ONNX file records no dataset to calibrate and gate on; pass --calib-data "
                          f"DATA (train/ and val/ splits), or give the run: gsam export onnx RUN --onnx {fp32_onnx}")
    data = load_gate_images(Path(calib_data), calib_count)
    log(f"making the {precision} variant of {fp32_onnx} (gated against "
        f"{'the PyTorch model of ' + str(run) if run is not None else 'the fp32 file itself'})")
    reference = runners.reference(Path(run)) if run is not None else runners.candidate(fp32_onnx)
    try:
        return make_variant(fp32_onnx, Path(out), precision, reference=reference, candidate=runners.candidate,
                            data=data, thresholds=thresholds, log=log, int8_scheme=int8_scheme)
    finally:
        reference.close()
