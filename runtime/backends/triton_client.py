"""Triton clients (HTTP and gRPC) behind the common Segmenter interface; facts from the model's parameters."""

from __future__ import annotations

import numpy as np

from gsam.errors import GSAMError
from gsam.model.facts import ModelFacts

from .base import Segmenter


class TritonSegmenter(Segmenter):
    def __init__(self, url: str, model: str = "gsam_python", protocol: str = "grpc", timeout: float = 120.0) -> None:
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
            raise GSAMError(f"cannot reach Triton at {url} over {protocol} ({str(exc).splitlines()[0][:160]}); "
                            "is `gsam serve` running?") from None
        if not ready:
            raise GSAMError(f"Triton at {url} has no ready model {model!r}")
        config = self.client.get_model_config(model)
        config = config["config"] if protocol == "grpc" and isinstance(config, dict) else config
        self.facts = ModelFacts.from_metadata(self._parameters(config), source=f"Triton model {model!r} at {url}")

    def _parameters(self, config) -> dict[str, str]:
        if isinstance(config, dict):
            return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        return {k: v.string_value for k, v in config.config.parameters.items()}

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        client = self.client_module
        request = client.InferInput("image", list(images.shape), "FP32")
        request.set_data_from_numpy(images)
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

    def __init__(self, url: str, model: str = "gsam_image", timeout: float = 120.0) -> None:
        super().__init__(url, model=model, protocol="http", timeout=timeout)
        self.name = "triton-image"

    takes_encoded = True

    def segment_encoded(self, data: bytes) -> np.ndarray:
        """Encoded PNG/JPEG/TIFF bytes -> int32 mask (H, W), the size of the decoded image."""
        import io

        from PIL import Image

        client = self.client_module
        request = client.InferInput("image_bytes", [1], "BYTES")
        request.set_data_from_numpy(np.array([data], dtype=np.object_))
        try:
            result = self.client.infer(self.model, [request], outputs=[client.InferRequestedOutput("mask_png")])
        except Exception as exc:
            raise GSAMError(f"{self.name}: {str(exc).splitlines()[0][:300]}") from None
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
