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
from contextlib import suppress
from typing import Any, Final

from migrator import interrupts

PR_SET_PDEATHSIG: Final = 1
STOP_WAIT: Final = 5.0  # seconds a tool has to cancel its statement and exit


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` of a child that dies with this process.

    An interrupt (Ctrl-C, SIGTERM) that arrives while it starts is raised once it has
    started, and the child is then killed: see ``interrupts``.
    """
    process = None
    try:
        with interrupts.held() as mask:
            process = subprocess.Popen(list(argv), preexec_fn=_child_setup(mask), **kwargs)
    except BaseException:
        if process is not None:
            reap(process)
        raise
    return process


def run(
    argv: Sequence[str], *, timeout: float, text: bool = True, stdin: Any = None
) -> subprocess.CompletedProcess:
    """A short command's exit code and output (``text``: decoded), its child dying with
    this process (``subprocess.run(..., capture_output=True, text=text, stdin=stdin)``)."""
    process = popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        reap(process)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def reap(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs (a restore's psql before COMMIT: rolled back), and
    wait for it: what an interrupted caller leaves behind on its way out."""
    if process.poll() is None:
        process.kill()
    process.wait()


def stop(process: subprocess.Popen) -> None:
    """Ask ``process`` to stop, kill it if it has not within STOP_WAIT seconds, and wait
    for it: on SIGTERM ``pg_dump`` cancels the statement it waits for on the server (a
    LOCK TABLE), which a kill would leave waiting until the lock is granted."""
    if process.poll() is None:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_WAIT)
    reap(process)


def ended(returncode: int) -> str:
    """How a child ended, for a message: ``exited with code 1``, ``was killed by SIGXFSZ``."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def _child_setup(mask: set[int]) -> Callable[[], None]:
    """What the child does between fork and exec: take the parent's signal mask as it was
    before ``interrupts.held``, and on Linux die with the parent."""
    parent = os.getpid()
    linux = sys.platform.startswith("linux")

    def preexec() -> None:
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if linux:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl: nobody to outlive
                os.kill(os.getpid(), signal.SIGKILL)

    return preexec
