"""Today's baseline: SAM ViT-B (encoder + mask decoder, no prompt) at a fixed 1024x1024.

This is how SAM deployments run: every image is resized so its long side is 1024 and
padded to 1024x1024 (segment_anything's ResizeLongestSide), whatever its native size.
Weights are random (segment_anything.build_sam_vit_b()); only the cost matters here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gsam.model.config import GSAMConfig
from gsam.model.facts import ModelFacts
from gsam.runtime.backends import Segmenter

SAM_SIZE = 1024


class SamNoPrompt(nn.Module):
    """image (1, 3, 1024, 1024) normalized -> low-res mask logits (1, 1, 256, 256)."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.sam = sam

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        embedding = self.sam.image_encoder(image)
        sparse, dense = self.sam.prompt_encoder(points=None, boxes=None, masks=None)
        masks, _ = self.sam.mask_decoder(image_embeddings=embedding, image_pe=self.sam.prompt_encoder.get_dense_pe(),
                                         sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                         multimask_output=False)
        return masks


def build_sam_baseline() -> nn.Module:
    from segment_anything import build_sam_vit_b

    torch.manual_seed(0)
    return SamNoPrompt(build_sam_vit_b()).eval()


def export_sam_baseline(path: str | Path) -> Path:
    """Export once (TorchScript exporter: a fixed-size graph needs nothing more); reuse the file after."""
    path = Path(path)
    if not path.is_file():
        from gsam.io import atomic_path

        with atomic_path(path) as tmp, torch.no_grad():
            torch.onnx.export(build_sam_baseline(), (torch.zeros(1, 3, SAM_SIZE, SAM_SIZE),), str(tmp), dynamo=False,
                              opset_version=17, input_names=["image"], output_names=["masks"])
    return path


def sam_gflops() -> float:
    from gsam.model.flops import counted_flops

    with torch.device("meta"):
        model = build_sam_baseline()
    return counted_flops(model, torch.zeros(1, 3, SAM_SIZE, SAM_SIZE, device="meta")).get_total_flops() / 1e9


# SAM ViT-B's encoder in gsam's terms (patch 16, one logit channel), for the Segmenter interface; its
# FLOPs are counted on SAM itself (sam_gflops).
SAM_ENCODER = GSAMConfig("sam-vit-b@1024", embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11),
                         token_stride=16)


class SamBaselineSegmenter(Segmenter):
    """Resize (long side 1024), normalize, pad, run SAM in onnxruntime: the timed path includes the resize."""

    name = "sam-vit-b@1024"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.facts = ModelFacts(SAM_ENCODER)
        self.mean = np.array([123.675, 116.28, 103.53], np.float32)[:, None, None]
        self.std = np.array([58.395, 57.12, 57.375], np.float32)[:, None, None]

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = []
        for image in images:
            h, w = image.shape[1:]
            scale = SAM_SIZE / max(h, w)
            resized = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=(round(h * scale), round(w * scale)),
                                                      mode="bilinear", align_corners=False, antialias=True)[0].numpy()
            padded = np.zeros((3, SAM_SIZE, SAM_SIZE), np.float32)
            padded[:, : resized.shape[1], : resized.shape[2]] = (resized - self.mean) / self.std
            outputs.append(self.session.run(None, {"image": padded[None]})[0])
        return {"logits": np.concatenate(outputs), "mask": np.zeros((1,), np.int32)}
