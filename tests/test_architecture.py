"""The house rules that keep the stages apart: layers, no import cycles, imports tools can follow, a light CLI."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# The layers, lowest first. A module may import its own layer and the ones below, never one above, at any
# depth (inside functions too): data comes before the model, the model before training, and so on down the
# flow to the commands. gsam.pixels sits at the bottom because the Triton python models run it without gsam.
LAYERS = [
    ("foundation", ("gsam", "gsam.errors", "gsam.io", "gsam.device", "gsam.precisions", "gsam.amp", "gsam.pixels",
                    "gsam.machine", "gsam.extras", "gsam.artifacts", "gsam.child")),
    ("data", ("gsam.data",)),
    ("model", ("gsam.model",)),
    ("train", ("gsam.train",)),
    ("export", ("gsam.export",)),
    ("runtime", ("gsam.runtime",)),
    ("deploy", ("gsam.deploy", "gsam.bench", "gsam.tune", "gsam.demo", "gsam.lineage", "gsam.doctor",
                "gsam.gpu_stack")),
    ("cli", ("gsam.commands", "gsam.cli", "gsam.__main__")),
]
# Run inside Triton's python backend, not imported by gsam: they import gsam.pixels as gsam_pixels.
TRITON_SIDE = {"gsam.runtime.triton_python.python_model", "gsam.runtime.triton_python.compute"}
# The package's own __init__ is the public facade (`gsam.load`): above every layer, importing them only
# inside its functions, so `import gsam` stays light and the layers below may read its __version__.
FACADE = "gsam"


def _package_modules() -> dict[str, Path]:
    """Every module of the gsam package by dotted name; gsam/export and gsam/runtime are links to the
    top-level folders, so a module's path under gsam/ is its import path."""
    modules = {}
    for folder, _, files in os.walk(ROOT / "gsam", followlinks=True):
        for file in files:
            if file.endswith(".py"):
                parts = list((Path(folder) / file).relative_to(ROOT).with_suffix("").parts)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                modules[".".join(parts)] = Path(folder) / file
    return modules


def test_every_source_folder_is_a_package_setuptools_finds():
    from setuptools import find_packages

    found = {name for name, path in _package_modules().items() if path.name == "__init__.py"}
    folders = {".".join(Path(folder).relative_to(ROOT).parts) for folder, _, files in os.walk(ROOT / "gsam", followlinks=True)
               if any(f.endswith(".py") for f in files)}
    assert folders == found
    assert set(find_packages(str(ROOT), include=["gsam*"])) == found


def test_the_top_level_folders_are_gsam_export_and_gsam_runtime():
    assert (ROOT / "gsam" / "export").resolve() == ROOT / "export"
    assert (ROOT / "gsam" / "runtime").resolve() == ROOT / "runtime"


def _imported_names(name: str, path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute module name, relative level) of every import in the module, inside functions too."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (parent, node.module or "") if p)
            found += [(node.lineno, f"{module}.{alias.name}", node.level) for alias in node.names]
            found.append((node.lineno, module, node.level))
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports anywhere in its body."""
    return {target for _, target, _ in _imported_names(name, path) if target in known and target != name}


def test_every_relative_import_names_a_file_on_disk():
    """Type checkers and editors resolve a relative import from the file's real location; one that crosses
    into another top-level folder must be written as an absolute gsam import."""
    offenders = []
    for name, path in _package_modules().items():
        real = path.resolve().parent
        for line, target, level in _imported_names(name, path):
            if not level:
                continue
            folder = real.parents[level - 2] if level > 1 else real
            tail = target.split(".")[len(name.split(".")) - level + (path.name == "__init__.py"):]
            candidate = folder.joinpath(*tail)
            if not (candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()
                    or candidate.parent.with_suffix(".py").is_file() or (candidate.parent / "__init__.py").is_file()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {target}")
    assert offenders == []


def _layer(module: str) -> int:
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def test_no_module_imports_a_layer_above_its_own():
    modules = _package_modules()
    upward = []
    for name, path in modules.items():
        if name in TRITON_SIDE or name == FACADE:
            continue
        for line, target, _ in _imported_names(name, path):
            if target.split(".")[0] == "gsam" and _layer(target) > _layer(name):
                upward.append(f"{name}:{line} ({LAYERS[_layer(name)][0]}) imports {target} "
                              f"({LAYERS[_layer(target)][0]})")
    assert sorted(set(upward)) == []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    module = tmp_path / "engine.py"
    module.write_text("def f():\n    from gsam.runtime.backends import load_backend\n")
    found = [t for _, t, _ in _imported_names("gsam.train.engine", module)]
    assert any(_layer(t) > _layer("gsam.train.engine") for t in found if t.startswith("gsam"))


def test_gsam_pixels_imports_nothing_from_gsam():
    """Triton's python models import it as gsam_pixels, where no gsam is installed."""
    for name, path in _package_modules().items():
        if name.startswith("gsam.pixels"):
            absolute = [t for _, t, level in _imported_names(name, path) if not level and t.split(".")[0] == "gsam"]
            assert absolute == [], name


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return result


def test_no_import_cycles_anywhere_in_the_package():
    modules = _package_modules()
    assert "gsam.model.segmenter" in modules and "gsam.export.onnx" in modules
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()
             if name not in TRITON_SIDE and name != FACADE}
    assert _cycles(graph) == []


def test_the_facade_imports_the_layers_only_when_called():
    tree = ast.parse((ROOT / "gsam" / "__init__.py").read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert top_level == []
    code = "import sys, gsam; assert callable(gsam.load) and not any(m.startswith('gsam.') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_help_answers_without_importing_torch():
    code = "import sys; from gsam.cli import cli; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gsam", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - started < 5  # generous: a shared CI core; typically 0.2 s


def test_every_train_setting_is_a_flag_with_the_same_default():
    from click.testing import CliRunner

    from gsam.cli import cli
    from gsam.commands.train import train
    from gsam.train.config import TrainConfig

    options = {p.name: p for p in train.params}
    for field in dataclasses.fields(TrainConfig):
        assert field.name in options, f"TrainConfig.{field.name} has no --{field.name.replace('_', '-')} flag"
        if field.default is not dataclasses.MISSING and field.default is not None:
            assert str(options[field.name].default) == str(field.default), field.name
    assert CliRunner().invoke(cli, ["train", "--help"]).exit_code == 0


def test_no_comment_points_outside_the_repository():
    """Facts the code relies on live in docs/; no pointer to notes, trackers or issue numbers elsewhere."""
    pattern = re.compile(r"FIELD_NOTES|\bissues? #?\d|\w #\d{2,}")
    sources = [*ROOT.glob("gsam/**/*.py"), *ROOT.glob("export/*.py"), *ROOT.glob("runtime/**/*.py"),
               *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.sh"), *ROOT.glob("tests/*.py")]
    offenders = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in sources
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line) and path.name != "test_architecture.py"]
    assert offenders == []


def _functions():
    """(module, function node) for every function in the package, nested ones included."""
    for name, path in _package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield name, node


def test_no_function_is_longer_than_sixty_lines_without_saying_why():
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines" for name, node in _functions()
            if node.end_lineno - node.lineno + 1 > 60 and "Long:" not in (ast.get_docstring(node) or "")]
    assert long == []


def test_no_function_takes_more_than_five_positional_arguments():
    """Past five, arguments are keyword-only, so a call reads as what it passes. Click commands are exempt:
    click calls them with keywords."""
    def positional(node):
        names = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
        return len(names) - (names[:1] in (["self"], ["cls"]))

    def is_command(node):
        return any("click" in ast.unparse(d) or "option" in ast.unparse(d) or "retired" in ast.unparse(d)
                   or "command" in ast.unparse(d) for d in node.decorator_list)

    wide = [f"{name}.{node.name}: {positional(node)}" for name, node in _functions()
            if positional(node) > 5 and not is_command(node)]
    assert wide == []


def test_every_benchmark_script_imports_what_exists():
    """benchmarks/ is run by hand, not by the suite: a name it imports from gsam that moved or vanished would
    only show the day someone reruns it (benchmarks/precision.py once imported a module split a round before)."""
    import importlib

    missing = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gsam":
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if not hasattr(module, alias.name)
                            and importlib.util.find_spec(f"{node.module}.{alias.name}") is None]
    assert missing == []


def test_runtime_holds_only_what_runs_a_model():
    """Kubernetes manifests, the container image and the benchmark harness live in gsam/deploy and gsam/bench."""
    names = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "runtime").rglob("*.py"))
    assert names and [n for n in names if re.search(r"k8s|kserve|kubernetes|container|wheel|bench|harness", n)] == []


def test_each_triton_model_name_is_written_once_outside_tests_and_docs():
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", "tests", "docs", ".git"} & set(p.relative_to(ROOT).parts)]
    for literal in ('"gsam_python"', '"gsam_image"', '"gsam_onnx"', '"gsam_trt"'):
        found = [str(p.relative_to(ROOT)) for p in sources if literal in p.read_text()]
        assert found == ["runtime/triton_names.py"], (literal, found)
