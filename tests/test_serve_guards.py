"""gsam serve tried as an operator would: hostile requests, a killed model process, a crashed server and
SIGTERM, against a real Triton behind the gateway. The same checks without a server: tests/test_gateway.py."""

from __future__ import annotations

import base64
import glob
import http.client
import json
import os
import re
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from support.serving import readable_repository, serve

from gsam.bench.process_memory import descendants, tree_memory_mib
from gsam.cli import cli
from gsam.runtime.serving.server import SHUTDOWN_BOUND_S

pytest.importorskip("pytriton", reason="serving tests need the serve extra (nvidia-pytriton)")
pytestmark = pytest.mark.server

MAX_PIXELS = 256 * 256
# The hostile requests below, all refused, may raise the served tree's summed peak memory (gsam serve, tritonserver,
# the stubs: VmHWM) by at most this much; unguarded, the gzip bomb alone added 1.5 GiB to tritonserver.
BOMB_GROWTH_BOUND_MIB = 64
# From `kill -9` of gsam_python's stub to the next answered request: measured 5-8 s on 2 loaded cores (1 s until
# Triton declares the stub dead, the probe, unload and load of the model).
STUB_RECOVERY_BOUND_S = 30
SERVER_RECOVERY_BOUND_S = 90  # kill -9 of tritonserver: a 1 s backoff, then a full start (10 s here)


@pytest.fixture(scope="module")
def repo(tiny_onnx):
    with readable_repository(tiny_onnx, MAX_PIXELS) as repo:  # tritonserver's user (nobody, under root) reads it
        yield repo


@pytest.fixture(scope="module")
def served(repo):
    with serve(repo, ["gsam_python", "gsam_image"]) as running:
        yield running


def post(url, path, body, headers=None, timeout=60):
    """(status, parsed JSON or raw bytes) of a POST; no exception for 4xx/5xx. The body's type is declared as
    a client does (octet-stream with the binary extension's header, else JSON) unless `headers` say."""
    headers = dict(headers or {})
    if "Content-Type" not in headers:
        binary = "Inference-Header-Content-Length" in headers
        headers["Content-Type"] = "application/octet-stream" if binary else "application/json"
    request = urllib.request.Request(f"http://{url}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)["error"]
        except (ValueError, KeyError):
            return exc.code, text


def status_of(url, path):
    try:
        with urllib.request.urlopen(f"http://{url}{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def binary_infer(url, shape=(1, 3, 32, 32), model="gsam_python", timeout=60):
    data = np.zeros(shape, np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "image", "shape": list(shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}).encode()
    try:
        return post(url, f"/v2/models/{model}/infer", header + data,
                    {"Inference-Header-Content-Length": str(len(header))}, timeout)[0]
    except OSError:
        return None


def grpc_infer(url, shape, elements):
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name="gsam_python")
    tensor = request.inputs.add(name="image", datatype="FP32")
    tensor.shape.extend(shape)
    request.raw_input_contents.append(np.zeros(elements, np.float32).tobytes())
    with grpc.insecure_channel(url) as channel:
        return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)


def test_a_negative_grpc_shape_is_invalid_argument_and_the_model_still_answers(served):
    """[1,3,-64,-64] with consistent bytes: Triton 2.51's python stub calls std::terminate on it."""
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        grpc_infer(served.grpc_url, [1, 3, -64, -64], 3 * 64 * 64)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "every dimension must be a positive integer" in err.value.details()
    answer = grpc_infer(served.grpc_url, [1, 3, 64, 64], 3 * 64 * 64)
    assert {o.name: list(o.shape) for o in answer.outputs}["mask"] == [1, 64, 64]
    assert "failed a probe" not in served.output


def test_grpc_messages_above_the_bound_or_compressed_are_refused_unread(served):
    import grpc
    import tritonclient.grpc as client
    from tritonclient.utils import InferenceServerException

    with pytest.raises(grpc.RpcError) as err:  # 4 MiB: above every served model's largest legal request
        grpc_infer(served.grpc_url, [1, 3, 512, 683], 3 * 512 * 683)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    tensor = client.InferInput("image", [1, 3, 64, 64], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(InferenceServerException) as err:  # a gRPC core would inflate it without a bound
        client.InferenceServerClient(served.grpc_url).infer("gsam_python", [tensor], compression_algorithm="gzip")
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and "compressed messages are not accepted" in str(
        err.value)


@pytest.mark.parametrize("shape, data, fragment", [
    ([1, 3, -32, -32], [0] * 3072, "every dimension must be a positive integer"),
    ([1, 3, 32, 32], [0] * 5, "(3072 values); 'data' holds 5"),
    ([1, 3, 32, 32], ["a"] * 3072, "is FP32; 'data' holds str"),
])
def test_json_client_errors_get_400_not_tritons_500(served, shape, data, fragment):
    body = {"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", "data": data}]}
    status, message = post(served.http_url, "/v2/models/gsam_python/infer", json.dumps(body).encode())
    assert status == 400 and fragment in message, (status, message)
    good = {"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}]}
    assert post(served.http_url, "/v2/models/gsam_python/infer", json.dumps(good).encode())[0] == 200


def _gzip(*parts):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = []
    for part in parts:
        blocks = [part[0] * (1 << 20)] * part[1] if isinstance(part, tuple) else [part]
        out += [compressor.compress(block) for block in blocks]
    return b"".join(out) + compressor.flush()


def test_bombs_are_refused_in_bounded_memory_and_the_server_keeps_answering(served):
    path = "/v2/models/gsam_python/infer"
    assert binary_infer(served.http_url) == 200
    before = tree_memory_mib(served.process.pid, "VmHWM")
    nested = b'{"inputs":' + b"[" * 150_000 + b"]" * 150_000 + b"}"  # SIGSEGV in Triton 2.51
    status, message = post(served.http_url, path, nested)
    assert status == 400 and "nests too deeply" in message
    big = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 6144, 6144], "datatype": "FP32",
                                  "parameters": {"binary_data_size": 3 * 6144 * 6144 * 4}}]}).encode()
    bomb = _gzip(big, (b"\0", 3 * 6144 * 6144 * 4 >> 20))  # 440 kB inflating to 452 MB: a 1x3x6144x6144 tensor
    assert len(bomb) < 500_000
    status, message = post(served.http_url, path, bomb, {"Content-Encoding": "gzip",
                                                         "Inference-Header-Content-Length": str(len(big))})
    assert status == 400 and "1x6144x6144 = 37748736 pixels" in message and f"max_pixels={MAX_PIXELS}" in message
    small = json.dumps({"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 12288}}]}).encode()
    status, message = post(served.http_url, path, _gzip(small, (b"\0", 256)),  # legal header, 256 MiB behind it
                           {"Content-Encoding": "gzip", "Inference-Header-Content-Length": str(len(small))})
    assert status == 400 and "more bytes than its inference header declares" in message
    status, message = post(served.http_url, path, _gzip(b'{"inputs":[{"data":[', (b"0,", 64)),
                           {"Content-Encoding": "gzip"})
    assert status == 413 and "JSON inference request may hold at most" in message
    growth = tree_memory_mib(served.process.pid, "VmHWM") - before
    print(f"served tree peak: {before:.0f} MiB before the bombs, +{growth:.1f} MiB after")
    assert growth < BOMB_GROWTH_BOUND_MIB
    assert binary_infer(served.http_url) == 200


EVIL_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        open({marker!r}, "w").write("ran")

    def execute(self, requests):
        return []
"""


def test_model_repository_loads_are_refused_and_their_code_never_runs(served, tmp_path):
    """Over the public ports (the gateway) and the internal ones (Triton, which wants the key only gsam serve has)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    marker = tmp_path / "evil_ran"
    config = json.dumps({"name": "evil", "backend": "python", "max_batch_size": 0,
                         "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [1]}],
                         "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [1]}]})
    code = base64.b64encode(EVIL_MODEL.format(marker=str(marker)).encode()).decode()
    body = json.dumps({"parameters": {"config": config, "file:1/model.py": code}}).encode()
    internal_http, internal_grpc = f"127.0.0.1:{served.internal_http_port}", f"127.0.0.1:{served.internal_grpc_port}"
    status, message = post(served.http_url, "/v2/repository/models/evil/load", body)
    assert status == 403 and "not served by gsam serve" in message
    status, message = post(internal_http, "/v2/repository/models/evil/load", body)
    assert status == 403 and "restricted" in message
    assert post(served.http_url, "/v2/repository/models/gsam_python/unload", b"{}")[0] == 403
    request = service_pb2.RepositoryModelLoadRequest(model_name="evil")
    request.parameters["config"].string_param = config
    request.parameters["file:1/model.py"].bytes_param = EVIL_MODEL.format(marker=str(marker)).encode()
    refusals = ((served.grpc_url, grpc.StatusCode.PERMISSION_DENIED), (internal_grpc, grpc.StatusCode.UNAVAILABLE))
    for url, code in refusals:
        with grpc.insecure_channel(url) as channel, pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(request, timeout=30)
        assert err.value.code() == code, err.value.details()
    for path in ("/v2/systemsharedmemory/region/x/register", "/v2/logging", "/v2/trace/setting"):
        assert post(served.http_url, path, b"{}")[0] == 403
    time.sleep(2)
    assert not marker.exists()
    assert binary_infer(served.http_url) == 200 and status_of(served.http_url, "/v2/models/evil/ready") == 404
    assert binary_infer(internal_http) == 403  # no way around the gateway's checks: Triton wants the key for all


def test_gsam_health_sends_each_model_a_real_inference(served):
    """Against tritonserver itself: tests/test_serving.py::test_shutdown_leaves_no_process_and_no_shared_memory."""
    for model, what in (("gsam_python", "a 1x3x32x32 FP32 tensor"), ("gsam_image", "a 32x32 PNG")):
        result = CliRunner().invoke(cli, ["health", served.http_url, "--triton-model", model, "--timeout", "30"])
        assert result.exit_code == 0 and f"answered {what}" in result.output, result.output
    result = CliRunner().invoke(cli, ["health", served.http_url, "--triton-model", "gsam_nothing"])
    assert result.exit_code == 1 and "HTTP 404: unknown model 'gsam_nothing'" in result.output
    assert status_of(served.http_url, "/v2/health/live") == status_of(served.http_url, "/v2/health/ready") == 200


def _child(parent, marker):
    for pid in descendants(parent):
        try:
            if marker in open(f"/proc/{pid}/cmdline").read():
                return pid
        except OSError:
            continue
    raise AssertionError(f"no process below {parent} runs {marker}")


class Traffic:
    """A small request and a readiness check every 0.2 s, each outcome recorded with its time."""

    def __init__(self, url):
        self.url, self.events, self.stop = url, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.events.append((time.monotonic(), binary_infer(self.url, timeout=30),
                                status_of(self.url, "/v2/health/ready")))
            time.sleep(0.2)

    def recovered_after(self, since, bound):
        """Seconds from `since` to the first answered request after a failed one."""
        deadline = since + bound
        while time.monotonic() < deadline:
            after = [e for e in self.events if e[0] > since]
            failed = [e for e in after if e[1] != 200]
            if failed and any(e[1] == 200 for e in after if e[0] > failed[0][0]):
                return next(e[0] for e in after if e[0] > failed[0][0] and e[1] == 200) - since
            time.sleep(0.2)
        raise AssertionError(f"no recovery within {bound} s: {self.events[-5:]}")


def test_a_killed_stub_and_a_crashed_server_recover_and_sigterm_leaves_nothing(repo, tmp_path):
    log_file = tmp_path / "triton.log"
    tmp_logs = set(glob.glob(os.path.join(tempfile.gettempdir(), "gsam-triton-*.log")))
    with serve(repo, ["gsam_python"], args=("--log-file", str(log_file))) as served:
        stub = _child(served.process.pid, "gsam_python/1/model.py")
        regions = re.search(r"triton_python_backend_shm_region_gsam[0-9a-f]{8}_", open(f"/proc/{stub}/cmdline").read())
        prefix = regions[0]  # this server's own prefix
        traffic = Traffic(served.http_url)
        time.sleep(1)
        killed = time.monotonic()
        os.kill(stub, signal.SIGKILL)
        stub_outage = traffic.recovered_after(killed, STUB_RECOVERY_BOUND_S)
        assert any(e[2] == 503 for e in traffic.events if e[0] > killed), "readiness never said 503"
        assert "failed a probe" in served.output and "gsam_python reloaded" in served.output
        crashed = time.monotonic()
        os.kill(_child(served.process.pid, "bin/tritonserver"), signal.SIGKILL)
        server_outage = traffic.recovered_after(crashed, SERVER_RECOVERY_BOUND_S)
        traffic.stop.set()
        traffic.thread.join()
        assert "restarting tritonserver" in served.output and "tritonserver restarted" in served.output
        print(f"answered again {stub_outage:.1f} s after kill -9 of the stub, {server_outage:.1f} s after kill -9 "
              "of tritonserver")
        idle = http.client.HTTPConnection("127.0.0.1", served.http_port)  # an idle keep-alive client
        idle.request("GET", "/v2/health/live")
        response = idle.getresponse()
        assert response.status == 200 and response.read() == b"" and not response.will_close
        with ThreadPoolExecutor(8) as pool:  # requests in flight when SIGTERM comes are answered
            flying = [pool.submit(binary_infer, served.http_url, (1, 3, 256, 256)) for _ in range(8)]
            time.sleep(0.5)
            seconds = served.stop()
            answers = [f.result() for f in flying]
    assert answers == [200] * 8, answers
    assert seconds < SHUTDOWN_BOUND_S and served.process.returncode == 0, served.output[-1500:]
    assert idle.sock.recv(100) == b""  # closed by the server, not left waiting
    assert glob.glob(f"/dev/shm/{prefix}*") == []
    for path in set(glob.glob(os.path.join(tempfile.gettempdir(), "gsam-triton-*.log"))) - tmp_logs:
        text = open(path, errors="replace").read()  # another process's server (concurrent runs), never ours
        assert not any(f"127.0.0.1:{port}" in text for port in served.internal_http_ports), path
    assert len(served.internal_http_ports) == 2
    assert "Started HTTPService" in log_file.read_text()  # the log went where the user said, only there
    print(f"SIGTERM with 8 requests in flight and an idle keep-alive client: exited in {seconds:.1f} s")
