"""The TensorRT code type-checked (mypy) against the real Python API of every supported release.

The stubs come from each release's PyPI bindings wheel (tests/support/tensorrt_stubs.py makes and caches
them outside the repository; offline it falls back to ../shared/tensorrt_api/pyi or $GSAM_TENSORRT_API).
Without stubs or mypy the tests skip with the reason. The checked files are found, not listed: every module
of the package and the scripts beside it that imports tensorrt (tensorrt_stubs.tensorrt_modules). The checks:
the modules pass on every release; every TensorRT object in them resolves to its class (not Any), and stays
so when the right side of its assignment is an error (each is declared with its class, so one misuse does
not make it Any and hide the next); a device address or stream must be an int (the check's plugin), so a
tensor passed for a pointer fails; and misuses planted into a copy of each module (a member removed in 11, a
wrong argument name, a tensor for an address, a second misuse after an attribute error) fail exactly where
and where they should.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support import tensorrt_stubs as stubs

REPO = Path(__file__).resolve().parents[1]
# Found through the gsam/ links, so mypy names them gsam.export.tensorrt, gsam.runtime.backends...
MODULES = {path.name: path for path in stubs.tensorrt_modules()}
TENSORRT_11 = {v for v in stubs.SUPPORTED if v.startswith("11.")}


def checked(paths: list[Path], version: str) -> str:
    try:
        passed, output = stubs.type_check(paths, version)
    except stubs.Unavailable as exc:
        pytest.skip(str(exc))
    return ("passed\n" if passed else "failed\n") + output


def test_every_module_that_imports_tensorrt_is_checked(tmp_path):
    """The list is discovered: a new module that imports tensorrt (anywhere in it) joins the check."""
    assert {"tensorrt.py", "tensorrt_engine.py", "gpu_stack.py"} <= set(MODULES)
    assert len(MODULES) == len(stubs.tensorrt_modules())  # one file name per module: the plants address them so
    package = tmp_path / "gsam" / "sub"
    package.mkdir(parents=True)
    (package / "new.py").write_text("def f() -> None:\n    from tensorrt import Builder  # noqa\n")
    (package / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tensorrt.x\n")
    (package / "words.py").write_text('"""mentions import tensorrt in a docstring only"""\nimport tensorrt_like\n')
    assert [p.name for p in stubs.tensorrt_modules(tmp_path, ("gsam",))] == ["new.py", "typed.py"]


@pytest.mark.parametrize("version", stubs.SUPPORTED)
def test_tensorrt_code_type_checks_against_each_release(version):
    output = checked(list(MODULES.values()), version)
    assert output.startswith("passed"), output


# (module, the text it must hold once, what replaces it, the releases on which the plant must fail)
PLANTS = [
    ("tensorrt.py", "        config.add_optimization_profile(shapes)\n",
     "        config.add_optimization_profile(shapes)\n        config.set_flag(trt.BuilderFlag.FP16)  # planted\n",
     TENSORRT_11),
    ("tensorrt.py", "    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):\n",
     "    if cache is not None and config.set_timing_cache(cache, ignore_mismatched=False):  # planted\n",
     set(stubs.SUPPORTED)),
    ("tensorrt_engine.py", "        self.inputs, self.outputs = io_dtypes(engine)\n",
     "        self.inputs, self.outputs = io_dtypes(engine)\n"
     "        self.scratch = engine.device_memory_size  # planted\n",
     TENSORRT_11),
    ("tensorrt_engine.py", '        if not context.set_input_shape("image", shape):\n',
     '        if not context.set_input_shape("image", dims=shape):  # planted\n', set(stubs.SUPPORTED)),
    # a torch tensor where TensorRT takes a device address (torch is Any to the check; the plugin refuses Any)
    ("tensorrt_engine.py", '        if not context.set_tensor_address("image", device_address(image)):\n',
     '        if not context.set_tensor_address("image", image):  # planted\n', set(stubs.SUPPORTED)),
    # an attribute error, then a second misuse of what it returned: the declared class keeps the second checked
    ("tensorrt_engine.py",
     "        engine: trt.ICudaEngine | None = self.runtime.deserialize_cuda_engine(path.read_bytes())\n",
     "        engine: trt.ICudaEngine | None = self.runtime.deserialize_engine(path.read_bytes())  # planted\n",
     set(stubs.SUPPORTED)),
    ("tensorrt_engine.py", '        self._adopt(engine, sidecar, torch.device("cuda", device))\n',
     '        engine.create_execution_context(allocation=None)  # planted\n'
     '        self._adopt(engine, sidecar, torch.device("cuda", device))\n', set(stubs.SUPPORTED)),
]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict[str, list[tuple[int, set[str]]]]:
    """Copies of both modules with the plants, in a package of their own; file -> [(line, fails on)]."""
    package = tmp_path_factory.mktemp("planted") / "planted_gsam"
    package.mkdir()
    (package / "__init__.py").write_text("")
    lines: dict[str, list[tuple[int, set[str]]]] = {}
    for name, source in MODULES.items():
        text = source.read_text()
        for module, anchor, replacement, fails_on in PLANTS:
            if module == name:
                assert text.count(anchor) == 1, f"{name} no longer holds {anchor!r}: update PLANTS"
                text = text.replace(anchor, replacement)
        (package / name).write_text(text)
        fails_on = {line: p[3] for p in PLANTS for line in p[2].splitlines() if line.endswith("# planted")}
        lines[str(package / name)] = [(i, fails_on[line]) for i, line in enumerate(text.splitlines(), 1)
                                      if line.endswith("# planted")]
    return lines


@pytest.mark.parametrize("version", stubs.SUPPORTED)
def test_a_planted_misuse_fails_the_check_exactly_where_it_should(planted, version):
    output = checked([Path(p) for p in planted], version)
    # By file name: mypy's cache may name an earlier, identical copy's folder.
    errors = {(Path(path).name, int(line)) for path, line in re.findall(r"^(/\S+?):(\d+): error:", output, re.M)}
    expected = {(Path(path).name, line) for path, found in planted.items() for line, fails_on in found
                if version in fails_on}
    assert output.startswith("failed") and errors == expected, output
    if version in TENSORRT_11:
        assert '"type[BuilderFlag]" has no attribute "FP16"' in output
        assert '"ICudaEngine" has no attribute "device_memory_size"' in output
    assert 'Unexpected keyword argument "ignore_mismatched"' in output
    assert '"Runtime" has no attribute "deserialize_engine"' in output
    assert re.search(r'Unexpected keyword argument "allocation" for (overloaded function )?"create_execution_context"',
                     output)
    assert 'TensorRT takes "memory" as an int' in output


# Names in the two modules that hold TensorRT objects, and their classes.
TENSORRT_LOCALS = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
                   "config": "IBuilderConfig", "shapes": "IOptimizationProfile", "cache": "ITimingCache",
                   "logger": ("Logger", "ILogger"), "engine": "ICudaEngine", "context": "IExecutionContext"}


def test_every_tensorrt_object_resolves_to_its_class(tmp_path):
    """reveal_locals() before the last statement of every function: each TensorRT-holding local is its
    class in the stubs, never Any."""
    import ast

    package = tmp_path / "revealed"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in MODULES.items():
        lines = source.read_text().splitlines()
        last = sorted({node.body[-1].lineno for node in ast.walk(ast.parse("\n".join(lines)))
                       if isinstance(node, ast.FunctionDef)}, reverse=True)
        for lineno in last:
            indent = re.match(r"\s*", lines[lineno - 1]).group()
            lines.insert(lineno - 1, f"{indent}reveal_locals()")
        (package / name).write_text("\n".join(lines) + "\n")
    output = checked(sorted(package.glob("tensorrt*.py")), stubs.SUPPORTED[-1])
    revealed = re.findall(r"note:     (\w+): (.+)$", output, re.M)
    seen = {local for local, _ in revealed if local in TENSORRT_LOCALS}
    assert seen == set(TENSORRT_LOCALS), output
    for local, type_name in revealed:
        if local in TENSORRT_LOCALS:
            classes = TENSORRT_LOCALS[local]
            assert type_name.removesuffix(" | None") in {f"tensorrt.{c}" for c in
                                                         ((classes,) if isinstance(classes, str) else classes)}, \
                f"{local} is {type_name}"


def _revealing(source: str, any_values: bool) -> str:
    """The module with reveal_locals() before the last statement of every function and, per class, a function
    revealing each attribute its methods assign; with `any_values`, the value of every assignment inside a
    function cast to Any, as an error on its right side would leave it. Both variants have the same lines."""
    tree = ast.parse(source)
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in functions:
        if any_values:
            for node in ast.walk(function):
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                    node.value = ast.Call(ast.Attribute(ast.Name("_typing", ast.Load()), "cast", ast.Load()),
                                          [ast.Attribute(ast.Name("_typing", ast.Load()), "Any", ast.Load()),
                                           node.value], [])
        function.body.insert(len(function.body) - 1, ast.Expr(ast.Call(ast.Name("reveal_locals", ast.Load()), [], [])))
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        targets = [t for n in ast.walk(cls) if isinstance(n, (ast.Assign, ast.AnnAssign))
                   for target in (n.targets if isinstance(n, ast.Assign) else [n.target]) for t in ast.walk(target)]
        attributes = sorted({t.attr for t in targets
                             if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"})
        if attributes:
            reveal = "\n".join(f"    reveal_type(obj.{a})" for a in attributes)
            tree.body.append(ast.parse(f"def _reveal_{cls.name}(obj: {cls.name}) -> None:\n{reveal}\n").body[0])
    future = next(i for i, n in enumerate(tree.body) if isinstance(n, ast.ImportFrom) and n.module == "__future__")
    tree.body.insert(future + 1, ast.parse("import typing as _typing").body[0])
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _revealed(output: str) -> dict[tuple[str, int, str], str]:
    """(file, line, local name or '' for reveal_type) -> the type mypy revealed."""
    found = {}
    for path, line, name, typ in re.findall(r"^(/\S+?):(\d+): note:     (\w+): (.+)$", output, re.M):
        found[(Path(path).name, int(line), name)] = typ
    for path, line, typ in re.findall(r'^(/\S+?):(\d+): note: Revealed type is "(.+)"$', output, re.M):
        found[(Path(path).name, int(line), "")] = typ
    return found


def test_a_tensorrt_object_stays_its_class_when_its_right_side_is_an_error(tmp_path):
    """Every local and attribute that holds a TensorRT object is declared with its class: with every assigned
    value made Any (what mypy makes of an attribute error), each still has its class, so a second misuse of it
    is still checked. Without the declaration it would turn Any and hide every later misuse."""
    variants = {}
    for label, any_values in (("clean", False), ("any", True)):
        package = tmp_path / f"revealed_{label}"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for name, source in MODULES.items():
            (package / name).write_text(_revealing(source.read_text(), any_values))
        variants[label] = _revealed(checked(sorted(package.glob("*.py")), stubs.SUPPORTED[-1]))
    held = {key: typ for key, typ in variants["clean"].items() if "tensorrt." in typ}
    assert len(held) >= 20, variants["clean"]
    def classes(typ: str) -> set[str]:
        return set(re.findall(r"tensorrt\.\w+", typ))

    lost = {key: (typ, variants["any"].get(key)) for key, typ in held.items()
            if not classes(typ) <= classes(variants["any"].get(key, ""))}
    assert lost == {}, "declare these with their TensorRT class: " + repr(lost)
