"""What a model answers to one fixed input, recorded when the repository is built: its health fingerprint.

`gsam triton build` runs each model's ONNX file once (onnxruntime, CPU) on a fixed image of the model's probe
size and stores the answer in the config as the string parameter `probe_fingerprint`: the mask, which of
its pixels are clear-cut (the top two classes' logits apart by more than most pixels' margins), and the
logits averaged over an 8x8 grid. The supervisor's probe and `gsam health` send that image and compare:
an unloaded model, one that answers zeros, or another model under the served name fails, so readiness
cannot stay green for a model that is not the one in the repository.

The image comes from SHAKE-128 of a fixed seed, so every machine, numpy version and Python makes the same
bytes. Tolerances allow what a TensorRT engine (FP16) changes: near-ties in the mask, small logit errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import dataclass

import numpy as np

PARAMETER = "probe_fingerprint"
SEED = b"gsam probe fingerprint v1"
GRID = 8
MIN_AGREEMENT = 0.98  # of the clear-cut pixels
LOGITS_RTOL = 0.1  # of the grid-averaged logits' norm
CLEAR_CUT_QUANTILE = 0.25  # pixels whose top-two margin is below this quantile may flip between runtimes


def probe_image(height: int, width: int) -> np.ndarray:
    """The fixed RGB uint8 image (height, width, 3) every probe of this size sends."""
    data = hashlib.shake_128(SEED + f" {height}x{width}".encode()).digest(height * width * 3)
    return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()


def grid_means(logits: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (C, GRID, GRID): the mean of each cell of an even grid (cells differ by one pixel at most)."""
    rows = np.array_split(np.arange(logits.shape[1]), GRID)
    cols = np.array_split(np.arange(logits.shape[2]), GRID)
    return np.array([[[logits[c][np.ix_(r, k)].mean() for k in cols] for r in rows] for c in range(logits.shape[0])],
                    np.float64)


def _pack(array: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(array.tobytes(), 9)).decode()


def _unpack(text: str, dtype, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype).reshape(shape)


@dataclass(frozen=True)
class Fingerprint:
    height: int
    width: int
    mask: np.ndarray  # (H, W) uint8 class ids (up to 255 classes; more are not fingerprinted)
    clear: np.ndarray  # (H, W) bool: the pixels compared
    grid: np.ndarray  # (C, GRID, GRID) float64

    @classmethod
    def from_logits(cls, logits: np.ndarray) -> "Fingerprint":
        """From one image's logits (C, H, W), as onnxruntime computed them."""
        logits = logits.astype(np.float64)
        ranked = np.sort(logits, axis=0)
        margin = ranked[-1] - ranked[-2] if logits.shape[0] > 1 else np.ones(logits.shape[1:])
        clear = margin >= max(np.quantile(margin, CLEAR_CUT_QUANTILE), 1e-12)
        return cls(logits.shape[1], logits.shape[2], logits.argmax(0).astype(np.uint8), clear, grid_means(logits))

    @property
    def mask_sha256(self) -> str:
        return hashlib.sha256(self.mask.tobytes()).hexdigest()

    def to_text(self) -> str:
        return json.dumps({"v": 1, "shape": [self.height, self.width], "mask": _pack(self.mask),
                           "clear": _pack(np.packbits(self.clear)), "grid": np.round(self.grid, 6).tolist(),
                           "mask_sha256": self.mask_sha256}, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> "Fingerprint":
        data = json.loads(text)
        height, width = data["shape"]
        clear = np.unpackbits(_unpack(data["clear"], np.uint8, (-1,)))[:height * width].reshape(height, width)
        return cls(height, width, _unpack(data["mask"], np.uint8, (height, width)), clear.astype(bool),
                   np.array(data["grid"], np.float64))

    @property
    def majority(self) -> float:
        """The share of the mask's most common class (an impostor answering that class everywhere agrees on it)."""
        return float(np.bincount(self.mask[self.clear].ravel()).max() / max(1, self.clear.sum()))

    def mask_mismatch(self, mask: np.ndarray) -> str | None:
        """Why `mask` (H, W) is not this model's answer, or None."""
        mask = np.asarray(mask)
        mask = mask[0] if mask.ndim == 3 else mask
        if mask.shape != (self.height, self.width):
            return f"a mask of shape {list(mask.shape)}, not [{self.height}, {self.width}]"
        agreement = float((mask[self.clear] == self.mask[self.clear]).mean())
        if agreement < MIN_AGREEMENT:
            return (f"a mask that agrees with the repository's fingerprint on {agreement:.1%} of its clear-cut "
                    f"pixels (at least {MIN_AGREEMENT:.0%} expected)")
        return None

    def logits_mismatch(self, logits: np.ndarray) -> str | None:
        """Why `logits` (C, H, W) or (1, C, H, W) are not this model's, or None."""
        logits = np.asarray(logits, np.float64)
        logits = logits[0] if logits.ndim == 4 else logits
        if logits.shape != (self.grid.shape[0], self.height, self.width):
            return f"logits of shape {list(logits.shape)}, not [{self.grid.shape[0]}, {self.height}, {self.width}]"
        if not np.isfinite(logits).all():
            return "logits that are not finite"
        error = float(np.linalg.norm(grid_means(logits) - self.grid) / max(np.linalg.norm(self.grid), 1e-12))
        if error > LOGITS_RTOL:
            return f"logits {error:.0%} away from the repository's fingerprint (at most {LOGITS_RTOL:.0%} expected)"
        return None


def reference(onnx_path, height: int, width: int) -> Fingerprint:
    """The fingerprint of an ONNX file at height x width, computed with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    image = probe_image(height, width).transpose(2, 0, 1)[None]
    dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32
    (logits,) = session.run(["logits"], {"image": image.astype(dtype)})
    return Fingerprint.from_logits(logits[0])
