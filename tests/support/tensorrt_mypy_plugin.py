"""A mypy plugin for the TensorRT type check: a device address or stream handle must be an int.

TensorRT's bindings take addresses and streams as integers (`set_tensor_address(name, memory: int)`,
`execute_async_v3(stream_handle: int)`), and pybind11 converts anything with `__index__` to one, so a
one-element torch tensor passed by mistake becomes its *value* used as a pointer. The stubs cannot catch it:
torch is not read by the check (its objects are Any), and a tensor has `__int__` anyway. This plugin refuses,
in every call to a tensorrt method, an argument for such a parameter whose type is not int: Any included, so
the code must say where its int comes from (e.g. `int(tensor.data_ptr())`).
"""

from __future__ import annotations

from typing import Callable

from mypy.plugin import MethodContext, Plugin
from mypy.types import Instance, LiteralType, Type, get_proper_type

# Parameter names that carry a device address, a CUDA stream or a CUDA event in TensorRT 10.x and 11.x.
POINTER_PARAMETERS = frozenset({"memory", "stream_handle", "event"})


def _is_int(typ: Type) -> bool:
    proper = get_proper_type(typ)
    if isinstance(proper, LiteralType):
        proper = proper.fallback
    return isinstance(proper, Instance) and proper.type.fullname == "builtins.int"


def _check_pointers(ctx: MethodContext) -> Type:
    for names, types in zip(ctx.callee_arg_names, ctx.arg_types):
        if names in POINTER_PARAMETERS:
            for typ in types:
                if not _is_int(typ):
                    ctx.api.fail(f'TensorRT takes "{names}" as an int (a device address or CUDA handle); got '
                                 f'"{typ}": pass an int, e.g. int(tensor.data_ptr())', ctx.context)
    return ctx.default_return_type


class TensorRTPointers(Plugin):
    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _check_pointers if fullname.startswith("tensorrt.") else None


def plugin(version: str) -> type[Plugin]:
    return TensorRTPointers
