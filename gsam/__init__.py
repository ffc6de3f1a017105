"""gsam: fine-tune Generalized SAM and serve it at any image size.

One artifact flows one way: dataset -> run directory -> ONNX (fp32, fp16, int8) -> TensorRT engine ->
Triton repository -> requests. The package is layered the same way, lowest first: errors, io,
device, precisions, machine and pixels; data; model (with the run directory and ModelFacts); train;
export (gsam.export, the top-level export/ folder); runtime (gsam.runtime, runtime/); deploy,
demo, doctor and lineage; the commands and the CLI. A module imports only its own layer and those below
(tests/test_architecture.py).

Importing gsam sets OMP_WAIT_POLICY=PASSIVE unless it is already set (before torch loads OpenMP, so
import gsam first): OpenMP threads that spin while they wait took a GSAM training step from 6 s to
42 s on a 2-core machine with one other busy process, and cost little on an idle one (BENCHMARKS.md).
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
