"""Requests a web page makes the user's browser send are refused: cross-site requests and DNS rebinding.

A page on any site may POST to http://127.0.0.1:8000 (a "simple" request needs no CORS preflight), and a
page whose DNS name is re-pointed at 127.0.0.1 may even read the answers, as same-origin. Three checks stop
both, before anything is read or routed:
- Origin: browsers send it with every POST and every cross-origin fetch; tools (curl, tritonclient, gsam)
  send none. A non-empty Origin that is not in --allow-origin is a 403.
- Host: must name the address gsam serve listens on (with its port), or a name in --allow-host; a page on
  a rebound DNS name sends its own name there. IP literals always name this machine's address when
  listening on every interface (0.0.0.0 or ::); DNS names need --allow-host.
- Content-Type of inference bodies: application/json or application/octet-stream. A body without one is
  accepted only with the Inference-Header-Content-Length header (tritonclient sends no Content-Type),
  which no page can send without a preflight that gsam serve never grants.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field

from .limits import Refused

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
BODY_TYPES = ("application/json", "application/octet-stream")


def split_host(value: str) -> tuple[str, int | None]:
    """('name or address', port or None) of a Host header; Refused when it is not one."""
    value = value.strip()
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            raise Refused("the Host header is not a host[:port]")
        name, rest = value[1:close], value[close + 1:]
        if rest and not rest.startswith(":"):
            raise Refused("the Host header is not a host[:port]")
        port_text = rest[1:] if rest else None
    else:
        name, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if port_text is not None and not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        raise Refused("the Host header's port is not a number")
    return name.lower().rstrip("."), int(port_text) if port_text is not None else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class BrowserGuard:
    listen_host: str
    port: int
    allow_origins: frozenset[str] = field(default_factory=frozenset)
    allow_hosts: frozenset[str] = field(default_factory=frozenset)  # names or patterns (any port); "*": any

    def _names(self) -> frozenset[str]:
        host = self.listen_host.lower()
        names = {host}
        if host in LOOPBACK_NAMES or host.startswith("127."):
            names |= LOOPBACK_NAMES
        return frozenset(names)

    def check_host(self, header: str | None) -> None:
        if "*" in self.allow_hosts:
            return
        if not header:
            raise Refused("a Host header is required")
        name, port = split_host(header)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.allow_hosts):
            return
        wildcard = self.listen_host in WILDCARDS
        known = name in self._names() or (wildcard and (_is_ip(name) or name == "localhost"))
        if not known or (port if port is not None else 80) != self.port:
            raise Refused(f"Host {header[:80]!r} does not name the address gsam serve listens on "
                          f"({self.listen_host}:{self.port}); a name in front of it needs --allow-host", status=403)

    def check_origin(self, origin: str | None) -> None:
        if origin and origin.strip() and origin.strip() not in self.allow_origins:
            raise Refused(f"requests from web pages are refused: Origin {origin[:80]!r} is not in --allow-origin",
                          status=403)

    def check(self, headers) -> None:
        self.check_origin(headers.get("Origin"))
        self.check_host(headers.get("Host"))


def check_body_type(content_type: str | None, binary_header: bool) -> None:
    """An inference body declares JSON or octet-stream (or, from tritonclient, nothing, with a binary header)."""
    if content_type is None or not content_type.strip():
        if binary_header:
            return
        raise Refused("an inference request must declare Content-Type: application/json", status=415)
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in BODY_TYPES:
        raise Refused(f"Content-Type {content_type[:60]!r} is not accepted for inference; send application/json "
                      "or application/octet-stream", status=415)
