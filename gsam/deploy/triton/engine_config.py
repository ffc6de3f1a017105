"""What Triton's tensorrt backend can do for gsam_trt, decided from the engine's profiles.

The rules come from the backend's sources (docs/facts.md, "Triton's tensorrt backend"):
- batching: the dynamic batcher knows nothing about profiles, so every batch from 1 to
  max_batch_size, at every height and width a profile allows, must fit that profile. That holds for
  max_batch_size = the smallest of the profiles' max batches, when every profile starts at batch 1;
- `execution_context_allocation_strategy: ON_PROFILE_CHANGE` (Triton 25.05 and later; earlier
  releases ignore the key) gives each profile's context the memory of its own profile, instead of
  every context holding memory for the largest one;
- CUDA graphs are captured per profile for exact shapes; a request runs a graph only at a captured
  shape. With max_batch_size 0 the backend captures graphs under batch 0 but looks them up under
  batch 1, so they are never used (up to the releases read): graphs need batching.
- the backend tries every graph_spec on every listed profile's context. A spec with `input` dims fails
  (logging "Failed to set cuda graph shape") on each profile that does not contain them; a spec with a
  batch size only is captured at each context's own opt shape with that batch (SetCudaGraphShape, "for
  default graph spec, opt dims are used"). gsam's specs carry batch sizes only, so each is bound to the
  profile it is captured in, and every batch 1..max_batch_size fits every profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from gsam.export.profiles import ShapeProfile


@dataclass(frozen=True)
class EngineBatching:
    max_batch_size: int  # 0: no batching (requests carry their own batch, within a profile)
    reason: str  # why, in a sentence for the build's log


def engine_batching(profiles: list[ShapeProfile]) -> EngineBatching:
    """Triton batching for these profiles: the largest batch every profile takes, when all start at 1."""
    if any(p.min[0] != 1 for p in profiles):
        starts = ", ".join(f"{p.name} starts at batch {p.min[0]}" for p in profiles if p.min[0] != 1)
        return EngineBatching(0, f"no dynamic batching: a batch of 1 must fit every profile ({starts})")
    largest = min(p.max[0] for p in profiles)
    if largest < 2:
        return EngineBatching(0, "no dynamic batching: a profile's max batch is 1 (build the engine with max "
                                 "batch >= 2 in every profile, e.g. --profile min=1x3x..,opt=..,max=4x3x..)")
    return EngineBatching(largest, f"dynamic batching up to {largest} (the smallest max batch of the profiles)")


def allocation_strategy(profiles: list[ShapeProfile]) -> str | None:
    """ON_PROFILE_CHANGE with several profiles; the backend's default (STATIC) with one."""
    return "ON_PROFILE_CHANGE" if len(profiles) > 1 else None


def graph_batches(profiles: list[ShapeProfile], batching: EngineBatching) -> list[int]:
    """The batch sizes of the graph specs (no input dims): 1, each profile's opt batch and the largest batch,
    up to max_batch_size."""
    wanted = {1, batching.max_batch_size, *(p.opt[0] for p in profiles)}
    return sorted(b for b in wanted if 1 <= b <= batching.max_batch_size)

