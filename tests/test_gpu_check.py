"""benchmarks/gpu_check.py on a bare machine: no .git, no git, no onnxruntime. The first GPU machine may be
lent for minutes with a copy of the tree and nothing else; the check must still write its whole report and
say per section what ran and what was skipped, and why. Its engine sections report what they lack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# A sitecustomize that hides these packages from the import system, as on a machine where they are not
# installed: importlib.util.find_spec gives None and `import` raises ModuleNotFoundError.
BLOCKER = '''import sys
from importlib.machinery import PathFinder
class _Hidden(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            return None
        return PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [_Hidden if finder is PathFinder else finder for finder in sys.meta_path]
'''


def bare_environment(tmp_path: Path, absent: tuple[str, ...]) -> dict[str, str]:
    """PATH without git (an empty folder), and a sitecustomize that makes `absent` unimportable."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BLOCKER.format(names=set(absent)))
    (tmp_path / "bin").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GIT_DIR")}
    return env | {"PATH": str(tmp_path / "bin"), "PYTHONPATH": str(shim)}


def copy_tree(dest: Path) -> Path:
    """The checkout's files without .git, the venv, caches and results (what a lent machine gets)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis",
                                    "results", "demo_out", "runs", "*.onnx", "*.plan", "*.pt")
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    return dest


def test_the_bare_environment_is_bare(tmp_path):
    env = bare_environment(tmp_path, ("onnxruntime",))
    assert shutil.which("git", path=env["PATH"]) is None
    probe = subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'onnxruntime'" in probe.stderr


@pytest.mark.slow
def test_the_check_writes_its_whole_report_from_a_bare_copy(tmp_path):
    tree = copy_tree(tmp_path / "tree")
    assert not (tree / ".git").exists()
    env = bare_environment(tmp_path, ("onnxruntime",))
    out = tmp_path / "out" / "gpu_check.md"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--smoke", "--out", str(out)],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = out.read_text()
    assert "gsam commit unknown" in report and "- onnxruntime: not importable" in report
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    for section in ("machine", "GPU stack", "pytest -m gpu", "TensorRT engines", "onnxruntime CUDA provider",
                    "training", "inference (torch)"):
        assert f"| {section} |" in summary, section
    # every GPU test collected and skipped with its reason; nothing failed or errored
    tests = report.split("## `pytest -m gpu tests/test_gpu.py`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in tests.splitlines() if line.startswith("| test_")]
    assert len(rows) >= 10 and all("| skipped |" in row for row in rows), tests
    assert "no CUDA device on this machine" in tests and "FAILED" not in tests and "ERROR" not in tests
    assert "| TensorRT engines | - | fp32 and fp16 engines, two profiles: no CUDA device; tensorrt does not import" \
        in summary
    assert "onnxruntime does not import (No module named 'onnxruntime')" in summary
    assert report.rstrip().endswith("s.") and "Finished in" in report


def _gpu_check(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check
    import gpu_engines

    return gpu_check, gpu_engines


def test_the_tensorrt_section_reports_a_skip_with_the_reason_when_tensorrt_is_absent(tmp_path, monkeypatch):
    gpu_check, _ = _gpu_check(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError, as when absent
    report = gpu_check.Report(tmp_path / "r.md", float("inf"), ["# check"])
    gpu_check.engines(report, torch.device("cpu"), smoke=True)
    text = (tmp_path / "r.md").read_text()
    assert "## TensorRT engines\n\nnot run: no CUDA device; tensorrt does not import" in text
    ran, skipped = report.outcomes["TensorRT engines"]
    assert ran == [] and skipped[0].startswith("fp32 and fp16 engines, two profiles: no CUDA device; tensorrt")


def test_where_tensorrt_and_a_gpu_are_there_the_tensorrt_section_runs(tmp_path, monkeypatch):
    """The section is called with the tiny export; its rows land in the report and the summary."""
    gpu_check, gpu_engines = _gpu_check(monkeypatch)
    called = []
    monkeypatch.setattr(gpu_engines, "tensorrt_missing", lambda cuda: [])
    monkeypatch.setattr(gpu_engines, "provider_missing", lambda cuda: ["no CUDA device"])
    monkeypatch.setattr(gpu_check, "_tiny_export", lambda workdir: ("model", workdir / "tiny.onnx"))

    def section(onnx, model, workdir, *, smoke):
        called.append((onnx.name, model, smoke))
        return ["| engine | ... |", "|---|", "| TensorRT 10.13.3.9 fp32 | 2x3x97x130 | 0 | FAILED (rel 2.0e-02) |"]

    monkeypatch.setattr(gpu_engines, "tensorrt_section", section)
    report = gpu_check.Report(tmp_path / "r.md", float("inf"), ["# check"])
    gpu_check.engines(report, torch.device("cuda"), smoke=True)
    assert called == [("tiny.onnx", "model", True)]
    assert report.outcomes["TensorRT engines"][0] == ["1 request(s), 1 outside tolerance"]
    assert "| TensorRT 10.13.3.9 fp32 |" in (tmp_path / "r.md").read_text()


def test_agreement_holds_each_precision_to_its_own_tolerance(monkeypatch):
    _, gpu_engines = _gpu_check(monkeypatch)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(1, 3, 40, 50)).astype(np.float32)
    want = {"logits": logits, "mask": logits.argmax(1)}

    def near(scale):
        noisy = logits + scale * np.abs(logits).max() * rng.uniform(-1, 1, logits.shape).astype(np.float32)
        return {"logits": noisy, "mask": noisy.argmax(1)}

    assert gpu_engines.agreement("fp32", near(5e-4), want)[0]
    assert not gpu_engines.agreement("fp32", near(5e-3), want)[0]  # TF32-sized errors fail fp32
    assert gpu_engines.agreement("fp16", near(5e-4), want)[0]
    assert not gpu_engines.agreement("fp16", near(0.5), want)[0]


def test_git_absent_or_no_metadata_gives_unknown_not_a_crash(monkeypatch):
    gpu_check, _ = _gpu_check(monkeypatch)

    def no_git(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "git")

    monkeypatch.setattr(gpu_check.subprocess, "run", no_git)
    assert gpu_check._git_commit() == "unknown (git did not run: FileNotFoundError)"
