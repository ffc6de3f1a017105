"""What the gateway and the supervisor share: whether each model answers, and where tritonserver listens.

The supervisor writes it (probes, reloads, restarts); the gateways read it to answer health requests
and to refuse inference early (503 with Retry-After) while a model is reloaded or the server restarted.
Readiness comes from the supervisor's probes only (a client's answer cannot tell an impostor from the
model); a failure a client's request reveals turns it off at once. The state holds the serving key,
never the admin key. Both run on one asyncio loop, so plain attributes suffice.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

RETRY_AFTER_S = 2
STUB_DIED = "Stub process"  # how Triton 2.51's errors begin once a python model's stub process died


@dataclass
class ModelState:
    answering: bool = False  # the last real request or probe got an answer from the model
    reloading: bool = False
    reason: str = "not loaded yet"
    last_answer: float = 0.0  # monotonic time of the last success, probe or client request


@dataclass
class ServingState:
    models: dict[str, ModelState]
    http_port: int | None = None  # tritonserver's internal ports; None while it is down
    grpc_port: int | None = None
    key: str = ""  # the serving key: inference, health, metadata, config, statistics (new at each start)
    draining: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def for_models(cls, names: list[str]) -> "ServingState":
        return cls({name: ModelState() for name in names})

    @property
    def server_up(self) -> bool:
        return self.http_port is not None

    def ready(self) -> bool:
        return self.server_up and not self.draining and all(m.answering for m in self.models.values())

    def not_ready_reason(self) -> str:
        if self.draining:
            return "gsam serve is shutting down"
        if not self.server_up:
            return "tritonserver is starting or restarting"
        return "; ".join(f"{name}: {m.reason}" for name, m in self.models.items() if not m.answering) or "ready"

    def refusal(self, model: str | None) -> str | None:
        """Why a request for `model` cannot be forwarded now (None: it can)."""
        if self.draining:
            return "gsam serve is shutting down"
        if not self.server_up:
            return "tritonserver is starting or restarting; retry"
        if model is not None and self.models[model].reloading:
            return f"{model} is being reloaded ({self.models[model].reason}); retry"
        return None

    def answered(self, model: str) -> None:
        """A client's request got an answer (readiness still waits for the supervisor's probe)."""
        self.models[model].last_answer = time.monotonic()

    def failed(self, model: str | None = None, message: str = "") -> None:
        """A server-side failure seen on a client's request: the supervisor probes at once. With a model and a
        message (its stub died, as Triton said), the model counts as not answering from now on."""
        if model in self.models and message:
            self.models[model].answering, self.models[model].reason = False, message[:300]
        self.wake.set()

    def up(self, http_port: int, grpc_port: int, key: str) -> None:
        self.http_port, self.grpc_port, self.key = http_port, grpc_port, key

    def down(self, reason: str) -> None:
        self.http_port = self.grpc_port = None
        for state in self.models.values():
            state.answering, state.reason = False, reason
