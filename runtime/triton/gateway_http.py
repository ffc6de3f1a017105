"""The public HTTP port of `gsam serve`: aiohttp in front of tritonserver's internal one.

Routes; everything else is 404, and the admin APIs (model repository, shared memory, trace, logging)
are 403 here whatever the request carries:
  GET  /v2/health/live, /v2/health/ready, /v2/models/M[/versions/V]/ready   answered here, from the
       supervisor's state (ready means every model answered a real inference)
  GET  /v2, /v2/models/M[/versions/V][/config|/stats], /v2/models/stats        forwarded as they are
  POST /v2/models/M[/versions/V]/infer   the inference header is read first and checked (limits.py),
       then exactly the bytes it declares (body.py); forwarded with a Content-Length, never chunked,
       never compressed, so Triton's own body handling meets only bounded, well-formed requests
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from .body import BodyReader
from .limits import JSON_BODY_CAP, ModelLimits, Refused, check_bytes_elements
from .server import ADMIN_HEADER, DRAIN_S
from .state import RETRY_AFTER_S, STUB_DIED, ServingState

HEADER_LENGTH = "Inference-Header-Content-Length"
RESPONSE_HEADERS = ("Content-Type", "Content-Encoding", HEADER_LENGTH)
ADMIN_PATHS = {"/v2/repository": "model-repository", "/v2/systemsharedmemory": "shared-memory",
               "/v2/cudasharedmemory": "shared-memory", "/v2/trace": "trace", "/v2/logging": "logging"}
CHECK_IN_THREAD_BYTES = 256 << 10  # larger JSON is parsed and checked off the event loop


def error(status: int, message: str, *, close: bool = False, retry: bool = False) -> web.Response:
    """Triton's error body ({"error": ...}), so tritonclient shows the message."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    response = web.json_response({"error": message}, status=status, headers=headers)
    if close:  # the body may be unread: do not keep the connection
        response.force_close()
    return response


def parse_json(raw: bytes, what: str):
    try:
        return json.loads(raw)
    except RecursionError:
        raise Refused(f"{what} nests too deeply to be an inference request") from None
    except ValueError as exc:
        raise Refused(f"{what} is not valid JSON ({exc})") from None


def _checked(raw: bytes, limits: ModelLimits, binary: bool) -> list[tuple[str, int, int]]:
    return limits.check_http_request(parse_json(raw, "the inference header"), binary)


async def read_infer(request: web.Request, limits: ModelLimits) -> tuple[bytes, dict[str, str]]:
    """The checked request body and the headers to forward with it, or Refused."""
    declared = request.headers.get(HEADER_LENGTH)
    raw_cap = limits.body_cap if declared is not None else JSON_BODY_CAP
    reader = BodyReader(request.content, request.headers.get("Content-Encoding", ""), raw_cap)
    if declared is None:
        if request.content_length is not None and request.content_length > JSON_BODY_CAP:
            raise Refused(f"the JSON request is {request.content_length} bytes; a JSON inference request may hold "
                          f"at most {JSON_BODY_CAP}; send tensors with the binary data extension or over gRPC",
                          status=413)
        body = await reader.read_to_end(JSON_BODY_CAP)
        if len(body) > CHECK_IN_THREAD_BYTES:
            await asyncio.to_thread(_checked, body, limits, False)
        else:
            _checked(body, limits, False)
        return body, {"Content-Type": "application/json"}
    if not declared.strip().isdigit() or int(declared) > raw_cap:
        raise Refused(f"{HEADER_LENGTH} must be a byte count within the body; got {declared[:40]!r}")
    head = b"".join(await reader.read(int(declared), "the inference header"))
    binaries = _checked(head, limits, True)  # a request above the bound is refused here, its tensor unread
    total = len(head) + sum(size for _, _, size in binaries)
    if request.content_length is not None and reader.identity and request.content_length != total:
        raise Refused(f"the body is {request.content_length} bytes; its inference header declares {total}")
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
    def __init__(self, limits: dict[str, ModelLimits], state: ServingState, session: aiohttp.ClientSession) -> None:
        self.limits, self.state, self.session = limits, state, session
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        add = app.router.add_route
        add("GET", "/v2/health/live", self.live)
        add("GET", "/v2/health/ready", self.ready)
        add("GET", "/v2", self.forward)
        add("GET", "/v2/models/stats", self.forward)
        for model in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            add("GET", f"{model}/ready", self.model_ready)
            add("POST", f"{model}/infer", self.infer)
            for tail in ("", "/config", "/stats"):
                add("GET", model + tail, self.forward)
        add("*", "/{tail:.*}", self.not_served)
        return app

    async def start(self, host: str, port: int) -> None:
        self.runner = web.AppRunner(self.app(), handle_signals=False, access_log=None, auto_decompress=False,
                                    handler_cancellation=True, shutdown_timeout=DRAIN_S)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port).start()

    async def stop(self) -> None:
        """Stop listening, close idle keep-alive connections at once, give in-flight requests DRAIN_S."""
        if self.runner is not None:
            await self.runner.cleanup()

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def ready(self, request: web.Request) -> web.Response:
        if self.state.ready():
            return web.Response(status=200)
        return error(503, self.state.not_ready_reason())

    async def model_ready(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        if model not in self.limits:
            return error(404, self._unknown(model))
        state = self.state.models[model]
        if state.answering and self.state.refusal(model) is None:
            return web.Response(status=200)
        return error(503, f"{model}: {self.state.refusal(model) or state.reason}")

    def _unknown(self, model: str) -> str:
        return f"unknown model {model!r}; gsam serve serves {', '.join(self.limits)}"

    async def not_served(self, request: web.Request) -> web.Response:
        for prefix, api in ADMIN_PATHS.items():
            if request.path == prefix or request.path.startswith(prefix + "/"):
                return error(403, f"the {api} API is not served by gsam serve (the models to serve are chosen when "
                                  "it starts)", close=True)
        return error(404, f"{request.method} {request.path} is not served by gsam serve", close=True)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info.get("model")
        if model is not None and model not in self.limits:
            return error(404, self._unknown(model))
        refusal = self.state.refusal(None)
        if refusal:
            return error(503, refusal, retry=True)
        return await self._forward(request, None, None, {})

    async def infer(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        if model not in self.limits:
            return error(404, self._unknown(model), close=True)
        refusal = self.state.refusal(model)
        if refusal:
            return error(503, refusal, close=True, retry=True)
        self.state.in_flight += 1
        try:
            try:
                body, headers = await read_infer(request, self.limits[model])
            except Refused as exc:
                return error(exc.status, exc.message, close=True)
            return await self._forward(request, model, body, headers)
        finally:
            self.state.in_flight -= 1

    async def _forward(self, request: web.Request, model: str | None, body: bytes | None,
                       headers: dict[str, str]) -> web.StreamResponse:
        url = f"http://127.0.0.1:{self.state.http_port}{request.path}"
        if "Accept-Encoding" in request.headers:
            headers["Accept-Encoding"] = request.headers["Accept-Encoding"]
        headers[ADMIN_HEADER] = self.state.key
        response = None
        try:
            async with self.session.request(request.method, url, data=body, headers=headers) as upstream:
                if upstream.status >= 500:
                    return await self._server_error(model, upstream)
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
            self.state.failed()
            return error(503, f"tritonserver did not answer ({type(exc).__name__}); retry", retry=True)
        if model is not None and upstream.status < 400:
            self.state.answered(model)
        return response

    async def _server_error(self, model: str | None, upstream: aiohttp.ClientResponse) -> web.Response:
        """A 5xx from Triton: the supervisor probes at once; a dead stub is answered 503, to be retried."""
        text = (await upstream.content.read(64 << 10)).decode(errors="replace")
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            message = text or upstream.reason or "internal error"
        if STUB_DIED in message:
            self.state.failed(model, message)
            return error(503, f"{message} (gsam serve is reloading the model; retry)", retry=True)
        self.state.failed()
        return error(upstream.status, message)
