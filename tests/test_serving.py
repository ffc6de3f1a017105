"""A real Triton server (the bundled binary) behind `gsam serve`'s gateway on 127.0.0.1, serving gsam_python and
gsam_image, and the configs. Every request here goes through the gateway, as a user's would."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from support.serving import readable_dir, serve, serve_prefix

from gsam.cli import cli
from gsam.deploy.triton.repository import build_repository
from gsam.io import sha256_file
from gsam.runtime.backends import load_backend
from gsam.runtime.serving.server import TritonServer, free_port

pytest.importorskip("pytriton", reason="serving tests need the serve extra (nvidia-pytriton)")


pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def served_onnx(tiny_onnx):
    return tiny_onnx


MAX_PIXELS = 256 * 256


@pytest.fixture(scope="module")
def repo(served_onnx):
    """Where tritonserver's own user (nobody, when the tests run as root) may read it."""
    folder = readable_dir()
    build_repository(served_onnx, folder / "triton_models", max_pixels=MAX_PIXELS)
    yield folder / "triton_models"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(repo):
    with serve(repo, ["gsam_python", "gsam_image"]) as running:
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
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, -1, -1]},
                                  {"name": "image_uint8", "datatype": "UINT8", "shape": [-1, 3, -1, -1]}]
    shapes = {o["name"]: o["shape"] for o in metadata["outputs"]}
    assert shapes == {"logits": [-1, 3, -1, -1], "mask": [-1, -1, -1]}
    config = client.get_model_config("gsam_python")
    assert config["max_batch_size"] == 8 and "dynamic_batching" in config
    assert config["parameters"]["max_pixels"]["string_value"] == str(MAX_PIXELS)
    image = client.get_model_metadata("gsam_image")
    assert image["inputs"] == [{"name": "image_bytes", "datatype": "BYTES", "shape": [1]}]


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
             (np.zeros((1, 3, 16, 64), np.float32), "FP32", ">= 32"),        # below the minimum size
             (np.zeros((1, 3, 300, 300), np.float32), "FP32", f"max_pixels={MAX_PIXELS}")]  # above the bound
    for array, datatype, expected in cases:
        with pytest.raises(InferenceServerException) as err:
            infer(array, datatype)
        assert expected in str(err.value)
        assert err.value.status() == "400", (expected, err.value.status())  # a client error, not a server one
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
    """A bare tritonserver (what the Kubernetes manifests run): gsam health probes it, its repository API
    wants the key this object holds, and it stops clean."""
    import urllib.error
    import urllib.request

    server = TritonServer(repo, ["gsam_python"], free_port(), free_port()).start()
    pid = server.process.pid
    result = CliRunner().invoke(cli, ["health", server.http_url, "--triton-model", "gsam_python"])
    assert result.exit_code == 0 and "answered a 1x3x32x32 FP32 tensor" in result.output, result.output
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(f"http://{server.http_url}/v2/repository/models/gsam_python/"
                                                      "unload", data=b"{}"), timeout=30)
    assert err.value.code == 403
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
    # an address this machine does not have (TEST-NET-3): the gateway cannot bind it, before Triton starts
    result = CliRunner().invoke(cli, ["serve", "--repo", str(repo), "--host", "203.0.113.7", "--user", "root",
                                      "--http-port", str(free_port()), "--grpc-port", str(free_port())])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "--host 203.0.113.7: cannot listen on port" in result.output


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
    result = CliRunner().invoke(cli, ["predict", "--backend", "triton-image", "--url", server.http_url,
                                      str(synth_data / "val" / "images"), "--out", str(tmp_path / "i")])
    assert result.exit_code == 0, result.output
    for mask in sorted((tmp_path / "p" / "masks").glob("*.png")):  # file bytes on the wire, the same masks back
        np.testing.assert_array_equal(_decode_png((tmp_path / "i" / "masks" / mask.name).read_bytes()),
                                      _decode_png(mask.read_bytes()))
    result = CliRunner().invoke(cli, ["predict", "--backend", "triton-http", "--url", f"127.0.0.1:{free_port()}",
                                      str(synth_data), "--out", str(tmp_path / "q")])
    assert result.exit_code == 1 and "cannot reach Triton" in result.output


def test_eval_and_compare_of_a_running_server_match_the_onnx_file(server, served_onnx, synth_data, tmp_path):
    """`gsam eval URL` scores what the server answers: the same table as the ONNX file it serves."""
    def table(args):
        result = CliRunner().invoke(cli, ["eval", *args, "--data", str(synth_data), "--out", str(tmp_path / "e.json")])
        assert result.exit_code == 0, result.output
        return [line for line in result.output.splitlines()
                if line.split()[:1] in (["background"], ["disc"], ["square"], ["mIoU"])]

    local = table([str(served_onnx)])
    assert len(local) == 4
    assert table([f"http://{server.http_url}/gsam_image"]) == local
    assert table([f"grpc://{server.grpc_url}", "--triton-model", "gsam_python"]) == local
    result = CliRunner().invoke(cli, ["compare", str(served_onnx), f"http://{server.http_url}/gsam_image",
                                      "--data", str(synth_data), "--out", str(tmp_path / "cmp")])
    assert result.exit_code == 0, result.output
    assert "100.0000%" in next(line for line in result.output.splitlines() if line.startswith("agreement"))


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

    script = ("import sys, time\nfrom gsam.runtime.serving.server import TritonServer, free_port\n"
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


def _http_infer(server, model, inputs, outputs=None):
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    requests = []
    for name, array, datatype in inputs:
        request = http.InferInput(name, list(array.shape), datatype)
        request.set_data_from_numpy(array)
        requests.append(request)
    wanted = [http.InferRequestedOutput(o) for o in outputs] if outputs else None
    return client.infer(model, requests, outputs=wanted)


def _png_bytes(rgb, fmt="PNG"):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _decode_png(data):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as png:
        return np.asarray(png)


def test_too_large_request_names_the_limit_and_the_next_request_succeeds(server):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as err:
        _http_infer(server, "gsam_python", [("image", np.zeros((1, 3, 257, 256), np.float32), "FP32")])
    assert err.value.status() == "400"
    assert f"max_pixels={MAX_PIXELS}" in str(err.value) and "257x256" in str(err.value)
    with pytest.raises(InferenceServerException) as err:  # encoded: refused from the header, before decoding
        _http_infer(server, "gsam_image", [("image_bytes", np.array([_png_bytes(np.zeros((300, 300, 3), np.uint8))],
                                                                    dtype=np.object_), "BYTES")])
    assert err.value.status() == "400" and f"max_pixels={MAX_PIXELS}" in str(err.value)
    with pytest.raises(InferenceServerException) as err:
        _http_infer(server, "gsam_image", [("image_bytes", np.array([b"not an image"], dtype=np.object_), "BYTES")])
    assert err.value.status() == "400" and "cannot decode" in str(err.value) and "BytesIO" not in str(err.value)
    result = _http_infer(server, "gsam_python", [("image", _images((1, 3, 256, 256)), "FP32")])
    assert result.as_numpy("mask").shape == (1, 256, 256)


def test_mask_only_requests_ship_no_logits_and_the_same_mask(server):
    images = _images((1, 3, 72, 100), seed=3)
    both = _http_infer(server, "gsam_python", [("image", images, "FP32")])
    only = _http_infer(server, "gsam_python", [("image", images, "FP32")], outputs=["mask"])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["mask"]
    assert only.as_numpy("logits") is None
    np.testing.assert_array_equal(only.as_numpy("mask"), both.as_numpy("mask"))


def test_uint8_fp32_and_encoded_images_give_the_same_mask(server):
    rgb = np.random.default_rng(5).integers(0, 256, (80, 112, 3), dtype=np.uint8)
    tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    fp32 = _http_infer(server, "gsam_python", [("image", tensor.astype(np.float32), "FP32")], ["mask"]).as_numpy("mask")
    uint8 = _http_infer(server, "gsam_python", [("image_uint8", tensor, "UINT8")], ["mask"]).as_numpy("mask")
    np.testing.assert_array_equal(uint8, fp32)
    for fmt in ("PNG", "JPEG"):
        data = _png_bytes(rgb, fmt)
        decoded = _decode_png(data)  # what the server decodes: lossless for PNG, JPEG's own pixels otherwise
        want = _http_infer(server, "gsam_python", [("image_uint8", np.ascontiguousarray(
            decoded.transpose(2, 0, 1)[None]), "UINT8")], ["mask"]).as_numpy("mask")[0]
        result = _http_infer(server, "gsam_image", [("image_bytes", np.array([data], dtype=np.object_), "BYTES")],
                             ["mask_png", "overlay_png"])
        np.testing.assert_array_equal(_decode_png(result.as_numpy("mask_png")[0]), want)
        assert _decode_png(result.as_numpy("overlay_png")[0]).shape == (80, 112, 3)
    with pytest.raises(Exception, match="exactly one"):
        _http_infer(server, "gsam_python", [("image", tensor.astype(np.float32), "FP32"), ("image_uint8", tensor, "UINT8")])


def test_encoded_image_orientation_and_modes_follow_predict(server):
    import io

    from PIL import Image

    rgb = np.random.default_rng(6).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise
    Image.fromarray(rgb).save(buffer, format="PNG", exif=exif.tobytes())
    result = _http_infer(server, "gsam_image", [("image_bytes", np.array([buffer.getvalue()], dtype=np.object_),
                                                 "BYTES")], ["mask_png"])
    assert _decode_png(result.as_numpy("mask_png")[0]).shape == (96, 64)
    gray16 = (np.random.default_rng(7).integers(0, 65536, (64, 64))).astype(np.uint16)
    result = _http_infer(server, "gsam_image", [("image_bytes", np.array([_png_bytes(gray16)], dtype=np.object_),
                                                 "BYTES")], ["mask_png"])
    assert _decode_png(result.as_numpy("mask_png")[0]).shape == (64, 64)


def test_concurrent_same_shape_requests_are_batched_and_each_gets_its_own_result(server, served_onnx):
    import tritonclient.http as http

    local = load_backend("onnxruntime", served_onnx)
    stats = http.InferenceServerClient(server.http_url)

    def counts():
        model = stats.get_inference_statistics("gsam_python")["model_stats"][0]
        return model["inference_count"], model["execution_count"]

    def settled(at_least=(0, 0)):
        """Triton counts a request after it has answered it: read until the counts reach `at_least` and hold still
        for half a second (bounded), so no earlier test's late count lands in this test's window."""
        deadline, last = time.monotonic() + 30, counts()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = counts()
            if now == last and now >= at_least:
                return now
            last = now
        return last

    inputs = [_images((1, 3, 96, 128), seed=100 + i) for i in range(24)]
    wants = [local(x)["mask"] for x in inputs]
    before = settled()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda x: _http_infer(server, "gsam_python", [("image", x, "FP32")], ["mask"]).as_numpy("mask"),
                            inputs))
    for g, w in zip(got, wants):
        np.testing.assert_array_equal(g, w)
    after = settled((before[0] + 24, 0))
    inferences, executions = after[0] - before[0], after[1] - before[1]
    probes = inferences - 24  # the supervisor's probes run every 2 s whatever the traffic: one execution each
    assert 0 <= probes <= 20 and executions - probes < 24, (inferences, executions)
    mixed = [_images((1, 3, 64 + 8 * (i % 4), 96), seed=i) for i in range(16)]  # shapes never mix in one batch
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda x: _http_infer(server, "gsam_python", [("image", x, "FP32")], ["mask"]).as_numpy("mask"),
                            mixed))
    for g, x in zip(got, mixed):
        np.testing.assert_array_equal(g, local(x)["mask"])


def test_metrics_endpoint_counts_successes_per_model(server):
    import urllib.request

    _http_infer(server, "gsam_image", [("image_bytes", np.array([_png_bytes(np.zeros((40, 40, 3), np.uint8))],
                                                                dtype=np.object_), "BYTES")])
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    for model in ("gsam_python", "gsam_image"):
        assert f'nv_inference_request_success{{model="{model}",version="1"}}' in text
    for counter in ("nv_inference_request_failure", "nv_inference_queue_duration_us", "nv_inference_count",
                    "nv_inference_exec_count", "nv_inference_compute_infer_duration_us"):  # the README's list
        assert f"{counter}{{" in text, counter


def test_curl_with_the_binary_data_extension_gets_a_png(server, tmp_path):
    """The README's curl call: a JSON header, then the image as one BYTES element (4-byte length + bytes)."""
    import json
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    rgb = np.random.default_rng(8).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    (tmp_path / "in.png").write_bytes(_png_bytes(rgb))
    script = tmp_path / "call.sh"
    script.write_text(CURL_EXAMPLE.replace("localhost:8000", server.http_url))
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    want = _http_infer(server, "gsam_python", [("image_uint8", np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]),
                                                "UINT8")], ["mask"]).as_numpy("mask")[0]
    np.testing.assert_array_equal(_decode_png((tmp_path / "mask.png").read_bytes()), want)
    assert json.loads((tmp_path / "header.json").read_text())["outputs"][0]["name"] == "mask_png"


CURL_EXAMPLE = r"""set -e
n=$(stat -c %s in.png)
printf '{"inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"mask_png","parameters":{"binary_data":true}}]}' $((n + 4)) > header.json
{ cat header.json; printf "%08x" "$n" | sed 's/\(..\)\(..\)\(..\)\(..\)/\\x\4\\x\3\\x\2\\x\1/' | xargs -0 printf; cat in.png; } > request.bin
curl -sf -D response.headers -o response.bin -H "Inference-Header-Content-Length: $(stat -c %s header.json)" \
  -H "Content-Type: application/octet-stream" --data-binary @request.bin http://localhost:8000/v2/models/gsam_image/infer
h=$(grep -i '^Inference-Header-Content-Length' response.headers | tr -dc 0-9)
tail -c +$((h + 5)) response.bin > mask.png
"""


def test_memory_budget_derives_max_pixels_from_the_measured_cost(served_onnx, tmp_path):
    """The probe sees activation memory grow with pixels; the bound it writes keeps a request within budget."""
    from gsam.deploy.triton.repository import config_facts
    from gsam.runtime.memory import measure_cost
    from gsam.runtime.serving.model_config import read_model_config

    cost = measure_cost(served_onnx)
    assert 50 < cost.per_pixel < 5000 and cost.fixed > 0  # the tiny model: about 300 bytes per pixel
    result = CliRunner().invoke(cli, ["triton", "build", str(served_onnx), "--repo", str(tmp_path / "r"),
                                      "--memory-budget", "1024"])
    assert result.exit_code == 0, result.output
    written = int(read_model_config(tmp_path / "r" / "gsam_image").parameters["max_pixels"].string_value)
    assert written % 1024 == 0 and abs(written - cost.pixels_within(1024 << 20)) < 0.2 * written
    assert config_facts(read_model_config(tmp_path / "r" / "gsam_python")).num_classes == 3
    result = CliRunner().invoke(cli, ["triton", "build", str(served_onnx), "--repo", str(tmp_path / "r"),
                                      "--memory-budget", "1", "--max-pixels", "5000"])
    assert result.exit_code == 1 and "not both" in result.output


@pytest.fixture(scope="module")
def tiled_server(tmp_path_factory, served_onnx):
    """A repository built with --tile: requests above max_pixels run in tiles instead of being refused."""
    from gsam.deploy.triton.repository import Tiling

    folder = readable_dir()
    root = folder / "triton_models"
    build_repository(served_onnx, root, max_pixels=96 * 96, batching=None,
                     tiling=Tiling(tile=96, overlap=32, max_tiled_pixels=300 * 300))
    with serve(root, ["gsam_python", "gsam_image"]) as running:
        yield running
    shutil.rmtree(folder, ignore_errors=True)


def test_a_repository_built_with_tiles_tiles_large_requests_like_the_local_runtime(tiled_server, served_onnx):
    from tritonclient.utils import InferenceServerException

    from gsam.runtime.backends.tiled import TiledSegmenter

    local = TiledSegmenter(load_backend("onnxruntime", served_onnx), 96, 32)
    rgb = np.random.default_rng(9).integers(0, 256, (150, 220, 3), dtype=np.uint8)
    tensor = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    want = local(tensor.astype(np.float32))
    got = _http_infer(tiled_server, "gsam_python", [("image_uint8", tensor, "UINT8")], ["mask", "logits"])
    np.testing.assert_array_equal(got.as_numpy("mask"), want["mask"])
    assert np.abs(got.as_numpy("logits") - want["logits"]).max() <= 1e-4
    before = _successes(tiled_server, "gsam_python")
    encoded = _http_infer(tiled_server, "gsam_image", [("image_bytes", np.array([_png_bytes(rgb)], dtype=np.object_),
                                                        "BYTES")], ["mask_png"])
    np.testing.assert_array_equal(_decode_png(encoded.as_numpy("mask_png")[0]), want["mask"][0])
    rows, columns = (len(local.tiles.layout(side)[1]) for side in rgb.shape[:2])
    assert _successes(tiled_server, "gsam_python") == before + rows * columns  # one BLS call per tile batch of 1
    with pytest.raises(InferenceServerException) as err:  # above max_tiled_pixels: refused even with tiles
        _http_infer(tiled_server, "gsam_python", [("image_uint8", np.zeros((1, 3, 301, 300), np.uint8), "UINT8")])
    assert err.value.status() == "400" and "max_tiled_pixels=90000" in str(err.value)
    small = _http_infer(tiled_server, "gsam_python", [("image", _images((1, 3, 64, 80)), "FP32")], ["mask"])
    np.testing.assert_array_equal(small.as_numpy("mask"), load_backend("onnxruntime", served_onnx)(
        _images((1, 3, 64, 80)))["mask"])


def test_load_of_a_running_server_gives_the_local_masks_whole_tiled_and_bytes_in(tiled_server, served_onnx, tmp_path):
    """gsam.load on a URL: tensors over gRPC, the file's own bytes to gsam_image; a 150x220 image is above the
    repository's max_pixels, so the server tiles it as the local predictor with the same tile does."""
    from PIL import Image

    import gsam

    rgb = np.random.default_rng(4).integers(0, 256, (150, 220, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.png")
    Image.fromarray(rgb[:80, :90]).save(tmp_path / "small.png")
    with gsam.load(served_onnx, tile=96, overlap=32) as local:
        want = {name: local.predict(tmp_path / f"{name}.png").mask for name in ("big", "small")}
    for url in (f"grpc://{tiled_server.grpc_url}/gsam_python", f"http://{tiled_server.http_url}/gsam_image"):
        with gsam.load(url, tile_above=1 << 30) as served:  # the server bounds and tiles, not this client
            for name, mask in want.items():
                np.testing.assert_array_equal(served.predict(tmp_path / f"{name}.png").mask, mask)
    result = CliRunner().invoke(cli, ["predict", "--backend", "triton-image", "--url", tiled_server.http_url,
                                      str(tmp_path / "big.png"), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(_decode_png((tmp_path / "cli" / "masks" / "big.png").read_bytes()), want["big"])


def _successes(server, model):
    """Successful requests a model has executed (warm-ups included): compare before and after."""
    import tritonclient.http as http

    client = http.InferenceServerClient(server.http_url)
    try:
        return client.get_inference_statistics(model)["model_stats"][0]["inference_stats"]["success"]["count"]
    finally:
        client.close()


def test_gsam_image_computes_in_gsam_python_through_bls(server):
    """One encoded image: gsam_python's statistics count the BLS call, and the mask is the one gsam_python
    gives for the same pixels sent as a tensor."""
    rgb = np.random.default_rng(12).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    before = _successes(server, "gsam_python")
    encoded = _http_infer(server, "gsam_image", [("image_bytes", np.array([_png_bytes(rgb)], dtype=np.object_),
                                                  "BYTES")], ["mask_png", "timings_ms"])
    assert _successes(server, "gsam_python") == before + 1
    direct = _http_infer(server, "gsam_python", [("image_uint8", np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]),
                                                  "UINT8")], ["mask"])
    np.testing.assert_array_equal(_decode_png(encoded.as_numpy("mask_png")[0]), direct.as_numpy("mask")[0])
    decode, compute, encode = encoded.as_numpy("timings_ms")
    assert compute > 0 and decode >= 0 and encode >= 0


# One whole-image pass of a 6000x6000 image through the tiny model needs 10.4 GiB (measured). Tiled, gsam_image
# keeps the image, its mask and one band of blended logits (with tritonserver: 1.43 GiB, measured when it computed
# in-process) and sends gsam_python batches of 1024x1024 tiles within gsam_python's max_pixels (2048x2048), whose
# peak is that of one legal request (about 2 GiB, measured): 3.38 GiB in all, measured. The bound adds 0.6 GiB.
SERVE_36MP_PEAK_BOUND_MIB = 4.0 * 1024


@pytest.mark.slow
def test_a_36_megapixel_image_goes_through_gsam_serve_in_bounded_memory(served_onnx, tmp_path):
    """The README's large-image path, one command after another: triton build --tile, serve, predict."""
    import signal
    import subprocess
    import sys

    import tritonclient.http as http

    from gsam.bench.process_memory import tree_memory_mib
    from gsam.data.large_image import write_tiled_tiff

    def server_peak_mib():  # tritonserver and its stub below `gsam serve`, each at its own peak, summed
        return tree_memory_mib(serve.pid, "VmHWM", include_root=False)

    side, repo = 6000, readable_dir() / "triton_models"
    built = CliRunner().invoke(cli, ["triton", "build", str(served_onnx), "--repo", str(repo),
                                     "--oversize-tile", "1024"])
    assert built.exit_code == 0, built.output

    def picture(y0, y1):  # smooth gradients, so the file on the wire stays small
        ys, xs = np.mgrid[y0:y1, 0:side]
        return np.stack([ys % 251, xs % 241, (ys + xs) % 239], axis=-1).astype(np.uint8)

    write_tiled_tiff(tmp_path / "big.tif", ((y, picture(y, min(y + 500, side))) for y in range(0, side, 500)),
                     side, side, channels=3)
    ports = [free_port() for _ in range(3)]
    prefix = serve_prefix()
    serve = subprocess.Popen([*(prefix or ()), sys.executable, "-m", "gsam", "serve", "--repo", str(repo),
                              "--triton-models", "gsam_image", "--http-port", str(ports[0]), "--grpc-port",
                              str(ports[1]), "--metrics-port", str(ports[2]), *(() if prefix is not None else
                                                                                 ("--user", "root"))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert serve.poll() is None, serve.stdout.read()
            try:
                if http.InferenceServerClient(f"127.0.0.1:{ports[0]}").is_model_ready("gsam_image"):
                    break
            except Exception:
                pass
            assert time.monotonic() < deadline, "gsam serve did not get ready"
            time.sleep(1)
        loaded, start = server_peak_mib(), time.perf_counter()
        predicted = subprocess.run([sys.executable, "-m", "gsam", "predict", "--backend", "triton-image", "--url",
                                    f"127.0.0.1:{ports[0]}", str(tmp_path / "big.tif"), "--out", str(tmp_path / "out")],
                                   capture_output=True, text=True)
        peak, seconds = server_peak_mib(), time.perf_counter() - start
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    print(f"server peak: {loaded:.0f} MiB after loading, {peak:.0f} MiB after a {side}x{side} request; "
          f"gsam predict took {seconds:.1f} s")
    assert peak < SERVE_36MP_PEAK_BOUND_MIB, peak
    import tifffile

    mask = tifffile.imread(tmp_path / "out/masks/big.tif")  # above 16.8 megapixels: a tiled TIFF (docs/predict.md)
    assert mask.shape == (side, side) and mask.max() < 3
    shutil.rmtree(repo.parent, ignore_errors=True)
