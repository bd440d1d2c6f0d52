"""A gymnasium ``AsyncVectorEnv`` that sets tasks on its workers and never hangs on a dead worker."""

from __future__ import annotations

import select
import time
import traceback
import warnings
from collections.abc import Callable, Sequence

import gymnasium
import gymnasium.vector
import numpy as np
from gymnasium.vector.async_vector_env import AsyncState, _async_worker

from ._meta_env import _task_generator

# How long close() lets terminated workers exit before it kills them.
_TERMINATE_GRACE_S = 5.0


class WorkerError(RuntimeError):
    """A worker process of :class:`AsyncVectorEnv` died, could not build its environment, or was shut
    down after an error."""


def _construction_message(index: int, error: BaseException) -> str:
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    message = f"worker {index} could not build its environment ({kind}: {error}). "
    if isinstance(error, gymnasium.error.UnregisteredEnv):
        return message + (
            "A spawned worker is a fresh interpreter and knows only the ids registered by the modules it "
            "imports: register the id in a module and make it as gymnasium.make('that.module:Id-v0') "
            "(gymnasium imports the module first), or pass a picklable callable that builds the "
            "environment instead of an id."
        )
    return message + (
        "A spawned worker is a fresh interpreter: state set up in the parent after import "
        "(registrations, globals, files) does not exist there."
    )


def _worker(index, env_fn, pipe, parent_pipe, shared_memory, error_queue, autoreset_mode, semaphore):
    # gymnasium's worker builds the environment outside its error handling, so a constructor that raises
    # kills the process and the parent sees only a reset connection. Build it here instead and report a
    # failure through gymnasium's own channel (error queue + a failed answer), which the parent turns
    # into an exception of the type put on the queue: a WorkerError carrying the worker's message.
    try:
        env = env_fn()
    except (KeyboardInterrupt, Exception) as error:
        parent_pipe.close()
        message, trace = _construction_message(index, error), traceback.format_exc()
        try:
            # Answer the parent's first command (its space check): a reply sent before the parent's
            # request, followed by this process exiting, would make that request fail with EPIPE.
            pipe.recv()
            error_queue.put((index, WorkerError, message, trace))
            pipe.send((None, False))
        except (EOFError, OSError):
            pass  # the parent is gone: nobody to tell
        finally:
            pipe.close()
        return
    _async_worker(
        index, lambda: env, pipe, parent_pipe, shared_memory, error_queue, autoreset_mode, semaphore
    )


def _check_finite_entries(task, index: int) -> None:
    # Checked in the parent because a worker that refuses a task raises, and gymnasium then shuts that
    # worker down: a NaN goal would cost the whole vector environment. Numbers only; the environment's
    # own set_task checks everything else.
    if not isinstance(task, dict):
        return
    for key, entry in task.items():
        if not isinstance(entry, (float, np.floating, np.ndarray, list, tuple)):
            continue  # ints cannot be non-finite; other objects are the environment's business
        try:
            array = np.asarray(entry)
        except ValueError:  # ragged lists: the environment will say what it wanted
            continue
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ValueError(
                f"task[{key!r}] for worker {index} must be finite, got {entry!r:.200}; nothing was sent "
                "to the workers"
            )


class AsyncVectorEnv(gymnasium.vector.AsyncVectorEnv):
    """gymnasium's ``AsyncVectorEnv`` over :class:`MetaEnv` workers, with task control.

    Args:
        env_fns: sequence of picklable zero-argument callables, each returning a ``MetaEnv`` (wrappers
            allowed).
        context: multiprocessing start method; ``"spawn"`` by default because forking after jax (or
            torch threads) are initialised can deadlock.
        liveness_interval: ``None`` (default): a worker's death is seen when its pipe closes (``recv`` gets
            EOF), which costs nothing per step. Seconds: also wait in slices of this length and check the
            processes between them, for workers that start helper processes which inherit the pipe and so
            keep it open after the worker dies (about 30 us more per step in the parent with 8 workers).
        **kwargs: passed to ``gymnasium.vector.AsyncVectorEnv`` (``shared_memory``, ``autoreset_mode``...).
            A ``worker=`` of your own replaces this class's, which wraps gymnasium's to report a worker
            that cannot build its environment.

    The gymnasium vector API is unchanged. A worker that raises re-raises in the parent (gymnasium's
    behaviour); a worker process that dies raises :class:`WorkerError` (at once, or within
    ``liveness_interval``), and so does a worker that cannot build its environment (for example an id
    registered only in the parent), with the worker's own error in the message. ``close()`` never
    raises because of a dead worker or a pending call: it discards the pending results, terminates the
    workers (killing any still alive after 5 s) and joins them.

    Example:
        >>> import l2l_multi.gym as l2l_gym
        >>> envs = AsyncVectorEnv([l2l_gym.Particles2DEnv] * 2)
        >>> tasks = envs.sample_tasks(2, seed=0)
        >>> envs.set_task(tasks)  # a list of num_envs tasks: one per worker
        >>> obs, info = envs.reset(seed=0)
        >>> obs.shape
        (2, 2)
        >>> envs.close()
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gymnasium.Env]],
        *,
        context: str | None = "spawn",
        liveness_interval: float | None = None,
        **kwargs,
    ):
        if not env_fns:
            raise ValueError("env_fns must hold at least one environment constructor, got an empty sequence")
        if liveness_interval is not None and not liveness_interval > 0:
            raise ValueError(f"liveness_interval must be None or positive seconds, got {liveness_interval!r}")
        self._template_fn = env_fns[0]
        self._template = None
        self._task_rng = None
        self._liveness_interval = liveness_interval
        self._pollers: dict = {}  # worker index -> (pipe, select.poll registered on it)
        self._reported_dead: set = set()  # worker indices whose death a WorkerError already named
        kwargs.setdefault("worker", _worker)
        try:
            super().__init__(env_fns, context=context, **kwargs)
        except BaseException:
            # The constructor failed after starting workers (one could not build its environment, ...):
            # nobody can call close() on an object that was never returned, so stop them here.
            if getattr(self, "processes", None):
                self._reported_dead.update(range(len(self.processes)))  # the exception says it all
                self.close(terminate=True)
            raise

    def reset(self, *, seed=None, options=None):
        """gymnasium's ``reset``; an int ``seed`` also seeds :meth:`sample_tasks` when it gets no seed."""
        if isinstance(seed, int):
            self._task_rng = np.random.default_rng(seed)
        return super().reset(seed=seed, options=options)

    def sample_tasks(self, num_tasks: int, seed=None) -> list:
        """Draws tasks from the task distribution of the first environment.

        Args:
            num_tasks: positive int.
            seed: int, ``numpy.random.Generator`` or ``None`` (the stream seeded by the last
                ``reset(seed=int)``, else fresh entropy).

        Returns:
            A list of ``num_tasks`` tasks. The draw happens in a local copy of the first environment,
            made once, so no worker's random stream is consumed.
        """
        if self._template is None:
            self._template = self._template_fn().unwrapped
        if seed is None and self._task_rng is not None:
            seed = self._task_rng
        rng = _task_generator(seed, self._template.np_random)
        return self._template.sample_tasks(num_tasks, seed=rng)

    def set_task(self, task) -> None:
        """Sets tasks on the workers.

        Args:
            task: a ``list`` of exactly ``num_envs`` tasks sets one task per worker; anything else (including
                a tuple such as a metaworld ``Task``) is set on every worker.

        Raises:
            ValueError: a list of the wrong length, or a dict task with a NaN or infinite number, before
                anything is sent. Other invalid tasks are refused by the workers' ``set_task``, which
                re-raises here and, as for any worker exception in gymnasium, shuts that worker down.
        """
        if isinstance(task, list):
            if len(task) != self.num_envs:
                raise ValueError(
                    f"task as a list must hold one task per worker ({self.num_envs}), got {len(task)}; "
                    "pass a single task to set it on every worker"
                )
            values = task
        else:
            values = [task] * self.num_envs
        for index, value in enumerate(values):
            _check_finite_entries(value, index)
        self.set_attr("task", values)

    def get_task(self) -> list:
        """Returns the list of the workers' active tasks, in worker order."""
        return list(self.get_attr("task"))

    def set_attr(self, name, values):
        self._check_alive()
        try:
            return super().set_attr(name, values)
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            self._raise_dead(error)

    def step_async(self, actions):
        self._check_alive()
        try:
            return super().step_async(actions)
        except (BrokenPipeError, ConnectionResetError) as error:
            self._raise_dead(error)

    def reset_async(self, seed=None, options=None):
        self._check_alive()
        try:
            return super().reset_async(seed=seed, options=options)
        except (BrokenPipeError, ConnectionResetError) as error:
            self._raise_dead(error)

    def call_async(self, name, *args, **kwargs):
        self._check_alive()
        try:
            return super().call_async(name, *args, **kwargs)
        except (BrokenPipeError, ConnectionResetError) as error:
            self._raise_dead(error)

    def step_wait(self, timeout=None):
        try:
            return super().step_wait(timeout)
        except (EOFError, ConnectionResetError) as error:
            self._raise_dead(error)

    def reset_wait(self, timeout=None):
        try:
            return super().reset_wait(timeout)
        except (EOFError, ConnectionResetError) as error:
            self._raise_dead(error)

    def call_wait(self, timeout=None):
        try:
            return super().call_wait(timeout)
        except (EOFError, ConnectionResetError) as error:
            self._raise_dead(error)

    def close_extras(self, timeout=None, terminate=False):
        """Stops the workers; never raises because of a dead worker or a call still pending.

        Args:
            timeout: seconds to wait for a pending call before terminating the workers (``None``: wait).
            terminate: ``True`` terminates the workers at once instead of asking them to close.
        """
        dead = [index for index, process in enumerate(self.processes) if self._is_dead(process)]
        if terminate or dead or any(pipe is None for pipe in self.parent_pipes):
            # A dead worker never answers "close" nor the pending call; its results are lost anyway.
            unreported = [index for index in dead if index not in self._reported_dead]
            if unreported and self._state != AsyncState.DEFAULT:
                warnings.warn(
                    f"close(): {self._describe(unreported)} died while a {self._state.value} call was "
                    "pending; its results are discarded and the other workers terminated",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self._terminate_workers()
            return
        try:
            super().close_extras(timeout=timeout, terminate=False)
        except Exception as error:  # close must release the workers whatever went wrong
            # Raised by the pending call or the close handshake (a worker that died meanwhile, or the
            # pending step's own error): the caller never sees it otherwise.
            warnings.warn(
                f"close(): {type(error).__name__}: {error}; the workers were terminated",
                RuntimeWarning,
                stacklevel=3,
            )
            self._terminate_workers()

    def _terminate_workers(self):
        self._state = AsyncState.DEFAULT
        for process in self.processes:
            if process.pid is not None and process.is_alive():
                process.terminate()
        for pipe in self.parent_pipes:
            if pipe is not None:
                pipe.close()
        self._pollers.clear()
        deadline = time.monotonic() + _TERMINATE_GRACE_S
        for process in self.processes:
            if process.pid is None:
                continue  # never started (the constructor failed while starting workers)
            process.join(max(deadline - time.monotonic(), 0.0))
            if process.is_alive():  # ignored SIGTERM (a handler, or stuck in uninterruptible I/O)
                process.kill()
                process.join()

    @staticmethod
    def _is_dead(process) -> bool:
        return process.pid is None or not process.is_alive()

    def _check_spaces(self):
        # The constructor's first exchange with the workers: a worker that died while starting (before
        # gymnasium's error handling runs) shows up here as a closed connection.
        try:
            return super()._check_spaces()
        except (EOFError, BrokenPipeError, ConnectionResetError) as error:
            self._raise_dead(error)

    def _poll_pipe_envs(self, timeout=None):
        # gymnasium with timeout=None blocks in recv() forever if a worker died; wait in slices and check
        # liveness between them. Connection.poll builds a selector per call (~20 us, 8 per step, on the
        # parent's share of the cores), so each pipe keeps one select.poll object: one syscall per wait.
        self._assert_is_running()
        if timeout is None and self._liveness_interval is None:
            return True  # recv() raises EOFError once a dead worker's end of the pipe is closed
        deadline = None if timeout is None else time.perf_counter() + timeout
        for index, pipe in enumerate(self.parent_pipes):
            if pipe is None or pipe.closed:
                raise WorkerError(
                    f"worker {index} was shut down after an earlier error; close() this AsyncVectorEnv "
                    "and make a new one"
                )
            poller = self._pollers.get(index)
            if poller is None or poller[0] is not pipe:
                poller = self._pollers[index] = (pipe, select.poll())
                poller[1].register(pipe.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
            while True:
                wait = float("inf") if self._liveness_interval is None else self._liveness_interval
                if deadline is not None:
                    wait = min(wait, max(deadline - time.perf_counter(), 0.0))
                if poller[1].poll(int(wait * 1000)):
                    break
                if not self.processes[index].is_alive():
                    self._raise_dead(None)
                if deadline is not None and time.perf_counter() >= deadline:
                    return False
        return True

    def _check_alive(self):
        if self.closed:
            return
        for index, pipe in enumerate(self.parent_pipes):
            if pipe is None or pipe.closed:
                raise WorkerError(
                    f"worker {index} was shut down after an earlier error; close() this AsyncVectorEnv "
                    "and make a new one"
                )
        # Liveness itself is checked while waiting (_poll_pipe_envs), not here: one waitpid per worker per
        # step is measurable overhead, and a send to a dead worker fails with BrokenPipeError anyway.

    def _describe(self, indices) -> str:
        return ", ".join(
            f"worker {index} (pid {self.processes[index].pid}, exit code {self.processes[index].exitcode})"
            for index in indices
        )

    def _raise_dead(self, cause):
        # A closed pipe can be seen a moment before the process is reaped: give it that moment.
        deadline = time.monotonic() + 1.0
        while True:
            dead = [index for index, process in enumerate(self.processes) if not process.is_alive()]
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self._reported_dead.update(dead)
        self._state = AsyncState.DEFAULT
        raise WorkerError(
            f"{self._describe(dead) or 'a worker'} died; close() this AsyncVectorEnv and make a new one"
        ) from cause
