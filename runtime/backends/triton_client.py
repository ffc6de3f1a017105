"""Triton clients (HTTP and gRPC) behind the common Segmenter interface; facts from the model's parameters."""

from __future__ import annotations

import numpy as np

from gsam.errors import GSAMError
from gsam.model.facts import ModelFacts
from gsam.model.segmenter import Segmenter
from gsam.pixels.convert import as_input_dtype, is_whole_uint8
from gsam.runtime.triton_names import IMAGE_MODEL, TENSOR_MODEL


class TritonSegmenter(Segmenter):
    def __init__(self, url: str, model: str = TENSOR_MODEL, protocol: str = "grpc", timeout: float = 120.0) -> None:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client
        self.client_module, self.protocol, self.model = client, protocol, model
        self.name = f"triton-{protocol}"
        self.timeout = timeout
        url = url.removeprefix("http://").removeprefix("grpc://")
        try:
            self.client = client.InferenceServerClient(url=url, **({"network_timeout": timeout} if protocol == "http" else {}))
            ready = self.client.is_model_ready(model)
        except Exception as exc:
            from .ports import wrong_port

            raise GSAMError(wrong_port(url, protocol) or f"cannot reach Triton at {url} over {protocol} "
                            f"({str(exc).splitlines()[0][:160]}); is `gsam serve` running?") from None
        if not ready:
            raise GSAMError(f"Triton at {url} has no ready model {model!r}")
        config = self.client.get_model_config(model)
        config = config["config"] if protocol == "grpc" and isinstance(config, dict) else config
        self.facts = ModelFacts.from_metadata(self._parameters(config), source=f"Triton model {model!r} at {url}")
        self.inputs = self._inputs(config)

    def _parameters(self, config) -> dict[str, str]:
        if isinstance(config, dict):
            return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        return {k: v.string_value for k, v in config.config.parameters.items()}

    def _inputs(self, config) -> dict[str, str]:
        """Input name -> Triton data type without the TYPE_ prefix (FP32, UINT8, STRING)."""
        if isinstance(config, dict):
            return {i["name"]: i["data_type"].removeprefix("TYPE_") for i in config.get("input", [])}
        from tritonclient.grpc import model_config_pb2

        return {i.name: model_config_pb2.DataType.Name(i.data_type).removeprefix("TYPE_") for i in config.config.input}

    def _tensor_input(self, images: np.ndarray) -> tuple[str, str, np.ndarray]:
        """(input name, data type, array): 1 byte per channel whenever the model takes it without loss —
        a uint8 `image`, or gsam_python's `image_uint8` for whole-number pixels."""
        if self.inputs.get("image") == "UINT8":
            return "image", "UINT8", as_input_dtype(images, "uint8")
        if "image_uint8" in self.inputs and is_whole_uint8(images):
            return "image_uint8", "UINT8", as_input_dtype(images, "uint8")
        return "image", "FP32", images

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        client = self.client_module
        name, data_type, array = self._tensor_input(images)
        request = client.InferInput(name, list(array.shape), data_type)
        request.set_data_from_numpy(array)
        outputs = [client.InferRequestedOutput("logits"), client.InferRequestedOutput("mask")]
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        try:
            result = self.client.infer(self.model, [request], outputs=outputs, **kwargs)
        except Exception as exc:
            raise GSAMError(f"{self.name}: {str(exc).splitlines()[0][:300]}") from None
        return {"logits": result.as_numpy("logits"), "mask": result.as_numpy("mask")}

    def close(self) -> None:
        self.client.close()


class TritonImageSegmenter(TritonSegmenter):
    """gsam_image over HTTP: encoded image bytes in, the mask as PNG bytes out (no tensors on the wire).

    `segment_encoded` sends a file's own bytes; calling it with float32 [N, 3, H, W] arrays sends
    each image as a lossless PNG (pixels rounded to uint8)."""

    takes_encoded = True
    SPLIT = ("decode", "compute", "encode")  # the server's timings_ms output, in this order

    def __init__(self, url: str, model: str = IMAGE_MODEL, timeout: float = 120.0, record_split: bool = False) -> None:
        super().__init__(url, model=model, protocol="http", timeout=timeout)
        self.name = "triton-image"
        self.record_split = record_split
        self.split_ms: list[np.ndarray] = []  # with record_split: the server's decode/compute/encode per request

    def segment_encoded(self, data: bytes) -> np.ndarray:
        """Encoded PNG/JPEG/TIFF bytes -> int32 mask (H, W), the size of the decoded image."""
        import io

        from PIL import Image

        client = self.client_module
        request = client.InferInput("image_bytes", [1], "BYTES")
        request.set_data_from_numpy(np.array([data], dtype=np.object_))
        outputs = [client.InferRequestedOutput("mask_png")]
        if self.record_split:
            outputs.append(client.InferRequestedOutput("timings_ms"))
        try:
            result = self.client.infer(self.model, [request], outputs=outputs)
        except Exception as exc:
            raise GSAMError(f"{self.name}: {str(exc).splitlines()[0][:300]}") from None
        if self.record_split:
            self.split_ms.append(result.as_numpy("timings_ms"))
        with Image.open(io.BytesIO(result.as_numpy("mask_png")[0])) as png:
            return np.asarray(png).astype(np.int32)

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import io

        from PIL import Image

        masks = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(np.clip(image.transpose(1, 2, 0), 0, 255).round().astype(np.uint8)).save(buffer, "PNG")
            masks.append(self.segment_encoded(buffer.getvalue()))
        return {"mask": np.stack(masks)}
