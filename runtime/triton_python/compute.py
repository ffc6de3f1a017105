"""Where a gsam python-backend model gets logits and masks from: onnxruntime in its own process, or
another model of the repository through Triton's BLS (business logic scripting).

Copied beside model.py (as compute.py) by `gsam triton build`; of gsam it imports only gsam_pixels,
copied beside it too.
gsam_python always runs onnxruntime itself: it is a compute model. gsam_image decodes, bounds,
tiles and encodes, and sends every batch of pixels to the repository's compute model (gsam_trt
on an engine, gsam_onnx or gsam_python), so one copy of the model serves both kinds of request.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from gsam_pixels.convert import as_input_dtype  # gsam.pixels, copied beside model.py

ONNX_TYPES = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}


class ComputeError(RuntimeError):
    """The compute model answered with an error; `code` is its Triton error code where the server keeps it."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class OnnxCompute:
    """The exported model in onnxruntime, in this process (CPU, or CUDA on a KIND_GPU instance)."""

    def __init__(self, path, args, threads=0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if args.get("model_instance_kind") == "GPU":
            providers = [("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}),
                         "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, options, providers=providers)
        self.input_dtype = ONNX_TYPES.get(self.session.get_inputs()[0].type, "float32")
        self.max_batch = 0  # any batch: the caller bounds requests by pixels

    def run(self, images, outputs):
        """[N, 3, H, W] (float32 or uint8) -> {name: array} for the requested outputs ('logits', 'mask')."""
        values = self.session.run(list(outputs), {"image": as_input_dtype(images, self.input_dtype)})
        return dict(zip(outputs, values))

    def check(self, height, width):
        pass

    def close(self):
        self.session = None


class BlsCompute:
    """Another model of the repository, called with BLS; what to send it comes from the config's parameters
    (written by `gsam triton build`): the model, its input name and type, its largest batch and, for an
    engine, the height/width ranges of its profiles."""

    def __init__(self, params):
        self.model = params["compute_model"]
        self.input_name = params.get("compute_input", "image")
        self.input_dtype = params.get("compute_input_dtype", "float32")
        self.max_batch = int(params.get("compute_max_batch", "1") or 1)
        self.ranges = json.loads(params.get("compute_ranges", "[]") or "[]")  # [[hmin, wmin, hmax, wmax], ...]

    def check(self, height, width):
        """A ValueError unless some profile of the compute model takes this size (checked here: the engine's
        own error would reach the client as a 500)."""
        if self.ranges and not any(r[0] <= height <= r[2] and r[1] <= width <= r[3] for r in self.ranges):
            spans = ", ".join(f"{r[0]}..{r[2]} x {r[1]}..{r[3]}" for r in self.ranges)
            raise ValueError(f"{height}x{width} is in no profile of {self.model} ({spans})")

    def run(self, images, outputs):
        tensor = pb_utils.Tensor(self.input_name, np.ascontiguousarray(as_input_dtype(images, self.input_dtype)))
        options = {}
        if hasattr(pb_utils, "PreferredMemory"):  # engine outputs may live on the GPU; numpy needs them on the CPU
            options["preferred_memory"] = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0)
        response = pb_utils.InferenceRequest(model_name=self.model, requested_output_names=list(outputs),
                                             inputs=[tensor], **options).exec()
        if response.has_error():
            error = response.error()
            code = error.code() if hasattr(error, "code") else pb_utils.TritonError.INTERNAL
            raise ComputeError(f"{self.model}: {error.message()}", code)
        return {name: pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in outputs}

    def close(self):
        pass
