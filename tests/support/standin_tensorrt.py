"""A stand-in `tensorrt` module for testing gsam's control flow around TensorRT without a GPU.

It implements only the calls gsam makes, with the real names and argument names (that they exist with
these signatures in every supported release is tests/test_tensorrt_types.py's job, against the real
bindings), and records what it was asked. Knobs on the module decide its answers: which timing caches
it refuses, whether a build succeeds, which calls of the execution context return False, which engine the
runtime deserializes. Builder configs start with BuilderFlag.TF32 set, as TensorRT's do ("Enabled by default",
the flag's docstring in the 10.x and 11.x bindings).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Enum:
    name: str
    value: int = 0

    def __int__(self) -> int:
        return self.value


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> memoryview:
        return memoryview(self.data or b"fresh timing cache")


class Config:
    def __init__(self, module: types.ModuleType) -> None:
        self.module, self.profiles, self.attached = module, [], None
        self.flags = {module.BuilderFlag.TF32}

    def set_flag(self, flag: Enum) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: Enum) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: Enum) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: Enum, pool_size: int) -> None:
        self.workspace = pool_size

    def add_optimization_profile(self, profile: Profile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache:
        return TimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
        if cache.data in self.module.refused_caches:
            return False
        self.attached = cache
        return True


@dataclass
class Profile:
    shapes: dict = field(default_factory=dict)

    def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:
        self.shapes[input] = (min, opt, max)


class Builder:
    """Builds what `module.engine_bytes` holds (None: the build fails, as TensorRT returns None)."""

    module: types.ModuleType  # set by new_module

    def __init__(self, logger: object) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> types.SimpleNamespace:
        return types.SimpleNamespace(flags=flags)

    def create_builder_config(self) -> Config:
        return Config(self.module)

    def create_optimization_profile(self) -> Profile:
        return Profile()

    def build_serialized_network(self, network: object, config: Config) -> memoryview | None:
        self.module.builds.append(config)
        return None if self.module.engine_bytes is None else memoryview(self.module.engine_bytes)


class Logger:
    WARNING = Enum("WARNING")

    def __init__(self, min_severity: Enum = WARNING) -> None:
        self.min_severity = min_severity


class OnnxParser:
    def __init__(self, network: object, logger: object) -> None:
        self.num_errors = 0

    def parse_from_file(self, model: str) -> bool:
        return True


class Engine:
    """Its execution contexts are `context_class(**context_options)`, one per create_execution_context call."""

    def __init__(self, tensors: dict[str, tuple[Enum, Enum]], context_class: type | None = None,
                 **context_options: object) -> None:
        self.tensors = tensors  # name -> (TensorIOMode, DataType)
        self.num_io_tensors = len(tensors)
        self.context_class, self.context_options, self.contexts = context_class or Context, context_options, []

    def create_execution_context(self, strategy: Enum) -> Context:
        self.contexts.append(self.context_class(**self.context_options))
        return self.contexts[-1]

    def get_tensor_name(self, index: int) -> str:
        return list(self.tensors)[index]

    def get_tensor_mode(self, name: str) -> Enum:
        return self.tensors[name][0]

    def get_tensor_dtype(self, name: str) -> Enum:
        return self.tensors[name][1]


class Context:
    """Answers True unless its call's name is in `refuse`; output shapes follow the input's H and W."""

    def __init__(self, refuse: set[str] = frozenset(), classes: int = 3) -> None:
        self.refuse, self.classes, self.calls, self.shape = set(refuse), classes, [], (1, 3, 1, 1)

    def _answer(self, call: str, *args: object) -> bool:
        self.calls.append((call, *args))
        return call not in self.refuse

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        return self._answer("set_optimization_profile_async", profile_index)

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        self.shape = tuple(shape)
        return self._answer("set_input_shape", name, self.shape)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        return self._answer("set_tensor_address", name)

    def get_tensor_shape(self, name: str) -> tuple:
        n, _, h, w = self.shape
        return (n, self.classes, h, w) if name == "logits" else (n, h, w)

    def execute_async_v3(self, stream_handle: int) -> bool:
        return self._answer("execute_async_v3", stream_handle)


class Runtime:
    """Deserializes to `module.engine`; records each call in `module.calls` (with the CUDA device then current
    as `module.current_device` reports it, for the order of set_device and deserialization)."""

    module: types.ModuleType  # set by new_module

    def __init__(self, logger: object) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> Engine | None:
        self.module.calls.append(("deserialize_cuda_engine", self.module.current_device()))
        return self.module.engine


def new_module() -> types.ModuleType:
    """A fresh stand-in: refuses no cache, builds b"serialized engine", records its builds."""
    module = types.ModuleType("tensorrt")
    builder = type("Builder", (Builder,), {"module": module})
    runtime = type("Runtime", (Runtime,), {"module": module})
    module.__dict__.update(
        __version__="10.13.3.9", Builder=builder, Runtime=runtime, OnnxParser=OnnxParser, Logger=Logger,
        ILogger=Logger, BuilderFlag=types.SimpleNamespace(TF32=Enum("TF32", 1)),
        ExecutionContextAllocationStrategy=types.SimpleNamespace(ON_PROFILE_CHANGE=Enum("ON_PROFILE_CHANGE", 1)),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=Enum("STRONGLY_TYPED", 1)),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=Enum("WORKSPACE")),
        TensorIOMode=types.SimpleNamespace(INPUT=Enum("INPUT", 1), OUTPUT=Enum("OUTPUT", 2)),
        DataType=types.SimpleNamespace(**{n: Enum(n, i) for i, n in enumerate(
            ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64"])}),
        refused_caches=set(), engine_bytes=b"serialized engine", builds=[], engine=None, calls=[],
        current_device=lambda: None)
    return module
