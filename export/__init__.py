"""ONNX export and TensorRT engines (import as gsam.export)."""
