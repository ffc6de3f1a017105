"""TensorRT optimization profiles for the `image` input: parse, validate, select, suggest.

A profile is named by its min and max shapes (as mmdeploy does). One wide profile is slow
and memory-hungry (TensorRT plans for the max shape), so `suggest` splits the sizes you expect
into a few narrow profiles that never overlap, so that the profile a request runs in (and each
profile's warm-up, `exclusive_shape`) is never ambiguous.
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


def exclusive_shape(profiles: list[ShapeProfile], index: int, max_batch: int | None = None) -> Shape | None:
    """A shape that profile `index` contains and no other profile does, the nearest to its opt (its opt
    when that is unique); None when every shape of it lies in another profile too. `max_batch` caps the
    batch (a model with Triton batching takes no request above its max_batch_size).

    Triton's tensorrt backend sends a request to one of the profiles that contain it, so only such a
    shape reaches this profile for sure (a warm-up at any other may warm another profile instead).
    Profiles are boxes, so one candidate per cell of the grid their bounds make suffices: per axis, this
    profile's min, opt (or the cap) and the other profiles' min and max + 1 inside its range.
    """
    own, others = profiles[index], [p for i, p in enumerate(profiles) if i != index]
    axes = []
    for axis in range(4):
        lo, hi = own.min[axis], own.max[axis]
        if axis == 0 and max_batch is not None:
            hi = min(hi, max_batch)
            if hi < lo:
                return None
        edges = {min(own.opt[axis], hi), lo} | {v for p in others for v in (p.min[axis], p.max[axis] + 1)
                                                if lo <= v <= hi}
        axes.append(sorted(edges, key=lambda v: abs(v - own.opt[axis])))
    candidates = [(n, c, h, w) for n in axes[0] for c in axes[1] for h in axes[2] for w in axes[3]]
    alone = [s for s in candidates if not any(p.contains(s) for p in others)]
    return min(alone, key=lambda s: sum(abs(a - b) for a, b in zip(s, own.opt)), default=None)


PROFILE_OBJECTIVE = ("the activation memory of the profile each image runs in: TensorRT reserves a profile's "
                     "memory for its max shape, so the mean over the images of max height x max width of the "
                     "profile that contains the image, with profiles that never overlap")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


Sizes = tuple[tuple[tuple[int, int], int], ...]  # ((height, width), how many images), ...
Limit = tuple[int | None, int | None]  # a region's inclusive upper bounds on H and W (None: unbounded)


def _replace(pair: tuple, axis: int, value: int) -> tuple:
    return (value, pair[1]) if axis == 0 else (pair[0], value)


def _max_shape(top: tuple[int, int], limit: Limit, multiple: int) -> tuple[int, int]:
    """The largest size rounded up to `multiple`, kept inside the region."""
    h, w = (_round_up(v, multiple) for v in top)
    return (h if limit[0] is None else min(h, limit[0]), w if limit[1] is None else min(w, limit[1]))


@dataclass(frozen=True)
class _Region:
    """One cell of the guillotine cuts: lower corner, upper limit, and the sizes that fall inside."""

    lo: tuple[int, int]
    hi: Limit
    sizes: Sizes

    def max_shape(self, multiple: int) -> tuple[int, int]:
        return _max_shape((max(s[0] for s, _ in self.sizes), max(s[1] for s, _ in self.sizes)), self.hi, multiple)

    def cost(self, multiple: int) -> int:
        h, w = self.max_shape(multiple)
        return sum(c for _, c in self.sizes) * h * w

    def _cut_costs(self, axis: int, multiple: int):
        """(cost of both sides, cut) for every cut between neighbouring sizes along `axis`: the cut sits on a
        multiple of `multiple` where one lies between them, so the lower side's rounded max stays below it."""
        ordered = sorted(self.sizes, key=lambda x: x[0][axis])
        running, ahead = [(0, 0, 0)], [(0, 0, 0)]
        for items, sums in ((ordered, running), (ordered[::-1], ahead)):
            for (h, w), n in items:
                sums.append((sums[-1][0] + n, max(sums[-1][1], h), max(sums[-1][2], w)))
        for i in range(1, len(ordered)):
            a, b = ordered[i - 1][0][axis], ordered[i][0][axis]
            if a == b:
                continue
            cut = _round_up(a, multiple) if _round_up(a, multiple) < b else a
            (n1, h1, w1), (n2, h2, w2) = running[i], ahead[len(ordered) - i]
            low = _max_shape((h1, w1), _replace(self.hi, axis, cut), multiple)
            high = _max_shape((h2, w2), self.hi, multiple)
            yield n1 * low[0] * low[1] + n2 * high[0] * high[1], cut

    def best_cut(self, multiple: int) -> tuple[int, "_Region", "_Region"] | None:
        """(cost after, lower side, upper side) of the cheapest cut, or None for a single size."""
        found = [(cost, axis, cut) for axis in (0, 1) for cost, cut in self._cut_costs(axis, multiple)]
        if not found:
            return None
        cost, axis, cut = min(found)
        return (cost, _Region(self.lo, _replace(self.hi, axis, cut), tuple(x for x in self.sizes if x[0][axis] <= cut)),
                _Region(_replace(self.lo, axis, cut + 1), self.hi, tuple(x for x in self.sizes if x[0][axis] > cut)))


@dataclass(frozen=True)
class ProfileSuggestion:
    profiles: list[ShapeProfile]
    images: list[int]  # how many of the sizes each profile serves
    mean_pixels: float  # the objective: mean max-shape pixels of the profile each image runs in
    one_profile_pixels: float  # the same for one profile covering every size

    def describe(self) -> list[str]:
        lines = [f"objective: {PROFILE_OBJECTIVE}.",
                 f"{len(self.profiles)} profile(s): {self.mean_pixels / 1e6:.3f} Mpixel per image; one profile "
                 f"covering every size: {self.one_profile_pixels / 1e6:.3f} "
                 f"({self.mean_pixels / self.one_profile_pixels:.2f}x)"]
        return lines + [f"profile {i}: {n} image(s), {p.name}, opt {format_shape(p.opt)}"
                        for i, (p, n) in enumerate(zip(self.profiles, self.images))]


def _profile(region: _Region, max_batch: int, multiple: int) -> ShapeProfile:
    """Min: the region's lower corner (a lower min costs no memory, and serves smaller images); max: the
    region's sizes rounded up to `multiple`; opt: its median size by pixels, an actual size."""
    ordered = sorted((s for s, c in region.sizes for _ in range(c)), key=lambda s: (s[0] * s[1], s))
    return ShapeProfile((1, 3, *region.lo), (1, 3, *ordered[len(ordered) // 2]),
                        (max_batch, 3, *region.max_shape(multiple)))


def suggest(sizes: list[tuple[int, int]], buckets: int = 3, max_batch: int = 1, min_size: int = 32,
            multiple: int = 32) -> ProfileSuggestion:
    """Up to `buckets` profiles that never overlap and cover every size, chosen to minimize
    PROFILE_OBJECTIVE: guillotine cuts of the (H, W) plane, each time the cut (between two neighbouring
    heights or widths of one region) that lowers the objective most, while one does. Sizes of mixed
    aspect ratio fall on either side of a cut along H or W; a skewed list stops early."""
    if not sizes:
        raise ProfileError("no sizes to build profiles from")
    small = [s for s in sizes if min(s) < min_size]
    if small:
        raise ProfileError(f"size {small[0][0]}x{small[0][1]} is below the model's minimum side of {min_size}")
    counts: dict[tuple[int, int], int] = {}
    for h, w in sizes:
        counts[(h, w)] = counts.get((h, w), 0) + 1
    whole = _Region((min_size, min_size), (None, None), tuple(sorted(counts.items())))
    regions = [whole]
    while len(regions) < buckets:
        cuts = [(cut[0] - r.cost(multiple), i, cut) for i, r in enumerate(regions) if (cut := r.best_cut(multiple))]
        if not cuts or min(cuts, key=lambda c: c[0])[0] >= 0:
            break
        _, i, (_, low, high) = min(cuts, key=lambda c: c[0])
        regions[i:i + 1] = [low, high]
    regions.sort(key=lambda r: (r.max_shape(multiple)[0] * r.max_shape(multiple)[1], r.lo))
    return ProfileSuggestion([_profile(r, max_batch, multiple).validate(min_size) for r in regions],
                             [sum(c for _, c in r.sizes) for r in regions],
                             sum(r.cost(multiple) for r in regions) / len(sizes), whole.cost(multiple) / len(sizes))


def suggest_profiles(sizes: list[tuple[int, int]], buckets: int = 3, max_batch: int = 1, min_size: int = 32,
                     multiple: int = 32) -> list[ShapeProfile]:
    """suggest(...)'s profiles."""
    return suggest(sizes, buckets, max_batch, min_size, multiple).profiles


def sizes_from_dataset(root: str | Path) -> list[tuple[int, int]]:
    """(H, W) of every image under DATA/*/images, read from file headers."""
    from gsam.data.imageio import IMAGE_SUFFIXES, image_size

    paths = sorted(p for p in Path(root).glob("*/images/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ProfileError(f"{root}: no images under {root}/*/images")
    return [tuple(image_size(p)) for p in paths]
