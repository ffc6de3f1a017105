"""`gsam serve` as a child process, for tests and benchmarks: started on free ports, waited for, stopped.

What a user runs, gateway and supervisor included, seen from outside: the public URLs, the internal
tritonserver ports it prints when ready, every line it printed, and how long it took to stop.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from gsam.child import python_module
from gsam.errors import GSAMError

from .server import SHUTDOWN_BOUND_S, LoopbackPorts, free_port

_INTERNAL = re.compile(r"inside: HTTP (\d+), gRPC (\d+)")  # the ready line, and each restart's


class ServeProcess(LoopbackPorts):
    """`prefix`: a command that runs gsam serve (a wrapper such as `unshare ... --`); `env`: its environment;
    `preexec_fn`: run in the child before exec (e.g. a lower open-file limit)."""

    def __init__(self, repo: str | Path, models: list[str], *, args: tuple[str, ...] = (),
                 prefix: tuple[str, ...] = (), env: dict[str, str] | None = None, preexec_fn=None) -> None:
        self.repo, self.models, self.args = Path(repo), models, args
        self.prefix, self.env, self.preexec_fn = prefix, env, preexec_fn
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.internal_http_port = self.internal_grpc_port = 0  # tritonserver's, the latest (restarts move them)
        self.internal_http_ports: list[int] = []
        self.lines: list[str] = []
        self.process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def _follow(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            found = _INTERNAL.search(line)
            if found:
                self.internal_http_port, self.internal_grpc_port = int(found[1]), int(found[2])
                self.internal_http_ports.append(self.internal_http_port)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 180.0) -> "ServeProcess":
        command = [*self.prefix, *python_module("gsam", "serve"), "--repo", str(self.repo), "--triton-models",
                   ",".join(self.models), "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                   "--metrics-port", str(self.metrics_port), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=self.env, preexec_fn=self.preexec_fn)
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> float:
        """Seconds until /v2/health/ready answers 200 (every model answered a real inference)."""
        started = time.monotonic()
        while not self.ready():
            if self.process.poll() is not None:
                self._reader.join(2)
                raise GSAMError(f"gsam serve exited with code {self.process.returncode}: {self.output[-2000:]}")
            if time.monotonic() - started > timeout:
                self.stop()
                raise GSAMError(f"gsam serve was not ready after {timeout:.0f} s: {self.output[-2000:]}")
            time.sleep(0.2)
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Seconds from the signal to the exit (SIGKILL past SHUTDOWN_BOUND_S + 10)."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(SHUTDOWN_BOUND_S + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self._reader:
            self._reader.join(2)
        return time.monotonic() - started

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
