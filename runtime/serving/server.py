"""Start and stop a local Triton Inference Server on a gsam model repository.

Uses `tritonserver` from PATH when there is one (an NGC container), otherwise the binary
bundled in the nvidia-pytriton wheel (runtime/serving/bundle.py). Binds 127.0.0.1 only (HTTP,
gRPC and the Prometheus metrics endpoint). The APIs that change the server or reach past the
models (model repository, shared memory, trace and logging settings) are restricted to a random
admin key made at each start and held only by this object, which needs it to reload a model: what
reaches the ports cannot load code into the server. With `private=True` (gsam serve) the other APIs
(inference, health, metadata, config, statistics) want a second key, `serving_key`, the one the
gateway attaches to what it forwards: it unlocks nothing else, so no request the gateway forwards
can reach the admin APIs, whatever its path.

With `run_as` (gsam serve started as root), tritonserver and its python stubs run as that
unprivileged user, in a private working directory (privileges.py), so code that runs inside them
does not run as root.

The server's output is always drained, kept in memory (its last lines explain failures) and written
to `log_path` only when one is given (output_log.py). `stop` sends SIGTERM, escalates to SIGKILL past
a bound, and removes the python backend's /dev/shm regions of this server, which Triton leaks for a
stub that died.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from gsam.errors import GSAMError

from .output_log import OutputLog, drain
from .privileges import RunAs, private_workdir
from .probe import RESOURCE_ERRNOS

# `gsam serve` exits within this many seconds of SIGTERM or SIGINT (the pods' terminationGracePeriodSeconds is
# longer): at most DRAIN_S for in-flight requests, then at most KILL_AFTER_S for tritonserver, then cleanup.
SHUTDOWN_BOUND_S = 20
DRAIN_S = 8.0
EXIT_TIMEOUT_S = 5  # tritonserver's --exit-timeout-secs: unloading models after SIGTERM
KILL_AFTER_S = 8.0  # SIGKILL to the server's process group when it has not exited by then
ADMIN_APIS = ("model-repository", "shared-memory", "trace", "logging")
SERVING_APIS = ("health", "metadata", "inference", "model-config", "statistics")
ADMIN_HEADER = "gsam-admin-key"  # lowercase: gRPC metadata keys must be
SERVING_HEADER = "gsam-serving-key"  # what the gateway sends; it unlocks SERVING_APIS only
GRPC_KEY = f"triton-grpc-protocol-{SERVING_HEADER}"  # the metadata key Triton expects for it over gRPC
SHM_PREFIX = "triton_python_backend_shm_region_"
LOG_LINES_KEPT = 400
# What the bundled server prints on every start on a machine without a GPU: not a reason for anything.
_NO_GPU_NOISE = ("CudaDriverHelper has not been initialized", "Failed to initialize NVML", "pinned memory")
# Triton's line for a model that did not load (model_lifecycle.cc): `E... model_lifecycle.cc:642] "failed to load
# 'gsam_trt' version 1: Internal: ..."`. Backends log other errors before it that are not the cause (the
# tensorrt backend's `Failed to set cuda graph shape`, a stub's traceback), so this line is the one to report.
_LOAD_FAILED = re.compile(r"failed to load '[^']+' version \d+: ")
_LOG_PREFIX = re.compile(r'^[EWI]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "?')


def log_message(line: str) -> str:
    """A Triton log line's message, its first line only (Triton escapes newlines inside the quoted message)."""
    message = _LOG_PREFIX.sub("", line.strip())
    return message.split("\\n", 1)[0].rstrip('"').strip()


class ResourceShortage(GSAMError):
    """This process, not tritonserver, ran out of file descriptors or memory."""


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


def check_ports(ports: dict[str, int]) -> None:
    """Distinct and free on 127.0.0.1, else one line naming the options."""
    by_port: dict[int, list[str]] = {}
    for name, port in ports.items():
        by_port.setdefault(port, []).append(name)
    for port, names in by_port.items():
        if len(names) > 1:
            raise GSAMError(f"{' and '.join(names)} are both {port}; give each its own port")
    for name, port in ports.items():
        if not port_is_free(port):
            raise GSAMError(f"{name} {port} is busy on 127.0.0.1; stop what uses it or choose another port")


def _detach_and_follow_parent() -> None:
    """In the child before exec (and after Popen's user switch, which would clear the death signal): own
    process group (so stop() reaches the python stubs too), and SIGTERM when the gsam process dies, even by
    SIGKILL, so no server is left orphaned (Linux)."""
    os.setsid()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def shm_regions(prefix: str = SHM_PREFIX) -> set[str]:
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob(f"{prefix}*")} if shm.is_dir() else set()


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _signal_group(pgid: int, sig: int) -> bool:
    """Whether the group still had a member."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _reap_group(pgid: int) -> None:
    """Stubs notice a dead server within 300 ms and remove their regions; past 1 s, SIGKILL what is left."""
    deadline = time.monotonic() + 1.0
    while _signal_group(pgid, 0):
        if time.monotonic() > deadline + 1.0:
            return
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
        time.sleep(0.05)


class LoopbackPorts:
    """The addresses of a server on 127.0.0.1 with http_port, grpc_port and metrics_port."""

    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


class TritonServer(LoopbackPorts):
    """A tritonserver child process on 127.0.0.1; use as a context manager or call start/stop."""

    def __init__(self, repo: str | Path, models: list[str], http_port: int = 8000, grpc_port: int = 8001, *,
                 metrics_port: int | None = None, log_path: str | Path | None = None, metrics: bool = True,
                 private: bool = False, metrics_host: str = "127.0.0.1", run_as: RunAs | None = None,
                 report: Callable[[str], None] | None = None) -> None:
        self.repo = Path(repo).resolve()
        self.models = models
        self.http_port, self.grpc_port = http_port, grpc_port
        self.metrics_port = metrics_port or free_port()
        self.metrics, self.private, self.metrics_host = metrics, private, metrics_host
        self.log_path = Path(log_path) if log_path else None
        self.run_as = run_as
        self.process: subprocess.Popen | None = None
        self._admin_key = ""  # never leaves this object: reload() uses it
        self.serving_key = ""  # private=True: what every forwarded request carries
        # Every python stub region of this server carries this prefix (Triton adds a UUID), so cleanup is exact.
        self.shm_prefix = f"{SHM_PREFIX}gsam{secrets.token_hex(4)}_"
        self.output = OutputLog(self.log_path, report or (lambda message: None), LOG_LINES_KEPT)
        self._reader: threading.Thread | None = None
        self._private_copy: Path | None = None
        self._workdir: Path | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._starts = 0

    @property
    def metrics_url(self) -> str:
        host = "127.0.0.1" if self.metrics_host in ("0.0.0.0", "::") else self.metrics_host
        return f"http://{host}:{self.metrics_port}/metrics"

    def command(self) -> tuple[list[str], dict[str, str]]:
        binary = shutil.which("tritonserver")
        env, extra = {}, []
        if binary is None:
            from .bundle import bundled_server

            bundled = bundled_server(self._workdir)
            binary, env, extra = str(bundled.binary), bundled.env, bundled.args
            self._private_copy = bundled.private_copy
        restrictions = [f"{','.join(ADMIN_APIS)}:{ADMIN_HEADER}={self._admin_key}"]
        if self.private:
            restrictions.append(f"{','.join(SERVING_APIS)}:{SERVING_HEADER}={self.serving_key}")
        args = [binary, f"--model-repository={self.repo}", "--model-control-mode=explicit",
                *[f"--load-model={m}" for m in self.models],
                "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                *self._metrics_args(), "--strict-readiness=true", "--exit-on-error=true",
                *[f"--http-restricted-api={r}" for r in restrictions],
                *[f"--grpc-restricted-protocol={r}" for r in restrictions],
                f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                "--log-verbose=0", *extra]
        env = {**os.environ, **env}
        if self._workdir is not None:  # the unprivileged user's home, temporary files and working directory
            env.update(HOME=str(self._workdir), TMPDIR=str(self._workdir), USER=self.run_as.name,
                       LOGNAME=self.run_as.name)
        return args, env

    def _metrics_args(self) -> list[str]:
        if not self.metrics:
            return ["--allow-metrics=false"]
        return ["--allow-metrics=true", f"--metrics-address={self.metrics_host}",
                f"--metrics-port={self.metrics_port}"]

    def _check_inputs(self) -> None:
        if not self.repo.is_dir():
            raise GSAMError(f"{self.repo}: no such model repository; write one with `gsam triton build`")
        for model in self.models:
            if not (self.repo / model / "config.pbtxt").is_file():
                raise GSAMError(f"{self.repo / model}: model {model!r} has no config.pbtxt in the repository")
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port}
        check_ports({**ports, **({"--metrics-port": self.metrics_port} if self.metrics else {})})

    def start(self, timeout: float = 120.0) -> "TritonServer":
        self._check_inputs()
        with self._lock:
            if self._closed:
                raise GSAMError("the server is shutting down")
            if self.run_as is not None and self._workdir is None:
                self._workdir = private_workdir(self.run_as)
            self._admin_key, self.serving_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            args, env = self.command()
            self._starts += 1
            self.output.lines.clear()
            self.output.open(append=self._starts > 1)
            user = {} if self.run_as is None else dict(user=self.run_as.uid, group=self.run_as.gid, extra_groups=[],
                                                       cwd=str(self._workdir))
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                            text=True, errors="replace", preexec_fn=_detach_and_follow_parent,
                                            **user)
            self._reader = threading.Thread(target=drain, args=(self.process.stdout, self.output), daemon=True)
            self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._reader.join(2.0)
                raise GSAMError(f"tritonserver exited with {describe_exit(self.process.returncode)}: "
                                f"{self.failure_reason()}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise GSAMError(f"tritonserver was not ready after {timeout:.0f} s: {self.failure_reason()}")

    @property
    def key_headers(self) -> dict[str, str]:
        """What a client of the serving APIs sends (nothing for a bare server, whose serving APIs are open)."""
        return {SERVING_HEADER: self.serving_key} if self.private else {}

    def ready(self) -> bool:
        request = urllib.request.Request(f"http://{self.http_url}/v2/health/ready", headers=self.key_headers)
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def failure_reason(self) -> str:
        """Why the server did not come up: the line naming each model that failed to load, else its own error
        lines (or its last lines), from its output."""
        lines = [line for line in list(self.output.lines) if not any(noise in line for noise in _NO_GPU_NOISE)]
        failed = list(dict.fromkeys(log_message(line) for line in lines if _LOAD_FAILED.search(line)))
        if failed:
            return " | ".join(failed)[:600]
        errors = [line for line in lines if line.startswith("E") or "failed" in line.lower() or "error" in line.lower()]
        picked = errors[:3] or lines[-3:]
        return " | ".join(line.strip() for line in picked)[:600] or "no output from tritonserver"

    def _admin(self, action: str, model: str, timeout: float, ignore: tuple[int, ...] = ()) -> None:
        request = urllib.request.Request(f"http://{self.http_url}/v2/repository/models/{model}/{action}", data=b"{}",
                                         headers={ADMIN_HEADER: self._admin_key}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in ignore:
                return
            raise GSAMError(f"{action} of {model} failed: HTTP {exc.code} {exc.read()[:300].decode(errors='replace')}")
        except OSError as exc:
            reason = getattr(exc, "reason", exc)
            if getattr(reason, "errno", None) in RESOURCE_ERRNOS:
                raise ResourceShortage(f"{action} of {model}: this process cannot open a connection ({reason})") \
                    from None
            raise GSAMError(f"{action} of {model} failed: {exc}") from None

    def reload(self, model: str, timeout: float = 120.0) -> None:
        """Unload, then load, from the repository on disk: a plain load of an unchanged model keeps an instance
        whose stub died. An unload refused because the model is not loaded (it was unloaded) is no failure."""
        self._admin("unload", model, timeout, ignore=(400, 404))
        self._admin("load", model, timeout)

    def stop(self, timeout: float = KILL_AFTER_S) -> None:
        """SIGTERM, SIGKILL to the whole process group past `timeout`, then remove this server's shm regions."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
            _reap_group(process.pid)
            if self._reader:
                self._reader.join(2.0)
        self.output.close()
        self.remove_shm()

    def remove_shm(self) -> set[str]:
        """Delete this server's /dev/shm regions that are still there (a stub that died leaks its own)."""
        left = shm_regions(self.shm_prefix)
        for name in left:
            try:
                os.unlink(f"/dev/shm/{name}")
            except OSError:
                pass
        return left

    def close(self, timeout: float = KILL_AFTER_S) -> None:
        """Stop for good (SIGKILL past `timeout`): a start still under way (a restart in another thread) will not
        launch a server."""
        with self._lock:
            self._closed = True
        self.stop(timeout)
        if self._private_copy is not None:
            shutil.rmtree(self._private_copy, ignore_errors=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def leftover_shm(self) -> set[str]:
        return shm_regions(self.shm_prefix)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
