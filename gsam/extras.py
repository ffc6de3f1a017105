"""The optional extras of pyproject.toml by the modules they install, so that a command run without its extra
ends in one line naming the extra to install, not in a traceback of the first import that failed."""

from __future__ import annotations

# Top-level module -> the extra that installs it (pyproject.toml's [project.optional-dependencies]).
EXTRA_OF_MODULE = {
    "tritonclient": "serve", "pytriton": "serve", "aiohttp": "serve", "grpc": "serve",
    "kubernetes_validate": "k8s", "kserve": "k8s",
    "tensorrt": "gpu",
}
WHAT_EXTRA_GIVES = {"serve": "Triton's server and clients", "k8s": "the offline manifest checks",
                    "gpu": "TensorRT and onnxruntime-gpu"}


def missing_extra_message(exc: ModuleNotFoundError, command: str = "this command") -> str | None:
    """One line naming the extra that installs the missing module, or None when no extra installs it."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    index = " --extra-index-url https://pypi.nvidia.com" if extra == "gpu" else ""
    return (f"{command} needs the '{extra}' extra ({WHAT_EXTRA_GIVES[extra]}; module {module!r} is not "
            f"installed): pip install 'gsam[{extra}]'{index}")
