"""Ctrl-C during training: finish the current step, save a checkpoint, exit with status 130.

A KeyboardInterrupt raised in the middle of a meta-step could leave the model half updated, so
while :class:`StopRequest` is active a first SIGINT only sets a flag that the training loop reads
between steps; a second SIGINT interrupts at once, as usual.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path

EXIT_STATUS = 130  # what a shell reports for a process ended by SIGINT (128 + 2)


class StopRequest:
    """Inside ``with StopRequest() as stop:``, Ctrl-C sets ``stop.requested`` instead of raising
    while ``stop.active`` (the training loop sets it around its steps; True at first).

    Only the main thread can take signals; elsewhere the object is inert (``requested`` stays False).

    Example:
        >>> import signal
        >>> with StopRequest() as stop:
        ...     signal.raise_signal(signal.SIGINT)
        ...     stop.requested
        True
    """

    def __init__(self, active: bool = True) -> None:
        self.requested = False
        self.active = active  # False: Ctrl-C raises KeyboardInterrupt at once, as without the object
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested or not self.active:  # asked twice, or outside the training steps: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class TrainingStopped(Exception):
    """Raised after the checkpoint of ``iteration`` was saved on a stop request."""

    def __init__(self, iteration: int):
        super().__init__(f"training stopped at iteration {iteration}")
        self.iteration = iteration


def resume_command(out) -> str:
    """The command that continues the run in ``out``: this script with ``--resume --out OUT``."""
    words = [Path(sys.executable).name, sys.argv[0], "--resume", "--out", str(out)]
    return " ".join(shlex.quote(word) for word in words)


def exit_interrupted(out, iteration: int | None) -> None:
    """Prints one line (where the run stands, how to resume) and exits with status 130.
    ``iteration``: the checkpoint just saved; None when Ctrl-C came outside the training steps
    (then the folder's last checkpoint, if any, is the one to resume from)."""
    if iteration is not None:
        print(f"Interrupted: checkpoint saved at iteration {iteration}; resume with: {resume_command(out)}")
    elif (Path(out).expanduser() / "checkpoint.npz").exists():
        print(f"Interrupted: the last checkpoint in {out} is kept; resume with: {resume_command(out)}")
    else:
        print(f"Interrupted before the first checkpoint; nothing to resume in {out}")
    sys.stdout.flush()
    raise SystemExit(EXIT_STATUS)


def run_interruptible(out, train):
    """Returns ``train(stop)`` (``stop``: a :class:`StopRequest`, inactive until ``train`` sets
    ``stop.active``); Ctrl-C ends the process through :func:`exit_interrupted` (one line, status
    130): after :class:`TrainingStopped`, naming its iteration; otherwise the folder's last
    checkpoint, if any."""
    try:
        with StopRequest(active=False) as stop:
            return train(stop)
    except TrainingStopped as stopped:
        exit_interrupted(out, stopped.iteration)
    except KeyboardInterrupt:
        exit_interrupted(out, None)


def stop_if_requested(stop: StopRequest, iteration: int) -> None:
    """For a loop that saves a checkpoint after every iteration: on a stop request, raises
    :class:`TrainingStopped` for ``iteration`` (the last one completed and saved), or
    ``KeyboardInterrupt`` when none was (``iteration`` 0)."""
    if stop.requested:
        if iteration > 0:
            raise TrainingStopped(iteration)
        raise KeyboardInterrupt
