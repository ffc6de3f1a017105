"""`gsam serve`: the gateway on the public ports, tritonserver behind it, the supervisor watching both.

One asyncio loop runs the HTTP gateway (aiohttp), the gRPC gateway (grpcio) and the supervisor;
tritonserver listens on internal 127.0.0.1 ports. It wants one key for inference, health and metadata
(the serving key, which the gateways attach) and another for everything else (the admin key, which only
the TritonServer object holds, for the supervisor's reloads). Started as root, gsam serve runs
tritonserver as an unprivileged user (privileges.py). The open-file limit is raised to its hard limit and
the connection caps are set well under it (capacity.py).

SIGTERM or SIGINT stops within SHUTDOWN_BOUND_S, whatever is in flight: readiness turns 503, the listening
sockets close, idle keep-alive connections are closed at once, requests in flight get until DRAIN_S after
the signal (both gateways against the same deadline) and are then cancelled, tritonserver gets what is
left of the bound before SIGKILL, and its shm regions are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gsam.errors import GSAMError

from .capacity import ServeLimits, connection_cap, raise_fd_limit
from .limits import load_limits, load_versions
from .server import DRAIN_S, KILL_AFTER_S, SHUTDOWN_BOUND_S, TritonServer, check_ports, describe_exit, free_port

LOOPBACK = "127.0.0.1"
REAP_S = 3.0  # after tritonserver's SIGKILL: its stubs, the shm regions, the process's own exit


@dataclass(frozen=True)
class ServeOptions:
    repo: Path
    models: list[str]
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_timeout: float = 120.0
    log_file: Path | None = None
    host: str = LOOPBACK  # the gateway's and the metrics' interface; tritonserver's own ports stay on loopback
    limits: ServeLimits = field(default_factory=ServeLimits)
    explicit_connections: bool = False  # --max-connections was given: an error, not a shrink, when it cannot fit
    user: str | None = None  # who tritonserver runs as when gsam serve is root (None: gsam, else nobody)
    allow_origins: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()


def _probes(repo: Path, models: list[str]) -> dict:
    from google.protobuf import json_format

    from .model_config import read_model_config
    from .probe import probe_for

    return {model: probe_for(json_format.MessageToDict(read_model_config(repo / model),
                                                      preserving_proto_field_name=True)) for model in models}


def _session():
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), auto_decompress=False,
                                 skip_auto_headers=("Accept-Encoding", "User-Agent"),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))


class Service:
    def __init__(self, options: ServeOptions, echo: Callable[[str], None]) -> None:
        self.options, self.echo = options, echo
        self.stop_requested = asyncio.Event()
        self.gateways: list = []
        self.session = None
        self.server: TritonServer | None = None
        self.state = None
        self.admission = None
        self.supervisor = None
        self.supervisor_task: asyncio.Task | None = None
        self.connections = 0
        self.caps: ServeLimits | None = None

    def log(self, message: str) -> None:
        self.echo(f"{time.strftime('%H:%M:%S')} {message}")

    def _on_signal(self, signum: int) -> None:
        if not self.stop_requested.is_set():
            self.log(f"{signal.Signals(signum).name}: stopping within {SHUTDOWN_BOUND_S} s")
        self.stop_requested.set()

    def _check(self, limits: dict) -> ServeLimits:
        """The limits in force (the body budget made concrete), checked against the models and the fd limit."""
        o = self.options
        largest = max(limits.values(), key=lambda model: model.body_cap)
        caps = o.limits.resolved(largest.body_cap)
        caps.check(largest.body_cap, largest.name)
        self.connections = connection_cap(caps.max_connections, o.explicit_connections, raise_fd_limit())
        return caps

    async def run(self) -> None:
        from .admission import Admission
        from .browser import BrowserGuard
        from .gateway_grpc import GrpcGateway
        from .gateway_http import HttpGateway
        from .privileges import check_readable, resolve_user
        from .quiet_log import RateLimited, quiet_libraries
        from .state import ServingState

        o = self.options
        limits = load_limits(o.repo.resolve(), o.models)
        versions = load_versions(o.repo.resolve(), o.models)
        caps = self.caps = self._check(limits)
        probes = _probes(o.repo, o.models)
        check_ports({"--http-port": o.http_port, "--grpc-port": o.grpc_port, "--metrics-port": o.metrics_port})
        run_as = resolve_user(o.user)
        if run_as is not None:
            check_readable(run_as, [o.repo.resolve() / model for model in o.models])
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        quiet_libraries(RateLimited(self.log))
        self.state = ServingState.for_models(o.models)
        self.session = _session()
        self.admission = Admission(caps.max_concurrency, caps.body_bytes)
        guard = BrowserGuard(o.host, o.http_port, frozenset(o.allow_origins),
                             frozenset(h.lower().rstrip(".") for h in o.allow_hosts))
        self.gateways = [HttpGateway(limits, versions, self.state, self.session, guard=guard, admission=self.admission,
                                     caps=caps, log=RateLimited(self.log)),
                         GrpcGateway(limits, versions, self.state, admission=self.admission, caps=caps)]
        self.server = TritonServer(o.repo, o.models, free_port(), free_port(), metrics_port=o.metrics_port,
                                   log_path=o.log_file, private=True, metrics_host=o.host, run_as=run_as,
                                   report=self.log)
        try:
            await self._listen()
            if await self._start_server(probes):
                await self._serve()
        finally:
            await self._shutdown()

    async def _listen(self) -> None:
        o = self.options
        for gateway, (name, port) in zip(self.gateways, (("--http-port", o.http_port), ("--grpc-port", o.grpc_port))):
            try:
                await gateway.start(o.host, port, self.connections)
            except (OSError, RuntimeError) as exc:  # grpcio raises RuntimeError when it cannot bind
                reason = getattr(exc, "strerror", None) or exc
                if isinstance(exc, OSError) and exc.errno != errno.EADDRINUSE:  # e.g. --host not on this machine
                    raise GSAMError(f"--host {o.host}: cannot listen on port {port} there ({reason})") from None
                raise GSAMError(f"{name} {port} is busy on {o.host}; stop what uses it or choose another port "
                                f"({reason})") from None

    async def _start_server(self, probes: dict) -> bool:
        """tritonserver started and ready (False: a signal came first)."""
        from .supervisor import Supervisor

        o, server = self.options, self.server
        log = f"log: {o.log_file}" if o.log_file else "its log is kept in memory; --log-file PATH writes it"
        user = f"as user {server.run_as.name}" if server.run_as else f"as user {_user_name()}"
        self.log(f"starting tritonserver {user} on {o.repo} (models: {', '.join(o.models)}); {log}")
        for model, probe in probes.items():
            if probe.fingerprint is None:
                self.log(f"{model}: its config has no probe_fingerprint, so probes check that it answers, not what; "
                         "rebuild the repository with `gsam triton build` to compare answers")
        starting = asyncio.ensure_future(asyncio.to_thread(server.start, o.ready_timeout))
        stopping = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            await asyncio.to_thread(server.close)  # the start under way sees the process gone and gives up
            with contextlib.suppress(GSAMError):
                await starting
            return False
        stopping.cancel()
        starting.result()
        self.state.up(server.http_port, server.grpc_port, server.serving_key)
        self.supervisor = Supervisor(server, self.state, probes, self.log, ready_timeout=o.ready_timeout)
        caps = self.caps
        self.log(f"ready: HTTP http://{o.host}:{o.http_port}  gRPC {o.host}:{o.grpc_port}  metrics {server.metrics_url}  "
                 f"(tritonserver inside: HTTP {server.http_port}, gRPC {server.grpc_port}; Ctrl-C stops); limits: "
                 f"{self.connections} connections per port, {caps.max_concurrency} inference requests and "
                 f"{caps.body_mib} MiB of bodies in flight")
        return True

    async def _serve(self) -> None:
        self.supervisor_task = asyncio.ensure_future(self.supervisor.run())
        stopping = asyncio.ensure_future(self.stop_requested.wait())
        await asyncio.wait({self.supervisor_task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if self.supervisor_task.done():
            self.supervisor_task.result()  # GiveUp: the server kept failing

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.state is not None:
            self.state.draining = True
            if self.admission is not None and self.admission.in_flight:
                self.log(f"draining {self.admission.in_flight} request(s) in flight (at most {DRAIN_S:g} s)")
        if self.supervisor_task is not None and not self.supervisor_task.done():
            self.supervisor_task.cancel()
            with contextlib.suppress(BaseException):
                await self.supervisor_task
        if self.supervisor is not None:
            self.supervisor.pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.gather(*(gateway.stop(started + DRAIN_S) for gateway in self.gateways), return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        if self.server is not None:
            left = SHUTDOWN_BOUND_S - (loop.time() - started) - REAP_S
            await asyncio.to_thread(self.server.close, max(1.0, min(KILL_AFTER_S, left)))
            if self.server.process is not None:  # nothing to report when the gateway failed before the start
                code = self.server.process.returncode
                self.log(f"stopped in {loop.time() - started:.1f} s (tritonserver: {describe_exit(code)})")


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def serve_repository(options: ServeOptions, echo: Callable[[str], None]) -> None:
    """Run until SIGTERM/SIGINT; GSAMError when the server cannot start or keeps failing."""
    # gRPC's fork handlers would complain at each tritonserver start (a fork while the gateway's threads run)
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

    async def main() -> None:
        await Service(options, echo).run()

    asyncio.run(main())
