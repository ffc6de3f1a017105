"""What the gateway lets through to Triton: each served model's inputs and the bounds of one request.

The bounds are the model's own, read from its config: `max_pixels` (pixels of one request, N x H x W)
and, in a repository built with --oversize-tile, `max_tiled_pixels` (pixels of one image). The gateway
checks a request's names, datatypes and shapes against them from the inference header, before it reads
the tensor bytes, so nothing above the bound is read, inflated or allocated. The same checks answer 400
(gRPC INVALID_ARGUMENT) where Triton 2.51 would answer 500 or break: a negative dimension kills a python
stub, JSON with a wrong element count or strings for numbers gets a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gsam.errors import GSAMError

DTYPE_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
               "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
INT_RANGES = {name: (0, 2 ** (8 * size) - 1) if name.startswith("U") else (-(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1)
              for name, size in DTYPE_BYTES.items() if "INT" in name}
# An encoded image of P pixels takes at most P x 8 bytes (16-bit RGBA stored uncompressed, the largest
# encoding of the formats gsam_image reads) plus its metadata (EXIF, ICC profiles, TIFF tags): 1 MiB.
ENCODED_BYTES_PER_PIXEL = 8
ENCODED_SLACK = 1 << 20
HEADER_CAP = 64 << 10  # the JSON header of a binary request: names, shapes, parameters (a few hundred bytes)
JSON_BODY_CAP = 8 << 20  # a whole-JSON request (tensor values as text): for small images and curl
SHARED_MEMORY_KEYS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")
# The largest finite value of each floating dtype: JSON numbers beyond it (1e400 parses as inf) are refused.
FLOAT_MAX = {"FP16": 65504.0, "BF16": 3.3895313892515355e38, "FP32": 3.4028234663852886e38,
             "FP64": 1.7976931348623157e308}
MAX_TIMEOUT_US = 3600 * 10**6  # Triton's `timeout` request parameter (microseconds): an hour at most


def _flag(value: Any) -> bool:
    return type(value) is bool


def _count(limit: int):
    return lambda value: type(value) is int and 0 <= value <= limit


# The only request parameters a served model gets, by where they stand, with the check of their values
# (tritonclient's own: binary tensors, the server-side timeout). Shared-memory parameters, sequence and
# priority fields, `config` and `file:` overrides and anything else is refused by name.
PARAMETERS = {
    "request": {"binary_data_output": _flag, "timeout": _count(MAX_TIMEOUT_US)},
    "input": {"binary_data_size": _count(2**63 - 1)},
    "output": {"binary_data": _flag},
}
PARAMETER_KINDS = {"binary_data_output": "a boolean", "timeout": f"microseconds within 0..{MAX_TIMEOUT_US}",
                   "binary_data_size": "a byte count", "binary_data": "a boolean"}
# The same names over gRPC, with the InferParameter field each must use.
GRPC_PARAMETER_FIELDS = {"binary_data_output": "bool_param", "timeout": "int64_param",
                         "binary_data_size": "int64_param", "binary_data": "bool_param"}
GRPC_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                 "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                 "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                 "FP64": "fp64_contents", "BYTES": "bytes_contents"}


class Refused(Exception):
    """A request the gateway answers itself: HTTP `status` (400 client error, 413 too large, ...)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str  # Triton's wire name: FP32, UINT8, BYTES, ...
    dims: tuple[int, ...]  # full rank, the batch axis first when the model batches; -1 = any size

    def text(self) -> str:
        return "[" + ", ".join("any" if d == -1 else str(d) for d in self.dims) + "]"


def _leaf_ok(datatype: str):
    if datatype in FLOAT_MAX:
        largest = FLOAT_MAX[datatype]
        return lambda v: type(v) in (int, float) and -largest <= v <= largest  # False for inf and nan
    if datatype == "BOOL":
        return lambda v: type(v) is bool
    if datatype == "BYTES":
        return lambda v: type(v) is str
    low, high = INT_RANGES[datatype]
    return lambda v: type(v) is int and low <= v <= high


def check_json_data(data: Any, name: str, datatype: str, shape: list[int]) -> None:
    """Values nested at most as deep as the tensor's rank, of the datatype's kind, as many as the shape says."""
    if not isinstance(data, list):
        raise Refused(f"input {name!r}: 'data' must be a list of values")
    ok, count, stack = _leaf_ok(datatype), 0, [(data, 1)]
    while stack:
        values, depth = stack.pop()
        nested = [v for v in values if type(v) is list]
        if nested and depth >= len(shape):
            raise Refused(f"input {name!r}: 'data' nests deeper than the tensor's {len(shape)} dimensions")
        stack.extend((v, depth + 1) for v in nested)
        leaves = len(values) - len(nested)
        if leaves and not all(ok(v) for v in values if type(v) is not list):
            bad = next(v for v in values if type(v) is not list and not ok(v))
            if type(bad) in (int, float) and datatype in FLOAT_MAX:
                raise Refused(f"input {name!r} is {datatype}; 'data' holds {str(bad)[:40]}, which {datatype} cannot "
                              "hold")
            raise Refused(f"input {name!r} is {datatype}; 'data' holds {type(bad).__name__} {str(bad)[:40]!r}")
        count += leaves
    if count != math.prod(shape):
        raise Refused(f"input {name!r} has shape {shape} ({math.prod(shape)} values); 'data' holds {count}")


def check_bytes_elements(buffer: bytes | memoryview, name: str, elements: int, largest: int) -> None:
    """A BYTES tensor's binary form: `elements` items, each a 4-byte little-endian length and that many bytes."""
    view, offset, count = memoryview(buffer), 0, 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise Refused(f"input {name!r}: the BYTES data ends inside an element's 4-byte length")
        size = int.from_bytes(view[offset:offset + 4], "little")
        if size > largest:
            raise Refused(f"input {name!r} holds an element of {size} bytes; this model takes at most {largest}")
        offset, count = offset + 4 + size, count + 1
    if offset != len(view) or count != elements:
        raise Refused(f"input {name!r}: the BYTES data holds {count} element(s) in {len(view)} bytes; its shape "
                      f"says {elements}")


def check_parameters(parameters: Any, where: str, level: str) -> None:
    """Request, input or output parameters (`level`): names from PARAMETERS[level] only, each of its kind."""
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise Refused(f"{where}: 'parameters' must be an object")
    allowed = PARAMETERS[level]
    for key, value in parameters.items():
        if key in SHARED_MEMORY_KEYS:
            raise Refused(f"{where}: shared memory is not served by gsam serve; send the tensor in the request")
        if key not in allowed:
            names = ", ".join(allowed)
            raise Refused(f"{where}: parameter {str(key)[:60]!r} is not accepted; {level} parameters are {names}")
        if not allowed[key](value):
            raise Refused(f"{where}: parameter {key!r} must be {PARAMETER_KINDS[key]}; got {str(value)[:40]!r}")


@dataclass(frozen=True)
class ModelLimits:
    name: str
    inputs: dict[str, InputSpec]
    outputs: tuple[str, ...]
    max_batch: int  # Triton's max_batch_size: 0 = the model has no batch axis of Triton's
    max_pixels: int  # pixels of one request
    max_tiled_pixels: int = 0  # pixels of one image when the model tiles (0: it does not)

    @property
    def image_pixels(self) -> int:
        """The most pixels of one image (what an encoded image may hold)."""
        return self.max_tiled_pixels or self.max_pixels

    @property
    def request_pixels(self) -> int:
        """The most pixels of one request: a tiling model takes up to a batch of its largest images."""
        if self.max_tiled_pixels:
            return max(self.max_pixels, self.max_tiled_pixels * max(1, self.max_batch))
        return self.max_pixels

    @property
    def encoded_bytes(self) -> int:
        return self.image_pixels * ENCODED_BYTES_PER_PIXEL + ENCODED_SLACK

    def input_bytes(self, spec: InputSpec) -> int:
        """The largest legal size of one input on the wire."""
        if spec.datatype == "BYTES":
            return math.prod(d for d in spec.dims if d > 0) * (self.encoded_bytes + 4)
        channels = math.prod(d for d in spec.dims if d > 0)
        return self.request_pixels * channels * DTYPE_BYTES[spec.datatype]

    @property
    def body_cap(self) -> int:
        """The most bytes one binary request may carry (the largest input, plus its header)."""
        return HEADER_CAP + max(self.input_bytes(spec) for spec in self.inputs.values())

    def check_input(self, name: Any, datatype: Any, shape: Any) -> tuple[int, int]:
        """(elements, bytes; -1 for BYTES) of a declared input, or Refused naming what is wrong."""
        spec = self.inputs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise Refused(f"{self.name}: unknown input {name!r}; this model takes {', '.join(self.inputs)}")
        if datatype != spec.datatype:
            raise Refused(f"input {name!r} must be {spec.datatype}; got {datatype}")
        if not isinstance(shape, (list, tuple)) or not all(type(d) is int and d >= 1 for d in shape):
            raise Refused(f"input {name!r} has shape {shape}; every dimension must be a positive integer")
        if len(shape) != len(spec.dims) or any(want not in (-1, got) for want, got in zip(spec.dims, shape)):
            raise Refused(f"input {name!r} must have shape {spec.text()}; got shape {list(shape)}")
        if self.max_batch and shape[0] > self.max_batch:
            raise Refused(f"input {name!r} holds {shape[0]} images; this model's max_batch_size is {self.max_batch}")
        elements = math.prod(shape)
        if datatype == "BYTES":
            return elements, -1
        self._check_pixels(name, spec, list(shape))
        return elements, elements * DTYPE_BYTES[datatype]

    def _check_pixels(self, name: str, spec: InputSpec, shape: list[int]) -> None:
        variable = [got for want, got in zip(spec.dims, shape) if want == -1]
        if len(variable) < 2:
            return
        height, width = variable[-2:]
        pixels, text = math.prod(variable), "x".join(map(str, variable))
        if self.max_tiled_pixels and height * width > self.max_tiled_pixels:
            raise Refused(f"the image is {height * width} pixels; this model's limit is "
                          f"max_tiled_pixels={self.max_tiled_pixels} per image (tiled)")
        if pixels > self.request_pixels:
            limit = (f"{self.request_pixels} pixels per request (max_tiled_pixels={self.max_tiled_pixels} per image)"
                     if self.max_tiled_pixels else f"max_pixels={self.max_pixels} per request")
            raise Refused(f"input {name!r} is {text} = {pixels} pixels; this model's limit is {limit}")

    def check_http_request(self, header: Any, binary: bool) -> list[tuple[str, int, int]]:
        """An HTTP inference header checked; (name, elements, bytes) of each input sent as binary data, in order."""
        if not isinstance(header, dict):
            raise Refused("the inference request must be a JSON object")
        _only_keys(header, ("id", "parameters", "inputs", "outputs"), "the inference request")
        if "id" in header and (type(header["id"]) is not str or len(header["id"]) > 256):
            raise Refused("the request's 'id' must be a string of at most 256 characters")
        check_parameters(header.get("parameters"), "the request", "request")
        inputs = header.get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
            raise Refused("'inputs' must be a non-empty list of objects")
        _distinct([item.get("name") for item in inputs], "input")
        binaries = [b for b in (self._check_http_input(item, binary) for item in inputs) if b is not None]
        outputs = header.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise Refused("'outputs' must be a list of objects")
        for output in outputs:
            _only_keys(output, ("name", "parameters"), "an output")
            self.check_output(output.get("name"))
            check_parameters(output.get("parameters"), f"output {output.get('name')!r}", "output")
        _distinct([output.get("name") for output in outputs], "output")
        return binaries

    def check_output(self, name: Any) -> None:
        if not isinstance(name, str) or name not in self.outputs:
            raise Refused(f"{self.name}: unknown output {str(name)[:60]!r}; this model answers "
                          f"{', '.join(self.outputs)}")

    def _check_http_input(self, item: dict, binary: bool) -> tuple[str, int, int] | None:
        _only_keys(item, ("name", "shape", "datatype", "parameters", "data"), "an input")
        name, parameters = item.get("name"), item.get("parameters") or {}
        check_parameters(parameters, f"input {name!r}", "input")
        elements, nbytes = self.check_input(name, item.get("datatype"), item.get("shape"))
        size = parameters.get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise Refused(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
            check_json_data(item["data"], name, item["datatype"], item["shape"])
            return None
        if "data" in item or not binary or type(size) is not int or size < 0:
            raise Refused(f"input {name!r}: binary_data_size must be a byte count, with no 'data', in a request "
                          "with the Inference-Header-Content-Length header")
        if nbytes >= 0 and size != nbytes:
            raise Refused(f"input {name!r} of shape {item['shape']} ({item['datatype']}) takes {nbytes} bytes; "
                          f"binary_data_size says {size}")
        if nbytes < 0 and size > elements * (self.encoded_bytes + 4):
            raise Refused(f"input {name!r} holds {size} bytes; an image within this model's limit of "
                          f"{self.image_pixels} pixels takes at most {self.encoded_bytes}", status=413)
        return name, elements, size

    def check_grpc_request(self, request) -> None:
        """A ModelInferRequest checked the same way, its tensor bytes against its shapes."""
        _grpc_parameters(request.parameters, "the request", "request")
        raw = request.raw_input_contents
        if not request.inputs or (raw and len(raw) != len(request.inputs)):
            raise Refused(f"the request has {len(request.inputs)} input(s) and {len(raw)} raw_input_contents")
        _distinct([tensor.name for tensor in request.inputs], "input")
        for index, tensor in enumerate(request.inputs):
            _grpc_parameters(tensor.parameters, f"input {tensor.name!r}", "input")
            elements, nbytes = self.check_input(tensor.name, tensor.datatype, list(tensor.shape))
            if raw and tensor.HasField("contents"):
                raise Refused(f"input {tensor.name!r} has both contents and raw_input_contents")
            if raw and nbytes >= 0 and len(raw[index]) != nbytes:
                raise Refused(f"input {tensor.name!r} of shape {list(tensor.shape)} ({tensor.datatype}) takes "
                              f"{nbytes} bytes; raw_input_contents holds {len(raw[index])}")
            if raw and nbytes < 0:
                check_bytes_elements(raw[index], tensor.name, elements, self.encoded_bytes)
            if not raw:
                _check_grpc_contents(tensor, elements, self.encoded_bytes)
        for output in request.outputs:
            self.check_output(output.name)
            _grpc_parameters(output.parameters, f"output {output.name!r}", "output")
        _distinct([output.name for output in request.outputs], "output")


def _only_keys(item: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(item) - set(allowed))
    if unknown:
        raise Refused(f"{what} has unknown field {unknown[0]!r}; expected {', '.join(allowed)}")


def _distinct(names: list, what: str) -> None:
    seen = set()
    for name in names:
        if isinstance(name, str) and name in seen:
            raise Refused(f"{what} {name!r} is given twice")
        seen.add(name if isinstance(name, str) else id(name))


def _grpc_parameters(parameters, where: str, level: str) -> None:
    """The allow-list of check_parameters, each value in its InferParameter field (int64 checked for range)."""
    for key, value in parameters.items():
        if key in SHARED_MEMORY_KEYS:
            raise Refused(f"{where}: shared memory is not served by gsam serve; send the tensor in the request")
        if key not in PARAMETERS[level]:
            raise Refused(f"{where}: parameter {key[:60]!r} is not accepted; {level} parameters are "
                          f"{', '.join(PARAMETERS[level])}")
        field = value.WhichOneof("parameter_choice")
        if field != GRPC_PARAMETER_FIELDS[key] or not PARAMETERS[level][key](getattr(value, field)):
            raise Refused(f"{where}: parameter {key!r} must be {PARAMETER_KINDS[key]} ({GRPC_PARAMETER_FIELDS[key]})")


def _check_grpc_contents(tensor, elements: int, largest: int) -> None:
    field = GRPC_CONTENTS.get(tensor.datatype)
    values = getattr(tensor.contents, field) if field else []
    if len(values) != elements:
        raise Refused(f"input {tensor.name!r} has shape {list(tensor.shape)} ({elements} values); its contents "
                      f"hold {len(values)}")
    if field == "bytes_contents" and any(len(v) > largest for v in values):
        raise Refused(f"input {tensor.name!r} holds an element above {largest} bytes")


def _datatype(config_type: int) -> str:
    from tritonclient.grpc import model_config_pb2

    name = model_config_pb2.DataType.Name(config_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def model_limits(config, model_dir: Path) -> ModelLimits:
    """A served model's limits from its config (the repository's config.pbtxt, parsed)."""
    from .model_config import request_bounds

    bounds = request_bounds(config, model_dir)
    batch = [-1] if config.max_batch_size > 0 else []
    inputs = {i.name: InputSpec(i.name, _datatype(i.data_type), tuple(batch + list(i.dims))) for i in config.input}
    return ModelLimits(config.name, inputs, tuple(o.name for o in config.output), config.max_batch_size,
                       bounds.max_pixels, bounds.max_tiled_pixels)


def load_limits(repo: Path, models: list[str]) -> dict[str, ModelLimits]:
    from .model_config import read_model_config

    if not repo.is_dir():
        raise GSAMError(f"{repo}: no such model repository; write one with `gsam triton build`")
    found = {}
    for model in models:
        if not (repo / model / "config.pbtxt").is_file():
            raise GSAMError(f"{repo / model}: model {model!r} has no config.pbtxt in the repository")
        found[model] = model_limits(read_model_config(repo / model), repo / model)
    return found


def served_versions(config, model_dir: Path) -> frozenset[str]:
    """The versions tritonserver serves of a model: its version folders under the config's version_policy
    (unset: the latest one), as Triton chooses them."""
    found = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and p.name.isascii()
                    and not p.name.startswith("0")), reverse=True)
    policy = config.version_policy.WhichOneof("policy_choice") if config.HasField("version_policy") else None
    if policy == "all":
        chosen = found
    elif policy == "specific":
        chosen = [v for v in found if v in set(config.version_policy.specific.versions)]
    else:
        count = config.version_policy.latest.num_versions if policy == "latest" else 1
        chosen = found[:max(1, count)]
    return frozenset(str(v) for v in chosen)


def load_versions(repo: Path, models: list[str]) -> dict[str, frozenset[str]]:
    from .model_config import read_model_config

    return {model: served_versions(read_model_config(repo / model), repo / model) for model in models}
