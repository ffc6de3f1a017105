"""What writes a Triton model repository from a gsam ONNX file (`gsam triton build`): configs as
ModelConfig messages, the compute model gsam_image calls, TensorRT engine configs."""
