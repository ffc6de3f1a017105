"""The requests of a tune, as a client sends them to gsam serve's HTTP gateway: Triton's binary data extension
(a JSON header, then the bytes), each body built once, so the load generator spends its share of the CPU on
sockets, not on encoding; one keep-alive connection per worker."""

from __future__ import annotations

import http.client
import io
import json
import struct

import numpy as np

from gsam.runtime.triton_names import IMAGE_MODEL

from .workload import Request


def _body(request: Request, model: str) -> tuple[bytes, int]:
    """(request body, JSON header length) for gsam_image (encoded bytes) or gsam_python (uint8 tensor)."""
    if model == IMAGE_MODEL:
        header = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                              "parameters": {"binary_data_size": len(request.data) + 4}}],
                  "outputs": [{"name": "mask_png", "parameters": {"binary_data": True}}]}
        payload = struct.pack("<I", len(request.data)) + request.data
    else:
        from PIL import Image

        with Image.open(io.BytesIO(request.data)) as image:
            pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1)[None])
        header = {"inputs": [{"name": "image_uint8", "shape": list(pixels.shape), "datatype": "UINT8",
                              "parameters": {"binary_data_size": pixels.nbytes}}],
                  "outputs": [{"name": "mask", "parameters": {"binary_data": True}}]}
        payload = pixels.tobytes()
    text = json.dumps(header).encode()
    return text + payload, len(text)


class Client:
    """The prepared bodies of a workload, sent over keep-alive connections to one server."""

    def __init__(self, port: int, model: str, requests: list[Request], timeout: float = 300.0) -> None:
        self.port, self.model, self.timeout = port, model, timeout
        self.requests = requests
        self.bodies = [_body(r, model) for r in requests]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def send(self, connection: http.client.HTTPConnection, index: int) -> str | None:
        """One request; None when it succeeded, else why not (the connection is reopened by the caller)."""
        body, header_length = self.bodies[index]
        connection.request("POST", f"/v2/models/{self.model}/infer", body=body, headers={
            "Inference-Header-Content-Length": str(header_length), "Content-Type": "application/octet-stream"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            return f"HTTP {response.status}: {data[:200].decode(errors='replace')}"
        return None
