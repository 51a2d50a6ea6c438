"""Child processes (``pg_dump``, ``pg_restore``, ``psql``) that never outlive migrator.

On Linux the kernel kills a child when its parent dies (``PR_SET_PDEATHSIG``), so a
killed ``restore`` cannot leave a ``psql`` waiting forever in an open transaction (the
server rolls it back when the connection drops) or a ``pg_dump`` running on.
"""

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

PR_SET_PDEATHSIG: Final = 1


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` of a child that dies with this process."""
    return subprocess.Popen(list(argv), preexec_fn=_die_with(os.getpid()), **kwargs)


def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` of a child that dies with this process."""
    return subprocess.run(list(argv), preexec_fn=_die_with(os.getpid()), **kwargs)


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs (a restore's psql before COMMIT: rolled back), and
    wait for it: what an interrupted caller leaves behind on its way out."""
    if process.poll() is None:
        process.kill()
    process.wait()


def ended(returncode: int) -> str:
    """How a child ended, for a message: ``exited with code 1``, ``was killed by SIGXFSZ``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def _die_with(parent: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:  # in the child, between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: nobody to outlive
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
