"""A generated demo dataset: textured shapes on textured backgrounds, non-square sizes.

Each foreground class has its own shape family and texture, so a small model can learn
it in minutes on a CPU. The same seed gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from ..io import atomic_path
from .dataset import ClassSpec

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "bar")


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray, frequency: float) -> np.ndarray:
    """Colour `base` modulated by oriented stripes and a little blotchy noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * frequency + rng.uniform(0, 2 * np.pi))
    image = base[None, None, :] * (0.8 + 0.2 * stripes[:, :, None])
    return image + rng.normal(0, 6, size=(h, w, 3))


def _shape_mask(kind: str, size: tuple[int, int], centre: tuple[float, float], r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    if kind == "disc":
        return dy**2 + dx**2 <= r**2
    if kind == "square":
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if kind == "triangle":
        return (dy <= r * 0.7) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if kind == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if kind == "cross":
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | ((np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if kind == "diamond":
        return np.abs(dy) + np.abs(dx) <= r
    return (np.abs(dy) <= r * 0.25) & (np.abs(dx) <= r * 1.2)


def make_sample(rng: np.random.Generator, h: int, w: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 RGB image, uint8 mask) pair with 1-4 objects of random foreground classes."""
    background = _texture(rng, h, w, rng.uniform(60, 140, size=3), rng.uniform(0.05, 0.3))
    image, mask = background, np.zeros((h, w), dtype=np.uint8)
    class_colours = np.array([[0, 0, 0], [230, 60, 50], [60, 200, 70], [60, 90, 230], [230, 210, 60],
                              [200, 70, 220], [70, 220, 220], [240, 140, 40]], dtype=np.float32)
    for _ in range(rng.integers(1, 5)):
        cls = int(rng.integers(1, num_classes))
        r = rng.uniform(0.12, 0.3) * min(h, w)
        region = _shape_mask(SHAPES[(cls - 1) % len(SHAPES)], (h, w), (rng.uniform(0, h), rng.uniform(0, w)), r)
        colour = class_colours[(cls - 1) % (len(class_colours) - 1) + 1] * rng.uniform(0.8, 1.1)
        image = np.where(region[:, :, None], _texture(rng, h, w, colour, 0.6 + 0.15 * cls), image)
        mask[region] = cls
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def write_synthetic_dataset(out: str | Path, num_classes: int = 3, *, train: int = 24, val: int = 8, test: int = 0,
                            min_size: int = 64, max_size: int = 160, seed: int = 0, progress: bool = True) -> ClassSpec:
    """Write DATA/{train,val[,test]}/{images,masks} and classes.yaml; binary masks are 0/255."""
    if num_classes < 2:
        raise ValueError(f"--classes must be at least 2 (background + one class); got {num_classes}")
    if not 32 <= min_size <= max_size:
        raise ValueError(f"need 32 <= --min-side <= --max-side; got {min_size} and {max_size}")
    out = Path(out)
    names = ["background"] + [SHAPES[(i - 1) % len(SHAPES)] for i in range(1, num_classes)]
    spec = ClassSpec(tuple(names))
    rng = np.random.default_rng(seed)
    jobs = [(split, i) for split, count in (("train", train), ("val", val), ("test", test)) for i in range(count)]
    for split, index in tqdm(jobs, desc=f"writing {out}", disable=not progress):
        h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
        image, mask = make_sample(rng, h, w, num_classes)
        if spec.binary:
            mask = mask * 255
        stem = f"{split}_{index:04d}"
        _save_png(image, out / split / "images" / f"{stem}.png")
        _save_png(mask, out / split / "masks" / f"{stem}.png")
    with atomic_path(out / "classes.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(spec.to_dict(), sort_keys=False))
    return spec
