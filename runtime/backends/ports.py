"""Which protocol a server's port speaks, asked only after a client failed there: a gRPC client pointed at
Triton's HTTP port (or the other way round) should hear that, not "is gsam serve running?" while it is."""

from __future__ import annotations

import http.client
import socket

# The HTTP/2 connection preface and an empty SETTINGS frame: an HTTP/2 (gRPC) server answers with a frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS, _GOAWAY = 0x04, 0x07


def _host_port(url: str) -> tuple[str, int] | None:
    host, _, port = url.rpartition(":")
    return (host.strip("[]") or "localhost", int(port)) if port.isdigit() else None


def answers_http1(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP/1.1 server answers at host:port (any status counts)."""
    address = _host_port(url)
    if address is None:
        return False
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", "/v2/health/live")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def answers_http2(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP/2 server (gRPC's transport) answers the connection preface at host:port."""
    address = _host_port(url)
    if address is None:
        return False
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(_H2_PREFACE)
            header = sock.recv(9)
    except OSError:
        return False
    return len(header) == 9 and header[3] in (_SETTINGS, _GOAWAY)


def wrong_port(url: str, protocol: str) -> str | None:
    """One line when `url` answers the other protocol than the client's; None when it does not (or nothing does)."""
    if protocol == "grpc" and answers_http1(url):
        return (f"{url} answers HTTP, not gRPC: it is an HTTP port (gsam serve: --http-port, 8000 by default); "
                f"use gsam serve's gRPC port (--grpc-port, 8001 by default) or --backend triton-http with this one")
    if protocol == "http" and answers_http2(url):
        return (f"{url} answers gRPC (HTTP/2), not HTTP/1.1: it is a gRPC port (gsam serve: --grpc-port, 8001 by "
                f"default); use gsam serve's HTTP port (--http-port, 8000 by default) or --backend triton-grpc")
    return None
