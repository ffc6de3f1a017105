"""Triton python-backend model for gsam: runs the exported ONNX file with onnxruntime.

This is what lets one model repository serve on a CPU-only machine (Triton's own
onnxruntime backend is not in the pip-installed server). `gsam triton build` copies it to
<repo>/gsam_python/<version>/model.py beside model.onnx. It imports nothing from gsam.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.min_size = int(params.get("min_size", "32"))
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        if args.get("model_instance_kind") == "GPU":
            providers = [("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}),
                         "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, options, providers=providers)

    def _check(self, image):
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"input 'image' must be [N, 3, H, W]; got shape {list(image.shape)}")
        if image.dtype != np.float32:
            raise ValueError(f"input 'image' must be FP32; got {image.dtype}")
        if min(image.shape[2], image.shape[3]) < self.min_size:
            raise ValueError(f"input 'image' is {image.shape[2]}x{image.shape[3]}; height and width must be "
                             f">= {self.min_size}")

    def execute(self, requests):
        responses = []
        for request in requests:
            if hasattr(request, "is_cancelled") and request.is_cancelled():  # the client gave up: skip the work
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)))
                continue
            try:
                image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
                self._check(image)
                logits, mask = self.session.run(["logits", "mask"], {"image": image})
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("logits", logits), pb_utils.Tensor("mask", mask)]))
            except Exception as exc:  # one bad request must not take the model down
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"gsam_python: {exc}")))
        return responses

    def finalize(self):
        self.session = None
