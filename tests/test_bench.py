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


def test_bench_onnxruntime_and_torch_writes_every_report(tmp_path, run_and_onnx):
    run, onnx_path = run_and_onnx
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", "--model", str(run), "--onnx", str(onnx_path), "--backend",
                                      "onnxruntime,torch", "--sizes", "64x64,96x160", "--iters", "3", "--warmup", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert {"cpu", "cores", "torch_threads", "versions"} <= set(report["environment"])
    assert report["matmul_gflops"] > 0 and set(report["scaling_exponent"]) == {"onnxruntime", "torch"}
    rows = report["results"]
    assert [(r["backend"], r["height"], r["width"]) for r in rows] == [
        ("onnxruntime", 64, 64), ("onnxruntime", 96, 160), ("torch", 64, 64), ("torch", 96, 160)]
    for r in rows:
        assert r["requests"] == 3 and r["errors"] == 0
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["images_per_s"] > 0 and r["megapixels_per_s"] > 0
        assert r["gflops_per_image"] > 0 and 0 < r["fraction_of_peak"]
    with (out / "bench.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4
    for name in ("latency_vs_megapixels.png", "throughput_vs_concurrency.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 100
    assert "ratio" in result.output and "torch" in result.output


@pytest.mark.server
@pytest.mark.skipif(__import__("importlib").util.find_spec("pytriton") is None, reason="needs the serve extra")
def test_bench_through_a_real_triton_server_at_concurrency_2(tmp_path, run_and_onnx):
    run, onnx_path = run_and_onnx
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", "--model", str(run), "--onnx", str(onnx_path), "--backend",
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
    (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
    (["--concurrency", "0"], "integers >= 1"),
])
def test_bad_arguments_fail_in_one_line(tmp_path, run_and_onnx, args, message):
    run, onnx_path = run_and_onnx
    result = CliRunner().invoke(cli, ["bench", "--model", str(run), "--onnx", str(onnx_path), "--out",
                                      str(tmp_path / "b"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_unreachable_triton_url_fails_in_one_line(tmp_path, run_and_onnx):
    from gsam.runtime.triton.server import free_port

    run, onnx_path = run_and_onnx
    result = CliRunner().invoke(cli, ["bench", "--model", str(onnx_path), "--backend", "triton-http", "--url",
                                      f"127.0.0.1:{free_port()}", "--sizes", "64x64", "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "cannot reach Triton" in result.output
