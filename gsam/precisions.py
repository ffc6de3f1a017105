"""The one table of numeric precisions: where each can be used and what checks it.

Every option that takes a precision, every check of an artifact's `precision` field, and the
precision table in README.md read this table, so a precision is added or removed in one place
(as ultralytics keeps one table of export formats). Two kinds of use:

- an ONNX file (and the TensorRT engine built from it, which computes in the ONNX's types): fp32
  is the verified export itself; fp16 and int8 are variants made from it and kept only when they
  pass the export gate against the fp32 model;
- torch autocast (`--amp`), for training, `gsam predict` and `gsam bench` on a run directory.

bf16 is autocast only: onnxruntime's CPU provider has no bf16 kernels for the graph's MatMul and
Conv, so no gate could check a bf16 ONNX file on the machines gsam is tested on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import GSAMError


@dataclass(frozen=True)
class Precision:
    name: str
    onnx: str | None  # what an ONNX file (and its engine) at this precision is; None: no ONNX variant
    amp: bool  # torch autocast may run it: `--amp`
    min_agreement: float  # the export gate's default: least fraction of mask pixels equal to the fp32 model's


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", onnx="the export itself, verified against PyTorch at unseen sizes", amp=False,
              min_agreement=1.0),
    Precision("fp16", onnx="fp16 weights and math, LayerNorm, Softmax and the input normalization kept fp32",
              amp=True, min_agreement=0.995),
    Precision("bf16", onnx=None, amp=True, min_agreement=0.995),
    Precision("int8", onnx="static QDQ of MatMul and Conv, per-channel weights, calibrated on training images",
              amp=False, min_agreement=0.99),
)}

ONNX_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.onnx)
VARIANT_PRECISIONS = tuple(name for name in ONNX_PRECISIONS if name != "fp32")
AMP_MODES = ("off", *(name for name, p in PRECISIONS.items() if p.amp))
# What --amp takes: a mode, or auto (the default: measured per device, see gsam.amp).
AMP_CHOICES = ("auto", *AMP_MODES)


def onnx_precision(name: str, where: str = "--precision") -> Precision:
    """The table row of an ONNX precision, or a one-line error naming `where` and the choices."""
    found = PRECISIONS.get(name.strip().lower())
    if found is None or not found.onnx:
        reason = " (autocast only: no ONNX variant)" if found is not None else ""
        raise GSAMError(f"{where} {name!r}{reason}: expected one of {', '.join(ONNX_PRECISIONS)}")
    return found
