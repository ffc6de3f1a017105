"""`gsam demo`, the README's first command, completes end to end (real training, export, Triton)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pytriton", reason="the demo serves through Triton (serve extra)")
pytestmark = pytest.mark.server


def test_demo_runs_the_whole_chain(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "gsam", "demo", "--out", str(out), "--epochs", "3", "--repeats", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[7/7] median latency" in result.stdout and "triton-grpc" in result.stdout
    for name in ("run/best.pt", "run/metrics.jsonl", "model.onnx", "triton_models/gsam_python/config.pbtxt"):
        assert (out / name).is_file(), name
    for protocol in ("triton-http", "triton-grpc"):
        assert len(list((out / "predictions" / protocol).glob("masks/*.png"))) == 3
