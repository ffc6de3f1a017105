"""Triton clients (HTTP and gRPC) behind the common Segmenter interface; facts from the model's parameters."""

from __future__ import annotations

import numpy as np

from ...errors import GSAMError
from ...facts import ModelFacts
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
