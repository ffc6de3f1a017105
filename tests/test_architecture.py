"""The house rules that keep the stages apart: no import cycles, light CLI, one vocabulary."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


SOURCE_FOLDERS = {"gsam": ROOT / "gsam", "gsam.export": ROOT / "export", "gsam.runtime": ROOT / "runtime"}


def _package_modules() -> dict[str, Path]:
    """Every module of the gsam package (the two mapped folders included), by dotted name."""
    modules = {}
    for prefix, folder in SOURCE_FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def test_every_source_folder_is_a_declared_package():
    import tomllib

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in _package_modules().items() if path.name == "__init__.py"}
    assert found == declared


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports anywhere in its body (inside functions too)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (parent, node.module or "") if p)
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


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
    assert "gsam.runtime.backends.base" in modules and "gsam.export.onnx" in modules
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycles(graph) == []


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
