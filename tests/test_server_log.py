"""Why a server did not start, in one line: the line of Triton's log that names the model that failed to load,
not the first error lines (which a backend fills with messages that are not the cause).

The log lines below are the bundled tritonserver's (2.51) own, from a python model whose initialize raised,
with, before them, the error lines Triton's tensorrt backend writes for a CUDA graph spec it cannot set on a
profile (instance_state.cc: "Failed to set cuda graph shape for " + instance + the error)."""

from __future__ import annotations

from gsam.runtime.serving.server import TritonServer, log_message

GRAPH_NOISE = [
    'E1207 19:34:38.101010 13549 instance_state.cc:3895] "Failed to set cuda graph shape for gsam_trt_0_0trt failed '
    'to set input shape to [1,3,128,128] for input image for gsam_trt_0_0"',
] * 4
TRITON_LOG = [
    'W1207 19:34:37.256980 13549 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned '
    'memory pool will not be available: CUDA driver version is insufficient for CUDA runtime version"',
    'E1207 19:34:37.257151 13549 server.cc:241] "CudaDriverHelper has not been initialized."',
    'I1207 19:34:37.263286 13549 model_lifecycle.cc:472] "loading: bad:1"',
    *GRAPH_NOISE,
    'I1207 19:34:39.065324 13549 pb_stub.cc:366] "Failed to initialize Python stub: RuntimeError: the real cause: '
    'model.plan was built for another GPU\\n\\nAt:\\n  /tmp/repo/bad/1/model.py(3): initialize\\n"',
    'E1207 19:34:39.283940 13549 backend_model.cc:692] "ERROR: Failed to create instance: RuntimeError: the real '
    'cause: model.plan was built for another GPU\\n\\nAt:\\n  /tmp/repo/bad/1/model.py(3): initialize\\n"',
    'E1207 19:34:39.284159 13549 model_lifecycle.cc:642] "failed to load \'bad\' version 1: Internal: RuntimeError: '
    'the real cause: model.plan was built for another GPU\\n\\nAt:\\n  /tmp/repo/bad/1/model.py(3): initialize\\n"',
    'I1207 19:34:39.284209 13549 model_lifecycle.cc:777] "failed to load \'bad\'"',
    "error: creating server: Invalid argument - load failed for model 'bad': version 1 is at UNAVAILABLE state: "
    "Internal: RuntimeError: the real cause: model.plan was built for another GPU",
]


def _server(tmp_path, lines):
    server = TritonServer(tmp_path, ["bad"], 8000, 8001, metrics_port=8002)
    server.output.lines.extend(lines)
    return server


def test_a_failed_load_is_reported_by_the_line_that_names_it(tmp_path):
    reason = _server(tmp_path, TRITON_LOG).failure_reason()
    assert reason == ("failed to load 'bad' version 1: Internal: RuntimeError: the real cause: model.plan was built "
                      "for another GPU")


def test_every_model_that_failed_is_named_once(tmp_path):
    other = TRITON_LOG[-3].replace("'bad'", "'gsam_image'").replace("the real cause", "its compute model is absent")
    reason = _server(tmp_path, [*TRITON_LOG, other, TRITON_LOG[-3]]).failure_reason()
    assert reason.count("failed to load") == 2 and "gsam_image" in reason and "cuda graph" not in reason


def test_without_a_failed_load_the_error_lines_remain_the_reason(tmp_path):
    assert "Failed to set cuda graph shape" in _server(tmp_path, GRAPH_NOISE).failure_reason()
    assert _server(tmp_path, []).failure_reason() == "no output from tritonserver"


def test_a_log_message_is_its_first_line_without_triton_s_prefix():
    assert log_message('I1207 19:34:37.263286 13549 model_lifecycle.cc:472] "loading: bad:1"') == "loading: bad:1"
    assert log_message("error: creating server: x") == "error: creating server: x"
