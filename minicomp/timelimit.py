"""`time_limit`: stop a learner's code that runs too long (an endless loop), with a clear message.

Used by ``check(...)`` in the notebooks and by ``minicomp check`` in the terminal. Plain standard
library, so that ``minicomp --help`` stays fast.
"""

from __future__ import annotations

import numbers
import signal
import threading
from contextlib import contextmanager

_active = threading.local()   # .depth: how many time limits this thread is inside


class TookTooLong(BaseException):
    """Raised inside the running code when its time is up (a BaseException, so that a learner's
    ``except Exception`` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float, alarm: bool | None = None):
    """Raise `TookTooLong` in this thread once the block has run `seconds`.

    With SIGALRM (Linux, macOS; main thread only) the alarm's handler raises it, which also cuts
    short a sleep. Elsewhere (Windows, or a thread other than the main one) a watchdog thread
    raises it here through PyThreadState_SetAsyncExc: Python code is stopped at its next
    bytecode, a long call into C (one big matmul, a sleep) only when it returns.

    Nested limits: only the outermost one counts (the terminal's ``minicomp check --timeout``
    covers the notebook-style limit inside ``check``), so an inner block runs unlimited by itself.
    ``seconds=math.inf`` (or anything beyond `threading.TIMEOUT_MAX`, about 292 years) sets no limit.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):   # (checks.is_real; this file imports no torch)
        raise TypeError(f"seconds must be a number of seconds such as 10 or 0.5, got "
                        f"{type(seconds).__name__} {seconds!r}")
    if not seconds > 0:
        raise ValueError(f"seconds={seconds!r} must be a positive number (math.inf for no limit)")
    if alarm is not None and not isinstance(alarm, bool):  # "no" would read as True
        raise TypeError(f"alarm={alarm!r} must be True, False or None (None: SIGALRM where it can be used)")
    depth = getattr(_active, "depth", 0)
    _active.depth = depth + 1
    try:
        if depth or seconds >= threading.TIMEOUT_MAX:  # an inner limit, or none: setitimer and Timer overflow
            yield
        elif alarm if alarm is not None else _can_alarm():
            with _alarm(seconds):
                yield
        else:
            with _watchdog(seconds):
                yield
    finally:
        _active.depth = depth


def active() -> bool:
    """Whether this thread is inside a `time_limit` already."""
    return getattr(_active, "depth", 0) > 0


def _can_alarm() -> bool:
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


@contextmanager
def _alarm(seconds: float):
    def too_long(signum, frame):
        raise TookTooLong

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _watchdog(seconds: float):
    import ctypes

    target, lock, state = threading.get_ident(), threading.Lock(), {"done": False, "fired": False}

    def fire():
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(TookTooLong))

    watchdog = threading.Timer(seconds, fire)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            watchdog.cancel()
            if state["fired"]:   # raised but perhaps not yet delivered: take it back, it is late
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), None)
