"""The export gate for precision variants: a candidate against a reference on real images, in figures.

The gate does not load what it runs: the caller hands it Segmenters (gsam.model.segmenter, the one
interface every backend implements), because the backends that run ONNX files and PyTorch
checkpoints live in gsam.runtime, a layer above this one.
`gsam.runtime.backends.gate_runners()` gives the usual pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gsam.errors import GSAMError
from gsam.model.segmenter import Segmenter, to_model_input
from gsam.precisions import PRECISIONS


@dataclass(frozen=True)
class GateRunners:
    """How to run the two sides: `reference(run)` for the trained PyTorch model, `candidate(onnx)` for a file."""

    reference: Callable[[Path], Segmenter]
    candidate: Callable[[Path], Segmenter]


@dataclass(frozen=True)
class GateThresholds:
    """What a variant must reach on the gate images; min_agreement None = the precision's default."""

    min_agreement: float | None = None
    max_miou_drop: float = 0.5  # mIoU points (0..100 scale)

    def agreement_for(self, precision: str) -> float:
        return PRECISIONS[precision].min_agreement if self.min_agreement is None else self.min_agreement


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


def check_images(images: list[np.ndarray], what: str, min_size: int) -> None:
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise GSAMError(f"{what} image {i}: expected uint8 RGB [H, W, 3], got {image.dtype} {list(image.shape)}")
        if min(image.shape[:2]) < min_size:
            raise GSAMError(f"{what} image {i}: {image.shape[0]}x{image.shape[1]} is below the model's minimum side "
                            f"of {min_size}")


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def run_gate(variant: Segmenter, reference: Segmenter, images: list[np.ndarray], labels: list[np.ndarray] | None,
             verify_sizes: list[tuple[int, int]]) -> GateReport:
    """Run the variant and the reference on the same images; figures, no decision.

    The unseen-size cases are the gate's own images resized to sizes the trace never saw: what a
    reduced precision must match is the model on its kind of images; random noise drives
    activations outside the calibrated ranges and says little about either."""
    import torch

    from gsam.data.metrics import ConfusionMatrix

    report = GateReport(Path(), variant.facts.precision)
    k = max(variant.facts.num_classes, 2)
    matrices = {"reference": ConfusionMatrix(k), "variant": ConfusionMatrix(k)}
    cases = [("labelled", image, labels[i] if labels else None) for i, image in enumerate(images)]
    cases += [("unseen size", _resized(images[i % len(images)], h, w), None) for i, (h, w) in enumerate(verify_sizes)]
    agree = {"labelled": 0, "unseen size": 0}
    pixels = dict(agree)
    for kind, image, label in cases:
        batch = to_model_input(image)
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
