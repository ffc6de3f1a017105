"""Costly test artifacts built once per test run and shared by every pytest-xdist worker.

A trained run or a dynamo ONNX export costs minutes of CPU on a 2-core machine; built per worker,
the suite would pay for each as often as it has workers. Each artifact is a folder under the run's
common temporary root (the parent of the workers' own roots), built under a file lock by whichever
worker asks first and marked complete only when its builder returned, so a worker never reads a
half-built artifact and a failed build is retried, not reused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock


def shared_root(tmp_path_factory) -> Path:
    """The temporary folder common to this test run: every xdist worker's basetemp is ROOT/popen-gwN."""
    base = Path(tmp_path_factory.getbasetemp())
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """ROOT/shared/NAME, made by build(folder) the first time any worker asks for it."""
    folder = shared_root(tmp_path_factory) / name
    with FileLock(str(folder) + ".lock"):
        complete = folder / ".complete"
        if not complete.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            complete.touch()
    return folder


def worker_count() -> int:
    """pytest-xdist's workers in this run (1 without xdist)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
