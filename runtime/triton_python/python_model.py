"""Triton python-backend model for gsam: the tensor model gsam_python and the image model gsam_image.

This is what lets one model repository serve on a CPU-only machine (Triton's own onnxruntime
backend is not in the pip-installed server). `gsam triton build` copies it to
<repo>/<model>/<version>/model.py beside compute.py and the package gsam.pixels (as gsam_pixels/:
decoding, masks, tiling). It imports nothing else from gsam. One file serves two models, told
apart by their config's inputs:

- gsam_python: tensors in (`image` FP32 or `image_uint8` UINT8, [N, 3, H, W]), `logits`
  and/or `mask` out, computed by onnxruntime in this process. With a batch dimension in the
  config, Triton's dynamic batcher hands several requests to one `execute`; requests of the same
  shape and dtype run as one batch.
- gsam_image: encoded image bytes in (`image_bytes`, one PNG/JPEG/TIFF per request), the mask as
  PNG bytes out (`mask_png`, `overlay_png` and `timings_ms` when asked for). It decodes, checks the
  bounds, tiles and encodes here, and sends the pixels to the repository's compute model (the
  `compute_model` parameter: gsam_trt, gsam_onnx or gsam_python) with BLS, uint8 where the compute
  model takes it; each batch of tiles is one call. An empty `compute_model` runs onnxruntime here.

Every request is bounded by the `max_pixels` parameter (pixels of one request, all of its images
together; read, with the tiling, by gsam_pixels.bounds, the one reader of that contract); a request
outside the bounds gets INVALID_ARG (HTTP 400), never a crash.
Only the outputs a request asks for are computed and returned.
"""

import json
import os
import re
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compute import BlsCompute, ComputeError, OnnxCompute  # noqa: E402  (copied beside this file)
from gsam_pixels import bounds, codec, masks, tiling  # noqa: E402  (gsam.pixels, copied beside this file)

TENSOR_INPUTS = {"image": np.float32, "image_uint8": np.uint8}
FILE_OBJECT = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


class RequestError(ValueError):
    """A request this model refuses (answered with INVALID_ARG = HTTP 400)."""


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.name = config["name"]
        self.min_size = int(params.get("min_size", "32"))
        # The request-bound contract, read by the one module that writes it. Built with --oversize-tile,
        # requests above max_pixels run tile by tile (memory bounded by the tile), up to max_tiled_pixels.
        self.bounds = bounds.RequestBounds.read(params, int(config.get("max_batch_size", 0)))
        self.max_pixels, self.tile = self.bounds.max_pixels, self.bounds.tile
        self.tile_overlap, self.max_tiled_pixels = self.bounds.tile_overlap, self.bounds.max_tiled_pixels
        self.tiles = tiling.Tiles(self.tile, self.tile_overlap, self.min_size) if self.tile else None
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.encoded = any(i["name"] == "image_bytes" for i in config.get("input", []))
        palette = json.loads(params.get("overlay_palette", "[]") or "[]")
        self.palette = np.array(palette or [[0, 0, 0], [255, 0, 0]], dtype=np.uint8)
        if self.max_pixels:
            codec.Image.MAX_IMAGE_PIXELS = None  # the max_pixels check comes first and is tighter
        if self.encoded and params.get("compute_model"):
            self.compute = BlsCompute(params)
        else:
            path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
            self.compute = OnnxCompute(path, args, int(params.get("intra_op_threads", "0") or 0))

    # -- the network ---------------------------------------------------------------------------

    def _segment(self, images, outputs):
        """[N, 3, H, W] (float32 or uint8) -> {name: array} for the requested outputs ('logits', 'mask')."""
        return self.compute.run(images, tuple(outputs))

    def _logits(self, batch):
        return self.compute.run(batch, ("logits",))["logits"]

    def _too_large(self, pixels):
        """Whether a request of this many pixels per image runs in tiles (True), whole (False), or is refused."""
        if not self.max_pixels or pixels <= self.max_pixels:
            return False
        if self.tile and (not self.max_tiled_pixels or pixels <= self.max_tiled_pixels):
            return True
        limit = f"max_tiled_pixels={self.max_tiled_pixels} per image (tiled)" if self.tile else \
            f"max_pixels={self.max_pixels} per request"
        raise RequestError(f"the image is {pixels} pixels; this model's limit is {limit}")

    # -- tensor requests (gsam_python) ---------------------------------------------------------

    def _tensor_input(self, request):
        given = [(name, pb_utils.get_input_tensor_by_name(request, name)) for name in TENSOR_INPUTS]
        given = [(name, tensor) for name, tensor in given if tensor is not None]
        if len(given) != 1:
            raise RequestError(f"give exactly one of the inputs {', '.join(TENSOR_INPUTS)}; got "
                               f"{len(given)}")
        name, tensor = given[0]
        array = tensor.as_numpy()
        if array.ndim != 4 or array.shape[1] != 3:
            raise RequestError(f"input {name!r} must be [N, 3, H, W]; got shape {list(array.shape)}")
        if array.dtype != TENSOR_INPUTS[name]:
            raise RequestError(f"input {name!r} must be {np.dtype(TENSOR_INPUTS[name]).name}; got {array.dtype}")
        n, _, height, width = array.shape
        if min(height, width) < self.min_size:
            raise RequestError(f"input {name!r} is {height}x{width}; height and width must be >= {self.min_size}")
        if self.max_pixels and n * height * width > self.max_pixels and not self.tile:
            raise RequestError(f"input {name!r} is {n}x{height}x{width} = {n * height * width} pixels; this "
                               f"model's limit is max_pixels={self.max_pixels} per request")
        self._too_large(height * width)
        return array

    def _requested(self, request):
        names = [n for n in request.requested_output_names() if n in ("logits", "mask")]
        return tuple(names) or ("logits", "mask")

    def _run_tensor_requests(self, requests, responses):
        """Requests of one shape and dtype run together, in batches of at most max_pixels."""
        groups = {}
        for index, request in enumerate(requests):
            if responses[index] is not None:
                continue
            try:
                array = self._tensor_input(request)
            except RequestError as exc:
                responses[index] = self._error(exc, pb_utils.TritonError.INVALID_ARG)
                continue
            groups.setdefault((array.dtype.str, array.shape[1:]), []).append((index, array))
        for (_, shape), members in groups.items():
            limit = max(1, self.max_pixels // (shape[1] * shape[2])) if self.max_pixels else 1 << 30
            chunk = []
            for member in members:
                if chunk and sum(len(a) for _, a in chunk) + len(member[1]) > limit:
                    self._run_chunk(requests, chunk, responses)
                    chunk = []
                chunk.append(member)
            self._run_chunk(requests, chunk, responses)

    def _run_chunk(self, requests, chunk, responses):
        try:
            wanted = sorted({name for index, _ in chunk for name in self._requested(requests[index])})
            images = np.concatenate([a for _, a in chunk])
            if self._too_large(images.shape[2] * images.shape[3]):
                result = tiling.segment_tiled(self._logits, images, self.tiles, logits="logits" in wanted)
            else:
                result = self._segment(images, tuple(wanted))
        except Exception as exc:  # one failing batch must not take the model down
            for index, _ in chunk:
                responses[index] = self._error(exc, pb_utils.TritonError.INTERNAL)
            return
        start = 0
        for index, array in chunk:
            stop = start + len(array)
            names = self._requested(requests[index])
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(result[n][start:stop])) for n in names])
            start = stop

    # -- encoded image requests (gsam_image) -----------------------------------------------------

    def _run_image_request(self, request):
        started = time.perf_counter()
        image = self._decode(request)
        decoded = time.perf_counter()
        height, width = image.shape[:2]
        if self._too_large(height * width):  # band by band: no float copy of the whole image
            mask = self._tiled_mask(image)
        else:
            self._check_compute_size(height, width)
            mask = self._segment(np.ascontiguousarray(image.transpose(2, 0, 1)[None]), ("mask",))["mask"][0]
        computed = time.perf_counter()
        wanted = set(request.requested_output_names()) or {"mask_png"}
        outputs = []
        if "mask_png" in wanted:
            outputs.append(pb_utils.Tensor("mask_png", np.array([codec.encode_png(mask)], dtype=np.object_)))
        if "overlay_png" in wanted:
            picture = masks.overlay(image, mask, self.palette)
            outputs.append(pb_utils.Tensor("overlay_png", np.array([codec.encode_png(picture)],
                                                                   dtype=np.object_)))
        if "timings_ms" in wanted:  # where the time went, for `gsam bench`
            spans = [decoded - started, computed - decoded, time.perf_counter() - computed]
            outputs.append(pb_utils.Tensor("timings_ms", np.array(spans, dtype=np.float32) * 1000))
        return pb_utils.InferenceResponse(output_tensors=outputs)

    def _decode(self, request):
        """The request's one encoded image as uint8 RGB (H, W, 3), its size checked from the header first."""
        tensor = pb_utils.get_input_tensor_by_name(request, "image_bytes")
        items = tensor.as_numpy().reshape(-1)
        if len(items) != 1:
            raise RequestError(f"input 'image_bytes' must hold one encoded image; got {len(items)}")
        data = items[0] if isinstance(items[0], bytes) else bytes(items[0])
        try:
            return codec.decode_image(data, self.min_size, self.max_tiled_pixels if self.tile else self.max_pixels)
        except codec.ImageRequestError as exc:  # Pillow names its file object, which means nothing to a client
            raise RequestError(f"input 'image_bytes': {FILE_OBJECT.sub('the bytes', str(exc))}") from None

    def _tiled_mask(self, image):
        """The class ids of an image above max_pixels, from tiles sent in batches the compute model takes."""
        height, width = image.shape[:2]
        self._check_compute_size(*self.tiles.shape(height, width))
        rows = tiling.iter_blended_rows(self._logits, lambda y0, y1: image[y0:y1].transpose(2, 0, 1), height,
                                        width, self.tiles, batch_size=max(1, self.compute.max_batch))
        mask = None
        for y, band in rows:
            if mask is None:
                mask = np.empty((height, width), masks.mask_dtype(band.shape[0]))
            mask[y:y + band.shape[1]] = masks.logits_to_mask(band, axis=0)
        return mask

    def _check_compute_size(self, height, width):
        try:
            self.compute.check(height, width)
        except ValueError as exc:
            raise RequestError(f"input 'image_bytes': {exc}") from None

    # -- Triton entry points ---------------------------------------------------------------------

    def _error(self, exc, code):
        return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(f"{self.name}: {exc}", code))

    def execute(self, requests):
        responses = [None] * len(requests)
        for index, request in enumerate(requests):
            if hasattr(request, "is_cancelled") and request.is_cancelled():  # the client gave up: skip the work
                responses[index] = self._error("request cancelled", pb_utils.TritonError.CANCELLED)
        if not self.encoded:
            self._run_tensor_requests(requests, responses)
            return responses
        for index, request in enumerate(requests):
            if responses[index] is not None:
                continue
            try:
                responses[index] = self._run_image_request(request)
            except RequestError as exc:
                responses[index] = self._error(exc, pb_utils.TritonError.INVALID_ARG)
            except ComputeError as exc:  # the compute model's own answer, with its code where Triton keeps it
                responses[index] = self._error(exc, exc.code)
            except Exception as exc:  # one bad request must not take the model down
                responses[index] = self._error(exc, pb_utils.TritonError.INTERNAL)
        return responses

    def finalize(self):
        self.compute.close()
