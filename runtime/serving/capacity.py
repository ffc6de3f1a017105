"""The limits that keep `gsam serve` alive under load and abuse, with their defaults, in one place.

The CLI's options, the gateways and the Kubernetes planner all read them from here, so the memory limit
`gsam triton k8s` writes follows from the same caps the gateway enforces: at most `max_connections` open
connections per public port (each with its buffers), and at most `body_bytes` of request bodies held at
once (inflated size: what a gzip body becomes, reserved before it is read), in at most `max_concurrency`
inference requests.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, replace

from gsam.errors import GSAMError

MAX_CONNECTIONS = 1000  # per public port (HTTP, gRPC)
HEADER_TIMEOUT_S = 10.0  # from a connection's start (or its last answer) to a complete request head
BODY_TIMEOUT_S = 5.0  # the longest pause inside a request body
BODY_TOTAL_S = 120.0  # a whole request body, however it trickles
MAX_CONCURRENCY = 16  # inference requests in flight (read, checked, at tritonserver, answered)
BODY_MIB = 256  # request bodies held at once; raised to the largest legal request when that is larger
BACKLOG = 128  # the listening sockets' accept queue: also how far one burst may pass the connection cap
RESERVED_FDS = 256  # files, pipes, tritonserver's connections and the gRPC core's own, beside the clients
CONNECTION_BYTES = 160 << 10  # one open connection at most: aiohttp's read buffer (2 x 64 KiB) and its objects
JSON_PARSE_FACTOR = 8  # a whole-JSON body as Python objects (a float is 24 bytes, its text about 3)


@dataclass(frozen=True)
class ServeLimits:
    max_connections: int = MAX_CONNECTIONS
    header_timeout: float = HEADER_TIMEOUT_S
    body_timeout: float = BODY_TIMEOUT_S
    body_total: float = BODY_TOTAL_S
    max_concurrency: int = MAX_CONCURRENCY
    body_mib: int | None = None  # None: BODY_MIB, or the largest legal request when that is larger (resolved)

    @property
    def body_bytes(self) -> int:
        return (self.body_mib or BODY_MIB) << 20

    def resolved(self, largest_request: int) -> "ServeLimits":
        """The default body budget made concrete for models whose largest legal request is this many bytes."""
        if self.body_mib is not None:
            return self
        return replace(self, body_mib=max(BODY_MIB, -(-largest_request // (1 << 20))))

    def check(self, largest_request: int, named: str) -> None:
        """One line for values that cannot work: a body budget below the largest legal request of a model."""
        if min(self.max_connections, self.max_concurrency, self.body_mib or BODY_MIB) < 1 or \
                min(self.header_timeout, self.body_timeout) <= 0:
            raise GSAMError("--max-connections, --max-concurrency, --max-body-mib, --header-timeout and "
                            "--body-timeout must be positive")
        if self.body_bytes < largest_request:
            raise GSAMError(f"--max-body-mib {self.body_mib} is below the largest legal request of {named} "
                            f"({-(-largest_request // (1 << 20))} MiB): such requests could never be served; raise "
                            "it, or rebuild the repository with a smaller --max-pixels")

    def gateway_bytes(self, ports: int = 2) -> int:
        """What the caps let the gateway hold beyond its base: bodies in flight and open connections."""
        return self.body_bytes + ports * self.max_connections * CONNECTION_BYTES

    def flags(self) -> list[str]:
        """The `gsam serve` options that set these limits (for a pod's command)."""
        return ["--max-connections", str(self.max_connections), "--max-concurrency", str(self.max_concurrency),
                "--max-body-mib", str(self.body_mib or BODY_MIB)]


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one where allowed; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(requested: int, explicit: bool, fd_limit: int, ports: int = 2) -> int:
    """The connections each public port may hold, well under the open-file limit: what the ports share
    after RESERVED_FDS and one accept burst each. An explicit --max-connections that does not fit is an
    error; the default shrinks to fit (said in the ready line)."""
    fits = (fd_limit - RESERVED_FDS - ports * BACKLOG) // ports
    if fits < 16:
        raise GSAMError(f"the open-file limit is {fd_limit}; gsam serve needs at least "
                        f"{RESERVED_FDS + ports * (BACKLOG + 16)} (raise it with ulimit -n)")
    if requested > fits and explicit:
        raise GSAMError(f"--max-connections {requested} does not fit the open-file limit {fd_limit} (at most {fits} "
                        "per port); lower it or raise the limit (ulimit -n)")
    return min(requested, fits)
