"""One run in several processes: joining a job started by ``torchrun`` (or any launcher that sets
the same environment variables), on either backend, and launching such a job on this machine.

The environment variables are torchrun's: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``. On the torch backend they start ``torch.distributed`` (gloo on
the CPU, nccl with ``--device cuda``); on the jax backend they start ``jax.distributed`` with the
coordinator at ``MASTER_ADDR:MASTER_PORT`` (``MASTER_PORT + 1`` under torchrun, whose agent holds
``MASTER_PORT``), so one launcher line serves both backends. Without
them, a jax job may still be described by jax's own variables (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) or detected by jax's cluster detection (SLURM, Open
MPI, ...), as ``jax.distributed.initialize()`` does.
"""

from __future__ import annotations

import codecs
import errno
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Processes:
    """This process's place in the job: ``rank`` in ``[0, size)``; rank 0 alone writes files."""

    backend: str = "torch"
    rank: int = 0
    size: int = 1
    device: str | None = None  # torch: where collectives' tensors live (nccl needs CUDA tensors)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (every process must call it: a collective)."""
        if self.size == 1:
            return bool(flag)
        if self.backend == "torch":
            import torch
            import torch.distributed as dist

            value = torch.tensor([int(bool(flag))], device=self.device or "cpu")
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
            return bool(value.item())
        from jax.experimental import multihost_utils

        return bool(np.asarray(multihost_utils.process_allgather(np.int32(bool(flag)))).any())

    def close(self) -> None:
        """Leaves the job (torch: waits for the other processes, then destroys the process group this
        module started)."""
        if self.size > 1 and self.backend == "torch":
            import torch.distributed as dist

            if dist.is_initialized():
                _wait_for_peers(dist)
                dist.destroy_process_group()


def _wait_for_peers(dist, seconds: float = 60.0) -> None:
    """A barrier before the process group is torn down: gloo's connection threads of a process that tears
    down while a peer is still talking to it can end in ``std::terminate`` ("terminate called without an
    active exception", seen once in CI). gloo's monitored barrier gives up after ``seconds`` (a peer that
    failed or left), so a failing run still ends; NCCL's group is left to its own teardown."""
    if dist.get_backend() != "gloo":
        return
    from datetime import timedelta

    try:
        dist.monitored_barrier(timeout=timedelta(seconds=seconds))
    except RuntimeError:
        pass  # a peer is gone: nothing left to wait for


def _int_variable(name: str, minimum: int) -> int:
    text = os.environ[name]
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SystemExit(f"environment variable {name}={text!r} must be an int >= {minimum}")
    return value


def join(backend: str, device: str | None = None) -> Processes:
    """Joins the job the environment describes (see the module docstring); a lone process when
    it describes none. ``backend``: "torch" or "jax"; ``device``: the torch device option
    ("cuda..." selects nccl and this process's ``LOCAL_RANK`` GPU). Returns :class:`Processes`."""
    if backend not in ("torch", "jax"):
        raise ValueError(f"backend={backend!r} is not one of 'torch', 'jax'")
    size = _int_variable("WORLD_SIZE", 1) if "WORLD_SIZE" in os.environ else 1
    if size > 1:
        missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
        if missing:
            raise SystemExit(f"WORLD_SIZE={size} but the environment lacks {', '.join(missing)}")
        rank = _int_variable("RANK", 0)
        if rank >= size:
            raise SystemExit(f"RANK={rank} must be below WORLD_SIZE={size}")
    if backend == "jax":
        return _join_jax(size)
    if size == 1:
        return Processes("torch")
    import torch
    import torch.distributed as dist

    cuda = bool(device) and device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(_int_variable("LOCAL_RANK", 0))  # "cuda" then means this GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")  # reads the variables itself
    return Processes("torch", dist.get_rank(), dist.get_world_size(), "cuda" if cuda else "cpu")


def _join_jax(size: int) -> Processes:
    import jax

    # CPU arrays of several processes meet through gloo (jax's default CPU collectives are local)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if size > 1:
        port = _int_variable("MASTER_PORT", 1)
        if "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun's own store listens on MASTER_PORT
            port += 1
        address = f"{os.environ['MASTER_ADDR']}:{port}"
        jax.distributed.initialize(address, num_processes=size, process_id=_int_variable("RANK", 0))
    elif os.environ.get("JAX_COORDINATOR_ADDRESS"):
        count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
        jax.distributed.initialize(
            num_processes=None if count is None else int(count),
            process_id=None if index is None else int(index),
        )
    return Processes("jax", jax.process_index(), jax.process_count())


# a port the coordinator (jax: on every interface) or torch's store will listen on is taken
# from below the kernel's ephemeral range, so no outgoing connection (gloo opens many) lands on
# it between the check and the bind
PORT_FLOOR = 20000
PORT_IN_USE = ("EADDRINUSE", "address already in use", "No address added", "Failed to start RPC server")
ERROR_TAIL = 6000  # characters of a failed process's stderr quoted in the launcher's error


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as stream:
            return int(stream.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    families = [(socket.AF_INET6, "::"), (socket.AF_INET, "")] if socket.has_ipv6 else [(socket.AF_INET, "")]
    for family, host in families:  # "::" is what jax's coordinator binds (IPv4 too, dual-stack)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, port))
            return True
        except OSError as error:
            if family == socket.AF_INET6 and error.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue  # no IPv6 here: try IPv4
            return False
    return False


def free_port() -> int:
    """A TCP port free on every interface a moment ago (for ``MASTER_PORT``), drawn at random
    (seeded by the process id and the clock) below the kernel's ephemeral port range."""
    ceiling = _ephemeral_floor()
    draw = random.Random(os.getpid() * 1_000_003 + time.monotonic_ns())
    if ceiling - PORT_FLOOR > 1000:
        for _ in range(100):
            port = draw.randrange(PORT_FLOOR, ceiling)
            if _bindable(port):
                return port
    with socket.socket() as probe:  # no room below the range: the kernel's pick
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_taken(error_output: str, port: int) -> bool:
    """Whether a process's error output says that binding ``port`` failed (then a new launch
    with another port may succeed)."""
    return str(port) in error_output and any(phrase in error_output for phrase in PORT_IN_USE)


def launch_local(count: int, command: list[str], timeout: float | None = None, env=None) -> None:
    """Runs ``command`` (a list, e.g. ``[sys.executable, script, *arguments]``) as ``count``
    processes on this machine with torchrun's variables set, and waits for all of them. Their
    stderr passes through to this process's. When one fails the others are stopped and
    ``SystemExit`` names the failing rank, its exit status and the end of its stderr; a failure
    to bind the chosen ``MASTER_PORT`` (taken meanwhile by another program) launches all of them
    once more with another port. ``timeout`` (seconds, default none) stops them all and raises
    ``TimeoutError``; ``env``: extra environment variables (a dict of str) for every process."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count={count!r} must be an int >= 1")
    taken = None
    for attempt in range(2):
        port = free_port()
        while port == taken:
            port = free_port()
        failure = _launch_once(count, command, timeout, env, port)
        if failure is None:
            return
        rank, status, tail = failure
        if attempt == 0 and port_taken(tail, port):
            taken = port
            print(
                f"port {port} was taken before process {rank} could bind it; launching again", file=sys.stderr
            )
            continue
        break
    raise SystemExit(f"process {rank} of {count} exited with status {status}; the end of its stderr:\n{tail}")


class _ErrorTail:
    """Copies a child's stderr to ours as it comes, keeping the last :data:`ERROR_TAIL` characters."""

    def __init__(self, stream):
        self.stream, self.text = stream, ""
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := os.read(self.stream.fileno(), 65536):
            text = decoder.decode(chunk)
            self.text = (self.text + text)[-ERROR_TAIL:]
            sys.stderr.write(text)
            sys.stderr.flush()
        self.stream.close()

    def finish(self) -> str:
        self.thread.join(timeout=10)  # a grandchild may still hold the pipe
        return self.text


def _launch_once(count, command, timeout, env, port) -> tuple[int, int, str] | None:
    """One launch of ``count`` processes; ``(rank, exit status, end of its stderr)`` of the first
    that failed, or ``None``."""
    children, tails = [], []
    for rank in range(count):
        variables = dict(os.environ, **(env or {}))
        variables.update(
            RANK=str(rank),
            WORLD_SIZE=str(count),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(count),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        children.append(subprocess.Popen(command, env=variables, stderr=subprocess.PIPE))
        tails.append(_ErrorTail(children[-1].stderr))
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = None
    try:
        while failed is None and any(child.poll() is None for child in children):
            failed = next((r for r, c in enumerate(children) if c.poll() not in (None, 0)), None)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the {count} processes did not finish within {timeout} s")
            time.sleep(0.05)
        failed = next((r for r, c in enumerate(children) if c.poll() not in (None, 0)), failed)
    finally:
        for child in children:  # a failed rank leaves the others waiting in a collective
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        texts = [tail.finish() for tail in tails]
    if failed is None:
        return None
    return failed, children[failed].returncode, texts[failed]


def relaunch_arguments(argv: list[str]) -> list[str]:
    """``argv`` without ``--processes N`` / ``--processes=N`` (what each launched process gets)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--processes":
            skip = True
        elif not item.startswith("--processes="):
            out.append(item)
    return out


def script_command(argv: list[str] | None) -> list[str]:
    """The command that runs this program again with ``argv`` (default: ``sys.argv[1:]``)."""
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None) or sys.argv[0]
    return [sys.executable, script, *relaunch_arguments(sys.argv[1:] if argv is None else list(argv))]


class FollowerRun:
    """What a rank other than 0 sees of the results folder that rank 0 owns: the checkpoint to
    resume from (read once, before any training step), and writers that do nothing."""

    def __init__(self, path, resume: bool):
        from . import _checkpoint
        from ._run import CHECKPOINT

        self.path = os.path.expanduser(str(path))
        file = os.path.join(self.path, CHECKPOINT)
        self.checkpoint = None
        if resume and os.path.exists(file):
            with open(file, "rb") as stream:
                self.checkpoint = _checkpoint.loads(stream.read())["state"]

    def record_environment(self, **facts) -> None:
        pass

    def log_metrics(self, row) -> None:
        pass

    def save_checkpoint(self, state) -> None:
        pass

    def write_results(self, results) -> None:
        pass

    def plot(self, *arguments, **options) -> None:
        pass

    def describe_files(self) -> str:
        return f"process 0 writes the results in {self.path}"

    def close(self) -> None:
        pass


def open_run(processes: Processes, opener, path, resume: bool):
    """Rank 0 opens the results folder (``opener()``, a ``RunFolder``); the others wait until it
    has and then read its checkpoint (:class:`FollowerRun`). When rank 0 fails, it raises its
    error and the others raise ``SystemExit`` saying so (nobody is left waiting)."""
    run, error = None, None
    if processes.is_main:
        try:
            run = opener()
        except BaseException as caught:  # every failure must reach the other ranks
            error = caught
    if processes.any(error is not None):
        if error is not None:
            raise error
        raise SystemExit(f"process 0 could not open the results folder {path}; see its error")
    return run if processes.is_main else FollowerRun(path, resume)
