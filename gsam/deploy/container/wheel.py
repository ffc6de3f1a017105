"""A wheel of the gsam this process runs, for the image's build context (Dockerfile: pip install --no-deps).

Built from the installed package itself, so it works from a normal install as from a checkout: every
file under the `gsam` package (its export/ and runtime/ links followed), a dist-info with the
`gsam` console script, and a RECORD of sha256 hashes. Entries are sorted and dated 1980-01-01, so
the same gsam gives the same wheel, byte for byte (and the image layer is cached).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
from pathlib import Path

from gsam import __version__

_DATE = (1980, 1, 1, 0, 0, 0)


def _package_files() -> dict[str, bytes]:
    import gsam

    root = Path(gsam.__file__).resolve().parent
    files = {}
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            if not name.endswith((".pyc", ".pyo")):
                path = Path(folder) / name
                files[f"gsam/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return files


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def wheel_name() -> str:
    return f"gsam-{__version__}-py3-none-any.whl"


def wheel_bytes() -> bytes:
    """The wheel's bytes (deterministic for a given gsam)."""
    info = f"gsam-{__version__}.dist-info"
    files = _package_files()
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: gsam\nVersion: {__version__}\n" \
                                "Requires-Python: >=3.10\n".encode()
    files[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: gsam {__version__}\nRoot-Is-Purelib: true\n" \
                             "Tag: py3-none-any\n".encode()
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\ngsam = gsam.cli:main\n"
    record = [_record_line(name, data) for name, data in sorted(files.items())] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name in sorted(files):
            entry = zipfile.ZipInfo(name, _DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, files[name])
    return buffer.getvalue()
