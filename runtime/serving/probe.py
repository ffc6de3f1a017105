"""The smallest real inference a gsam model answers: what `gsam health` and the supervisor send.

Triton 2.51's readiness stays 200 when a python model's stub process has died, so only an inference
tells whether a model can answer, and only a known answer tells that it is the model of the repository.
Each probe is built from the model's config: gsam_python and gsam_image get a min_size x min_size image,
gsam_onnx / gsam_trt the shape of their config's first warm-up, which lies inside their first TensorRT
profile (Triton already ran it while loading the model). A config with a `probe_fingerprint`
(fingerprint.py, written by `gsam triton build`) gets its fixed image, and the answer (mask, and logits
where the model has them) is compared with the fingerprint; an older config gets zeros, and only the
presence of the mask is checked. Plain urllib: it runs in a probe process that must start fast.
"""

from __future__ import annotations

import errno
import io
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from gsam.errors import GSAMError

from .fingerprint import PARAMETER, Fingerprint, probe_image

HEADER_LENGTH = "Inference-Header-Content-Length"
# Failures of this process, not of the server: no file descriptors or memory left here.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
NUMPY_TYPES = {"INT32": "<i4", "INT64": "<i8", "FP32": "<f4", "UINT8": "u1"}


class ProbeFailed(Exception):
    """`status`: Triton's HTTP status; `timed_out`: no answer in time (busy); `resource`: this process ran out
    of file descriptors or memory (not the model's fault); `impostor`: an answer, but not this model's."""

    def __init__(self, message: str, status: int | None = None, timed_out: bool = False, resource: bool = False,
                 impostor: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.timed_out = message, status, timed_out
        self.resource, self.impostor = resource, impostor


@dataclass(frozen=True)
class Probe:
    model: str
    body: bytes  # the JSON header, then the tensor
    header_length: int
    output: str
    what: str  # "a 1x3x32x32 FP32 tensor", for messages
    fingerprint: Fingerprint | None = None
    logits: bool = False  # the answer's logits are compared too


def _binary_request(model: str, tensor: tuple[str, str, list[int], bytes], outputs: list[str], what: str,
                    fingerprint: Fingerprint | None = None) -> Probe:
    name, datatype, shape, data = tensor
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype,
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": o, "parameters": {"binary_data": True}} for o in outputs]}).encode()
    return Probe(model, header + data, len(header), outputs[0], what, fingerprint, "logits" in outputs)


def _warmup_shape(config: dict) -> list[int] | None:
    for warmup in config.get("model_warmup", []):
        image = warmup.get("inputs", {}).get("image")
        if image:
            dims = [int(d) for d in image.get("dims", [])]
            return ([int(warmup.get("batch_size", 1))] if int(config.get("max_batch_size", 0)) > 0 else []) + dims
    return None


def probe_shape(config: dict) -> list[int]:
    """[1, 3, H, W] of a model's probe (from its config, as Triton serves it or as MessageToDict gives it)."""
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    side = int(params.get("min_size") or 32)
    shape = [1, 3, side, side]
    if config.get("backend") != "python":
        shape = _warmup_shape(config) or shape
    return shape


def config_fingerprint(config: dict) -> Fingerprint | None:
    text = config.get("parameters", {}).get(PARAMETER, {}).get("string_value")
    try:
        return Fingerprint.from_text(text) if text else None
    except (ValueError, KeyError, TypeError) as exc:
        raise GSAMError(f"model {config.get('name', '?')!r}: its {PARAMETER} parameter is damaged ({exc}); rebuild "
                        "the repository with `gsam triton build`") from None


def probe_for(config: dict, fingerprint: Fingerprint | None = None) -> Probe:
    """The probe of a model from its config; `fingerprint` (default: the config's own) sets its image and
    the answer it expects."""
    import numpy as np

    name = config.get("name", "?")
    inputs = {item.get("name") for item in config.get("input", [])}
    fingerprint = fingerprint or config_fingerprint(config)
    shape = [1, 3, fingerprint.height, fingerprint.width] if fingerprint else probe_shape(config)
    height, width = shape[2:]
    image = probe_image(height, width) if fingerprint else np.zeros((height, width, 3), np.uint8)
    if "image_bytes" in inputs:
        from gsam.pixels.codec import encode_png

        png = encode_png(image)
        return _binary_request(name, ("image_bytes", "BYTES", [1], len(png).to_bytes(4, "little") + png),
                               ["mask_png"], f"a {height}x{width} PNG", fingerprint)
    if "image" not in inputs:
        raise GSAMError(f"model {name!r} has no input 'image' or 'image_bytes': not a gsam model")
    data = image.transpose(2, 0, 1)[None].astype(np.float32).tobytes()
    outputs = ["mask", "logits"] if fingerprint else ["mask"]
    return _binary_request(name, ("image", "FP32", shape, data), outputs,
                           f"a {'x'.join(map(str, shape))} FP32 tensor", fingerprint)


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
        if getattr(reason, "errno", None) in RESOURCE_ERRNOS:
            raise ProbeFailed(f"this process cannot open a connection ({reason})", resource=True) from None
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
    seconds = time.perf_counter() - started
    try:
        outputs = _outputs(raw, length)
    except (ValueError, KeyError, TypeError, IndexError):
        raise ProbeFailed(f"{probe.model} answered {probe.what} with something that is not an inference "
                          "response") from None
    if probe.output not in outputs:
        raise ProbeFailed(f"{probe.model} answered {probe.what} without its {probe.output!r} output")
    if probe.fingerprint is not None:
        reason = _mismatch(probe, outputs)
        if reason:
            raise ProbeFailed(f"{probe.model} answered {probe.what} with {reason}: not the model the repository "
                              "holds", impostor=True)
    return seconds


def _outputs(raw: bytes, length: str | None) -> dict[str, tuple[dict, bytes | None]]:
    """Each output of a response: (its JSON entry, its binary data or None)."""
    size = int(length) if length else len(raw)
    header = json.loads(raw[:size])
    found, offset = {}, size
    for output in header["outputs"]:
        nbytes = (output.get("parameters") or {}).get("binary_data_size")
        data = None
        if nbytes is not None:
            data, offset = raw[offset:offset + int(nbytes)], offset + int(nbytes)
        found[output["name"]] = (output, data)
    return found


def _array(entry: tuple[dict, bytes | None]):
    import numpy as np

    output, data = entry
    shape = [int(d) for d in output["shape"]]
    if data is None:
        return np.array(output["data"], NUMPY_TYPES[output["datatype"]]).reshape(shape)
    return np.frombuffer(data, NUMPY_TYPES[output["datatype"]]).reshape(shape)


def _mismatch(probe: Probe, outputs: dict) -> str | None:
    """Why the answer is not the fingerprinted model's, or None."""
    import numpy as np

    fingerprint = probe.fingerprint
    try:
        if probe.output == "mask_png":
            from PIL import Image

            output, data = outputs["mask_png"]
            png = data[4:] if data is not None else output["data"][0].encode("latin-1")
            mask = np.asarray(Image.open(io.BytesIO(png)))
        else:
            mask = _array(outputs["mask"])
        reason = fingerprint.mask_mismatch(mask)
        if reason is None and probe.logits:
            if "logits" not in outputs:
                return "no logits"
            reason = fingerprint.logits_mismatch(_array(outputs["logits"]))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return f"an answer that cannot be read as a mask ({type(exc).__name__}: {str(exc)[:100]})"
    return reason
