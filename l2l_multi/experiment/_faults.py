"""A private testing hook: kill this process at a named point of a run (fault-injection tests).

``L2L_TEST_KILL_AT="point"`` or ``"point:n"`` sends SIGKILL to the process the ``n``-th time (default
the first) it reaches ``point``. Points: ``training`` (each training iteration of the examples that
call it), ``metrics_written`` (after ``metrics.csv`` is rendered), ``checkpoint_write`` (the
checkpoint's temporary file is written, not yet renamed), ``results_write`` (the same for
``results.json``). ``L2L_TEST_KILL_SIGNAL=SIGINT`` sends that signal instead (delivered before
the point returns, as a Ctrl-C would be). Not a public API: the variables are read once, at import.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("L2L_TEST_KILL_AT", "")
_POINT, _, _COUNT = _SPEC.partition(":")
_REMAINING = {_POINT: int(_COUNT or 1)} if _POINT else {}
_SIGNAL = os.environ.get("L2L_TEST_KILL_SIGNAL", "")


def fault_point(name: str) -> None:
    """Kills the process here when ``L2L_TEST_KILL_AT`` names ``name`` (see the module docstring)."""
    if name not in _REMAINING:
        return
    _REMAINING[name] -= 1
    if _REMAINING[name] == 0 and _SIGNAL:
        signal.raise_signal(getattr(signal, _SIGNAL))  # runs a Python handler before returning
    elif _REMAINING[name] == 0:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
