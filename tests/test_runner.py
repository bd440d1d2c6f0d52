"""benchmarks/_runner.py: the reproduction runners' start loop (sessions, statuses, stopping)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _helpers import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"
_spec = importlib.util.spec_from_file_location("_runner", BENCHMARKS / "_runner.py")
_runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_runner)
ONE_THREAD = _runner.ONE_THREAD

# A stand-in run: writes its session id, then waits; on SIGINT it "saves" and exits 130 as the
# training scripts do (l2l_multi.experiment._interrupt)
RUN = textwrap.dedent(
    """
    import os, signal, sys, time
    print("session", os.getsid(0), "pid", os.getpid(), flush=True)
    print("threads", os.environ["OMP_NUM_THREADS"], os.environ["XLA_FLAGS"], flush=True)
    print("cpus", *sorted(os.sched_getaffinity(0)), flush=True)
    def save(signum, frame):
        print("saved", flush=True)
        sys.exit(130)
    signal.signal(signal.SIGINT, save)
    time.sleep(float(sys.argv[1]))
    print("finished", flush=True)
    """
)


# The runner in a process of its own, so that the test can signal it
DRIVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from _runner import start_all
    queue = [(Path(folder), argv) for folder, argv in json.loads(sys.argv[2])]
    parallel = int(sys.argv[4])
    print("statuses", start_all(queue, parallel=parallel, cwd=Path(sys.argv[3]), poll_s=0.05), flush=True)
    """
)


def _driver(tmp_path, seconds, runs, parallel=1):
    (tmp_path / "run.py").write_text(RUN)
    queue = [(str(tmp_path / f"run{i}"), [str(tmp_path / "run.py"), str(seconds)]) for i in range(runs)]
    argv = [sys.executable, "-c", DRIVER, str(BENCHMARKS), json.dumps(queue), str(tmp_path), str(parallel)]
    # the caller's environment without thread settings: the runner must give each run its own
    env = {key: value for key, value in os.environ.items() if key not in ONE_THREAD}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_runs_get_their_own_sessions_and_report_their_statuses(tmp_path):
    output, _ = _driver(tmp_path, 0.0, 2).communicate(timeout=60)
    assert "statuses [0, 0]" in output
    for i in range(2):
        log = (tmp_path / f"run{i}" / "log.txt").read_text()
        session, pid = (int(word) for word in log.split()[1:4:2])
        assert session == pid  # a session of its own: its autogroup, not the caller's, is niced
        # one thread each, torch's and jax's, where the caller's environment sets none
        assert f"threads {ONE_THREAD['OMP_NUM_THREADS']} {ONE_THREAD['XLA_FLAGS']}" in log
        assert log.rstrip().endswith("finished")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin two runs apart")
def test_runs_side_by_side_are_pinned_to_different_cpus(tmp_path):
    """XLA sizes its CPU pool by the process's CPUs: two runs on two cores each get one of them."""
    output, _ = _driver(tmp_path, 1.0, 2, parallel=2).communicate(timeout=60)
    assert "statuses [0, 0]" in output
    cpus = []
    for i in range(2):
        line = next(
            line for line in (tmp_path / f"run{i}" / "log.txt").read_text().splitlines() if "cpus" in line
        )
        cpus.append([int(word) for word in line.split()[1:]])
    assert all(len(run) == 1 for run in cpus) and cpus[0] != cpus[1], cpus
    assert _runner.one_cpu([]) == min(os.sched_getaffinity(0))
    assert _runner.one_cpu([min(os.sched_getaffinity(0))]) != min(os.sched_getaffinity(0))


def test_a_run_another_runner_started_counts_when_picking_a_cpu(tmp_path):
    """A run holding its folder's lock (as RunFolder does, pid inside) and pinned to a CPU."""
    import fcntl

    folder = tmp_path / "other"
    folder.mkdir()
    cpu = max(os.sched_getaffinity(0))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    try:
        descriptor = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(descriptor, fcntl.LOCK_EX)  # held here: the probe sees it locked
        os.write(descriptor, f"{holder.pid}\n".encode())
        assert _runner.pinned_elsewhere({tmp_path}, skip=set()) == [cpu]
        assert _runner.pinned_elsewhere({tmp_path}, skip={holder.pid}) == []
        os.close(descriptor)
        assert _runner.pinned_elsewhere({tmp_path}, skip=set()) == []  # released: no longer a run
    finally:
        holder.kill()
        holder.wait()


def test_sigterm_stops_the_running_run_with_sigint_and_starts_no_more(tmp_path):
    driver = _driver(tmp_path, 60.0, 3)
    log = tmp_path / "run0" / "log.txt"
    deadline = time.monotonic() + 30
    while not (log.exists() and "session" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)
    output, _ = driver.communicate(timeout=30)
    assert "statuses [130]" in output  # the run saved and exited as on Ctrl-C; run1 and run2 never ran
    assert "stopping: run1 and the runs after it not started" in output
    assert log.read_text().rstrip().endswith("saved")
    assert not (tmp_path / "run1").exists() and not (tmp_path / "run2").exists()
