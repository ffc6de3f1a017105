"""Who tritonserver runs as: never root. Started as root, `gsam serve` runs it (and so its python stubs, which
it starts) as an unprivileged user, by default the account `gsam` when this machine has one, else `nobody`,
in a private working directory (mode 0700, owned by that user, removed at exit). gsam serve itself (the
gateway and the supervisor) keeps its own user: it binds the ports and holds the keys.

That user must be able to read the repository: checked before the start by a child process running as
that user, which opens every file of the served models, so a folder it cannot read is one line, not a
model that fails to load.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gsam.errors import GSAMError

DEFAULT_USERS = ("gsam", "nobody")

_READ_ALL = r"""
import os, sys
def fail(error):
    raise error
for top in sys.argv[1:]:
    for folder, dirs, files in os.walk(top, onerror=fail):
        for name in files:
            with open(os.path.join(folder, name), "rb"):
                pass
"""


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int


def _account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise GSAMError(f"--user {name}: no such user on this machine") from None


def resolve_user(option: str | None) -> RunAs | None:
    """The user tritonserver runs as (None: this process's own user)."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        if option and _account(option).pw_uid != os.geteuid():
            raise GSAMError(f"--user {option}: gsam serve runs as {me}, not root, and cannot start tritonserver as "
                            "another user; drop --user (tritonserver runs as " + me + ")")
        return None
    if option is None:
        option = next(name for name in DEFAULT_USERS if _exists(name) or name == DEFAULT_USERS[-1])
    account = _account(option)
    if account.pw_uid == 0:
        return None  # --user root: the operator's explicit choice, said in the start line
    return RunAs(account.pw_name, account.pw_uid, account.pw_gid)


def _exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def private_workdir(run_as: RunAs) -> Path:
    """A fresh directory only `run_as` (and root) may enter."""
    folder = Path(tempfile.mkdtemp(prefix="gsam-triton-"))
    os.chown(folder, run_as.uid, run_as.gid)
    os.chmod(folder, 0o700)
    return folder


def check_readable(run_as: RunAs, folders: list[Path]) -> None:
    """Every file under `folders` opens for reading as `run_as`, and the Python that runs the stubs starts
    as that user; else one line naming what it cannot read."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _READ_ALL, *map(str, folders)], user=run_as.uid,
                              group=run_as.gid, extra_groups=[], capture_output=True, text=True, timeout=60, cwd="/")
    except PermissionError:
        raise GSAMError(f"tritonserver's python stubs run as user {run_as.name} (gsam serve was started as root), "
                        f"who cannot run this Python ({sys.executable}: permission denied, e.g. a folder above it "
                        f"is 0700); install Python where {run_as.name} can read it, or choose --user (--user root "
                        "keeps tritonserver as root)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise GSAMError(f"cannot run a process as user {run_as.name} ({exc})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GSAMError(f"tritonserver runs as user {run_as.name} (gsam serve was started as root), who cannot read "
                        f"the repository: {last}. Make it readable to {run_as.name} (e.g. chmod -R o+rX, and o+x on "
                        "the folders above it), or choose another --user")
