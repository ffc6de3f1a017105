"""What kind of gsam artifact a path is, and which commands take it, for errors that name both.

A user who hands `gsam export onnx` an .onnx file or `gsam predict` a Triton repository should read what they
gave and where it goes, not a loader's complaint ("not a readable PyTorch checkpoint", "has training finished
an epoch?"). Only names and folder contents are read here, so any layer can ask.
"""

from __future__ import annotations

from pathlib import Path

# Each kind, and the commands that take it.
TAKEN_BY = {
    "an ONNX model": "gsam predict, gsam eval, gsam bench, gsam triton build and gsam export tensorrt take it "
                     "(gsam export onnx RUN --onnx FILE --precision fp16|int8 converts it)",
    "a TensorRT engine": "gsam predict, gsam eval and gsam bench take it on its GPU; gsam triton build --engine "
                         "serves it",
    "a Triton model repository": "serve it with gsam serve --repo {path}, then send images with gsam predict "
                                 "--backend triton-grpc --url localhost:8001 IMAGES --out DIR",
    "a Triton model folder": "serve its repository with gsam serve --repo {parent}, then send images with gsam "
                             "predict --backend triton-grpc --url localhost:8001 IMAGES --out DIR",
    "a dataset folder": "gsam train --data {path}, gsam eval RUN --data {path} and gsam data check {path} take it",
}


def artifact_kind(path: str | Path) -> str | None:
    """The kind of artifact at `path` as TAKEN_BY names it, or None for a checkpoint, a run or anything else."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            return "an ONNX model"
        if path.suffix.lower() in (".plan", ".engine"):
            return "a TensorRT engine"
        return None
    if not path.is_dir():
        return None
    if (path / "config.pbtxt").is_file():
        return "a Triton model folder"
    if any((child / "config.pbtxt").is_file() for child in path.iterdir() if child.is_dir()):
        return "a Triton model repository"
    if (path / "train" / "images").is_dir() or (path / "classes.yaml").is_file():
        return "a dataset folder"
    return None


def wrong_artifact(path: str | Path, needed: str) -> str | None:
    """One line naming what `path` is, what the command needed, and which commands take it; None when the
    path is not a recognized artifact of another kind."""
    kind = artifact_kind(path)
    if kind is None:
        return None
    path = Path(path)
    where = TAKEN_BY[kind].format(path=path, parent=path.parent)
    return f"{path}: {kind}, not {needed}; {where}"
