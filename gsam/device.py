"""One meaning of `--device` for every command: auto, cpu, cuda or cuda:N."""

from __future__ import annotations

from .errors import GSAMError

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N."


def check_device_name(text: str) -> str:
    """Validate the spelling without importing torch (the CLI parses it before any work)."""
    name = text.strip().lower()
    if name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit()):
        return name
    raise GSAMError(f"--device {text!r}: expected {DEVICE_HELP}")


def resolve_device(text: str):
    """The torch.device for a --device value; a clear error when CUDA is asked for and absent."""
    import torch

    name = check_device_name(text)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GSAMError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    return torch.device(name)

