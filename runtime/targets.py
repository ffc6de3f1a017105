"""What a model target is (a run, a checkpoint, an ONNX file, an engine, a Triton URL, or something else)
and which backend runs it, so every command that takes a model answers a wrong kind the same way.

    artifact_kind("runs/demo")                 # "run directory"
    open_segmenter("model.onnx")               # OnnxRuntimeSegmenter
    open_segmenter("http://localhost:8000/gsam_image")   # TritonImageSegmenter
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from gsam.errors import GSAMError
from gsam.model.segmenter import Segmenter

from .backends import BACKENDS, guess_backend, load_backend
from .triton_names import IMAGE_MODEL, TENSOR_MODEL

RUNNABLE = "a run directory, .pt, .onnx, .plan or a Triton URL (host:port)"
SUFFIX_KIND = {".pt": "checkpoint", ".pth": "checkpoint", ".onnx": "ONNX file", ".plan": "TensorRT engine",
               ".engine": "TensorRT engine"}
KIND_BACKEND = {"run directory": "torch", "checkpoint": "torch", "ONNX file": "onnxruntime",
                "TensorRT engine": "tensorrt"}
# What to do with an image given where the model goes (gsam.artifacts names the other kinds and their commands).
IMAGE_HINT = "it is an image: give the model first, then the images"
_HOST_PORT = re.compile(r"^[A-Za-z0-9._-]+:\d+(/[A-Za-z0-9_.-]+)?$")


def is_url(target) -> bool:
    """A Triton address: http://, grpc://, or host:port that is not a file here."""
    text = str(target)
    return "://" in text or (bool(_HOST_PORT.match(text)) and not Path(text).exists())


def artifact_kind(target) -> str:
    """The kind of thing `target` names, in the words error messages use."""
    from gsam.data.imageio import IMAGE_SUFFIXES

    if is_url(target):
        return "Triton URL"
    path = Path(target)
    if path.is_dir():
        if (path / "config.pbtxt").is_file():
            return "Triton model folder"
        if any(path.glob("*/config.pbtxt")):
            return "Triton repository"
        if any((path / split / "images").is_dir() for split in ("train", "val", "test")):
            return "dataset"
        return "run directory"
    if not path.exists():
        raise GSAMError(f"{path}: no such file or folder; expected {RUNNABLE}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return SUFFIX_KIND.get(path.suffix.lower(), "file")


def wrong_kind(target, kind: str, command: str, takes: str) -> GSAMError:
    """One line: what was given, what `command` takes, and the commands that take the given kind."""
    from gsam.artifacts import wrong_artifact

    line = wrong_artifact(target, f"{takes}, which {command} takes")
    if line is None:
        article = "an" if kind[0] in "aeiouAEIO" else "a"
        line = f"{target}: {article} {kind}, not {takes}, which {command} takes" + \
            (f"; {IMAGE_HINT}" if kind == "image" else "")
    return GSAMError(line)


def open_segmenter(target, backend: str | None = None, *, command: str = "gsam.load", triton_model: str | None = None,
                   **options) -> Segmenter:
    """The backend for `target`: picked by its kind unless `backend` names one; options go to the backend
    (device and amp for torch, timeout for Triton)."""
    if backend is not None and backend not in BACKENDS:
        raise GSAMError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if is_url(target) or (backend or "").startswith("triton"):
        return _open_triton(str(target), backend, triton_model, options)
    kind_backend = backend or guess_backend(target)
    options.pop("timeout", None)  # a server's; local backends have none
    if kind_backend != "torch":
        for name in ("device", "amp"):
            value = options.pop(name, None)
            if name == "amp" and value not in (None, "off", "auto"):
                raise GSAMError(f"--amp {value} applies to the torch backend only (a run directory or .pt); "
                                f"{target} runs on {kind_backend}")
    kind = artifact_kind(target)
    if kind not in KIND_BACKEND:
        raise wrong_kind(target, kind, command, RUNNABLE)
    return load_backend(kind_backend, target, **options)


def _open_triton(url: str, backend: str | None, model: str | None, options: dict) -> Segmenter:
    parts = urlsplit(url if "://" in url else f"//{url}")
    path_model = parts.path.strip("/") or None
    model = model or path_model
    if backend is None:
        backend = "triton-image" if model == IMAGE_MODEL else "triton-grpc" if parts.scheme == "grpc" else "triton-http"
    if backend == "triton-image" and model in (None, TENSOR_MODEL):
        model = IMAGE_MODEL  # the default names the tensor model; this backend needs the image one
    options = {k: v for k, v in options.items() if k == "timeout"}
    return load_backend(backend, parts.netloc, model=model or TENSOR_MODEL, **options)
