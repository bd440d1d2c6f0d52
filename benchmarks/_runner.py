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


# Each run's thread settings unless the caller's environment has its own: torch's (OpenMP) and XLA's
# Eigen threads. XLA's CPU client still sizes its intra-op pool by the CPUs the process may use (two
# busy pool threads per run were measured with these flags alone), so each run is also pinned to
# one CPU (``one_cpu``): two jax runs on two cores then stop competing for both.
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
}


def one_cpu(pinned: list[int]) -> int | None:
    """The CPU (int) of this process's affinity that the fewest of ``pinned`` (the CPUs of the
    runs still going) hold, the lowest first; None where affinity cannot be set (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return min(sorted(os.sched_getaffinity(0)), key=pinned.count)


def pinned_elsewhere(results: set[Path], skip: set[int]) -> list[int]:
    """The CPUs of the runs that hold a results folder's lock under ``results`` (folders of
    run folders), each pinned to one CPU, their pids (``.lock`` holds it) not in ``skip``: runs
    another runner started count when this one picks a CPU."""
    cpus = []
    for parent in results:
        for lock in Path(parent).glob("*/.lock"):
            try:
                pid = int(lock.read_text().split()[0])
                if pid in skip or not locked(lock.parent):
                    continue
                affinity = os.sched_getaffinity(pid)
            except (OSError, ValueError, IndexError):
                continue  # no pid yet, a process gone, or no affinity here
            if len(affinity) == 1:
                cpus.extend(affinity)
    return cpus


def _pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` pinning the child to ``cpu`` before it starts (None: no pinning)."""
    return None if cpu is None else lambda: os.sched_setaffinity(0, {cpu})


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
    starts. One BLAS/OpenMP thread and no Eigen threads per run (:data:`ONE_THREAD`) unless the
    caller's environment sets those variables, and each run pinned to the CPU the fewest running
    runs hold (:func:`one_cpu`): runs sharing a few cores oversubscribe them otherwise."""
    started: list[subprocess.Popen] = []
    cpus: list[int | None] = []  # each started run's CPU
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
            running = [(cpu, process.pid) for cpu, process in zip(cpus, started) if process.poll() is None]
            mine = [cpu for cpu, _ in running if cpu is not None]
            others = pinned_elsewhere({entry.parent for entry, _ in queue}, {pid for _, pid in running})
            cpu = one_cpu(mine + others)
            with log.open("a") as stream:
                process = subprocess.Popen(
                    ["nice", "-n", str(nice), sys.executable, *argv],
                    cwd=cwd,
                    stdout=stream,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**ONE_THREAD, **os.environ},
                    start_new_session=True,
                    preexec_fn=_pin(cpu),
                )
            set_autogroup_nice(process.pid, nice)
            where = "" if cpu is None else f", CPU {cpu}"
            print(f"started {folder.name} (pid {process.pid}{where}), log {log}", flush=True)
            started.append(process)
            cpus.append(cpu)
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
    writing into a temporary folder, and the run folder they write; the run gets one OpenMP thread
    (:data:`ONE_THREAD`, unless the environment sets it) and one CPU; ``timed_span(metrics rows)``
    picks ``(seconds, updates)`` from its ``metrics.csv`` (each runner leaves set-up and
    compilation out its own way). Returns the record the cost files keep: ``seconds_per_update``,
    ``device`` (as the run's ``config.json`` names it), ``cpu_count``, ``updates_timed``,
    ``measured`` (the date). Raises ``RuntimeError`` with the run's stderr when it fails."""
    # one CPU, as the runs themselves: the one the fewest running reproductions hold
    cpu = one_cpu(pinned_elsewhere({cwd / "benchmarks" / "results"}, set()))
    with tempfile.TemporaryDirectory() as scratch:
        argv, folder = argv_for(Path(scratch))
        env = {**ONE_THREAD, **os.environ}
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=_pin(cpu),
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name}: the timing run failed:\n{done.stderr[-2000:]}")
        rows = list(csv.DictReader((folder / "metrics.csv").open()))
        config = json.loads((folder / "config.json").read_text())
    seconds, updates = timed_span(rows)
    return {
        "seconds_per_update": round(seconds / updates, 4),
        "device": config.get("environment", {}).get("device") or platform.machine(),
        "cpu_count": os.cpu_count(),
        **({"cpus_used": 1} if cpu is not None else {}),
        "updates_timed": updates,
        "measured": time.strftime("%Y-%m-%d"),
    }
