"""The meta-environment protocol: an environment with a distribution over tasks."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np


def _task_generator(seed, fallback: np.random.Generator) -> np.random.Generator:
    if seed is None:
        return fallback
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int (or None, or a numpy Generator), got {seed!r}")
        return np.random.default_rng(int(seed))
    raise TypeError(f"seed must be None, an int or a numpy Generator, got {seed!r}")


def _task_array(task, key: str, shape: tuple, allowed: str) -> np.ndarray:
    """``task[key]`` as a new finite float64 array of ``shape``; otherwise a ValueError naming the key.

    A NaN or infinite entry is refused here because nothing downstream would: the rewards would silently
    become NaN for the whole episode.
    """
    if not isinstance(task, dict) or key not in task:
        raise ValueError(f"task must be a dict with a {key!r} entry ({allowed}), got {task!r:.200}")
    value = task[key]
    raw = np.asarray(value)
    if raw.dtype.kind not in "iuf" or raw.shape != shape:
        raise ValueError(
            f"task[{key!r}] must be {allowed}, got {value!r:.200} (dtype {raw.dtype}, shape {raw.shape})"
        )
    array = raw.astype(np.float64)  # a copy: later changes to the caller's array do not reach the env
    if not np.isfinite(array).all():
        raise ValueError(f"task[{key!r}] must be {allowed}, got {value!r:.200} (not finite)")
    return array


def _check_num_tasks(num_tasks) -> int:
    if not isinstance(num_tasks, (int, np.integer)) or isinstance(num_tasks, bool) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
    return int(num_tasks)


class MetaEnv(gymnasium.Env):
    """A gymnasium environment that also owns a task distribution.

    Subclasses implement ``_sample_task(rng) -> task`` and ``_apply_task(task)``; a task is any picklable
    object (the built-in environments use dicts of numpy values, MetaWorld uses its ``Task`` tuples).
    The task is also exposed as the attribute ``task`` so that vector environments can set it per worker
    with ``set_attr("task", [...])``.

    Example:
        >>> import l2l_multi.gym as l2l_gym
        >>> env = l2l_gym.Particles2DEnv()
        >>> tasks = env.sample_tasks(3, seed=0)
        >>> env.set_task(tasks[1])
        >>> bool((env.get_task()["goal"] == tasks[1]["goal"]).all())
        True
    """

    _task: Any = None

    def sample_tasks(self, num_tasks: int, seed=None) -> list:
        """Draws ``num_tasks`` tasks from the task distribution.

        Args:
            num_tasks: positive int.
            seed: ``None`` uses the environment's ``np_random`` (seeded by ``reset(seed=...)``); an int or a
                ``numpy.random.Generator`` gives a reproducible draw that leaves ``np_random`` untouched.

        Returns:
            A list of ``num_tasks`` tasks, each accepted by :meth:`set_task`.
        """
        num_tasks = _check_num_tasks(num_tasks)
        rng = _task_generator(seed, self.np_random)
        return [self._sample_task(rng) for _ in range(num_tasks)]

    def set_task(self, task) -> None:
        """Makes ``task`` the active task; it takes effect from the next ``step``."""
        self._apply_task(task)
        self._task = task

    def get_task(self):
        """Returns the active task (``None`` before any ``set_task`` when there is no default)."""
        return self._task

    # A property (not a plain attribute) so that gymnasium's ``set_wrapper_attr`` finds it on the base env
    # through any wrapper stack, instead of silently creating an attribute on the outermost wrapper.
    task = property(lambda self: self.get_task(), lambda self, task: self.set_task(task))

    def _sample_task(self, rng: np.random.Generator):
        raise NotImplementedError

    def _apply_task(self, task) -> None:
        raise NotImplementedError
