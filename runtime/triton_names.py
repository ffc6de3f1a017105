"""The names of the models a gsam Triton repository holds: written once here, used by every room.

gsam_python takes tensors and runs onnxruntime in Triton's python backend; gsam_image takes encoded
image bytes; gsam_onnx runs Triton's onnxruntime backend; gsam_trt a TensorRT engine.
"""

TENSOR_MODEL = "gsam_python"
IMAGE_MODEL = "gsam_image"
ONNX_MODEL = "gsam_onnx"
ENGINE_MODEL = "gsam_trt"
MODEL_NAMES = (TENSOR_MODEL, IMAGE_MODEL, ONNX_MODEL, ENGINE_MODEL)
PYTHON_MODELS = (TENSOR_MODEL, IMAGE_MODEL)  # the models whose code is runtime/triton_python/python_model.py
