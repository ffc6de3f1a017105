"""`gsam bench`: real timed runs through the CLI, reports a person can read, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from gsam.cli import cli


@pytest.fixture(scope="module")
def run_and_onnx(trained_run, trained_onnx):
    return trained_run, trained_onnx


@pytest.mark.slow
def test_bench_onnxruntime_and_torch_writes_every_report(tmp_path, run_and_onnx):
    run, onnx_path = run_and_onnx
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(run), "--onnx", str(onnx_path), "--backends",
                                      "onnxruntime,torch", "--sizes", "64x64,96x160", "--iters", "3", "--warmup", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert {"cpu", "cpu_kind", "cpu_flags", "torch_cpu_capability", "cores", "torch_threads", "versions"} \
        <= set(report["environment"])
    # --amp auto resolved once and said why; only the peaks of what ran are measured (no bf16 peak for fp32 rows)
    assert report["amp"] in ("off", "bf16") and report["amp_reason"]
    torch_precision = "fp32" if report["amp"] == "off" else report["amp"]
    peaks = report["peak_gflops"]
    assert set(peaks) == {f"torch/{torch_precision}", "onnxruntime/fp32"} == set(report["peak_kernels"])
    assert all(rate > 0 for rate in peaks.values()) and set(report["scaling_exponent"]) == {"onnxruntime", "torch"}
    rows = report["results"]
    assert [(r["backend"], r["height"], r["width"]) for r in rows] == [
        ("onnxruntime", 64, 64), ("onnxruntime", 96, 160), ("torch", 64, 64), ("torch", 96, 160)]
    for r in rows:
        assert r["requests"] == 3 and r["errors"] == 0
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["images_per_s"] > 0 and r["megapixels_per_s"] > 0
        assert r["gflops_per_image"] > 0 and 0 < r["fraction_of_peak"]
        # each row against its own engine's rate, measured in this run
        assert r["precision"] == (torch_precision if r["backend"] == "torch" else "fp32")
        assert r["peak"] == f"{r['backend']}/{r['precision']}"
        assert r["peak_gflops"] == peaks[r["peak"]]
        assert r["fraction_of_peak"] == pytest.approx(r["achieved_gflops"] / peaks[r["peak"]])
    with (out / "bench.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    for name in ("latency_vs_megapixels.png", "throughput_vs_concurrency.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 100
    assert "ratio" in result.output and "torch" in result.output
    assert "torch backend: amp: " in result.output and "measuring the onnxruntime/fp32 kernel rate" in result.output


@pytest.mark.slow
def test_bench_torch_bf16_rows_use_the_bf16_peak(tmp_path, run_and_onnx):
    run, _ = run_and_onnx
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(run), "--backends", "torch", "--amp", "bf16",
                                      "--sizes", "64x64", "--iters", "2", "--warmup", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    (row,) = report["results"]
    assert report["amp"] == "bf16" and row["precision"] == "bf16" and row["peak"] == "torch/bf16"
    assert row["fraction_of_peak"] == pytest.approx(row["achieved_gflops"] / report["peak_gflops"]["torch/bf16"])


def test_rows_pick_their_engines_peak():
    from gsam.bench.harness import BenchPlan, Timing, summarize

    peaks = {"torch/fp32": 100.0, "torch/bf16": 400.0, "onnxruntime/fp32": 200.0, "onnxruntime/int8": 800.0}
    plan = BenchPlan([(64, 64)], iters=4)
    cases = {("triton-grpc", "int8"): "onnxruntime/int8", ("onnxruntime", "fp32"): "onnxruntime/fp32",
             ("sam-vit-b@1024", "fp32"): "onnxruntime/fp32", ("torch", "bf16"): "torch/bf16"}
    for (backend, precision), key in cases.items():
        row = summarize(backend, (64, 64), plan, 1, Timing([10.0] * 4, 0, 0.04), gflops=2.0, peaks=peaks,
                        precision=precision)
        assert row.peak == key and row.fraction_of_peak == pytest.approx(200.0 / peaks[key]), backend
    gpu = summarize("tensorrt", (64, 64), plan, 1, Timing([10.0] * 4, 0, 0.04), gflops=2.0, peaks=peaks,
                    precision="fp16")
    assert gpu.peak is None and gpu.fraction_of_peak is None and gpu.achieved_gflops == pytest.approx(200.0)


@pytest.mark.server
@pytest.mark.skipif(__import__("importlib").util.find_spec("pytriton") is None, reason="needs the serve extra")
def test_bench_through_a_real_triton_server_at_concurrency_2(tmp_path, run_and_onnx):
    run, onnx_path = run_and_onnx
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(run), "--onnx", str(onnx_path), "--backends",
                                      "triton-grpc,triton-http", "--sizes", "64x96", "--iters", "6", "--warmup", "1",
                                      "--concurrency", "1,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())["results"]
    # HTTP clients are gevent-based and thread-bound: each case's threads must open their own
    assert [(r["backend"], r["concurrency"]) for r in rows] == [
        ("triton-grpc", 1), ("triton-grpc", 2), ("triton-http", 1), ("triton-http", 2)]
    assert all(r["errors"] == 0 and r["requests"] == 6 for r in rows), rows


@pytest.mark.parametrize("args, message", [
    (["--sizes", "12x"], "HEIGHTxWIDTH"),
    (["--sizes", "0x0"], "must be positive"),
    (["--backends", "tensorflow"], "unknown backend 'tensorflow'"),
    (["--concurrency", "0"], "integers >= 1"),
    (["--amp", "fp8"], "'fp8' is not one of"),
])
@pytest.mark.slow
def test_bad_arguments_fail_in_one_line(tmp_path, run_and_onnx, args, message):
    run, onnx_path = run_and_onnx
    result = CliRunner().invoke(cli, ["bench", str(run), "--onnx", str(onnx_path), "--out",
                                      str(tmp_path / "b"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_unreachable_triton_url_fails_in_one_line(tmp_path, run_and_onnx):
    from gsam.runtime.serving.server import free_port

    run, onnx_path = run_and_onnx
    result = CliRunner().invoke(cli, ["bench", str(onnx_path), "--backends", "triton-http", "--url",
                                      f"127.0.0.1:{free_port()}", "--sizes", "64x64", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "cannot reach Triton" in result.output


def test_process_tree_memory_counts_grandchildren_and_their_peaks():
    """A child that starts a grandchild holding 200 MiB, then frees it: VmHWM of the tree keeps the peak."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from gsam.bench.process_memory import descendants, tree_memory_mib

    grandchild = ("import sys, time; block = bytearray(200 * 2**20); block[::4096] = b'x' * len(block[::4096]); "
                  "del block; print('freed', flush=True); time.sleep(30)")
    child = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', "
                              f"{grandchild!r}])"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "freed"
        deadline = time.monotonic() + 10
        while len(descendants(child.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(descendants(child.pid)) == 1
        peak, now = tree_memory_mib(child.pid, "VmHWM"), tree_memory_mib(child.pid, "VmRSS")
        assert peak >= 200 and tree_memory_mib(child.pid, "VmHWM", include_root=False) >= 200
        assert now < peak
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, signal.SIGKILL)
        child.kill()
        child.wait()
