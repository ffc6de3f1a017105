"""TensorRT's real Python API per release, read from its PyPI bindings wheel, and a mypy check against it.

No GPU and no TensorRT library are needed. The compiled module ``tensorrt.so`` of the wheel
``tensorrt-cu12-bindings==VERSION`` (about 1.3 MB) imports only nine functions from libnvinfer,
libnvonnxparser and libnvinfer_plugin; loaded against inert stand-ins for those (compiled here with
gcc, never called), pybind11's module init registers the whole API. From that module this tool writes

- type stubs (pybind11-stubgen, then ``fix_stub``), cached outside git because they carry NVIDIA's
  docstrings: ``$GSAM_TENSORRT_STUBS_CACHE``, else ``$XDG_CACHE_HOME/gsam/tensorrt-stubs``
  (``~/.cache/gsam/tensorrt-stubs``); offline, the project's shared stubs ``<api>/pyi/VERSION`` are used
  (``<api>``: ``$GSAM_TENSORRT_API``, else ``../shared/tensorrt_api`` beside the clone);
- name lists with base classes (``api-VERSION.txt``, ``bases-VERSION.json``), the facts
  tests/data/tensorrt/ vendors.

    python tests/support/tensorrt_stubs.py locate [VERSION...]     # find or make the stubs
    python tests/support/tensorrt_stubs.py check VERSION FILE...   # mypy against one release
    python tests/support/tensorrt_stubs.py modules                 # the files that import tensorrt
    python tests/support/tensorrt_stubs.py lists FOLDER [VERSION...]  # regenerate the name lists

Standard library only: pip, gcc, pybind11-stubgen and mypy run as subprocesses. ``GSAM_TENSORRT_STUBS_OFFLINE=1``
skips PyPI. ``type_check`` raises ``Unavailable`` (with the reason) when stubs or mypy cannot be had, so a
test can skip on it and fails only on a real type error.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
SUPPORTED = ("10.0.1", "10.13.0.35", "10.16.1.11", "11.1.0.106", "11.4.0.106")
PACKAGE = "tensorrt-cu12-bindings"
# pip matches platform tags literally: 10.0.1's wheel is tagged manylinux_2_17 (not selected by the alias
# manylinux2014), the later ones manylinux_2_28.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
PYBIND11_STUBGEN = "3.0.0"
FIXES = 3  # revision of fix_stub: a cached stub made under another revision is made again

# The nine symbols tensorrt.so (10.0 to 11.4) imports. The module init calls none of them.
_STANDIN_C = """\
void* createInferBuilder_INTERNAL(void* l, int v) { return 0; }
void* createInferRefitter_INTERNAL(void* e, void* l, int v) { return 0; }
void* createInferRuntime_INTERNAL(void* l, int v) { return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void* r, void* l, int v) { return 0; }
void* createNvOnnxParser_INTERNAL(void* n, void* l, int v) { return 0; }
void* getBuilderPluginRegistry(int c) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
void* getPluginRegistry(void) { return 0; }
int initLibNvInferPlugins(void* l, const char* ns) { return 0; }
"""
_STANDIN_LIBS = ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin")

# Runs where tensorrt.so loads: the classes implementing the buffer protocol (slot 1 = Py_bf_getbuffer),
# which pybind11-stubgen cannot see. In every supported release: IHostMemory.
_BUFFER_PROBE = r"""
import ctypes, json, tensorrt
get = ctypes.pythonapi.PyType_GetSlot
get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_int]
print(json.dumps(sorted(n for n, o in vars(tensorrt).items()
                        if isinstance(o, type) and o.__module__ == "tensorrt" and get(o, 1))))
"""
KNOWN_BUFFER_CLASSES = ("IHostMemory",)

# Runs where tensorrt.so loads: every class, enum value, method and property as Class.member, and each
# class's TensorRT base classes (inherited members live on the base: Logger.WARNING is ILogger's).
_API_PROBE = r"""
import json, tensorrt as m
PLUMBING = {'__module__', '__doc__', '__init__', '_pybind11_conduit_v1_', '__dict__', '__weakref__'}
ENUM = PLUMBING | {'__entries', '__members__', '__repr__', '__str__', '__eq__', '__ne__',
    '__hash__', '__getstate__', '__setstate__', '__int__', '__index__', '__lt__', '__gt__', '__le__', '__ge__',
    '__and__', '__rand__', '__or__', '__ror__', '__xor__', '__rxor__', '__invert__'}
names, bases = set(), {}
for name, obj in vars(m).items():
    if name.startswith('__') and name.endswith('__'):
        continue
    names.add(name)
    if not isinstance(obj, type):
        continue
    bases[name] = [b.__name__ for b in obj.__mro__[1:] if b.__module__ == 'tensorrt']
    is_enum = '__members__' in vars(obj)
    if is_enum:
        names.update(f'{name}.{v}' for v in obj.__members__)
    for attr, value in vars(obj).items():
        if attr.startswith('__pybind11_module_local') or attr in (ENUM if is_enum else PLUMBING):
            continue
        if not (attr == '__hash__' and value is None):
            names.add(f'{name}.{attr}')
print(json.dumps({'names': sorted(names), 'bases': dict(sorted(bases.items()))}))
"""


class Unavailable(RuntimeError):
    """Something the check needs is missing (not a type error in the code under check)."""


class StubsUnavailable(Unavailable):
    pass


class MypyUnavailable(Unavailable):
    pass


@dataclass(frozen=True)
class Located:
    path: Path | None  # a folder holding tensorrt/__init__.pyi
    source: str | None  # "cache", "generated", "shared" or None
    reason: str  # one line per place tried


def cache_root() -> Path:
    if os.environ.get("GSAM_TENSORRT_STUBS_CACHE"):
        return Path(os.environ["GSAM_TENSORRT_STUBS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gsam" / "tensorrt-stubs"


def shared_api_dir() -> Path:
    """$GSAM_TENSORRT_API, else shared/tensorrt_api beside the clone (or beside a folder above it, as for a
    git worktree kept under the clone's parent)."""
    if os.environ.get("GSAM_TENSORRT_API"):
        return Path(os.environ["GSAM_TENSORRT_API"])
    found = [d / "shared" / "tensorrt_api" for d in REPO.parents if (d / "shared" / "tensorrt_api").is_dir()]
    return found[0] if found else REPO.parent / "shared" / "tensorrt_api"


def _pyi(folder: Path) -> Path:
    return folder / "tensorrt" / "__init__.pyi"


def _valid(folder: Path, version: str, **expect: object) -> bool:
    try:
        stamp = json.loads((folder / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    return (_pyi(folder).is_file() and stamp.get("version") == version and stamp.get("fixes") == FIXES
            and all(stamp.get(k) == v for k, v in expect.items()))


def _install(build: Path, final: Path) -> None:
    """Rename the finished folder `build` onto `final`; a concurrent run that got there first keeps its copy."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}-{time.monotonic_ns()}")
    if final.exists():
        try:
            os.rename(final, old)
        except OSError:
            pass
    try:
        os.rename(build, final)
    except OSError:
        shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# fix_stub: pybind11-stubgen's output made valid and complete for mypy (idempotent)

_BOOL = re.compile(r"(?<![\w.'])bool(?!\w)")  # the name bool, not __bool__, builtins.bool or 'bool'
_DIMS_PARAM = re.compile(r"^(\s*\w+: )(Dims|Dims2|Dims3|Dims4|DimsHW)(?=\s*(=|$))")
_DEF = re.compile(r"^(\s*def \w+\()(.*)(\) -> .*:)$")


def _split_params(params: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in params:
        depth += (ch in "[(") - (ch in "])")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def _fix_def(line: str) -> str:
    """Dims parameters also take int sequences (the bindings convert lists and tuples implicitly); a
    parameter without a default after one with a default gets `= ...` (pybind11 allows that order)."""
    match = _DEF.match(line)
    if not match:
        return line
    head, params, tail = match.groups()
    parts, seen_default = _split_params(params), False
    for j, part in enumerate(parts):
        part = parts[j] = _DIMS_PARAM.sub(r"\1\2 | typing.Sequence[typing.SupportsInt]", part)
        stripped = part.strip()
        if stripped.startswith("*"):
            break  # keyword-only parameters may follow defaults
        if stripped == "/":
            continue
        if "=" in part:
            seen_default = True
        elif seen_default and stripped:
            parts[j] = part + " = ..."
    return head + ",".join(parts) + tail


def _fix_lines(lines: list[str]) -> list[str]:
    """Per line: drop `import numpy` (written only where numpy imports, so the output would depend on the
    environment); `bool` in code -> `builtins.bool` (the module's own `bool: DataType` shadows the builtin,
    which made every bool annotation Any); parameters named `in` (a keyword) -> `in_`; then _fix_def."""
    out: list[str] = []
    in_doc = False
    for line in lines:
        if line == "import numpy":
            continue
        if line == "from __future__ import annotations" and "import builtins" not in lines:
            out += [line, "import builtins"]
            continue
        quotes = line.count('"""')
        is_code = not in_doc and quotes == 0
        in_doc ^= quotes % 2 == 1
        if is_code and not line.startswith(("bool: ", "__all__")):
            line = _BOOL.sub("builtins.bool", line)
        out.append(_fix_def(re.sub(r"([(, ])in: ", r"\1in_: ", line)))
    return out


def _add_buffer_protocol(lines: list[str], cls: str) -> None:
    """`__buffer__` at the end of the class body, so `bytes(builder.build_serialized_network(...))` checks."""
    start = next((i for i, line in enumerate(lines) if line == f"class {cls}:" or line.startswith(f"class {cls}(")), -1)
    if start < 0:
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    if any(line.strip().startswith("def __buffer__(") for line in lines[start + 1:end]):
        return
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = ["    def __buffer__(self, flags: int, /) -> memoryview:  # buffer protocol, added by gsam",
                      "        ..."]


def fix_stub(text: str, version: str, buffer_classes: Iterable[str]) -> str:
    """The stub made valid Python and complete: see _fix_lines, _fix_def, _add_buffer_protocol; plus what
    tensorrt_bindings/__init__.py adds in Python (`__version__`, `volume`, `nptype`)."""
    lines = _fix_lines(text.split("\n"))
    for cls in sorted(set(buffer_classes)):
        _add_buffer_protocol(lines, cls)
    text = "\n".join(lines)
    if not re.search(r"^__version__: ", text, re.M):
        text = text.rstrip("\n") + "\n" + (
            "\n# Added by tensorrt_bindings/__init__.py at import time (Python level, not in the compiled module):\n"
            f'__version__: str  # "{version}"\n'
            "def volume(iterable: typing.Iterable[typing.SupportsInt]) -> int: ...\n"
            "def nptype(trt_type: DataType) -> type: ...\n")
    classes = {n.name: n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)}
    for cls in buffer_classes:
        if cls in classes and not any(getattr(f, "name", "") == "__buffer__" for f in classes[cls].body):
            raise ValueError(f"__buffer__ did not land inside class {cls}")
    return text


# ---------------------------------------------------------------------------------------------------------------
# The bindings, loadable here

def _run(cmd: Sequence[str], what: str, timeout: float, **kw: Any) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError as exc:
        raise StubsUnavailable(f"{what}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StubsUnavailable(f"{what}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise StubsUnavailable(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc


def _pip_quiet() -> list[str]:
    return ["--disable-pip-version-check", "--no-input", "--timeout", "30", "--retries", "2"]


def loadable_bindings(version: str, tmp: Path, python: str = sys.executable) -> tuple[dict[str, str], Path]:
    """Download the wheel into `tmp`, put its tensorrt.so beside gcc-built stand-ins (the .so's RPATH starts
    with $ORIGIN, so they win over any real TensorRT). Returns (environment that imports it, the wheel)."""
    pyver = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], "python", 60).stdout.strip()
    _run([python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", pyver,
          *[a for p in PLATFORMS for a in ("--platform", p)], "--dest", str(tmp / "wheel"), *_pip_quiet(),
          f"{PACKAGE}=={version}"], "pip download", 600)
    wheels = sorted((tmp / "wheel").glob("*.whl"))
    if len(wheels) != 1:
        raise StubsUnavailable(f"pip download gave {[w.name for w in wheels]}")
    module = tmp / "mod"
    module.mkdir()
    with zipfile.ZipFile(wheels[0]) as wheel:
        (module / "tensorrt.so").write_bytes(wheel.read("tensorrt_bindings/tensorrt.so"))
    (tmp / "standin.c").write_text(_STANDIN_C)
    for lib in _STANDIN_LIBS:
        so = f"{lib}.so.{version.split('.')[0]}"
        _run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{so}", "-o", str(module / so), str(tmp / "standin.c")],
             "gcc", 120)
    env = dict(os.environ, LD_LIBRARY_PATH=str(module), PYTHONPATH=str(module))
    env.pop("PYTHONHOME", None)
    return env, wheels[0]


def _with_stubgen(env: dict[str, str], tmp: Path, python: str) -> dict[str, str]:
    """The pinned pybind11-stubgen: the interpreter's own when it is that version, else a private copy."""
    have = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('pybind11-stubgen'))"],
                          capture_output=True, text=True).stdout.strip()
    if have == PYBIND11_STUBGEN:
        return env
    _run([python, "-m", "pip", "install", "--no-deps", "--target", str(tmp / "tools"), *_pip_quiet(),
          f"pybind11-stubgen=={PYBIND11_STUBGEN}"], "pip install pybind11-stubgen", 300)
    return dict(env, PYTHONPATH=os.pathsep.join([str(tmp / "tools"), env["PYTHONPATH"]]))


def generate_stubs(version: str, dest: Path, python: str = sys.executable) -> dict[str, object]:
    """Write tensorrt/__init__.pyi and stamp.json for `version` into the empty folder `dest`, from PyPI."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trt-stubgen-") as folder:
        tmp = Path(folder)
        env, wheel = loadable_bindings(version, tmp, python)
        env = _with_stubgen(env, tmp, python)
        # It prints ERROR lines for C++ defaults it cannot spell (written as `...`) and exits 0.
        _run([python, "-m", "pybind11_stubgen", "tensorrt", "-o", str(tmp / "out")], "pybind11-stubgen", 300,
             env=env, cwd=tmp)
        buffer_classes = json.loads(_run([python, "-c", _BUFFER_PROBE], "buffer probe", 120, env=env, cwd=tmp).stdout)
        text = fix_stub((tmp / "out" / "tensorrt.pyi").read_text(), version, buffer_classes)
        stamp = {"version": version, "fixes": FIXES, "source": "pypi", "package": PACKAGE, "wheel": wheel.name,
                 "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "pybind11_stubgen": PYBIND11_STUBGEN,
                 "buffer_classes": buffer_classes, "seconds": round(time.monotonic() - started, 2)}
    (dest / "tensorrt").mkdir()
    _pyi(dest).write_text(text)
    (dest / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
    return stamp


def write_api_lists(version: str, folder: Path, python: str = sys.executable) -> tuple[Path, Path]:
    """api-VERSION.txt (Class.member per line) and bases-VERSION.json, read from the compiled module."""
    with tempfile.TemporaryDirectory(prefix="trt-api-") as tmp:
        env, wheel = loadable_bindings(version, Path(tmp), python)
        found = json.loads(_run([python, "-c", _API_PROBE], "API probe", 120, env=env, cwd=tmp).stdout)
    names, bases = folder / f"api-{version}.txt", folder / f"bases-{version}.json"
    names.write_text(f"# TensorRT {version} Python API: every class, enum value, method and property that the "
                     f"compiled bindings of {wheel.name} register (Class.member per line; inherited members are "
                     f"listed on the base class, see {bases.name}). Made by tests/support/tensorrt_stubs.py lists.\n"
                     + "".join(f"{n}\n" for n in found["names"]))
    bases.write_text(json.dumps(found["bases"], indent=0) + "\n")
    return names, bases


# ---------------------------------------------------------------------------------------------------------------
# Finding the stubs: cache, PyPI, shared

def _from_shared(version: str, pyi: Path, root: Path) -> Path:
    """The shared stub with fix_stub applied, kept under ROOT/from-shared/VERSION (or a temporary folder when
    the cache is not writable); made again when the shared file changes."""
    text = pyi.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    final = root / "from-shared" / version
    if _valid(final, version, shared_sha256=digest):
        return final
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=final.parent))
    except OSError:
        final = build = Path(tempfile.mkdtemp(prefix=f"gsam-trt-stubs-{version}-"))
    (build / "tensorrt").mkdir()
    _pyi(build).write_text(fix_stub(text, version, KNOWN_BUFFER_CLASSES))
    stamp = {"version": version, "fixes": FIXES, "source": "shared", "shared": str(pyi), "shared_sha256": digest}
    (build / "stamp.json").write_text(json.dumps(stamp, indent=1) + "\n")
    if build != final:
        _install(build, final)
    return final


def _generate_into_cache(version: str, root: Path, python: str) -> str:
    """'' when the cache now holds the version, else why not."""
    build = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=root))
        generate_stubs(version, build, python)
        _install(build, root / version)
        return "" if _valid(root / version, version) else f"generate: {root / version} not valid after install"
    except (StubsUnavailable, OSError, ValueError, KeyError, SyntaxError, zipfile.BadZipFile) as exc:
        return f"generate: {type(exc).__name__}: {exc}"
    finally:
        if build is not None and build.exists():
            shutil.rmtree(build, ignore_errors=True)


def locate(version: str, *, generate: bool = True, python: str = sys.executable) -> Located:
    """The stub folder for `version`: the cache, else made from PyPI, else the shared stubs. Never raises for
    a missing tool or network; the reason is in the result."""
    if version not in SUPPORTED:
        return Located(None, None, f"{version!r} is not one of {SUPPORTED}")
    root = cache_root()
    if _valid(root / version, version):
        return Located(root / version, "cache", f"cache: {root / version}")
    notes = [f"cache: no valid stubs in {root / version}"]
    if generate and os.environ.get("GSAM_TENSORRT_STUBS_OFFLINE") != "1":
        failed = _generate_into_cache(version, root, python)
        if not failed:
            return Located(root / version, "generated", "\n".join(notes + [f"generated: {root / version}"]))
        notes.append(failed)
    else:
        notes.append("generate: skipped (offline: GSAM_TENSORRT_STUBS_OFFLINE=1)")
    shared = _pyi(shared_api_dir() / "pyi" / version)
    if not shared.is_file():
        return Located(None, None, "\n".join(notes + [f"shared: {shared} is absent (set GSAM_TENSORRT_API)"]))
    try:
        path = _from_shared(version, shared, root)
    except (OSError, ValueError, SyntaxError) as exc:
        return Located(None, None, "\n".join(notes + [f"shared: {type(exc).__name__}: {exc}"]))
    return Located(path, "shared", "\n".join(notes + [f"shared: {shared} -> {path}"]))


# ---------------------------------------------------------------------------------------------------------------
# Which files to check: every module that imports tensorrt, found, not listed

# Where gsam's code lives: the package (export/ and runtime/ through its links, so paths are import paths) and
# the scripts beside it. tests/ holds the stand-ins, not TensorRT code.
CODE_ROOTS = ("gsam", "benchmarks", "triton_models")


def imports_tensorrt(source: str) -> bool:
    """Whether the source imports tensorrt (or a submodule) anywhere: top level, in a function, under
    TYPE_CHECKING."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "tensorrt" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "tensorrt":
            return True
    return False


def tensorrt_modules(repo: Path = REPO, roots: Sequence[str] = CODE_ROOTS) -> list[Path]:
    """Every .py file under `roots` of `repo` that imports tensorrt, each once (by its path through the
    package's links, e.g. gsam/export/tensorrt.py, which mypy names gsam.export.tensorrt)."""
    found: dict[Path, Path] = {}
    for root in roots:
        for folder, dirs, files in os.walk(repo / root, followlinks=True):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = Path(folder) / name
                if name.endswith(".py") and path.resolve() not in found and imports_tensorrt(path.read_text()):
                    found[path.resolve()] = path
    return sorted(found.values())


# ---------------------------------------------------------------------------------------------------------------
# mypy

_MYPY_INI = """\
[mypy]
follow_imports = silent
ignore_missing_imports = True
no_site_packages = True
check_untyped_defs = True
disallow_untyped_defs = True
disallow_incomplete_defs = True
warn_unused_configs = False
cache_dir = {cache_dir}

plugins = {plugin}

[mypy-tensorrt]
ignore_errors = True
ignore_missing_imports = False
"""
PLUGIN = Path(__file__).with_name("tensorrt_mypy_plugin.py")


def type_check(paths: Sequence[str | os.PathLike[str]], version: str, *, stubs: Path | None = None,
               python: str = sys.executable) -> tuple[bool, str]:
    """mypy on `paths` against TensorRT `version`'s stubs: (passed, a header line then mypy's output).

    MYPYPATH = the stub folder and the repository (so `gsam` resolves to this checkout); installed packages
    are not read (no_site_packages: torch and numpy are Any, TensorRT can only come from the stubs); the
    stub's own errors are ignored, but a missing stub is an error (`import tensorrt` never silently Any);
    every function of the checked files must be annotated, and unannotated bodies are checked too; the plugin
    tensorrt_mypy_plugin.py refuses anything but an int where TensorRT takes a device address or stream. A file
    named tensorrt.py outside a package would be checked as module `tensorrt` itself (its errors hidden):
    ValueError.
    """
    for path in map(Path, paths):
        if path.stem == "tensorrt" and not (path.parent / "__init__.py").is_file():
            raise ValueError(f"{path}: a tensorrt.py outside a package is checked as the module tensorrt itself")
    source = "given"
    if stubs is None:
        found = locate(version, python=python)
        if found.path is None:
            raise StubsUnavailable(f"no TensorRT {version} stubs:\n{found.reason}")
        stubs, source = found.path, found.source
    if subprocess.run([python, "-c", "import mypy"], capture_output=True).returncode != 0:
        raise MypyUnavailable(f"mypy is not installed for {python} (pip install mypy)")
    mypy_cache = cache_root() / "mypy" / version
    with tempfile.TemporaryDirectory(prefix="gsam-mypy-") as tmp:
        (Path(tmp) / "mypy.ini").write_text(_MYPY_INI.format(cache_dir=mypy_cache, plugin=PLUGIN))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYPY")}
        env["MYPYPATH"] = os.pathsep.join([str(stubs), str(REPO)])
        proc = subprocess.run([python, "-m", "mypy", "--config-file", str(Path(tmp) / "mypy.ini"),
                               *[str(Path(p).absolute()) for p in paths]], capture_output=True, text=True, env=env)
    header = f"# mypy, TensorRT {version} stubs from {stubs} ({source})"
    return proc.returncode == 0, "\n".join([header, (proc.stdout + proc.stderr).rstrip()])


def _main(argv: list[str], log: Callable[[str], None] = print) -> int:
    if argv[:1] == ["locate"]:
        located = {v: locate(v) for v in argv[1:] or SUPPORTED}
        for version, found in located.items():
            log(f"{version}: {found.source} {found.path}" + ("" if found.path else "\n  " + found.reason))
        return 0 if all(f.path for f in located.values()) else 1
    if argv[:1] == ["check"] and len(argv) >= 3:
        passed, output = type_check(argv[2:], argv[1])
        log(output)
        return 0 if passed else 1
    if argv[:1] == ["modules"]:
        log("\n".join(str(p.relative_to(REPO)) for p in tensorrt_modules()))
        return 0
    if argv[:1] == ["lists"] and len(argv) >= 2:
        for version in argv[2:] or SUPPORTED:
            log(" ".join(str(p) for p in write_api_lists(version, Path(argv[1]))))
        return 0
    log(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
