"""Which Triton container image to run: its tag must carry the TensorRT the engines were built with.

A TensorRT plan only deserializes in the TensorRT version that built it, so a repository with
gsam_trt is pinned to the NGC `tritonserver:YY.MM-py3` release that ships that version. The
table maps each monthly release to the TensorRT in its `-py3` image, as NVIDIA's per-release
Triton container release notes list it. Check a row there before relying on it, and add a row
when NVIDIA publishes a release (the `-trtllm-python-py3` images ship other TensorRT versions
and are not covered). Tags are YY.MM-<variant>; a tag in any other form is refused, because
nothing could be said about its TensorRT.
"""

from __future__ import annotations

import re

from gsam.errors import GSAMError

TRITON_REGISTRY = "nvcr.io/nvidia/tritonserver"

# Triton container release -> TensorRT version in its -py3 image.
TENSORRT_BY_RELEASE: dict[str, str] = {
    "24.05": "10.0.1.6",
    "24.06": "10.1.0.27",
    "24.07": "10.2.0.19",
    "24.08": "10.3.0.26",
    "24.09": "10.4.0.26",
    "24.10": "10.5.0.18",
    "24.11": "10.6.0.26",
    "24.12": "10.7.0.23",
    "25.01": "10.8.0.43",
    "25.02": "10.8.0.43",
    "25.03": "10.9.0.34",
    "25.04": "10.9.0.34",
    "25.05": "10.10.0.31",
    "25.06": "10.11.0.33",
    "25.08": "10.13.2.6",
    "25.09": "10.13.3.9",
    "25.10": "10.13.3.9",
}
# Used when no engine pins the release: the newest release in the table.
DEFAULT_RELEASE = max(TENSORRT_BY_RELEASE)

# registry/path:YY.MM-variant, e.g. nvcr.io/nvidia/tritonserver:25.10-py3 or myreg/gsam-triton:25.10-py3-ort
IMAGE_PATTERN = re.compile(r"^(?P<repository>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
                           r":(?P<tag>(?P<release>[0-9]{2}\.[0-9]{2})-[a-z0-9]+([._-][a-z0-9]+)*)$")


def check_image(image: str) -> re.Match:
    """The parsed reference, or GSAMError when the image or its tag is not in the YY.MM-variant form."""
    match = IMAGE_PATTERN.match(image)
    if match is None or "py3" not in match["tag"]:
        raise GSAMError(f"--image {image!r}: expected REPOSITORY:YY.MM-py3 (a Triton container tag such as "
                        f"{TRITON_REGISTRY}:{DEFAULT_RELEASE}-py3, or your image built FROM it with the same "
                        "YY.MM-...py3 tag), so the Triton release and its TensorRT are known")
    return match


def release_of(image: str) -> str:
    return check_image(image)["release"]


def _same_build(a: str, b: str) -> bool:
    """TensorRT versions match on major.minor.patch (plans are not portable across patch releases)."""
    return a.split(".")[:3] == b.split(".")[:3]


def release_for_tensorrt(tensorrt_version: str) -> str:
    """The newest Triton release whose -py3 image ships this TensorRT, or GSAMError."""
    releases = [r for r, v in TENSORRT_BY_RELEASE.items() if _same_build(v, tensorrt_version)]
    if not releases:
        known = ", ".join(sorted({".".join(v.split(".")[:3]) for v in TENSORRT_BY_RELEASE.values()}))
        raise GSAMError(f"gsam_trt was built with TensorRT {tensorrt_version}, which no known Triton release ships "
                        f"(known: {known}); rebuild the engine in a tritonserver container or pass --image")
    return max(releases)


def choose_image(image: str | None, tensorrt_version: str | None) -> tuple[str, str]:
    """(image, Triton release). With an engine, the image's release must ship the engine's TensorRT."""
    if image is None:
        release = release_for_tensorrt(tensorrt_version) if tensorrt_version else DEFAULT_RELEASE
        return f"{TRITON_REGISTRY}:{release}-py3", release
    release = release_of(image)
    if tensorrt_version:
        shipped = TENSORRT_BY_RELEASE.get(release)
        if shipped is None:
            raise GSAMError(f"--image {image!r}: release {release} is not in the TensorRT table, so it cannot be "
                            f"checked against the engine's TensorRT {tensorrt_version}; known releases: "
                            f"{', '.join(sorted(TENSORRT_BY_RELEASE))}")
        if not _same_build(shipped, tensorrt_version):
            raise GSAMError(f"--image {image!r}: Triton {release} ships TensorRT {shipped} but gsam_trt was built with "
                            f"TensorRT {tensorrt_version}; use {TRITON_REGISTRY}:"
                            f"{release_for_tensorrt(tensorrt_version)}-py3 or rebuild the engine")
    return image, release
