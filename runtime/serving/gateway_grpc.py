"""The public gRPC port of `gsam serve`: Triton's GRPCInferenceService, forwarded method by method.

Health (ServerLive, ServerReady, ModelReady) is answered here from the supervisor's state; metadata,
config and statistics requests are parsed (a served model, a served version) and forwarded as raw bytes;
ModelInfer is parsed and checked (limits.py), admitted under the same caps as HTTP (--max-concurrency,
--max-body-mib: RESOURCE_EXHAUSTED past them), and its original bytes forwarded, with the serving key,
which unlocks inference, health and metadata only. The admin methods (repository, shared memory, trace,
logging) answer PERMISSION_DENIED; anything else, streaming included, UNIMPLEMENTED. Messages are refused
above the served models' largest legal request, and compressed messages are not inflated: the server
passes them up undecompressed, they do not parse, and they are refused. At most --max-connections
connections (gRPC core's own cap), each with --header-timeout for its HTTP/2 handshake. A browser cannot
speak gRPC (no trailers), so the Origin and Host checks of the HTTP port do not apply here.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc import aio

from .admission import Admission
from .capacity import ServeLimits
from .limits import ModelLimits, Refused
from .server import GRPC_KEY
from .state import STUB_DIED, ServingState

SERVICE = "inference.GRPCInferenceService"
FORWARDED = ("ServerMetadata", "ModelMetadata", "ModelConfig", "ModelStatistics")
# the request message of each forwarded method that names a model (ServerMetadata names none)
NAMED = {"ModelMetadata": "ModelMetadataRequest", "ModelConfig": "ModelConfigRequest",
         "ModelStatistics": "ModelStatisticsRequest"}
ADMIN = ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "SystemSharedMemoryStatus",
         "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
         "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting", "LogSettings")
UNBOUNDED = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


def _pb():
    from tritonclient.grpc import service_pb2

    return service_pb2


class GrpcGateway:
    def __init__(self, limits: dict[str, ModelLimits], versions: dict[str, frozenset[str]], state: ServingState, *,
                 admission: Admission, caps: ServeLimits) -> None:
        self.limits, self.versions, self.state = limits, versions, state
        self.admission, self.caps = admission, caps
        self.server: aio.Server | None = None
        self.channel: aio.Channel | None = None
        self._channel_port: int | None = None

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        pb = _pb()

        def typed(function, request, response):
            return grpc.unary_unary_rpc_method_handler(function, request_deserializer=request.FromString,
                                                       response_serializer=response.SerializeToString)

        handlers = {
            "ServerLive": typed(self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": typed(self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": typed(self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self.model_infer),
        }
        handlers.update({name: grpc.unary_unary_rpc_method_handler(self._forwarder(name)) for name in FORWARDED})
        handlers.update({name: grpc.unary_unary_rpc_method_handler(self._refuser(name)) for name in ADMIN})
        return handlers

    async def start(self, host: str, port: int, max_connections: int) -> None:
        largest = min(2 ** 31 - 1, max(limits.body_cap for limits in self.limits.values()))
        handshake_ms = int(self.caps.header_timeout * 1000)
        self.server = aio.server(options=[("grpc.max_receive_message_length", largest),
                                          ("grpc.max_send_message_length", -1),
                                          ("grpc.per_message_decompression", 0), ("grpc.so_reuseport", 0),
                                          ("grpc.max_allowed_incoming_connections", max_connections),
                                          ("grpc.server_handshake_timeout_ms", handshake_ms),
                                          ("grpc.max_concurrent_streams", self.caps.max_concurrency)])
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, self._handlers())])
        if not self.server.add_insecure_port(f"{host}:{port}"):
            raise OSError(f"cannot listen on {host}:{port}")
        await self.server.start()

    async def stop(self, deadline: float) -> None:
        """New calls are refused at once; calls in flight get until `deadline` (loop time), then are cancelled."""
        if self.server is not None:
            grace = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.wait_for(self.server.stop(grace), grace + 1.0)
            except asyncio.TimeoutError:
                pass
        await self.close_channel()

    async def close_channel(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel, self._channel_port = None, None

    async def _upstream(self, context) -> aio.Channel:
        refusal = self.state.refusal(None)
        if refusal:
            await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        if self._channel_port != self.state.grpc_port:  # tritonserver was restarted on new ports
            old = self.channel  # swapped without an await in between: concurrent calls see one channel
            self.channel = aio.insecure_channel(f"127.0.0.1:{self.state.grpc_port}", options=UNBOUNDED)
            self._channel_port = self.state.grpc_port
            if old is not None:
                asyncio.get_running_loop().create_task(old.close(grace=5.0))
        return self.channel

    async def _call(self, method: str, request: bytes, context, model: str | None = None) -> bytes:
        channel = await self._upstream(context)
        call = channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            answer = await call(request, timeout=context.time_remaining(), metadata=((GRPC_KEY, self.state.key),))
        except aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if STUB_DIED in details:
                self.state.failed(model, details)
                code, details = grpc.StatusCode.UNAVAILABLE, f"{details} (gsam serve is reloading the model; retry)"
            elif code == grpc.StatusCode.NOT_FOUND and model is not None:  # a served model Triton does not know
                self.state.failed(model, f"tritonserver does not know it: {details}")
                code, details = grpc.StatusCode.UNAVAILABLE, f"{details} (gsam serve is reloading {model}; retry)"
            elif code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN):
                self.state.failed()
            await context.abort(code, details)
        if model is not None and method == "ModelInfer":
            self.state.answered(model)
        return answer

    async def _served(self, name: str, version: str, context) -> None:
        """A served model and one of its served versions (empty: Triton's choice), else NOT_FOUND."""
        if name not in self.limits:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {name[:60]!r}; gsam serve serves "
                                                           f"{', '.join(self.limits)}")
        if version and version not in self.versions[name]:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"version {version[:20]!r} of {name} is not served; it "
                                                           f"serves {', '.join(sorted(self.versions[name]))}")

    def _forwarder(self, method: str):
        async def forward(request: bytes, context) -> bytes:
            model = None
            if method in NAMED:
                from google.protobuf.message import DecodeError

                try:
                    parsed = getattr(_pb(), NAMED[method]).FromString(request)
                except DecodeError:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a {NAMED[method]}")
                if parsed.name or method != "ModelStatistics":  # statistics of every model: no name
                    await self._served(parsed.name, parsed.version, context)
                    model = parsed.name
            return await self._call(method, request, context, model)
        return forward

    def _refuser(self, method: str):
        async def refuse(request: bytes, context) -> bytes:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method} is not served by gsam serve (the models to serve are chosen when it starts)")
        return refuse

    async def server_live(self, request, context):
        return _pb().ServerLiveResponse(live=True)

    async def server_ready(self, request, context):
        return _pb().ServerReadyResponse(ready=self.state.ready())

    async def model_ready(self, request, context):
        state = self.state.models.get(request.name)
        ready = state is not None and state.answering and self.state.refusal(request.name) is None
        return _pb().ModelReadyResponse(ready=ready)

    async def model_infer(self, request: bytes, context) -> bytes:
        from google.protobuf.message import DecodeError

        try:
            parsed = _pb().ModelInferRequest.FromString(request)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a ModelInferRequest (compressed messages are "
                                                                  "not accepted; send them uncompressed)")
        await self._served(parsed.model_name, parsed.model_version, context)
        limits = self.limits[parsed.model_name]
        refusal = self.state.refusal(parsed.model_name)
        if refusal:
            await context.abort(grpc.StatusCode.UNAVAILABLE, refusal)
        try:
            limits.check_grpc_request(parsed)
        except Refused as exc:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.status == 413 else grpc.StatusCode.INVALID_ARGUMENT
            await context.abort(code, exc.message)
        del parsed
        ticket = self.admission.enter(len(request))
        if ticket is None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"gsam serve is at --max-concurrency {self.admission.max_requests} or --max-body-mib "
                                f"{self.caps.body_mib}; retry")
        try:
            return await self._call("ModelInfer", request, context, limits.name)
        finally:
            ticket.release()
