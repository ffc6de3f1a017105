"""The public HTTP port of `gsam serve`: aiohttp in front of tritonserver's internal one.

Every request, in order:
  1. the connection itself: at most --max-connections open (past it: 503 and closed), a whole request
     head within --header-timeout (connections.py);
  2. browser checks: a foreign Origin, or a Host that does not name this address, is refused (browser.py);
  3. the route, parsed from the raw request target (routes.py): anything but the paths below is 400, 403,
     404 or 405, and the upstream path is rebuilt from the parsed parts, never copied;
       GET  /v2/health/live, /v2/health/ready, /v2/models/M[/versions/V]/ready   answered here, from the
            supervisor's state (ready: every model's last probe got the repository's answer)
       GET  /v2, /v2/models/M[/versions/V][/config|/stats], /v2/models/stats   forwarded
       POST /v2/models/M[/versions/V]/infer   admitted (--max-concurrency, --max-body-mib: 503 with
            Retry-After past them), Content-Type checked, the inference header read and checked first
            (limits.py), then exactly the bytes it declares, with read timeouts (body.py); forwarded with
            a Content-Length, never chunked, never compressed;
  4. forwarded with the serving key, which unlocks inference, health and metadata only.
Refusals are answered with Triton's error body and logged in one rate-limited line each.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from yarl import URL

from .admission import Admission, Ticket
from .body import BodyReader
from .browser import BrowserGuard, check_body_type
from .capacity import BACKLOG, JSON_PARSE_FACTOR, ServeLimits
from .connections import CappedServer
from .limits import HEADER_CAP, JSON_BODY_CAP, ModelLimits, Refused, check_bytes_elements
from .probe import RESOURCE_ERRNOS
from .quiet_log import RateLimited, one_line
from .routes import Route, parse_route
from .server import SERVING_HEADER
from .state import RETRY_AFTER_S, STUB_DIED, ServingState

HEADER_LENGTH = "Inference-Header-Content-Length"
HEADER_DIGITS = 9  # an inference header's byte count: ASCII digits only, at most this many
RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", HEADER_LENGTH)
CHECK_IN_THREAD_BYTES = 256 << 10  # larger JSON is parsed and checked off the event loop
CANCEL_S = 0.5  # after the drain: what a handler still running gets to finish once cancelled
# after answering a request whose body was not read (refused, stalled), aiohttp reads and drops the rest for at
# most this long, so the client sees the answer before the close; its default (10 s) kept stalled uploads open
LINGER_S = 2.0


def error(status: int, message: str, *, close: bool = False) -> web.Response:
    """Triton's error body ({"error": ...}), so tritonclient shows the message; 503 says when to retry."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    response = web.json_response({"error": message}, status=status, headers=headers)
    if close:  # the body may be unread: do not keep the connection
        response.force_close()
    return response


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """json's object_pairs_hook: a key given twice is refused (Python keeps the last, Triton the first)."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Refused(f"the JSON object holds the key {key[:60]!r} twice")
    return found


def _no_constant(name: str):
    raise Refused(f"{name} is not a JSON number")


def parse_json(raw: bytes, what: str):
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise Refused(f"{what} nests too deeply to be an inference request") from None
    except ValueError as exc:  # also UnicodeDecodeError and int() past Python's digit limit
        raise Refused(f"{what} is not valid JSON ({one_line(str(exc), 120)})") from None


def _checked(raw: bytes, limits: ModelLimits, binary: bool) -> list[tuple[str, int, int]]:
    return limits.check_http_request(parse_json(raw, "the inference header"), binary)


def upstream_url(port: int, route: Route) -> URL:
    """tritonserver's URL for a forwarded route: its path comes from the parsed route only (routes.py)."""
    return URL.build(scheme="http", host="127.0.0.1", port=port, path=route.upstream, encoded=True)


def declared_header_length(value: str, cap: int) -> int:
    """The Inference-Header-Content-Length header: ASCII digits ('²' is a digit to str.isdigit, not to int)."""
    if not (value.isascii() and value.isdigit() and len(value) <= HEADER_DIGITS) or int(value) > cap:
        raise Refused(f"{HEADER_LENGTH} must be a byte count (ASCII digits) within {cap}; got {one_line(value, 40)!r}")
    return int(value)


async def read_infer(request: web.Request, limits: ModelLimits, ticket: Ticket,
                     caps: ServeLimits) -> tuple[bytes, dict[str, str]]:
    """The checked request body and the headers to forward with it, or Refused. The ticket grows to the
    body's inflated size before the bytes are read (503 when the budget cannot hold it)."""
    declared = request.headers.get(HEADER_LENGTH)
    raw_cap = limits.body_cap if declared is not None else JSON_BODY_CAP
    reader = BodyReader(request.content, request.headers.get("Content-Encoding", ""), raw_cap, caps.body_timeout,
                        caps.body_total)
    busy = Refused(f"gsam serve holds as many request bodies as --max-body-mib {caps.body_mib} allows; retry", 503)
    if declared is None:
        if request.content_length is not None and request.content_length > JSON_BODY_CAP:
            raise Refused(f"the JSON request is {request.content_length} bytes; a JSON inference request may hold "
                          f"at most {JSON_BODY_CAP}; send tensors with the binary data extension or over gRPC",
                          status=413)
        size = request.content_length if reader.identity and request.content_length is not None else JSON_BODY_CAP
        if not ticket.grow(size * JSON_PARSE_FACTOR):
            raise busy
        body = await reader.read_to_end(JSON_BODY_CAP)
        if len(body) > CHECK_IN_THREAD_BYTES:
            await asyncio.to_thread(_checked, body, limits, False)
        else:
            _checked(body, limits, False)
        return body, {"Content-Type": "application/json"}
    head_length = declared_header_length(declared, min(raw_cap, HEADER_CAP))
    head = b"".join(await reader.read(head_length, "the inference header"))
    binaries = _checked(head, limits, True)  # a request above the bound is refused here, its tensor unread
    total = len(head) + sum(size for _, _, size in binaries)
    if request.content_length is not None and reader.identity and request.content_length != total:
        raise Refused(f"the body is {request.content_length} bytes; its inference header declares {total}")
    if not ticket.grow(total):
        raise busy
    data = await reader.read(total - len(head), "the tensors its inference header declares")
    await reader.expect_end()
    body = b"".join([head, *data])
    offset = len(head)
    for name, elements, size in binaries:
        if limits.inputs[name].datatype == "BYTES":
            check_bytes_elements(memoryview(body)[offset:offset + size], name, elements, limits.encoded_bytes)
        offset += size
    return body, {HEADER_LENGTH: str(len(head))}


class HttpGateway:
    def __init__(self, limits: dict[str, ModelLimits], versions: dict[str, frozenset[str]], state: ServingState,
                 session: aiohttp.ClientSession, *, guard: BrowserGuard, admission: Admission, caps: ServeLimits,
                 log: RateLimited) -> None:
        self.limits, self.versions, self.state, self.session = limits, versions, state, session
        self.guard, self.admission, self.caps, self.log = guard, admission, caps, log
        self.server: CappedServer | None = None
        self.listener: asyncio.AbstractServer | None = None
        self.active = 0  # requests being handled, of any kind
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self, host: str, port: int, max_connections: int) -> None:
        self.server = CappedServer(self.handle, cap=max_connections, header_timeout=self.caps.header_timeout,
                                   handler_cancellation=True, keepalive_timeout=self.caps.header_timeout,
                                   lingering_time=LINGER_S, access_log=None, auto_decompress=False)
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(self.server, host, port, backlog=BACKLOG, reuse_address=True)

    async def stop(self, deadline: float) -> None:
        """Stop listening, close idle keep-alive connections at once, let requests in flight finish until
        `deadline` (loop time), then cancel what is left: all within the deadline plus CANCEL_S."""
        if self.listener is not None:
            self.listener.close()
        if self.server is None:
            return
        self.server.pre_shutdown()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            pass
        # each handler still running: CANCEL_S / 2 more, then cancelled and given CANCEL_S / 2 to end (aiohttp
        # bounds both waits itself; an outer timeout would interrupt it before it cancels anything)
        await self.server.shutdown(CANCEL_S / 2)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: one line in the log when refused, never a traceback."""
        if self.server is not None:
            self.server.began(request.protocol)
        self.active += 1
        self._idle.clear()
        try:
            return await self._handle(request)
        except aiohttp.ClientPayloadError as exc:  # a body aiohttp's parser refused (a broken chunked encoding)
            return self._refused(request, Refused(f"the request body is malformed ({exc})"))
        except Refused as exc:
            return self._refused(request, exc)
        except ConnectionResetError:  # the client left: nobody to answer or to tell
            return error(400, "the connection was reset", close=True)
        except Exception as exc:  # a bug of the gateway: said in one line, answered, never a crash
            self.log.say(f"gateway error on {request.method} {request.raw_path[:120]}: {type(exc).__name__}: {exc}")
            return error(500, f"gsam serve's gateway failed on this request ({type(exc).__name__})", close=True)
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    def _refused(self, request: web.BaseRequest, exc: Refused) -> web.Response:
        self.log.say(f"refused {request.method} {request.raw_path[:120]} from {request.remote}: {exc.status} "
                     f"{exc.message}")
        return error(exc.status, exc.message, close=request.method != "GET")

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.guard.check(request.headers)
        route = parse_route(request.method, request.raw_path, self.versions)
        if route.kind == "live":
            return web.Response(status=200)
        if route.kind == "ready":
            return web.Response(status=200) if self.state.ready() else error(503, self.state.not_ready_reason())
        if route.kind == "model-ready":
            state = self.state.models[route.model]
            if state.answering and self.state.refusal(route.model) is None:
                return web.Response(status=200)
            return error(503, f"{route.model}: {self.state.refusal(route.model) or state.reason}")
        if route.kind == "infer":
            return await self.infer(request, route)
        refusal = self.state.refusal(None)
        if refusal:
            return error(503, refusal)
        return await self._forward(request, route, None, {})

    async def infer(self, request: web.BaseRequest, route: Route) -> web.StreamResponse:
        refusal = self.state.refusal(route.model)
        if refusal:
            raise Refused(refusal, 503)
        check_body_type(request.headers.get("Content-Type"), HEADER_LENGTH in request.headers)
        ticket = self.admission.enter(HEADER_CAP)
        if ticket is None:
            raise Refused(f"gsam serve has {self.admission.in_flight} inference requests in flight "
                          f"(--max-concurrency {self.admission.max_requests}); retry", 503)
        try:
            body, headers = await read_infer(request, self.limits[route.model], ticket, self.caps)
            return await self._forward(request, route, body, headers)
        finally:
            ticket.release()

    async def _forward(self, request: web.BaseRequest, route: Route, body: bytes | None,
                       headers: dict[str, str]) -> web.StreamResponse:
        url = upstream_url(self.state.http_port, route)
        if "Accept-Encoding" in request.headers:
            headers["Accept-Encoding"] = request.headers["Accept-Encoding"]
        headers[SERVING_HEADER] = self.state.key
        method = "POST" if route.kind == "infer" else "GET"
        response = None
        try:
            async with self.session.request(method, url, data=body, headers=headers) as upstream:
                if upstream.status >= 500:
                    return await self._server_error(route.model, upstream)
                if upstream.status == 404 and route.model is not None:
                    return await self._unknown_upstream(route, upstream)
                response = web.StreamResponse(status=upstream.status, headers={
                    k: upstream.headers[k] for k in RESPONSE_HEADERS if k in upstream.headers})
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(1 << 20):
                    await response.write(chunk)
                await response.write_eof()
        except (aiohttp.ClientError, OSError) as exc:
            if response is not None:
                raise
            cause = getattr(exc, "os_error", exc)
            if getattr(cause, "errno", None) in RESOURCE_ERRNOS:  # ours, not tritonserver's: no probe round
                return error(503, "gsam serve cannot open a connection to tritonserver now "
                                  f"({getattr(cause, 'strerror', cause)}); retry")
            self.state.failed()
            return error(503, f"tritonserver did not answer ({type(exc).__name__}); retry")
        if route.kind == "infer" and upstream.status < 400:
            self.state.answered(route.model)
        return response

    async def _unknown_upstream(self, route: Route, upstream: aiohttp.ClientResponse) -> web.Response:
        """Triton does not know a model gsam serves (unloaded, or a version it lost): readiness off at once."""
        message = _error_message((await upstream.content.read(64 << 10)).decode(errors="replace"), upstream)
        self.state.failed(route.model, f"tritonserver does not know it: {message}")
        return error(503, f"{route.model} is not loaded in tritonserver ({message}); gsam serve is reloading it; retry")

    async def _server_error(self, model: str | None, upstream: aiohttp.ClientResponse) -> web.Response:
        """A 5xx from Triton: the supervisor probes at once; a dead stub is answered 503, to be retried."""
        message = _error_message((await upstream.content.read(64 << 10)).decode(errors="replace"), upstream)
        if STUB_DIED in message:
            self.state.failed(model, message)
            return error(503, f"{message} (gsam serve is reloading the model; retry)")
        self.state.failed()
        return error(upstream.status, message)


def _error_message(text: str, upstream: aiohttp.ClientResponse) -> str:
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text or upstream.reason or "internal error"
