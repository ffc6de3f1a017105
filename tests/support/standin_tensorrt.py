"""A stand-in `tensorrt` module for testing gsam's control flow around TensorRT without a GPU.

It implements only the calls gsam makes, with the real names and argument names (that they exist with
these signatures in every supported release is tests/test_tensorrt_types.py's job, against the real
bindings), and records what it was asked. Knobs on the module decide its answers: which timing caches
it refuses, whether a build succeeds, which calls of the execution context return False.
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
    def __init__(self, tensors: dict[str, tuple[Enum, Enum]]) -> None:
        self.tensors = tensors  # name -> (TensorIOMode, DataType)
        self.num_io_tensors = len(tensors)

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


def new_module() -> types.ModuleType:
    """A fresh stand-in: refuses no cache, builds b"serialized engine", records its builds."""
    module = types.ModuleType("tensorrt")
    builder = type("Builder", (Builder,), {"module": module})
    module.__dict__.update(
        __version__="10.13.3.9", Builder=builder, OnnxParser=OnnxParser, Logger=Logger, ILogger=Logger,
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=Enum("STRONGLY_TYPED", 1)),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=Enum("WORKSPACE")),
        TensorIOMode=types.SimpleNamespace(INPUT=Enum("INPUT", 1), OUTPUT=Enum("OUTPUT", 2)),
        DataType=types.SimpleNamespace(**{n: Enum(n, i) for i, n in enumerate(
            ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64"])}),
        refused_caches=set(), engine_bytes=b"serialized engine", builds=[])
    return module
