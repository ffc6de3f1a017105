"""Read a repository's config.pbtxt files with Triton's own schema.

Kept apart from the repository writer so that `gsam serve`, `gsam health` and the Kubernetes
planner read configs without importing onnx or torch: the serving image installs neither.
"""

from __future__ import annotations

from pathlib import Path

from gsam.errors import GSAMError

# With --oversize-tile, the largest image a request may hold (the tiles bound the compute memory; the decoded
# image and its mask still scale with it).
DEFAULT_MAX_TILED_PIXELS = 100_000_000


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
