"""File helpers shared by every stage: artifacts are written whole or not at all.

Every file and folder gets the mode the umask gives a plain `open` or `mkdir` (0644 and 0755 under the
usual 022), not the 0600/0700 of mkstemp/mkdtemp, so a repository copied into a container is readable
by the non-root user the server runs as.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process's umask, read from /proc where the kernel shows it (setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file (0666) or folder (0777) made by mkstemp/mkdtemp the mode the umask would have given it."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it.

    A reader never sees a half-written file, and a crash leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    apply_umask(tmp_path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(out: str | os.PathLike) -> Iterator[Path]:
    """Stage, verify, rename: yield a path in a fresh folder beside `out`; when the block finishes, move it
    onto `out`, with the files named after it (an ONNX file's external data, OUT.data); if the block
    raises (a failed verification), nothing reaches `out`'s folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    apply_umask(stage, folder=True)  # what is written inside (a folder, when OUT is one) keeps normal modes
    try:
        yield stage / out.name
        for staged in stage.iterdir():
            if staged.name.startswith(out.name):
                os.replace(staged, out.parent / staged.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """The same for a folder: yield a fresh folder beside `out` (which must be missing or empty) and
    rename it onto `out` when the block finishes; a failure leaves nothing at `out`."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    apply_umask(stage, folder=True)  # the stage becomes OUT
    try:
        yield stage
        if out.exists():
            out.rmdir()
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
