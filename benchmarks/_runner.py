"""What the reproduction runners share: the run-folder lock probe and the niced start loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def locked(folder: Path) -> bool:
    """Whether a process holds ``folder``'s RunFolder lock (tried read-only; released at once)."""
    lock = folder / ".lock"
    if not lock.exists():
        return False
    import fcntl

    descriptor = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # also releases the lock if this call took it
    return False


def start_all(queue: list[tuple[Path, list[str]]], parallel: int, cwd: Path, poll_s: float = 5.0) -> None:
    """Runs each ``(folder, argv)`` of ``queue`` as ``nice python *argv`` in ``cwd``, ``parallel`` at
    a time, appending its output to ``folder/log.txt``; returns when all have exited.

    One BLAS/OpenMP thread per run unless ``OMP_NUM_THREADS`` is set: runs sharing a few cores
    oversubscribe them otherwise."""
    running: list[subprocess.Popen] = []
    for folder, argv in queue:
        while len(running) >= parallel:
            running = [process for process in running if process.poll() is None]
            if len(running) >= parallel:
                time.sleep(poll_s)
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "log.txt"
        with log.open("a") as stream:
            process = subprocess.Popen(
                ["nice", "-n", "10", sys.executable, *argv],
                cwd=cwd,
                stdout=stream,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
            )
        print(f"started {folder.name} (pid {process.pid}), log {log}", flush=True)
        running.append(process)
    for process in running:
        process.wait()
