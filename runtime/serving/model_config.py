"""Read a repository's config.pbtxt files with Triton's own schema.

Kept apart from the repository writer so that `gsam serve`, `gsam health` and the Kubernetes
planner read configs without importing onnx or torch: the serving image installs neither.
"""

from __future__ import annotations

from pathlib import Path

from gsam.errors import GSAMError
from gsam.pixels.bounds import BoundsError, RequestBounds


def schema():
    """Triton's model_config_pb2 (from tritonclient)."""
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def parse_config(text: str, source: str = "config.pbtxt"):
    """Parse with Triton's own schema; raises GSAMError naming the problem."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema().ModelConfig())
    except text_format.ParseError as exc:
        raise GSAMError(f"{source}: not a valid Triton model config ({exc})") from None


def read_model_config(model_dir: str | Path):
    path = Path(model_dir) / "config.pbtxt"
    if not path.is_file():
        raise GSAMError(f"{Path(model_dir)}: no config.pbtxt (not a Triton model folder)")
    return parse_config(path.read_text(), str(path))


def with_compute_models(repo: str | Path, models: list[str]) -> list[str]:
    """`models` and the compute models they call through BLS (gsam_image's `compute_model`), in load order:
    a server that loads gsam_image must load what it computes in."""
    needed: list[str] = []
    for model in models:
        if (Path(repo) / model / "config.pbtxt").is_file():
            compute = read_model_config(Path(repo) / model).parameters.get("compute_model")
            if compute is not None and compute.string_value:
                needed.append(compute.string_value)
        needed.append(model)
    return list(dict.fromkeys(needed))


def profile_pixels(config, model_dir: Path) -> int:
    """The largest N x H x W of a model's TensorRT profiles (gsam_onnx's accelerator, gsam_trt's engine
    sidecar in its newest version folder); 0 without any."""
    shapes: list[list[int]] = []
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        text = accelerator.parameters.get("trt_profile_max_shapes", "")
        shapes += [[int(d) for d in part.split(":")[-1].split("x")] for part in text.split(",") if "x" in part]
    if config.platform == "tensorrt_plan":
        from gsam.export.sidecar import EngineSidecar

        versions = sorted((p for p in Path(model_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if versions and (versions[-1] / "model.plan.json").is_file():
            shapes += [list(p.max) for p in EngineSidecar.read(versions[-1] / "model.plan").profiles]
    return max((s[0] * s[2] * s[3] for s in shapes if len(s) == 4), default=0)


def request_bounds(config, model_dir: Path) -> RequestBounds:
    """A served model's request bounds, read by gsam.pixels.bounds from its parsed config.pbtxt."""
    params = {k: v.string_value for k, v in config.parameters.items()}
    try:
        return RequestBounds.read(params, config.max_batch_size, profile_pixels(config, model_dir))
    except BoundsError as exc:
        raise GSAMError(f"{Path(model_dir) / 'config.pbtxt'}: {exc}") from None
