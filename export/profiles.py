"""TensorRT optimization profiles for the `image` input: parse, validate, select, suggest.

A profile is named by its min and max shapes (as mmdeploy does). One wide profile is slow
and memory-hungry (TensorRT plans for the max shape), so `suggest_profiles` buckets the
sizes you expect into a few narrow ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gsam.errors import GSAMError

Shape = tuple[int, int, int, int]


class ProfileError(GSAMError, ValueError):
    """A profile is malformed or no profile fits a request."""


def parse_shape(text: str) -> Shape:
    """'1x3x128x128' -> (1, 3, 128, 128): NCHW with 3 channels."""
    parts = text.strip().lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ProfileError(f"shape {text!r} is not NxCxHxW, e.g. 1x3x512x512")
    shape = tuple(int(p) for p in parts)
    if shape[1] != 3:
        raise ProfileError(f"shape {text!r} has {shape[1]} channels; the image input has 3")
    if min(shape) < 1:
        raise ProfileError(f"shape {text!r} has a zero dimension")
    return shape  # type: ignore[return-value]


def format_shape(shape: tuple[int, ...]) -> str:
    """(1, 3, 128, 128) -> '1x3x128x128', the one spelling used in flags, names and errors."""
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class ShapeProfile:
    min: Shape
    opt: Shape
    max: Shape

    @property
    def name(self) -> str:
        return f"{format_shape(self.min)}-{format_shape(self.max)}"

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def validate(self, min_size: int = 1) -> "ShapeProfile":
        axes = ("batch", "channels", "height", "width")
        for axis, lo, opt, hi in zip(axes, self.min, self.opt, self.max):
            if not lo <= opt <= hi:
                raise ProfileError(f"profile {self.name}: {axis} needs min <= opt <= max, got {lo}, {opt}, {hi}")
        if min(self.min[2:]) < min_size:
            raise ProfileError(f"profile {self.name}: min height/width {self.min[2]}x{self.min[3]} is below the "
                               f"model's minimum side of {min_size}")
        return self

    def flag(self) -> str:
        """The --profile value that parses back to this profile."""
        return f"min={format_shape(self.min)},opt={format_shape(self.opt)},max={format_shape(self.max)}"

    def to_dict(self) -> dict:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: dict) -> "ShapeProfile":
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))  # type: ignore[arg-type]


def parse_profile(text: str, min_size: int = 1) -> ShapeProfile:
    """'min=1x3x128x128,opt=1x3x512x512,max=2x3x1024x1024' -> ShapeProfile (validated)."""
    fields: dict[str, Shape] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ("min", "opt", "max"):
            raise ProfileError(f"profile {text!r}: expected min=NxCxHxW,opt=NxCxHxW,max=NxCxHxW")
        fields[key.strip()] = parse_shape(value)
    missing = [k for k in ("min", "opt", "max") if k not in fields]
    if missing:
        raise ProfileError(f"profile {text!r}: missing {', '.join(missing)}")
    return ShapeProfile(fields["min"], fields["opt"], fields["max"]).validate(min_size)


def onnxruntime_trt_options(profiles: list[ShapeProfile]) -> dict[str, str]:
    """onnxruntime's TensorRT provider options naming each profile's shapes for the `image` input."""
    def join(shapes):
        return ",".join(f"image:{format_shape(s)}" for s in shapes)

    return {"trt_profile_min_shapes": join(p.min for p in profiles),
            "trt_profile_opt_shapes": join(p.opt for p in profiles),
            "trt_profile_max_shapes": join(p.max for p in profiles)}


def select_profile(profiles: list[ShapeProfile], shape: tuple[int, ...]) -> int:
    """Index of the narrowest profile containing `shape`; a clear error naming the profiles otherwise."""
    fitting = [i for i, p in enumerate(profiles) if p.contains(tuple(shape))]
    if not fitting:
        names = ", ".join(p.name for p in profiles)
        raise ProfileError(f"input {format_shape(tuple(shape))} fits none of the engine's profiles ({names}); "
                           "rebuild the engine with a profile that contains it")
    return min(fitting, key=lambda i: profiles[i].max[2] * profiles[i].max[3] * profiles[i].max[0])


def _round(value: int, multiple: int, up: bool) -> int:
    return (-(-value // multiple) if up else value // multiple) * multiple


def suggest_profiles(sizes: list[tuple[int, int]], buckets: int = 3, max_batch: int = 1, min_size: int = 32,
                     multiple: int = 32) -> list[ShapeProfile]:
    """Split expected (H, W) sizes by area into up to `buckets` groups of similar count,
    one profile each: min/max cover the group (rounded to `multiple`), opt is its median."""
    if not sizes:
        raise ProfileError("no sizes to build profiles from")
    ordered = sorted(sizes, key=lambda s: (s[0] * s[1], s))
    count = max(1, min(buckets, len(ordered)))
    groups = [ordered[i * len(ordered) // count:(i + 1) * len(ordered) // count] for i in range(count)]
    profiles = []
    for group in groups:
        hs, ws = sorted(s[0] for s in group), sorted(s[1] for s in group)
        lo = (max(min_size, _round(hs[0], multiple, False)), max(min_size, _round(ws[0], multiple, False)))
        hi = (_round(hs[-1], multiple, True), _round(ws[-1], multiple, True))
        opt = (min(max(hs[len(hs) // 2], lo[0]), hi[0]), min(max(ws[len(ws) // 2], lo[1]), hi[1]))
        profiles.append(ShapeProfile((1, 3, *lo), (1, 3, *opt), (max_batch, 3, *hi)).validate(min_size))
    return profiles


def sizes_from_dataset(root: str | Path) -> list[tuple[int, int]]:
    """(H, W) of every image under DATA/*/images, read from file headers."""
    from gsam.data.imageio import IMAGE_SUFFIXES, image_size

    paths = sorted(p for p in Path(root).glob("*/images/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ProfileError(f"{root}: no images under {root}/*/images")
    return [tuple(image_size(p)) for p in paths]
