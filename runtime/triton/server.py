"""Start and stop a local Triton Inference Server on a gsam model repository.

Uses `tritonserver` from PATH when there is one (an NGC container), otherwise the binary
bundled in the nvidia-pytriton wheel, set up as docs/facts.md describes: backends
copied to a work dir with the python stub inside, the interpreter's libdir and the wheel's
libs on LD_LIBRARY_PATH, the venv's bin first on PATH. Binds 127.0.0.1 only (HTTP, gRPC and
the Prometheus metrics endpoint); stops with SIGTERM so the python backend removes its
/dev/shm segments.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from gsam.errors import GSAMError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _bundled_server() -> tuple[Path, dict[str, str], list[str]]:
    """(binary, extra environment, extra arguments) for the nvidia-pytriton bundle."""
    try:
        import pytriton
    except ImportError:
        raise GSAMError("no tritonserver on PATH and nvidia-pytriton is not installed: pip install 'gsam[serve]'") from None
    bundle = Path(pytriton.__file__).parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = bundle / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise GSAMError(f"nvidia-pytriton has no python backend stub for Python {version}")
    work = Path(tempfile.gettempdir()) / f"gsam-triton-{os.getuid()}-{version}"
    backends = work / "backends"
    if not (backends / "python" / stub.name).is_file():
        shutil.copytree(bundle / "backends", backends, dirs_exist_ok=True)
        shutil.copytree(bundle / "caches", work / "caches", dirs_exist_ok=True)
        shutil.copy2(stub, backends / "python" / stub.name)
    site = Path(pytriton.__file__).parent.parent
    libs = [sysconfig.get_config_var("LIBDIR"), str(site / "nvidia_pytriton.libs")]
    env = {"LD_LIBRARY_PATH": os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    args = [f"--backend-directory={backends}", f"--cache-directory={work / 'caches'}"]
    return bundle / "bin" / "tritonserver", env, args


def _detach_and_follow_parent() -> None:
    """In the child before exec: own process group (so stop() reaches the python stubs too), and
    SIGTERM when the gsam process dies, even by SIGKILL, so no server is left orphaned (Linux)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _shm_segments() -> set[str]:
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob("triton_python_backend_shm_region_*")} if shm.is_dir() else set()


class TritonServer:
    """A tritonserver child process on 127.0.0.1; use as a context manager or call start/stop."""

    def __init__(self, repo: str | Path, models: list[str], http_port: int = 8000, grpc_port: int = 8001, *,
                 metrics_port: int | None = None, log_path: str | Path | None = None, metrics: bool = True) -> None:
        self.repo = Path(repo).resolve()
        self.models = models
        self.http_port, self.grpc_port = http_port, grpc_port
        self.metrics_port = metrics_port or free_port()
        self.metrics = metrics
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="gsam-triton-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self._shm_before: set[str] = set()

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        binary = shutil.which("tritonserver")
        env, extra = {}, []
        if binary is None:
            bundled, env, extra = _bundled_server()
            binary = str(bundled)
        args = [binary, f"--model-repository={self.repo}", "--model-control-mode=explicit",
                *[f"--load-model={m}" for m in self.models],
                "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                *self._metrics_args(), "--strict-readiness=true",
                "--log-verbose=0", *extra]
        return args, {**os.environ, **env}

    def _metrics_args(self) -> list[str]:
        if not self.metrics:
            return ["--allow-metrics=false"]
        return ["--allow-metrics=true", "--metrics-address=127.0.0.1",
                f"--metrics-port={self.metrics_port}"]

    def _check_inputs(self) -> None:
        if not self.repo.is_dir():
            raise GSAMError(f"{self.repo}: no such model repository; write one with `gsam triton build`")
        for model in self.models:
            if not (self.repo / model / "config.pbtxt").is_file():
                raise GSAMError(f"{self.repo / model}: model {model!r} has no config.pbtxt in the repository")
        ports = [("--http-port", self.http_port), ("--grpc-port", self.grpc_port)]
        for name, port in ports + ([("--metrics-port", self.metrics_port)] if self.metrics else []):
            if not port_is_free(port):
                raise GSAMError(f"{name} {port} is busy on 127.0.0.1; stop what uses it or choose another port")

    def start(self, timeout: float = 120.0) -> "TritonServer":
        self._check_inputs()
        args, env = self.command()
        self._shm_before = _shm_segments()
        log = self.log_path.open("w")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=_detach_and_follow_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GSAMError(f"tritonserver exited with code {self.process.returncode}: {self.failure_reason()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise GSAMError(f"tritonserver was not ready after {timeout:.0f} s: {self.failure_reason()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def failure_reason(self) -> str:
        """The server's own error lines (model load failures first), from its log."""
        lines = self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        errors = [line for line in lines if line.startswith("E") or "failed" in line.lower() or "error" in line.lower()]
        picked = errors[:3] or lines[-3:]
        return " | ".join(line.strip() for line in picked)[:600] or f"no log output (see {self.log_path})"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL only as a last resort); the python backend cleans /dev/shm on SIGTERM."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def leftover_shm(self) -> set[str]:
        return _shm_segments() - self._shm_before

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
