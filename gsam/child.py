"""The command line of a Python child gsam starts: its own interpreter, never importing from the current folder.

`python -m gsam...` and `python -c` put the current folder first on sys.path, so run from a folder that holds a
`gsam/` directory (the parent of a clone) the child imports that instead of the installed package and fails
with "Error while finding module specification". `-P` (Python 3.11+) leaves the folder out; on 3.10 the child
drops it itself before importing anything else.
"""

from __future__ import annotations

import sys

_DROP_CWD = "import sys; sys.path.pop(0)\n"


def python_module(module: str, *args: str) -> list[str]:
    """`python -m module args...` without the current folder on sys.path."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module, *args]
    runner = f"{_DROP_CWD}import runpy; sys.argv[0] = {module!r}; runpy.run_module({module!r}, run_name='__main__')"
    return [sys.executable, "-c", runner, *args]


def python_code(code: str, *args: str) -> list[str]:
    """`python -c code args...` without the current folder on sys.path."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-c", code, *args]
    return [sys.executable, "-c", _DROP_CWD + code, *args]
