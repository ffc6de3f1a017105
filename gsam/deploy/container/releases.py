"""Which Triton container image to run: its tag must carry the TensorRT the engines were built with.

A TensorRT plan only deserializes in the TensorRT version that built it, so a repository with
gsam_trt is pinned to the NGC `tritonserver:YY.MM-py3` release that ships that version. RELEASES
has one row per monthly release from 24.05 to 26.10, each marked confirmed or not, with its
source. No row's TensorRT could be confirmed from a first-party NVIDIA source (the per-release
container notes' package lists were not readable; Triton's own compatibility matrix covers only
the `-trtllm-python-py3` images, which ship other TensorRT versions), so every row says so and
`gsam triton k8s` prints the mark of the release it picked. Check a row with
`docker run --rm IMAGE bash -c "dpkg -l | grep -E 'libnvinfer|tensorrt'"` before a GPU rollout,
and set `confirmed` with the source when you have.

`pip install 'gsam[gpu]'` installs GPU_EXTRA_TENSORRT (pyproject.toml pins it), so with no engine to
go by the default image is the newest release whose row lists that version: an engine built after
the documented install matches the default image. Tags are YY.MM-<variant>; a tag in any other
form is refused, because nothing could be said about its TensorRT.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gsam.errors import GSAMError

TRITON_REGISTRY = "nvcr.io/nvidia/tritonserver"
# What `pip install 'gsam[gpu]'` installs: pyproject.toml's gpu extra pins it (tests check they agree).
GPU_EXTRA_TENSORRT = "10.13.3.9"

_PY3_NOTES = "TensorRT not listed in any first-party source read"
_TRT11 = ("TensorRT 11.x likely (Triton's tests and onnxruntime backend were made TensorRT-11 compatible for "
          "26.06) but no version published")


@dataclass(frozen=True)
class TritonRelease:
    release: str  # YY.MM
    triton: str | None  # the server's version (r<release> branch's TRITON_VERSION); None: not published yet
    tensorrt: str | None  # TensorRT in the -py3 image; None: unknown
    confirmed: bool  # tensorrt read from a first-party NVIDIA source
    source: str  # where the row comes from, and why it is not confirmed

    def mark(self) -> str:
        """One line for `gsam triton k8s`: what the table says of this release and how sure it is."""
        what = f"TensorRT {self.tensorrt}" if self.tensorrt else "an unknown TensorRT"
        if self.confirmed:
            return f"Triton {self.release} ships {what} (confirmed: {self.source})"
        return (f"Triton {self.release} ships {what} according to gsam's table, UNCONFIRMED ({self.source}); "
                f"check: docker run --rm {TRITON_REGISTRY}:{self.release}-py3 bash -c "
                "\"dpkg -l | grep -E 'libnvinfer|tensorrt'\"")


def _row(release: str, triton: str | None, tensorrt: str | None, source: str = _PY3_NOTES) -> TritonRelease:
    return TritonRelease(release, triton, tensorrt, False, source)


RELEASES: tuple[TritonRelease, ...] = (
    _row("24.05", "2.46.0", "10.0.1.6", _PY3_NOTES + "; NVIDIA's MXNet 24.05 container notes list 10.0.1.6"),
    _row("24.06", "2.47.0", "10.1.0.27"),
    _row("24.07", "2.48.0", "10.2.0.19", _PY3_NOTES + "; the r24.07 Windows build pins the same"),
    _row("24.08", "2.49.0", "10.3.0.26", _PY3_NOTES + "; the r24.08 Windows build pins the same"),
    _row("24.09", "2.50.0", "10.4.0.26", _PY3_NOTES + "; the r24.09 Windows build pins the same"),
    _row("24.10", "2.51.0", "10.5.0.18"),
    _row("24.11", "2.52.0", "10.6.0.26"),
    _row("24.12", "2.53.0", "10.7.0.23", _PY3_NOTES + "; the r24.12 Windows build pins the same"),
    _row("25.01", "2.54.0", "10.8.0.43"),
    _row("25.02", "2.55.0", "10.8.0.43", _PY3_NOTES + "; the r25.02 Windows build pins the same"),
    _row("25.03", "2.56.0", "10.9.0.34"),
    _row("25.04", "2.57.0", "10.9.0.34"),
    _row("25.05", "2.58.0", "10.10.0.31"),
    _row("25.06", "2.59.0", "10.11.0.33"),
    _row("25.07", "2.59.1", None, "a patch release built out of 25.06 (its release notes); TensorRT not stated"),
    _row("25.08", "2.60.0", "10.13.2.6"),
    _row("25.09", "2.61.0", "10.13.3.9"),
    _row("25.10", "2.62.0", "10.13.3.9"),
    _row("25.11", "2.63.0", None, "TensorRT not stated in any source read"),
    _row("25.12", "2.64.0", None, "TensorRT not stated in any source read"),
    _row("26.01", "2.65.0", None, "TensorRT not stated in any source read"),
    _row("26.02", "2.66.0", None, "TensorRT not stated in any source read"),
    _row("26.03", "2.67.0", None, "TensorRT not stated in any source read"),
    _row("26.04", "2.68.0", None, "TensorRT not stated in any source read"),
    _row("26.05", "2.69.0", None, "TensorRT not stated in any source read"),
    _row("26.06", "2.70.0", None, _TRT11),
    _row("26.07", "2.71.0", None, _TRT11),
    _row("26.08", "2.72.0", None, _TRT11),
    _row("26.09", "2.73.0", None, _TRT11),
    _row("26.10", None, None, _TRT11 + "; the newest release notes found"),
)
BY_RELEASE = {r.release: r for r in RELEASES}
# Triton container release -> TensorRT version in its -py3 image, where the table has one.
TENSORRT_BY_RELEASE: dict[str, str] = {r.release: r.tensorrt for r in RELEASES if r.tensorrt}

# registry/path:YY.MM-variant, e.g. nvcr.io/nvidia/tritonserver:25.10-py3 or myreg/gsam-triton:25.10-py3-ort
IMAGE_PATTERN = re.compile(r"^(?P<repository>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
                           r":(?P<tag>(?P<release>[0-9]{2}\.[0-9]{2})-[a-z0-9]+([._-][a-z0-9]+)*)$")


def _same_build(a: str, b: str) -> bool:
    """TensorRT versions match on major.minor.patch (plans are not portable across patch releases)."""
    return a.split(".")[:3] == b.split(".")[:3]


def release_for_tensorrt(tensorrt_version: str) -> str:
    """The newest Triton release whose -py3 image ships this TensorRT, or GSAMError."""
    releases = [r for r, v in TENSORRT_BY_RELEASE.items() if _same_build(v, tensorrt_version)]
    if not releases:
        known = ", ".join(sorted({".".join(v.split(".")[:3]) for v in TENSORRT_BY_RELEASE.values()}))
        unknown = ", ".join(r.release for r in RELEASES if not r.tensorrt)
        raise GSAMError(f"gsam_trt was built with TensorRT {tensorrt_version}, which no known Triton release ships "
                        f"(known: {known}; unknown for {unknown}); rebuild the engine in a tritonserver container, or "
                        "pass --container-image with the release you checked ships it")
    return max(releases)


# Used when no engine pins the release: the newest release with the TensorRT the gpu extra installs.
DEFAULT_RELEASE = release_for_tensorrt(GPU_EXTRA_TENSORRT)


def check_image(image: str) -> re.Match:
    """The parsed reference, or GSAMError when the image or its tag is not in the YY.MM-variant form."""
    match = IMAGE_PATTERN.match(image)
    if match is None or "py3" not in match["tag"]:
        raise GSAMError(f"--container-image {image!r}: expected REPOSITORY:YY.MM-py3 (a Triton container tag such as "
                        f"{TRITON_REGISTRY}:{DEFAULT_RELEASE}-py3, or your image built FROM it with the same "
                        "YY.MM-...py3 tag), so the Triton release and its TensorRT are known")
    return match


def release_of(image: str) -> str:
    return check_image(image)["release"]


def release_mark(release: str) -> str:
    """The table's line on `release` (confirmed or not, and from where)."""
    row = BY_RELEASE.get(release)
    if row is None:
        return f"Triton {release} is not in gsam's release table; its TensorRT is unknown"
    return row.mark()


def choose_image(image: str | None, tensorrt_version: str | None) -> tuple[str, str]:
    """(image, Triton release). With an engine, the image's release must ship the engine's TensorRT, as far
    as the table knows it: a release of the table with an unknown TensorRT is accepted (release_mark says
    it was not checked), one outside the table is refused."""
    if image is None:
        release = release_for_tensorrt(tensorrt_version) if tensorrt_version else DEFAULT_RELEASE
        return f"{TRITON_REGISTRY}:{release}-py3", release
    release = release_of(image)
    if tensorrt_version:
        if release not in BY_RELEASE:
            raise GSAMError(f"--container-image {image!r}: release {release} is not in the TensorRT table, so it cannot be "
                            f"checked against the engine's TensorRT {tensorrt_version}; known releases: "
                            f"{RELEASES[0].release} to {RELEASES[-1].release}")
        shipped = BY_RELEASE[release].tensorrt
        if shipped and not _same_build(shipped, tensorrt_version):
            raise GSAMError(f"--container-image {image!r}: Triton {release} ships TensorRT {shipped} but gsam_trt was built with "
                            f"TensorRT {tensorrt_version}; use {TRITON_REGISTRY}:"
                            f"{release_for_tensorrt(tensorrt_version)}-py3 or rebuild the engine")
    return image, release
