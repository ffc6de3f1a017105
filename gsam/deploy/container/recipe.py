"""The image the pods run: built FROM the chosen Triton release with gsam and the python models' pinned
dependencies installed, so nothing is installed when a pod starts.

`gsam triton k8s` writes the build context to DIR/image/: a Dockerfile, requirements.txt (exact
versions) and a wheel of the gsam it runs (wheel.py). The manifests name that image: `--container-image`, a
reference `REPOSITORY:YY.MM-...py3` whose tag states the Triton release, `...@sha256:DIGEST` to pin
the very build (a digest alone is accepted too; the release is then the one the Dockerfile was
written FROM), or by default the local name `gsam-triton:YY.MM-py3-gsamVERSION`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata

from gsam import __version__
from gsam.deploy.container.releases import DEFAULT_RELEASE, TRITON_REGISTRY, check_image, release_for_tensorrt
from gsam.errors import GSAMError

DIGEST_PATTERN = re.compile(r"^(?P<name>[^@]+)@(?P<digest>sha256:[0-9a-f]{64})$")
# A repository without a tag, as it may stand before @sha256:...
REPOSITORY_PATTERN = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
IMAGE_NAME = "gsam-triton"
IMAGE_USER = 1000  # triton-server, uid and gid 1000 in NVIDIA's -py3 images

# What the image installs: the python models' imports (onnxruntime, numpy, Pillow, tifffile), the gsam CLI's
# (click, PyYAML), the serving clients gsam's `serve` extra names (tritonclient) and gsam serve's HTTP
# gateway (aiohttp; its gRPC gateway uses grpcio from tritonclient[grpc]).
PACKAGES = ("onnxruntime", "numpy", "pillow", "tifffile", "click", "PyYAML", "tritonclient", "aiohttp")
EXTRAS = {"tritonclient": "[http,grpc]"}
# Versions that install on the image's Python when this environment's do not (or are absent here), checked
# with `pip index versions PACKAGE --python-version X --only-binary=:all:` and `pip download`: the -py3 images
# run Python 3.10 up to 24.10 and 3.12 from 24.11 (Ubuntu 22.04 -> 24.04).
DOCUMENTED_PINS = {
    "3.10": {"onnxruntime": "1.23.2", "onnxruntime-gpu": "1.23.2", "numpy": "1.26.4", "pillow": "12.3.0",
             "tifffile": "2025.5.10", "click": "8.5.1", "PyYAML": "6.0.4", "tritonclient": "2.73.0",
             "aiohttp": "3.14.5"},
    "3.12": {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1", "numpy": "1.26.4", "pillow": "13.0.0",
             "tifffile": "2026.3.3", "click": "8.5.1", "PyYAML": "6.0.4", "tritonclient": "2.73.0",
             "aiohttp": "3.14.5"},
}


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    release: str | None  # the YY.MM of the tag; None for a digest-only reference
    digest: str | None

    @property
    def is_stock_triton(self) -> bool:
        return self.repository == TRITON_REGISTRY


def parse_image(image: str) -> ImageRef:
    """REPOSITORY:YY.MM-...py3, optionally @sha256:DIGEST, or REPOSITORY@sha256:DIGEST; GSAMError otherwise."""
    found = DIGEST_PATTERN.match(image)
    name, digest = (found["name"], found["digest"]) if found else (image, None)
    if digest and REPOSITORY_PATTERN.match(name):
        return ImageRef(name, None, None, digest)
    if "@" in name:
        raise GSAMError(f"--container-image {image!r}: a digest is @sha256: and 64 lower-case hex digits")
    match = check_image(name)
    return ImageRef(match["repository"], match["tag"], match["release"], digest)


def image_python(release: str) -> str:
    """The Python of NVIDIA's -py3 image of this release."""
    return "3.10" if release < "24.11" else "3.12"


def default_image(release: str) -> str:
    return f"{IMAGE_NAME}:{release}-py3-gsam{__version__}"


def base_image(release: str) -> str:
    return f"{TRITON_REGISTRY}:{release}-py3"


def image_release(ref: ImageRef | None, tensorrt_version: str | None) -> str:
    """The release a digest-only or absent --container-image is built FROM: the engine's, else the newest known."""
    if ref is not None and ref.release is not None:
        return ref.release
    return release_for_tensorrt(tensorrt_version) if tensorrt_version else DEFAULT_RELEASE


def _admits(distribution: str, python: str) -> bool:
    """Whether this environment's installed `distribution` declares support for `python`."""
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(metadata.metadata(distribution).get("Requires-Python") or "").contains(python)


def pinned_requirements(release: str, gpu: bool) -> list[tuple[str, str, str]]:
    """(requirement, version, where the version comes from) for the image of this release: this environment's
    version (what gsam ran with here) when it supports the image's Python, else the documented one."""
    python = image_python(release)
    rows = []
    for package in PACKAGES:
        name = "onnxruntime-gpu" if package == "onnxruntime" and gpu else package
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            here = ""
        if here and _admits(name, python):
            version, source = here, f"this environment (Python {sys.version_info.major}.{sys.version_info.minor})"
        else:
            version, source = DOCUMENTED_PINS[python][name], f"documented for Python {python}"
        rows.append((f"{name}{EXTRAS.get(name, '')}", version, source))
    return rows


def requirements_text(release: str, gpu: bool) -> str:
    lines = [f"# Exact versions for Python {image_python(release)} in {base_image(release)}; written by gsam "
             f"{__version__}."]
    for requirement, version, source in pinned_requirements(release, gpu):
        lines.append(f"{requirement}=={version}  # {source}")
    return "\n".join(lines) + "\n"


def dockerfile_text(release: str, wheel_name: str, image: str) -> str:
    """FROM the Triton release, the pinned requirements and gsam's wheel installed at build time, the
    non-root user of NVIDIA's image; nothing is installed when a pod starts."""
    return f"""# Generated by gsam {__version__} (`gsam triton k8s`); build it from this folder and push it:
#   docker build -t REGISTRY/{image} . && docker push REGISTRY/{image}
# then regenerate the manifests with --container-image REGISTRY/{image}@sha256:DIGEST (the digest the push printed).
FROM {base_image(release)}
COPY requirements.txt {wheel_name} /tmp/gsam-image/
RUN python3 -m pip install --no-cache-dir -r /tmp/gsam-image/requirements.txt \\
 && python3 -m pip install --no-cache-dir --no-deps /tmp/gsam-image/{wheel_name} \\
 && rm -rf /tmp/gsam-image \\
 && gsam --version
ENV PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER {IMAGE_USER}:{IMAGE_USER}
"""
