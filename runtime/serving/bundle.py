"""The tritonserver bundled in the nvidia-pytriton wheel, set up to run outside PyTriton.

The wheel ships the binary, the python backend and one python stub per Python version; Triton wants
the stub inside the backend directory, so the backends are copied to a directory of our own. Triton
loads code from that directory (libtriton_python.so, the stub), so it is reused only when this user
owns it, nobody else may write to it (mode 0700), and its marker names the same wheel and Python;
anything else is set aside and a fresh private copy is made. The copy lives in the user's cache
($XDG_CACHE_HOME or ~/.cache), or in the temporary folder when the home cannot be written. A server
that runs as another user (gsam serve started as root) gets its own copy inside its private working
directory instead: owned by this user, readable by that one, written once per gsam serve.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gsam.errors import GSAMError

MARKER = "gsam-bundle.json"


@dataclass(frozen=True)
class BundledServer:
    binary: Path
    env: dict[str, str]
    args: list[str]
    private_copy: Path | None  # a per-start copy to delete when the server stops (None: the cached copy)


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _wheel_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nvidia-pytriton")
    except PackageNotFoundError:
        return "unknown"


def _marker_text(stub: Path) -> str:
    return json.dumps({"nvidia-pytriton": _wheel_version(), "python": _python_version(),
                       "stub_bytes": stub.stat().st_size}, sort_keys=True)


def trusted(folder: Path, marker: str) -> bool:
    """Ours (owner = this user), private (no group or other access), not a link, and built from this wheel."""
    try:
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return False
        return (folder / MARKER).read_text() == marker
    except OSError:
        return False


def _cache_root() -> tuple[Path, str]:
    """(folder that holds the copy, the copy's name): the user's cache when writable, else the temp folder.
    The name carries the wheel's version, so two environments never replace each other's copy."""
    tag = f"{_wheel_version()}-py{_python_version()}"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    try:
        root = Path(base) / "gsam"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(root, os.W_OK) and os.stat(root).st_uid == os.getuid():
            return root, f"triton-backends-{tag}"
    except OSError:
        pass
    return Path(tempfile.gettempdir()), f"gsam-triton-{os.getuid()}-{tag}"


def _fill(folder: Path, bundle: Path, stub: Path, marker: str) -> None:
    shutil.copytree(bundle / "backends", folder / "backends", dirs_exist_ok=True)
    shutil.copytree(bundle / "caches", folder / "caches", dirs_exist_ok=True)
    shutil.copy2(stub, folder / "backends" / "python" / stub.name)
    (folder / MARKER).write_text(marker)  # written last: a half-made copy has no marker


def backend_folder(bundle: Path, stub: Path) -> tuple[Path, bool]:
    """(folder with backends/ and caches/, whether it is a private per-start copy to delete afterwards)."""
    root, name = _cache_root()
    final, marker = root / name, _marker_text(stub)
    if trusted(final, marker):
        return final, False
    fresh = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))  # mode 0700, ours
    _fill(fresh, bundle, stub, marker)
    if os.path.lexists(final):
        info = os.lstat(final)
        if info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
            return fresh, True  # someone else's (or not a folder): never touch it, never use it
        shutil.rmtree(final, ignore_errors=True)  # ours but stale, half-made or too open: replace it
    try:
        os.rename(fresh, final)
    except OSError:  # another gsam made it meanwhile
        if trusted(final, marker):
            shutil.rmtree(fresh, ignore_errors=True)
            return final, False
        return fresh, True
    return final, False


def bundled_server(workdir: Path | None = None) -> BundledServer:
    """The wheel's binary with its backends, environment and extra arguments; with `workdir` (a private
    working directory of another user), the backends are copied there, readable, not writable, by that user."""
    try:
        import pytriton
    except ImportError:
        raise GSAMError("no tritonserver on PATH and nvidia-pytriton is not installed: pip install 'gsam[serve]'") from None
    bundle = Path(pytriton.__file__).parent / "tritonserver"
    stub = bundle / "python_backend_stubs" / _python_version() / "triton_python_backend_stub"
    if not stub.is_file():
        raise GSAMError(f"nvidia-pytriton has no python backend stub for Python {_python_version()}")
    if workdir is not None:
        work, private = workdir / "triton", False
        if not (work / MARKER).is_file():
            _fill(work, bundle, stub, _marker_text(stub))
            for folder, _, files in os.walk(work):  # read and execute for the server's user, never write
                os.chmod(folder, 0o755)
                for name in files:
                    os.chmod(os.path.join(folder, name), 0o755 if os.access(os.path.join(folder, name), os.X_OK)
                             else 0o644)
    else:
        work, private = backend_folder(bundle, stub)
    site = Path(pytriton.__file__).parent.parent
    libs = [sysconfig.get_config_var("LIBDIR"), str(site / "nvidia_pytriton.libs")]
    env = {"LD_LIBRARY_PATH": os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    args = [f"--backend-directory={work / 'backends'}", f"--cache-directory={work / 'caches'}"]
    return BundledServer(bundle / "bin" / "tritonserver", env, args, work if private else None)
