"""What the reproduction runners share: the run-folder lock probe, the niced start loop and the
timing of a short run."""

from __future__ import annotations

import csv
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def set_autogroup_nice(pid: int, nice: int) -> None:
    """Gives the session of ``pid`` (int) the ``nice`` (int) of Linux's autogroup scheduling, where
    sessions share the CPU fairly whatever their processes' nice values; no-op elsewhere."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as stream:
            stream.write(str(nice))
    except OSError:
        pass  # no autogroup (another OS, a kernel without it, no permission): plain nice only


# Each run's thread settings unless the caller's environment has its own: torch's (OpenMP) and jax's
# (XLA's CPU client spreads one computation over every core by default)
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def start_all(
    queue: list[tuple[Path, list[str]]], parallel: int, cwd: Path, poll_s: float = 5.0, nice: int = 10
) -> list[int]:
    """Runs each ``(folder, argv)`` of ``queue`` as ``nice python *argv`` in ``cwd``, ``parallel`` at
    a time, appending its output to ``folder/log.txt``; returns the exit statuses (list of int, one
    per run started) when all have exited.

    Each run has a session of its own whose autogroup is niced too: Linux shares the CPU fairly
    between sessions whatever ``nice`` says, so a niced run in the caller's session would still
    take half the cores from an interactive shell. Ctrl-C or SIGTERM to this process is passed on
    to the runs as SIGINT (each saves its checkpoint and exits with status 130), and no further run
    starts. One BLAS/OpenMP thread and one XLA CPU thread per run (:data:`ONE_THREAD`) unless the
    caller's environment sets those variables: runs sharing a few cores oversubscribe them otherwise."""
    started: list[subprocess.Popen] = []
    stopping = []

    def stop(signum, frame) -> None:
        stopping.append(signum)
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, stop) for number in handled}
    try:
        for folder, argv in queue:
            while not stopping and sum(process.poll() is None for process in started) >= parallel:
                time.sleep(poll_s)
            if stopping:
                print(f"stopping: {folder.name} and the runs after it not started", flush=True)
                break
            folder.mkdir(parents=True, exist_ok=True)
            log = folder / "log.txt"
            with log.open("a") as stream:
                process = subprocess.Popen(
                    ["nice", "-n", str(nice), sys.executable, *argv],
                    cwd=cwd,
                    stdout=stream,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**ONE_THREAD, **os.environ},
                    start_new_session=True,
                )
            set_autogroup_nice(process.pid, nice)
            print(f"started {folder.name} (pid {process.pid}), log {log}", flush=True)
            started.append(process)
        return [process.wait() for process in started]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def time_updates(
    name: str,
    argv_for: Callable[[Path], tuple[list[str], Path]],
    timed_span: Callable[[list[dict]], tuple[float, int]],
    cwd: Path,
) -> dict:
    """Seconds per update of a short run: ``argv_for(scratch)`` gives the script and its options
    writing into a temporary folder, and the run folder they write; the run gets one OpenMP and one
    XLA thread (:data:`ONE_THREAD`, unless the environment sets them); ``timed_span(metrics rows)``
    picks ``(seconds, updates)`` from its ``metrics.csv`` (each runner leaves set-up and
    compilation out its own way). Returns the record the cost files keep: ``seconds_per_update``,
    ``device`` (as the run's ``config.json`` names it), ``cpu_count``, ``updates_timed``,
    ``measured`` (the date). Raises ``RuntimeError`` with the run's stderr when it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        argv, folder = argv_for(Path(scratch))
        env = {**ONE_THREAD, **os.environ}
        done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the timing run failed:\n{done.stderr[-2000:]}")
        rows = list(csv.DictReader((folder / "metrics.csv").open()))
        config = json.loads((folder / "config.json").read_text())
    seconds, updates = timed_span(rows)
    return {
        "seconds_per_update": round(seconds / updates, 4),
        "device": config.get("environment", {}).get("device") or platform.machine(),
        "cpu_count": os.cpu_count(),
        "updates_timed": updates,
        "measured": time.strftime("%Y-%m-%d"),
    }
