"""gsam: fine-tune Generalized SAM and serve it at any image size.

    import gsam
    predictor = gsam.load("runs/demo")           # a run, .pt, .onnx, .plan or a Triton URL
    predictor.predict("photo.png").mask          # class ids at the image's native size

One artifact flows one way: dataset -> run directory -> ONNX (fp32, fp16, int8) -> TensorRT engine ->
Triton repository -> requests. The package is layered the same way, lowest first: errors, io, device,
precisions, machine and pixels; data; model (the run directory, ModelFacts); train; export (the top-level
export/ folder); runtime (runtime/: backends, the Predictor every command and `gsam.load` share, serving/
that runs beside Triton, triton_python/ that Triton itself loads); deploy (triton/ builds a repository,
k8s/ and container/ ship it), bench, demo, doctor and lineage; the commands and the CLI, which only parse
and print. A module imports only its own layer and those below (tests/test_architecture.py); this file
is the one facade above them all and imports them only when `load` is called, so `import gsam` stays light.
"""

__version__ = "0.1.0"


def load(target, backend=None, **options):
    """A Predictor for `target`: a run directory, .pt, .onnx, .plan, or a Triton URL with a model name
    ("http://localhost:8000/gsam_image"). Options: device, amp, tile, overlap, tile_above,
    max_image_pixels, alpha, triton_model, timeout (see gsam.runtime.predictor.load)."""
    from gsam.runtime.predictor import load as load_predictor

    return load_predictor(target, backend, **options)


__all__ = ["load", "__version__"]
