"""The requests a tune replays: the user's own images (encoded as they are on disk) or a list of sizes.

Variable size is gsam's point, so the mix matters more than any one size: a dataset folder gives its real
files; a text or CSV list (one HEIGHTxWIDTH or "height,width" per line, optionally a count) gives sizes, for
which random-pixel PNGs of exactly those sizes are made. `gsam serve` writes no request log, so a log is
not a source (yet).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

from gsam.errors import GSAMError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
MAX_DISTINCT_BUCKETS = 6  # more distinct sizes than this are grouped by megapixels


@dataclass(frozen=True)
class Request:
    """One image of the mix: its encoded bytes, size and the size bucket it is reported under."""

    data: bytes
    height: int
    width: int
    bucket: str = ""


def _size_of(path: Path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.height, image.width
    except Exception as exc:  # Pillow raises many kinds for a bad file
        raise GSAMError(f"--sizes-from: {path} is not a readable image ({exc})") from None


def _dataset_files(folder: Path) -> list[Path]:
    """Images of a gsam dataset (DATA/{train,val}/images) or any folder of images, recursively."""
    images = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
              and "masks" not in p.relative_to(folder).parts]
    if not images:
        raise GSAMError(f"--sizes-from {folder}: no images (.png, .jpg, .tif, ...) in it")
    return images


def _parse_line(row: list[str], source: Path, number: int) -> tuple[tuple[int, int], int]:
    """((height, width), count) from 'HxW', 'HxW,count', 'h,w' or 'h,w,count'."""
    cells = [c.strip() for c in row if c.strip()]
    try:
        if cells and "x" in cells[0].lower():
            h, w = (int(v) for v in cells[0].lower().split("x"))
            count = int(cells[1]) if len(cells) > 1 else 1
        else:
            h, w = int(cells[0]), int(cells[1])
            count = int(cells[2]) if len(cells) > 2 else 1
    except (ValueError, IndexError):
        raise GSAMError(f"--sizes-from {source}:{number}: {','.join(row)!r} is not HEIGHTxWIDTH[,COUNT] or "
                        "height,width[,count]") from None
    if h <= 0 or w <= 0 or count <= 0:
        raise GSAMError(f"--sizes-from {source}:{number}: sizes and counts must be positive")
    return (h, w), count


def read_size_list(source: Path) -> list[tuple[int, int]]:
    """The sizes of a text/CSV list, each repeated by its count; a header line is skipped."""
    try:
        text = source.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GSAMError(f"--sizes-from {source}: cannot read it ({exc})") from None
    sizes: list[tuple[int, int]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or row[0].strip().startswith("#") or (number == 1 and not row[0].strip()[:1].isdigit()):
            continue
        size, count = _parse_line(row, source, number)
        sizes += [size] * count
    if not sizes:
        raise GSAMError(f"--sizes-from {source}: no sizes in it (one HEIGHTxWIDTH per line)")
    return sizes


def _random_png(size: tuple[int, int], seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def bucket_names(sizes: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """A size's bucket: itself when the mix has few distinct sizes, else a megapixel range."""
    distinct = sorted(set(sizes), key=lambda s: s[0] * s[1])
    if len(distinct) <= MAX_DISTINCT_BUCKETS:
        return {s: f"{s[0]}x{s[1]}" for s in distinct}
    edges = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, float("inf")]
    names = {}
    for s in distinct:
        mp = s[0] * s[1] / 1e6
        low = max(e for e in edges if e <= mp)
        high = min(e for e in edges if e > mp)
        names[s] = f"{low:g}-{high:g} MP" if high != float("inf") else f">{low:g} MP"
    return names


def load_workload(source: str | Path, *, limit: int = 64, seed: int = 0) -> list[Request]:
    """At most `limit` requests sampled from the source (every one of a smaller source), shuffled."""
    source = Path(source)
    if not source.exists():
        raise GSAMError(f"--sizes-from {source}: no such file or folder")
    rng = random.Random(seed)
    if source.is_dir():
        files = _dataset_files(source)
        files = rng.sample(files, limit) if len(files) > limit else files
        items = [(_size_of(p), p) for p in files]
    else:
        sizes = read_size_list(source)
        sizes = rng.sample(sizes, limit) if len(sizes) > limit else sizes
        items = [(s, None) for s in sizes]
    names = bucket_names([size for size, _ in items])
    made: dict[tuple[int, int], bytes] = {}
    requests = []
    for size, path in items:
        if path is not None:
            data = path.read_bytes()
        else:
            data = made.setdefault(size, _random_png(size, seed + len(made)))
        requests.append(Request(data, *size, bucket=names[size]))
    rng.shuffle(requests)
    return requests


def buckets_by_size(requests: list[Request]) -> dict[str, int]:
    """Requests per bucket, smallest images first."""
    counts: dict[str, int] = {}
    for request in sorted(requests, key=lambda r: r.height * r.width):
        counts[request.bucket] = counts.get(request.bucket, 0) + 1
    return counts


def fingerprint(requests: list[Request]) -> str:
    """Identifies a workload in measurements.jsonl: a resumed tune only reuses figures of the same mix."""
    digest = hashlib.sha256()
    for request in requests:
        digest.update(hashlib.sha256(request.data).digest())
    return digest.hexdigest()[:16]
