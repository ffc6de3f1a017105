"""gsam: fine-tune Generalized SAM and serve it at any image size.

One artifact flows one way: dataset -> run directory -> ONNX (fp32, fp16, int8) -> TensorRT engine ->
Triton repository -> requests. The package is layered the same way, lowest first: errors, io,
device, precisions, machine and pixels; data; model (with the run directory and ModelFacts); train;
export (gsam.export, the top-level export/ folder); runtime (gsam.runtime, runtime/); deploy,
demo, doctor and lineage; the commands and the CLI. A module imports only its own layer and those below
(tests/test_architecture.py).
"""

__version__ = "0.1.0"
