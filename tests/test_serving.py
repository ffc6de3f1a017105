"""A real Triton server (the bundled binary) on 127.0.0.1 serving gsam_python, and the repository configs."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from gsam.cli import cli
from gsam.runtime.backends import load_backend
from gsam.io import sha256_file
from gsam.runtime.triton.repository import build_repository
from gsam.runtime.triton.server import TritonServer, free_port

pytest.importorskip("pytriton", reason="serving tests need the serve extra (nvidia-pytriton)")


pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def served_onnx(tiny_onnx):
    return tiny_onnx


@pytest.fixture(scope="module")
def repo(tmp_path_factory, served_onnx):
    root = tmp_path_factory.mktemp("repo") / "triton_models"
    build_repository(served_onnx, root)
    return root


@pytest.fixture(scope="module")
def server(repo):
    with TritonServer(repo, ["gsam_python"], free_port(), free_port()) as running:
        yield running


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_requests_at_mixed_sizes_match_local_onnxruntime(server, served_onnx, protocol):
    local = load_backend("onnxruntime", served_onnx)
    url = server.http_url if protocol == "http" else server.grpc_url
    remote = load_backend(f"triton-{protocol}", url, model="gsam_python")
    assert remote.facts.num_classes == 3 and remote.facts.min_size == 32
    assert remote.facts.lineage["onnx_sha256"] == sha256_file(served_onnx)
    for shape in [(1, 3, 33, 47), (1, 3, 128, 128), (1, 3, 300, 97), (1, 3, 200, 296), (2, 3, 64, 90)]:
        images = _images(shape)
        got, want = remote(images), local(images)
        assert got["logits"].shape == want["logits"].shape
        assert np.abs(got["logits"] - want["logits"]).max() <= 1e-5
        np.testing.assert_array_equal(got["mask"], want["mask"])
    remote.close()


def test_served_config_and_metadata_show_dynamic_dims(server):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    metadata = client.get_model_metadata("gsam_python")
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    shapes = {o["name"]: o["shape"] for o in metadata["outputs"]}
    assert shapes == {"logits": [-1, 3, -1, -1], "mask": [-1, -1, -1]}
    assert client.get_model_config("gsam_python")["max_batch_size"] == 0


def test_bad_requests_get_errors_and_the_server_keeps_answering(server):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(server.http_url)

    def infer(array, datatype):
        request = http.InferInput("image", list(array.shape), datatype)
        request.set_data_from_numpy(array)
        return client.infer("gsam_python", [request])

    cases = [(np.zeros((3, 64, 64), np.float32), "FP32", "image"),          # wrong rank
             (np.zeros((1, 3, 64, 64), np.int32), "INT32", "FP32"),          # wrong dtype
             (np.zeros((1, 1, 64, 64), np.float32), "FP32", "image"),        # wrong channel count
             (np.zeros((1, 3, 16, 64), np.float32), "FP32", ">= 32")]        # below the minimum size
    for array, datatype, expected in cases:
        with pytest.raises(InferenceServerException) as err:
            infer(array, datatype)
        assert expected in str(err.value)
    assert infer(_images((1, 3, 64, 64)), "FP32").as_numpy("mask").shape == (1, 64, 64)


def test_200_mixed_size_requests_from_8_threads(server):
    sizes = [(48, 64), (97, 33), (128, 160), (64, 200)]
    clients = [load_backend("triton-grpc", server.grpc_url) for _ in range(8)]

    def work(i):
        h, w = sizes[i % len(sizes)]
        return clients[i % 8](_images((1, 3, h, w), seed=i))["mask"].shape == (1, h, w)

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(200)))
    assert all(results) and len(results) == 200
    assert time.monotonic() - started < 300


def test_shutdown_leaves_no_process_and_no_shared_memory(repo):
    server = TritonServer(repo, ["gsam_python"], free_port(), free_port()).start()
    pid = server.process.pid
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    assert server.leftover_shm() == set()


def test_busy_port_and_missing_repository_fail_in_one_line(repo, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--repo", str(repo), "--http-port", str(port),
                                          "--grpc-port", str(free_port())])
    assert result.exit_code == 1 and f"--http-port {port} is busy" in result.output
    result = CliRunner().invoke(cli, ["serve", "--repo", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no such model repository" in result.output


def test_model_that_fails_to_load_reports_the_servers_message(repo, tmp_path):
    import shutil

    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    (broken / "gsam_python" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    server = TritonServer(broken, ["gsam_python"], free_port(), free_port())
    with pytest.raises(Exception, match="gsam_python") as err:
        server.start(timeout=60)
    assert "exited" in str(err.value) or "not ready" in str(err.value)
    server.stop()


def test_cli_build_and_predict_over_grpc(server, tmp_path, synth_data):
    result = CliRunner().invoke(cli, ["predict", "--backend", "triton-grpc", "--url", server.grpc_url,
                                      str(synth_data / "val" / "images"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "p" / "masks").glob("*.png"))) == 6
    result = CliRunner().invoke(cli, ["predict", "--backend", "triton-http", "--url", f"127.0.0.1:{free_port()}",
                                      str(synth_data), "--out", str(tmp_path / "q")])
    assert result.exit_code == 1 and "cannot reach Triton" in result.output


def test_random_requests_never_take_the_server_down(server):
    """hypothesis: random shapes and dtypes; each gets a response (result or error), then a valid request works."""
    import tritonclient.grpc as grpc
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from tritonclient.utils import InferenceServerException

    client = grpc.InferenceServerClient(server.grpc_url)
    dtypes = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "UINT8": np.uint8, "FP16": np.float16}

    @settings(max_examples=30, deadline=None)
    @given(shape=st.lists(st.integers(1, 70), min_size=1, max_size=5), datatype=st.sampled_from(sorted(dtypes)))
    def one_request(shape, datatype):
        array = np.ones(shape, dtypes[datatype])
        request = grpc.InferInput("image", list(array.shape), datatype)
        request.set_data_from_numpy(array)
        try:
            result = client.infer("gsam_python", [request])
        except InferenceServerException as exc:
            assert exc.message()
        else:
            assert datatype == "FP32" and len(shape) == 4 and shape[1] == 3 and min(shape[2:]) >= 32
            assert result.as_numpy("mask").shape == (shape[0], shape[2], shape[3])

    one_request()
    valid = grpc.InferInput("image", [1, 3, 40, 56], "FP32")
    valid.set_data_from_numpy(_images((1, 3, 40, 56)))
    assert client.infer("gsam_python", [valid]).as_numpy("logits").shape == (1, 3, 40, 56)


def test_server_follows_its_parent_even_when_the_parent_is_killed(repo):
    import os
    import signal
    import subprocess
    import sys

    script = ("import sys, time\nfrom gsam.runtime.triton.server import TritonServer, free_port\n"
              f"s = TritonServer({str(repo)!r}, ['gsam_python'], free_port(), free_port()).start()\n"
              "print(s.process.pid, flush=True)\ntime.sleep(300)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    server_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(server_pid, 0)
            time.sleep(0.2)
        except ProcessLookupError:
            break
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("tritonserver outlived its parent")
