"""Running the real `gsam serve` in tests as root, with its privilege drop for real.

Started as root, gsam serve runs tritonserver and its python stubs as `nobody`, who must read the
repository and run this Python. On a machine whose Python lives under a 0700 /root (pyenv as root), nobody
cannot; there gsam serve runs inside a private mount namespace where /root is a traversable tmpfs holding
only the interpreter's folder, bound through /mnt, and room for a cache (the machine's /root and /mnt are
not changed). Repositories go to a world-readable temporary folder. Without root, no drop happens and
nothing of this is needed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from gsam.runtime.serving.serve_process import ServeProcess

_EXPOSE = r"""
set -e
prefix="$1"; shift
mount --bind "$prefix" /mnt
mount -t tmpfs -o mode=0755,size=64m gsam-test-root /root
mkdir -p "$prefix"
mount --bind /mnt "$prefix"
exec "$@"
"""


def _nobody_runs_python(prefix: tuple[str, ...] = ()) -> bool:
    """Whether a child switched to nobody (as gsam serve switches tritonserver) can run this Python."""
    drop = "import os, sys; os.setgroups([]); os.setgid(65534); os.setuid(65534); os.execv(sys.argv[1], sys.argv[1:])"
    command = [*prefix, sys.executable, "-c", drop, sys.executable, "-c", "import numpy"]
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=1)
def serve_prefix() -> tuple[str, ...] | None:
    """The wrapper gsam serve needs here: () when nobody can run this Python already (or we are not root),
    the mount-namespace wrapper when that makes it so, None when neither works (no drop can be tested)."""
    if os.geteuid() != 0 or _nobody_runs_python():
        return ()
    real = Path(sys.executable).resolve()
    parts = real.parts
    if len(parts) < 3 or parts[1] != "root" or not shutil.which("unshare") or not os.path.isdir("/mnt"):
        return None
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", _EXPOSE, "expose",
              str(Path(*parts[:3])))
    return prefix if _nobody_runs_python(prefix) else None


def readable_dir(prefix: str = "gsam-test-") -> Path:
    """A fresh folder every user may read (pytest's own are 0700 under /tmp/pytest-of-root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


@contextlib.contextmanager
def readable_repository(onnx_file, max_pixels: int):
    """A repository of `onnx_file` bounded at `max_pixels`, in a folder tritonserver's user can read; removed after."""
    from gsam.deploy.triton.repository import build_repository

    folder = readable_dir()
    try:
        build_repository(onnx_file, folder / "triton_models", max_pixels=max_pixels, log=lambda s: None)
        yield folder / "triton_models"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def serve(repo, models, *, args=(), **kwargs) -> ServeProcess:
    """ServeProcess of the real gsam serve, dropping privileges where this machine lets a test do so (else
    `--user root`, said by drop_tested())."""
    prefix = serve_prefix()
    if prefix is None:
        return ServeProcess(repo, models, args=("--user", "root", *args), **kwargs)
    return ServeProcess(repo, models, args=args, prefix=prefix, **kwargs)


def drop_tested() -> bool:
    return os.geteuid() == 0 and serve_prefix() is not None
