"""Ctrl-C and SIGTERM held back where acting on them at once would mislead.

Python runs a signal's handler between two instructions, whatever they are doing. Right
after a restore's COMMIT returned, the handler would stop the run and have it recorded
``interrupted`` although the data was replaced; while a child starts, inside Python's
at-fork callbacks, its exception would be printed and dropped. ``held`` holds them back over
a short step; ``hold_until_the_run_ends``, called just before a run commits what it
cannot take back, holds them until its ``run_window`` ends, the run recorded as it ended.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

INTERRUPTS: Final = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def held() -> Iterator[set[int]]:
    """SIGINT and SIGTERM held back meanwhile, then raised in the caller's frame; yields the
    signal mask as it was (what a child should start with)."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield set()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield previous
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@dataclass
class Window:
    """A run, as seen by ``hold_until_the_run_ends``."""

    mask: set[int] | None = None  # as it was before the hold; None: nothing held
    arrived_at_the_end: bool = False  # an interrupt was held back, and raised as it ended


_windows: list[Window] = []


@contextmanager
def run_window() -> Iterator[Window]:
    """A run: what ``hold_until_the_run_ends`` holds back is let go as it ends, and an
    interrupt held back meanwhile is raised there (``Window.arrived_at_the_end``)."""
    window = Window()
    _windows.append(window)
    try:
        yield window
    finally:
        _windows.remove(window)
        if window.mask is not None:
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, window.mask)  # runs the handler
            except BaseException:
                window.arrived_at_the_end = True
                raise


def hold_until_the_run_ends() -> None:
    """Hold Ctrl-C and SIGTERM back until the run ends: called just before it commits what
    it cannot take back (a restore's data), whose outcome is then recorded before an
    interrupt stops the command. Outside a run (a restore drill), or off the main thread,
    it does nothing."""
    if (
        not _windows
        or _windows[-1].mask is not None
        or not hasattr(signal, "pthread_sigmask")
        or threading.current_thread() is not threading.main_thread()
    ):
        return
    _windows[-1].mask = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
