"""Each candidate as a real repository: the original's ONNX file rebuilt with `gsam triton build`'s own
function, so a tuned repository is exactly what `gsam triton build` with those options would write."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gsam.errors import GSAMError
from gsam.runtime.triton_names import ENGINE_MODEL, IMAGE_MODEL, TENSOR_MODEL

from .space import Candidate

GSAM_PARAMETERS = ("onnx_sha256", "probe_fingerprint")


def _version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    if not versions:
        raise GSAMError(f"{model_dir}: no version folder (1/, 2/, ...)")
    return max(versions)


def check_repository(repo: Path) -> tuple[Path, str, int]:
    """(the served ONNX file, its original name, the version) of a repository `gsam triton build` wrote;
    anything else is a one-line error."""
    from gsam.runtime.serving.model_config import read_model_config

    if not repo.is_dir():
        raise GSAMError(f"{repo}: no such repository folder")
    if (repo / ENGINE_MODEL).is_dir():
        raise GSAMError(f"{repo}: has gsam_trt; tuning engine profiles needs a GPU host, and gsam tune searches "
                        "CPU repositories (gsam_python, gsam_image) for now")
    for model in (TENSOR_MODEL, IMAGE_MODEL):
        if not (repo / model / "config.pbtxt").is_file():
            raise GSAMError(f"{repo}: not a repository built by `gsam triton build` (no {model}/config.pbtxt)")
        config = read_model_config(repo / model)
        missing = [p for p in GSAM_PARAMETERS if p not in config.parameters]
        if missing:
            raise GSAMError(f"{repo}/{model}: not built by `gsam triton build` (its config has no {missing[0]}); "
                            "rebuild it with gsam triton build")
    version = _version(repo / TENSOR_MODEL)
    onnx = repo / TENSOR_MODEL / str(version) / "model.onnx"
    if not onnx.is_file():
        raise GSAMError(f"{repo}: gsam_python/{version}/model.onnx is missing")
    name = read_model_config(repo / TENSOR_MODEL).parameters["onnx_file"].string_value or "model.onnx"
    return onnx, name, version


def write_candidate(repo: Path, candidate: Candidate, dest: Path) -> Path:
    """Write `candidate` as a repository at `dest` (replacing it) from `repo`'s ONNX file. The file is
    copied under its original name first, so the configs' lineage names the same file as the original's."""
    from gsam.deploy.triton.repository import Batching, Tiling, build_repository

    onnx, name, version = check_repository(repo)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as staging:
        source = Path(staging) / name
        shutil.copyfile(onnx, source)
        external = onnx.with_name(name + ".data")
        if external.is_file():
            shutil.copyfile(external, source.with_name(name + ".data"))
        batching = (Batching(candidate.max_batch, (candidate.preferred_batch,) if candidate.preferred_batch else (),
                             candidate.queue_delay_us) if candidate.max_batch > 1 else None)
        build_repository(source, dest, version=version, instances=candidate.instances, max_pixels=candidate.max_pixels,
                         batching=batching,
                         tiling=Tiling(candidate.oversize_tile, candidate.overlap, candidate.max_tiled_pixels),
                         compute_model=candidate.compute_model, intra_op_threads=candidate.threads,
                         log=lambda line: None)
    dest.chmod(0o755)  # tritonserver may run as another user (gsam serve started as root)
    return dest
