"""The smallest real inference a gsam model answers: what `gsam health` and the supervisor send.

Triton 2.51's readiness stays 200 when a python model's stub process has died, so only an inference
tells whether a model can answer. Each probe is built from the model's config: gsam_python gets a
min_size x min_size tensor of zeros, gsam_image a min_size x min_size PNG, and gsam_onnx / gsam_trt the
shape of their config's first warm-up, which lies inside their first TensorRT profile (Triton already
ran it while loading the model). Only the mask is asked for. Plain urllib: it runs in a probe process
that must start fast.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from gsam.errors import GSAMError

HEADER_LENGTH = "Inference-Header-Content-Length"


class ProbeFailed(Exception):
    def __init__(self, message: str, status: int | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.timed_out = message, status, timed_out


@dataclass(frozen=True)
class Probe:
    model: str
    body: bytes  # the JSON header, then the tensor
    header_length: int
    output: str
    what: str  # "a 1x3x32x32 FP32 tensor", for messages


def _binary_request(model: str, tensor: tuple[str, str, list[int], bytes], output: str, what: str) -> Probe:
    name, datatype, shape, data = tensor
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": output, "parameters": {"binary_data": True}}]}).encode()
    return Probe(model, header + data, len(header), output, what)


def _warmup_shape(config: dict) -> list[int] | None:
    for warmup in config.get("model_warmup", []):
        image = warmup.get("inputs", {}).get("image")
        if image:
            dims = [int(d) for d in image.get("dims", [])]
            return ([int(warmup.get("batch_size", 1))] if int(config.get("max_batch_size", 0)) > 0 else []) + dims
    return None


def probe_for(config: dict) -> Probe:
    """The probe of a model, from its config as Triton serves it (JSON) or as protobuf's MessageToDict gives it."""
    import numpy as np

    name = config.get("name", "?")
    inputs = {item.get("name") for item in config.get("input", [])}
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    side = int(params.get("min_size") or 32)
    if "image_bytes" in inputs:
        from gsam.pixels.codec import encode_png

        png = encode_png(np.zeros((side, side, 3), np.uint8))
        return _binary_request(name, ("image_bytes", "BYTES", [1], len(png).to_bytes(4, "little") + png),
                               "mask_png", f"a {side}x{side} PNG")
    if "image" not in inputs:
        raise GSAMError(f"model {name!r} has no input 'image' or 'image_bytes': not a gsam model")
    shape = [1, 3, side, side]
    if config.get("backend") != "python":
        shape = _warmup_shape(config) or shape
    data = np.zeros(shape, np.float32).tobytes()
    return _binary_request(name, ("image", "FP32", shape, data), "mask",
                           f"a {'x'.join(map(str, shape))} FP32 tensor")


def base_url(url: str) -> str:
    return "http://" + url.removeprefix("http://").removeprefix("https://").rstrip("/")


def _error_text(exc: urllib.error.HTTPError) -> str:
    text = exc.read()[:2000].decode(errors="replace")
    try:
        text = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        pass
    return f"HTTP {exc.code}: {text or exc.reason}"


def _open(request: urllib.request.Request, url: str, timeout: float) -> tuple[bytes, str | None]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read(), response.headers.get(HEADER_LENGTH)
    except urllib.error.HTTPError as exc:
        raise ProbeFailed(_error_text(exc), status=exc.code) from None
    except (TimeoutError, urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
            raise ProbeFailed(f"no answer within {timeout:g} s", timed_out=True) from None
        raise ProbeFailed(f"cannot reach {url} ({reason})") from None


def fetch_config(url: str, model: str, timeout: float) -> dict:
    base = base_url(url)
    raw, _ = _open(urllib.request.Request(f"{base}/v2/models/{model}/config"), base, timeout)
    try:
        return json.loads(raw)
    except ValueError:
        raise ProbeFailed(f"{base} answered the config of {model} with something that is not JSON") from None


def run_probe(url: str, probe: Probe, timeout: float, headers: dict[str, str] | None = None) -> float:
    """Seconds the model took to answer the probe with its mask; ProbeFailed otherwise."""
    base = base_url(url)
    request = urllib.request.Request(f"{base}/v2/models/{probe.model}/infer", data=probe.body, method="POST",
                                     headers={HEADER_LENGTH: str(probe.header_length),
                                              "Content-Type": "application/octet-stream", **(headers or {})})
    started = time.perf_counter()
    raw, length = _open(request, base, timeout)
    try:
        header = json.loads(raw[:int(length)] if length else raw)
        names = {output["name"] for output in header["outputs"]}
    except (ValueError, KeyError, TypeError):
        raise ProbeFailed(f"{probe.model} answered {probe.what} with something that is not an inference "
                          "response") from None
    if probe.output not in names:
        raise ProbeFailed(f"{probe.model} answered {probe.what} without its {probe.output!r} output")
    return time.perf_counter() - started
