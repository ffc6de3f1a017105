"""Memory of a process and its descendants, read from /proc (Linux).

Triton's python backend runs every model in a stub process of its own, so a server's memory is
tritonserver's plus that of everything below it."""

from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def tree_memory_mib(pid: int, field: str = "VmRSS", include_root: bool = True) -> float:
    """Sum of one /proc/PID/status field over the tree: VmRSS (resident now) or VmHWM (each process's
    own peak; their sum is an upper bound on what the processes held at any one moment)."""
    total = 0
    for current in ([pid] if include_root else []) + descendants(pid):
        try:
            lines = Path(f"/proc/{current}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith(f"{field}:")), 0)
    return total / 1024
