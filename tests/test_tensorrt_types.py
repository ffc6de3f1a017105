"""The TensorRT code type-checked (mypy) against the real Python API of every supported release.

The stubs come from each release's PyPI bindings wheel (tests/support/tensorrt_stubs.py makes and caches
them outside the repository; offline it falls back to ../shared/tensorrt_api/pyi or $GSAM_TENSORRT_API).
Without stubs or mypy the tests skip with the reason. Three checks: the modules pass on every release;
every TensorRT object in them resolves to its class (not Any); and a misuse planted into a copy of each
module (a member removed in 11, a wrong argument name) fails exactly where and where it should.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import tensorrt_stubs as stubs

REPO = Path(__file__).resolve().parents[1]
# Checked through the gsam/ links, so mypy names them gsam.export.tensorrt and gsam.runtime.backends...
MODULES = {"tensorrt.py": REPO / "gsam" / "export" / "tensorrt.py",
           "tensorrt_engine.py": REPO / "gsam" / "runtime" / "backends" / "tensorrt_engine.py"}
TENSORRT_11 = {v for v in stubs.SUPPORTED if v.startswith("11.")}


def checked(paths: list[Path], version: str) -> str:
    try:
        passed, output = stubs.type_check(paths, version)
    except stubs.Unavailable as exc:
        pytest.skip(str(exc))
    return ("passed\n" if passed else "failed\n") + output


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
    ("tensorrt_engine.py", "        self.engine = engine\n",
     "        self.engine = engine\n        self.scratch = engine.device_memory_size  # planted\n", TENSORRT_11),
    ("tensorrt_engine.py", '        if not context.set_input_shape("image", shape):\n',
     '        if not context.set_input_shape("image", dims=shape):  # planted\n', set(stubs.SUPPORTED)),
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
            assert type_name in {f"tensorrt.{c}" for c in ((classes,) if isinstance(classes, str) else classes)}, \
                f"{local} is {type_name}"
