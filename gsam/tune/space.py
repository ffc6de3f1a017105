"""What a tune varies: one Candidate per serving configuration, and the declared grid it is drawn from.

The axes are `gsam triton build`'s own options (instances, batching, the request bound and oversize
tiling, the compute model behind gsam_image) plus onnxruntime's thread count. A candidate's values
are read from and written to config.pbtxt in exactly two places, `read_default` here and
candidate.py's `write_candidate` (through build_repository), so a change of the configs' contract
touches those two only.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from gsam.errors import GSAMError
from gsam.pixels.bounds import DEFAULT_MAX_PIXELS, DEFAULT_MAX_TILED_PIXELS, DEFAULT_TILE_OVERLAP
from gsam.runtime.triton_names import IMAGE_MODEL, ONNX_MODEL, TENSOR_MODEL


@dataclass(frozen=True)
class Candidate:
    instances: int = 1
    max_batch: int = 8  # gsam_python's dynamic batch (1: no batching)
    preferred_batch: int = 0  # 0: none preferred
    queue_delay_us: int = 2000
    max_pixels: int = DEFAULT_MAX_PIXELS  # the request-bound contract's defaults (gsam/pixels/bounds.py)
    oversize_tile: int = 0  # 0: requests above max_pixels are refused
    overlap: int = DEFAULT_TILE_OVERLAP  # with oversize_tile: pixels neighbouring tiles share
    max_tiled_pixels: int = DEFAULT_MAX_TILED_PIXELS  # with oversize_tile: the largest image one request may hold
    compute_model: str = TENSOR_MODEL  # where gsam_image computes: gsam_python, gsam_onnx or in-process
    threads: int = 0  # onnxruntime intra-op threads per instance (0: its default)

    def key(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    def short(self, base: "Candidate | None" = None) -> str:
        """The values that differ from `base` (all, without one), for progress lines and tables."""
        diff = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                if base is None or getattr(self, f.name) != getattr(base, f.name)]
        return " ".join(diff) or "default"

    def problem(self, min_size: int) -> str | None:
        """Why build_repository would refuse this combination (None: it is valid)."""
        if self.preferred_batch and (self.max_batch < 2 or self.preferred_batch > self.max_batch):
            return f"preferred_batch {self.preferred_batch} needs max_batch >= it and >= 2"
        if self.oversize_tile and (self.oversize_tile < min_size or self.oversize_tile ** 2 > self.max_pixels
                                   or self.overlap >= self.oversize_tile):
            return (f"oversize_tile {self.oversize_tile} must be >= {min_size}, above the overlap, and its square "
                    "<= max_pixels")
        if self.max_pixels < min_size ** 2:
            return f"max_pixels {self.max_pixels} is below one minimum-size image"
        return None

    def effective(self, triton_model: str) -> "Candidate":
        """The same server with settings that cannot matter reset: gsam_python's batching is unused when
        gsam_image computes in-process; without batching, preferred sizes and delay mean nothing."""
        c = self
        if triton_model == IMAGE_MODEL and c.compute_model == "in-process":
            c = replace(c, max_batch=1)
        if c.max_batch <= 1:
            c = replace(c, preferred_batch=0, queue_delay_us=0)
        return c

    def as_dict(self) -> dict:
        return asdict(self)


AXES = tuple(f.name for f in fields(Candidate))
# The declared grid of --search brute on a CPU host (quick walks the same axes one at a time).
DEFAULT_GRID: dict[str, tuple] = {
    "instances": (1, 2),
    "compute_model": (TENSOR_MODEL, "in-process"),
    "max_batch": (1, 4),
    "queue_delay_us": (0, 2000, 10000),
    "threads": (0, 1),
}


def parse_axis(text: str) -> tuple[str, tuple]:
    """'instances=1,2' -> ('instances', (1, 2)); values take the field's type."""
    name, _, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if name not in AXES or not values.strip():
        raise GSAMError(f"--axis {text!r}: expected NAME=V1,V2,... with NAME one of {', '.join(AXES)}")
    kind = type(getattr(Candidate(), name))
    try:
        parsed = tuple(dict.fromkeys(kind(v.strip()) for v in values.split(",") if v.strip()))
    except ValueError:
        raise GSAMError(f"--axis {text!r}: {name} takes {kind.__name__} values") from None
    if kind is str and any(v not in (TENSOR_MODEL, ONNX_MODEL, "in-process") for v in parsed):
        raise GSAMError(f"--axis {text!r}: compute_model is one of gsam_python, gsam_onnx, in-process")
    if kind is int and any(v < 0 for v in parsed):
        raise GSAMError(f"--axis {text!r}: values must be >= 0")
    return name, parsed


def grid(axes: dict[str, tuple], base: Candidate, triton_model: str, min_size: int) -> list[Candidate]:
    """Every valid combination of the axes (others at the base's value), distinct as served, base first."""
    names = list(axes)
    found: dict[Candidate, None] = {base.effective(triton_model): None}
    for values in itertools.product(*(axes[n] for n in names)):
        candidate = replace(base, **dict(zip(names, values))).effective(triton_model)
        if candidate.problem(min_size) is None:
            found.setdefault(candidate)
    return list(found)


def _parameter(config, name: str, default: str = "0") -> str:
    value = config.parameters.get(name)
    return value.string_value if value is not None and value.string_value != "" else default


def read_default(repo: Path) -> Candidate:
    """The repository's current configuration, as a Candidate (gsam_python's batching, gsam_image's
    compute model, the bound and tiling both carry)."""
    from gsam.runtime.serving.model_config import read_model_config, request_bounds

    python = read_model_config(repo / TENSOR_MODEL)
    bounds = request_bounds(python, repo / TENSOR_MODEL)  # the one reader of the contract
    image = read_model_config(repo / IMAGE_MODEL)
    preferred = list(python.dynamic_batching.preferred_batch_size)
    batched = python.max_batch_size > 0
    if any(group.kind == group.KIND_GPU for group in python.instance_group):
        raise GSAMError(f"{repo}: gsam_python runs on a GPU; gsam tune searches CPU repositories for now")
    return Candidate(
        instances=sum(g.count or 1 for g in image.instance_group) or 1,
        max_batch=python.max_batch_size if batched else 1,
        preferred_batch=preferred[0] if preferred else 0,
        queue_delay_us=python.dynamic_batching.max_queue_delay_microseconds if batched else 0,
        max_pixels=bounds.max_pixels,
        oversize_tile=bounds.tile,
        overlap=bounds.tile_overlap or Candidate.overlap,
        max_tiled_pixels=bounds.max_tiled_pixels or Candidate.max_tiled_pixels,
        compute_model=_parameter(image, "compute_model", "") or "in-process",
        threads=int(_parameter(python, "intra_op_threads")))
