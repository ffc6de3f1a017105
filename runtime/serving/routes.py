"""The HTTP paths gsam serve answers, parsed from the raw request target: the only paths that reach Triton.

A route is rebuilt from validated parts (a served model's name, a version the repository serves, one tail
of a fixed set) and the upstream path is made from those parts alone, never copied from the request. The
raw target is checked before anything else: percent-encoding, backslashes, NUL and other control or
non-ASCII characters, empty and dot segments, a query or a fragment are a 400, so no decoding step (the
gateway's, aiohttp's or Triton's) can turn an accepted path into another one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from .limits import Refused

SAFE_PATH = re.compile(r"/[A-Za-z0-9_.\-/]*")  # what a served path may hold, percent sign excluded
MODEL_NAME = re.compile(r"[A-Za-z0-9_\-]{1,128}")
VERSION = re.compile(r"[0-9]{1,10}")
ADMIN_APIS = {"repository": "model-repository", "systemsharedmemory": "shared-memory",
              "cudasharedmemory": "shared-memory", "trace": "trace", "logging": "logging"}
# tail of /v2/models/M[/versions/V] -> (method, route kind)
MODEL_TAILS = {"": ("GET", "metadata"), "ready": ("GET", "model-ready"), "config": ("GET", "config"),
               "stats": ("GET", "model-stats"), "infer": ("POST", "infer")}
UPSTREAM_TAILS = {"metadata": "", "config": "/config", "model-stats": "/stats", "infer": "/infer"}
LOCAL = ("live", "ready", "model-ready")  # answered by the gateway from the supervisor's state


@dataclass(frozen=True)
class Route:
    kind: str  # live, ready, server, stats, metadata, model-ready, config, model-stats, infer
    model: str | None = None
    version: str | None = None

    @property
    def upstream(self) -> str | None:
        """Triton's path for this route (None: answered here)."""
        if self.kind in LOCAL:
            return None
        if self.kind == "server":
            return "/v2"
        if self.kind == "stats":
            return "/v2/models/stats"
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"/v2/models/{self.model}{version}{UPSTREAM_TAILS[self.kind]}"


def check_target(target: str) -> list[str]:
    """The path's segments, or Refused (400) for anything a served path never holds."""
    if "?" in target or "#" in target:
        raise Refused("gsam serve takes no query string or fragment in a request target")
    if not target.startswith("/"):
        raise Refused("the request target must be a path beginning with '/'")
    if "%" in target:
        raise Refused("percent-encoded characters are not accepted in a path (model names and versions need none)")
    if not SAFE_PATH.fullmatch(target):
        raise Refused("the path holds characters no served path has (letters, digits, '_', '-', '.' and '/' only)")
    segments = target[1:].split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise Refused("the path holds an empty, '.' or '..' segment")
    return segments


def _method(route: Route, method: str, wanted: str) -> Route:
    if method != wanted:
        raise Refused(f"{method} is not served on this path; use {wanted}", status=405)
    return route


def parse_route(method: str, target: str, versions: Mapping[str, frozenset[str]]) -> Route:
    """The route of a request, or Refused: 400 (malformed), 403 (an admin API), 404 (not served), 405.

    `versions`: each served model and the versions tritonserver serves of it."""
    segments = check_target(target)
    if segments[0] != "v2":
        raise Refused(f"{target[:80]} is not served by gsam serve", status=404)
    rest = segments[1:]
    if not rest:
        return _method(Route("server"), method, "GET")
    if rest[0] in ADMIN_APIS:
        raise Refused(f"the {ADMIN_APIS[rest[0]]} API is not served by gsam serve (the models to serve are chosen "
                      "when it starts)", status=403)
    if rest in (["health", "live"], ["health", "ready"]):
        return _method(Route(rest[1]), method, "GET")
    if rest == ["models", "stats"]:
        return _method(Route("stats"), method, "GET")
    if rest[0] != "models" or len(rest) < 2:
        raise Refused(f"{target[:80]} is not served by gsam serve", status=404)
    model, tail = rest[1], rest[2:]
    if not MODEL_NAME.fullmatch(model) or model not in versions:
        raise Refused(f"unknown model {model[:60]!r}; gsam serve serves {', '.join(versions)}", status=404)
    version = None
    if tail[:1] == ["versions"]:
        if len(tail) < 2 or not VERSION.fullmatch(tail[1]):
            raise Refused("a model version must be digits only")
        version, tail = tail[1], tail[2:]
        if version not in versions[model]:
            served = ", ".join(sorted(versions[model], key=int)) or "none"
            raise Refused(f"version {version} of {model} is not served; it serves {served}", status=404)
    if len(tail) > 1 or (tail and tail[0] not in MODEL_TAILS) or tail == [""]:
        raise Refused(f"{target[:80]} is not served by gsam serve", status=404)
    wanted, kind = MODEL_TAILS[tail[0] if tail else ""]
    return _method(Route(kind, model, version), method, wanted)
