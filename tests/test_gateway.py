"""gsam serve's gateway without a server: the bounds a request is held to (from the model's config), bounded
reading of compressed and chunked bodies, the probe each model gets, the private backend copy, one-line port
errors. The same guards against a real server: tests/test_serve_guards.py."""

from __future__ import annotations

import asyncio
import json
import os
import tracemalloc
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from gsam.cli import cli
from gsam.runtime.serving.body import BodyReader
from gsam.runtime.serving.limits import (
    InputSpec,
    ModelLimits,
    Refused,
    check_bytes_elements,
    check_json_data,
)

PYTHON = ModelLimits("gsam_python", {"image": InputSpec("image", "FP32", (-1, 3, -1, -1)),
                                     "image_uint8": InputSpec("image_uint8", "UINT8", (-1, 3, -1, -1))},
                     ("logits", "mask"), max_batch=8, max_pixels=256 * 256)
IMAGE = ModelLimits("gsam_image", {"image_bytes": InputSpec("image_bytes", "BYTES", (1,))},
                    ("mask_png", "overlay_png", "timings_ms"), max_batch=0, max_pixels=256 * 256)
TILED = ModelLimits("gsam_python", PYTHON.inputs, PYTHON.outputs, max_batch=0, max_pixels=96 * 96,
                    max_tiled_pixels=300 * 300)


def refused(call, *args) -> Refused:
    with pytest.raises(Refused) as err:
        call(*args)
    return err.value


@pytest.mark.parametrize("shape, fragment", [
    ([1, 3, -64, -64], "every dimension must be a positive integer"),  # Triton 2.51's stub dies on this over gRPC
    ([1, 3, 0, 64], "every dimension must be a positive integer"),
    ([1, 3, 64.0, 64], "every dimension must be a positive integer"),
    ([1, 3, True, 64], "every dimension must be a positive integer"),
    ([3, 64, 64], "must have shape [any, 3, any, any]"),
    ([1, 1, 64, 64], "must have shape [any, 3, any, any]"),
    ([9, 3, 32, 32], "max_batch_size is 8"),
    ([1, 3, 257, 256], "is 1x257x256 = 65792 pixels; this model's limit is max_pixels=65536 per request"),
    ([4, 3, 128, 160], "is 4x128x160 = 81920 pixels"),
])
def test_shapes_are_checked_against_the_config_before_any_tensor_byte(shape, fragment):
    error = refused(PYTHON.check_input, "image", "FP32", shape)
    assert error.status == 400 and fragment in error.message, error.message


def test_names_dtypes_and_sizes_of_legal_requests():
    assert PYTHON.check_input("image", "FP32", [2, 3, 128, 256]) == (2 * 3 * 128 * 256, 2 * 3 * 128 * 256 * 4)
    assert PYTHON.check_input("image_uint8", "UINT8", [1, 3, 256, 256])[1] == 3 * 256 * 256
    assert "must be FP32; got INT32" in refused(PYTHON.check_input, "image", "INT32", [1, 3, 64, 64]).message
    assert "unknown input 'x'" in refused(PYTHON.check_input, "x", "FP32", [1, 3, 64, 64]).message
    assert IMAGE.check_input("image_bytes", "BYTES", [1]) == (1, -1)
    assert PYTHON.body_cap == (64 << 10) + 256 * 256 * 3 * 4  # the largest legal FP32 request and its header


def test_a_tiling_model_is_held_to_its_tiled_bound_per_image():
    assert TILED.check_input("image", "FP32", [1, 3, 300, 300])[0] == 3 * 300 * 300
    error = refused(TILED.check_input, "image", "FP32", [1, 3, 301, 300])
    assert "max_tiled_pixels=90000 per image (tiled)" in error.message
    assert TILED.encoded_bytes == 300 * 300 * 8 + (1 << 20)


@pytest.mark.parametrize("data, shape, datatype, fragment", [
    ([[[[0.0]]]], [1, 1, 1], "FP32", "nests deeper than the tensor's 3 dimensions"),
    ([0.0] * 5, [1, 3, 2, 2], "FP32", "has shape [1, 3, 2, 2] (12 values); 'data' holds 5"),
    (["a"] * 12, [1, 3, 2, 2], "FP32", "is FP32; 'data' holds str 'a'"),
    ([True] * 12, [1, 3, 2, 2], "FP32", "holds bool"),
    ([300] * 12, [1, 3, 2, 2], "UINT8", "is UINT8; 'data' holds int '300'"),
    ("0,0", [1], "FP32", "must be a list"),
])
def test_json_tensor_data_is_checked_for_depth_count_and_kind(data, shape, datatype, fragment):
    assert fragment in refused(check_json_data, data, "image", datatype, shape).message


def test_legal_json_data_passes_flat_or_nested():
    check_json_data([0.5] * 12, "image", "FP32", [1, 3, 2, 2])
    check_json_data([[[[1, 2], [3, 4]]] * 3], "image", "UINT8", [1, 3, 2, 2])


def test_a_deeply_nested_body_is_refused_by_the_parser_not_by_a_crash():
    from gsam.runtime.serving.gateway_http import parse_json

    body = b'{"inputs":' + b"[" * 150_000 + b"]" * 150_000 + b"}"  # 300 kB: SIGSEGV in Triton 2.51's parser
    assert "nests too deeply" in refused(parse_json, body, "the inference header").message


def test_binary_headers_must_agree_with_their_shapes():
    def header(size, **extra):
        item = {"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32",
                "parameters": {"binary_data_size": size, **extra}}
        return {"inputs": [item], "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}

    assert PYTHON.check_http_request(header(12288), binary=True) == [("image", 3072, 12288)]
    assert "binary_data_size says 100" in refused(PYTHON.check_http_request, header(100), True).message
    assert "shared memory is not served" in refused(
        PYTHON.check_http_request, header(12288, shared_memory_region="triton_python_backend_shm_region_x"),
        True).message
    assert "unknown field 'extra'" in refused(PYTHON.check_http_request, {**header(12288), "extra": 1}, True).message
    assert "parameter 'a' is not accepted; request parameters are binary_data_output, timeout" in refused(
        PYTHON.check_http_request, {**header(12288), "parameters": {"a": [[1]]}}, True).message
    image = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                         "parameters": {"binary_data_size": IMAGE.encoded_bytes + 100}}]}
    assert refused(IMAGE.check_http_request, image, True).status == 413


def test_bytes_elements_are_counted_from_their_lengths():
    one = (5).to_bytes(4, "little") + b"hello"
    check_bytes_elements(one, "image_bytes", 1, 100)
    assert "holds 2 element(s)" in refused(check_bytes_elements, one + one, "image_bytes", 1, 100).message
    assert "ends inside" in refused(check_bytes_elements, one + b"\x01", "image_bytes", 1, 100).message
    assert "at most 3" in refused(check_bytes_elements, one, "image_bytes", 1, 3).message


class FakeStream:
    """aiohttp's StreamReader as the gateway uses it: readany() until b''."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)

    async def readany(self) -> bytes:
        return next(self.chunks, b"")


def gzip_chunks(parts, chunk=64 << 10):
    """A gzip stream of `parts` (bytes, or (byte, count) runs generated piecewise), cut in network-sized chunks."""
    compressor, out = zlib.compressobj(9, zlib.DEFLATED, 31), []
    for part in parts:
        if isinstance(part, tuple):
            block = part[0] * (1 << 20)
            out += [compressor.compress(block) for _ in range(part[1])]
        else:
            out.append(compressor.compress(part))
    data = b"".join(out) + compressor.flush()
    return [data[i:i + chunk] for i in range(0, len(data), chunk)], len(data)


def test_a_gzip_bomb_is_inflated_only_as_far_as_the_header_declares():
    """256 MiB of zeros in about 256 kB of gzip: the reader inflates the declared 12 kB and one byte more."""
    header = b'{"inputs":[]}'
    chunks, size = gzip_chunks([header, (b"\0", 256)])
    assert size < 300_000
    reader = BodyReader(FakeStream(chunks), "gzip", raw_cap=10 << 20)

    async def read():
        got = b"".join(await reader.read(len(header), "the inference header"))
        tensor = await reader.read(12288, "the tensors")
        await reader.expect_end()
        return got, tensor

    tracemalloc.start()
    with pytest.raises(Refused, match="more bytes than its inference header declares"):
        asyncio.run(read())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20, peak  # a few chunks and zlib's window, never the 256 MiB
    assert reader.raw_bytes < 2 * (64 << 10)


def test_json_bodies_stop_at_their_cap_and_streams_at_the_raw_cap():
    chunks, _ = gzip_chunks([b'{"inputs":[', (b"0,", 16)])
    with pytest.raises(Refused) as err:
        asyncio.run(BodyReader(FakeStream(chunks), "gzip", raw_cap=1 << 30).read_to_end(1 << 20))
    assert err.value.status == 413
    with pytest.raises(Refused) as err:  # a chunked body with no length: one byte at a time, counted
        asyncio.run(BodyReader(FakeStream(iter(lambda: b"x", None)), "identity", raw_cap=1000).read_to_end(1 << 20))
    assert err.value.status == 413 and "above 1000 bytes" in err.value.message


@pytest.mark.parametrize("chunks, encoding, fragment, status", [
    ([b"this is not gzip data"], "gzip", "not valid gzip or deflate data", 400),
    ([zlib.compress(b"{}") + b"tail"], "deflate", "bytes after the end of its compressed data", 400),
    ([b"{}"], "br", "Content-Encoding 'br' is not accepted", 415),
])
def test_broken_or_unknown_encodings_are_refused(chunks, encoding, fragment, status):
    with pytest.raises(Refused) as err:
        asyncio.run(BodyReader(FakeStream(chunks), encoding, raw_cap=1 << 20).read_to_end(1 << 20))
    assert fragment in err.value.message and err.value.status == status


@pytest.fixture(scope="module")
def repository(tiny_onnx, tmp_path_factory):
    from gsam.deploy.triton.repository import build_repository
    from gsam.export.profiles import parse_profile

    root = tmp_path_factory.mktemp("gateway") / "triton_models"
    profiles = [parse_profile("min=1x3x64x64,opt=1x3x256x256,max=2x3x512x512")]
    build_repository(tiny_onnx, root, max_pixels=256 * 256, trt_profiles=profiles, log=lambda s: None)
    return root


def test_limits_come_from_the_repositorys_configs(repository):
    from gsam.runtime.serving.limits import load_limits

    limits = load_limits(repository, ["gsam_python", "gsam_image", "gsam_onnx", "gsam_trt"])
    assert limits["gsam_python"] == PYTHON
    assert limits["gsam_image"] == IMAGE
    assert limits["gsam_onnx"].max_pixels == 2 * 512 * 512  # its TensorRT profile's max: no max_pixels parameter
    assert limits["gsam_trt"].inputs["image"].dims == (-1, 3, -1, -1)


def test_each_model_gets_the_smallest_inference_it_takes(repository):
    from google.protobuf import json_format

    from gsam.pixels.codec import decode_image
    from gsam.runtime.serving.model_config import read_model_config
    from gsam.runtime.serving.probe import probe_for

    def probe(model):
        config = json_format.MessageToDict(read_model_config(repository / model), preserving_proto_field_name=True)
        found = probe_for(config)
        return found, json.loads(found.body[:found.header_length])["inputs"][0]

    python, header = probe("gsam_python")
    assert header["shape"] == [1, 3, 32, 32] and python.output == "mask" and PYTHON.check_http_request(
        json.loads(python.body[:python.header_length]), True) == [("image", 3072, 12288)]
    image, header = probe("gsam_image")
    png = image.body[image.header_length + 4:]
    assert header["datatype"] == "BYTES" and decode_image(png).shape == (32, 32, 3) and image.output == "mask_png"
    trt, header = probe("gsam_trt")  # the warm-up of its first profile (its opt, the profile being alone): run at load
    assert header["shape"] == [1, 3, 256, 256] and trt.what == "a 1x3x256x256 FP32 tensor"


@pytest.fixture
def fake_bundle(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    (bundle / "backends" / "python").mkdir(parents=True)
    (bundle / "backends" / "python" / "libtriton_python.so").write_bytes(b"lib")
    (bundle / "caches").mkdir()
    stub = tmp_path / "triton_python_backend_stub"
    stub.write_bytes(b"stub")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return bundle, stub


def test_the_backend_copy_is_reused_only_when_ours_private_and_of_this_wheel(fake_bundle):
    from gsam.runtime.serving.bundle import MARKER, backend_folder

    bundle, stub = fake_bundle
    folder, private = backend_folder(bundle, stub)
    library = folder / "backends" / "python" / "libtriton_python.so"
    assert not private and oct(folder.stat().st_mode & 0o777) == "0o700"
    assert (folder / "backends" / "python" / stub.name).read_bytes() == b"stub"
    assert backend_folder(bundle, stub) == (folder, False)  # reused as it is
    for spoil in (lambda: folder.chmod(0o777), lambda: (folder / MARKER).write_text('{"nvidia-pytriton": "0.1"}')):
        library.write_bytes(b"planted code")
        spoil()
        assert backend_folder(bundle, stub) == (folder, False)  # ours but open or stale: rebuilt in place
        assert library.read_bytes() == b"lib" and oct(folder.stat().st_mode & 0o777) == "0o700"
    if os.getuid() != 0:
        return
    library.write_bytes(b"planted code")
    os.chown(folder, 12345, 12345)  # another user's: never used, never touched
    fresh, private = backend_folder(bundle, stub)
    assert private and fresh != folder and (fresh / "backends" / "python" / library.name).read_bytes() == b"lib"
    assert library.read_bytes() == b"planted code" and oct(fresh.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("args, code, fragment", [
    (["--http-port", "70000"], 2, "Invalid value for '--http-port': 70000 is not in the range 1<=x<=65535"),
    (["--grpc-port", "0"], 2, "Invalid value for '--grpc-port'"),
    (["--http-port", "18123", "--grpc-port", "18123"], 1, "--http-port and --grpc-port are both 18123; give each"),
    (["--metrics-port", "18124", "--grpc-port", "18124"], 1, "--grpc-port and --metrics-port are both 18124"),
])
def test_bad_ports_fail_in_one_line(repository, args, code, fragment):
    result = CliRunner().invoke(cli, ["serve", "--repo", str(repository), *args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == code and len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output


def test_health_of_an_unreachable_server_is_one_line_and_exit_1():
    from gsam.runtime.serving.server import free_port

    result = CliRunner().invoke(cli, ["health", f"127.0.0.1:{free_port()}", "--triton-model", "gsam_python",
                                      "--timeout", "2"])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "Error: gsam_python at 127.0.0.1:" in result.output and "cannot reach" in result.output


def test_the_shutdown_steps_fit_in_the_stated_bound():
    from gsam.runtime.serving.server import DRAIN_S, EXIT_TIMEOUT_S, KILL_AFTER_S, SHUTDOWN_BOUND_S

    assert EXIT_TIMEOUT_S < KILL_AFTER_S and DRAIN_S + KILL_AFTER_S + 2 <= SHUTDOWN_BOUND_S < 30


def test_probe_arrays_stay_tiny():
    from gsam.runtime.serving.probe import probe_for

    config = {"name": "m", "backend": "python", "max_batch_size": 8, "input": [{"name": "image"}],
              "parameters": {"min_size": {"string_value": "48"}}}
    assert len(probe_for(config).body) < 3 * 48 * 48 * 4 + 400
    assert np.frombuffer(probe_for(config).body[-16:], np.float32).tolist() == [0.0] * 4


class FakeServer:
    """A TritonServer stand-in for the supervisor's policy: `alive` says whether its process runs."""

    def __init__(self, alive=True, starts_fail=False):
        self.alive, self.starts_fail, self.reloads, self.starts = alive, starts_fail, [], 0
        self.http_port = self.grpc_port = 1
        self.serving_key, self.key_headers, self.http_url = "k", {}, "127.0.0.1:1"
        self.process = self

    @property
    def returncode(self):
        return None if self.alive else -11

    def poll(self):
        return self.returncode

    def failure_reason(self):
        return "Signal (11) received"

    def reload(self, model, timeout):
        self.reloads.append(model)

    def stop(self):
        pass

    def start(self, timeout):
        from gsam.errors import GSAMError

        self.starts += 1
        if self.starts_fail:
            raise GSAMError("tritonserver exited with signal SIGSEGV: Signal (11) received")
        self.alive = True


def _supervise(server, monkeypatch, probe_failure=None, seconds=3.0):
    from gsam.runtime.serving.probe import Probe, ProbeFailed
    from gsam.runtime.serving.state import ServingState
    from gsam.runtime.serving import supervisor

    def probe(url, probe, timeout, headers):
        if probe_failure:
            raise ProbeFailed(probe_failure, status=500)
        return 0.01

    monkeypatch.setattr(supervisor, "run_probe", probe)
    monkeypatch.setattr(supervisor, "BACKOFF_S", (0,))
    state, lines = ServingState.for_models(["gsam_python"]), []
    state.up(1, 1, "k")
    watcher = supervisor.Supervisor(server, state, {"gsam_python": Probe("gsam_python", b"", 0, "mask", "a probe")},
                                    lines.append, ready_timeout=1)

    async def run():
        await asyncio.wait_for(watcher.run(), seconds)

    return run, state, lines


def test_a_model_that_keeps_failing_is_reloaded_then_its_server_restarted_then_given_up(monkeypatch):
    from gsam.errors import GSAMError
    from gsam.runtime.serving.supervisor import MAX_RELOADS, MAX_RESTARTS

    server = FakeServer()
    run, state, lines = _supervise(server, monkeypatch, "HTTP 500: Stub process 'gsam_python_0_0' is not healthy.",
                                   seconds=20)
    with pytest.raises(GSAMError, match="giving up. Last: gsam_python still fails after 3 reloads"):
        asyncio.run(run())
    assert server.reloads == ["gsam_python"] * MAX_RELOADS * (MAX_RESTARTS + 1) and server.starts == MAX_RESTARTS
    assert lines[0] == "gsam_python failed a probe: HTTP 500: Stub process 'gsam_python_0_0' is not healthy."
    assert "reloading gsam_python (unload, then load): HTTP 500: Stub process" in lines[1]
    assert not state.ready()


def test_a_server_that_keeps_crashing_is_given_up_with_its_cause(monkeypatch):
    from gsam.errors import GSAMError
    from gsam.runtime.serving.supervisor import MAX_RESTARTS

    server = FakeServer(alive=False, starts_fail=True)
    run, state, lines = _supervise(server, monkeypatch)
    with pytest.raises(GSAMError, match=r"failed 6 times within 10 minutes; giving up. Last: tritonserver exited"):
        asyncio.run(run())
    assert server.starts == MAX_RESTARTS and "signal SIGSEGV" in lines[0] and not state.server_up


def test_a_healthy_model_is_ready_and_a_timeout_is_only_busy(monkeypatch):
    run, state, lines = _supervise(FakeServer(), monkeypatch, seconds=0.6)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(run())
    assert state.ready() and lines == ["gsam_python answers (a probe in 10 ms)"]


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), MemoryError(), OSError(24, "Too many open files"),
                                     KeyError("x")])
def test_no_exception_ends_the_supervisor(monkeypatch, failure):
    """Whatever a probe raises, the loop goes on: logged in one line, no reload, no restart."""
    from gsam.runtime.serving import supervisor

    server = FakeServer()
    run, state, lines = _supervise(server, monkeypatch, seconds=1.0)

    def probe(*args):
        raise failure

    monkeypatch.setattr(supervisor, "run_probe", probe)
    with pytest.raises(asyncio.TimeoutError):  # still running when the test stops it
        asyncio.run(run())
    assert server.reloads == [] and server.starts == 0 and lines
    assert all("\n" not in line for line in lines)


def test_the_supervisors_own_resource_shortage_is_never_the_models(monkeypatch):
    """EMFILE in this process (a probe that cannot open a socket): said, never a reload or a restart."""
    from gsam.runtime.serving.probe import ProbeFailed
    from gsam.runtime.serving import supervisor

    server = FakeServer()
    run, state, lines = _supervise(server, monkeypatch, seconds=1.5)

    def probe(*args):
        raise ProbeFailed("this process cannot open a connection ([Errno 24] Too many open files)", resource=True)

    monkeypatch.setattr(supervisor, "run_probe", probe)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(run())
    assert server.reloads == [] and server.starts == 0
    assert len(lines) == 1 and "gsam serve itself is short of resources" in lines[0]


def test_an_impostors_answer_or_an_unknown_model_is_reloaded(monkeypatch):
    from gsam.runtime.serving.probe import ProbeFailed
    from gsam.runtime.serving import supervisor

    for failure in (ProbeFailed("answered with a mask that agrees on 0.0%: not the model the repository holds",
                                impostor=True), ProbeFailed("HTTP 404: Request for unknown model", status=404)):
        server = FakeServer()
        run, state, lines = _supervise(server, monkeypatch, seconds=0.6)
        calls = []

        def probe(*args, failure=failure):
            calls.append(1)
            if len(calls) == 1:
                raise failure
            return 0.01

        monkeypatch.setattr(supervisor, "run_probe", probe)
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(run())
        assert server.reloads == ["gsam_python"] and state.ready(), lines


@pytest.mark.parametrize("args, fragment", [
    (["--max-connections", "100000"], "--max-connections 100000 does not fit the open-file limit"),
    (["--max-body-mib", "1", "--triton-models", "gsam_onnx"], "--max-body-mib 1 is below the largest legal request of "
                                                              "gsam_onnx (7 MiB)"),
    (["--user", "no-such-user-29"], "--user no-such-user-29: no such user on this machine"),
])
def test_bad_limits_and_users_fail_in_one_line(repository, args, fragment):
    from gsam.runtime.serving.server import free_port

    ports = ["--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())]
    result = CliRunner().invoke(cli, ["serve", "--repo", str(repository), *ports, *args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output
