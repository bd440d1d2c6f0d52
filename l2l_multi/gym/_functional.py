"""The functional meta-environment protocol: explicit task, state and key, no hidden state.

A :class:`FunctionalMetaEnv` is the pure counterpart of the gymnasium :class:`~l2l_multi.gym.MetaEnv`: the
task and the simulator state are values passed in and returned, and randomness comes from an explicit key.
Pure-jax environments (``l2l_multi.backends.jax.gym.Particles2D``, the MJX locomotion environments in
``l2l_multi.backends.jax.mjx_envs``) implement it so that a whole meta-RL iteration can be jit-compiled and
vmapped over tasks and episodes; :class:`HostFunctionalEnv` gives any gymnasium ``MetaEnv`` the same surface
on the host, so one algorithm body written against the protocol runs on both.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import gymnasium
import numpy as np

from ._meta_env import MetaEnv, _check_num_tasks, _task_generator


@runtime_checkable
class FunctionalMetaEnv(Protocol):
    """A meta-environment as pure functions of (key, task, state, action).

    Attributes:
        observation_size: int, length of the flat observation vector.
        action_size: int, length of the flat action vector.

    Methods (one environment per call; pure-jax implementations are ``jit``- and ``vmap``-compatible, so a
    batch of tasks or episodes is ``jax.vmap(env.reset)(keys, tasks)``):

    - ``sample_tasks(key, num_tasks) -> tasks``: a pytree (a dict of arrays) whose leaves all have leading
      axis ``num_tasks``; ``tasks[i]`` (every leaf indexed at ``i``) is one task. ``key`` is a jax PRNG key
      for jax environments, an int seed or ``numpy.random.Generator`` for host ones.
    - ``reset(key, task) -> (state, observation)``: ``task`` is one task (leaves without the leading axis);
      ``observation`` is float ``(observation_size,)``; ``state`` is an implementation-defined pytree that
      carries the task, so ``step`` needs nothing else.
    - ``step(state, action) -> (state, observation, reward, done)``: ``action`` float ``(action_size,)``;
      ``reward`` a float scalar; ``done`` a bool scalar, true once the episode terminated. Stepping past
      ``done`` is allowed (jax environments keep integrating; algorithms mask those steps), and there is no
      time limit: the horizon belongs to the algorithm.

    Example:
        >>> import l2l_multi.gym as l2l_gym
        >>> env = l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv())
        >>> isinstance(env, l2l_gym.FunctionalMetaEnv)
        True
    """

    observation_size: int
    action_size: int

    def sample_tasks(self, key: Any, num_tasks: int) -> Any: ...

    def reset(self, key: Any, task: Any) -> tuple[Any, Any]: ...

    def step(self, state: Any, action: Any) -> tuple[Any, Any, Any, Any]: ...


class HostEpisode(NamedTuple):
    """The state :class:`HostFunctionalEnv` hands out: which episode of the wrapper, and how many steps in."""

    episode: int
    steps: int


def _flat_size(space, name: str) -> int:
    if not isinstance(space, gymnasium.spaces.Box):
        raise TypeError(f"the wrapped environment's {name} must be a gymnasium Box, got {space!r}")
    return int(np.prod(space.shape))


class HostFunctionalEnv:
    """The functional protocol over a gymnasium :class:`~l2l_multi.gym.MetaEnv`, run on the host.

    Host-side and not jittable: every call runs the wrapped numpy/MuJoCo environment in Python, and the
    environment itself holds the simulator state. A :class:`HostEpisode` state is therefore a ticket for the
    wrapper's one live episode: ``step`` refuses a state that was already stepped or that a later ``reset``
    replaced (a ValueError), instead of silently continuing another episode. Use one wrapper per episode that
    must run concurrently.

    Tasks are dicts of numpy arrays: ``sample_tasks`` stacks the environment's dict tasks (leading axis
    ``num_tasks``); ``reset`` accepts one such task, with numpy, jax or torch leaves, and passes it to
    ``set_task``. Environments whose tasks are not dicts of numbers (MetaWorld's) are refused by
    ``sample_tasks`` with a TypeError.

    Args:
        env: a ``MetaEnv``, possibly inside gymnasium wrappers (the task methods are found on
            ``env.unwrapped``). Wrap the bare environment: a ``TimeLimit`` would end episodes that the
            algorithm's horizon should end (``done`` is ``terminated or truncated``).

    Example:
        >>> import numpy as np
        >>> import l2l_multi.gym as l2l_gym
        >>> env = l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv())
        >>> tasks = env.sample_tasks(0, 4)
        >>> tasks["goal"].shape
        (4, 2)
        >>> state, obs = env.reset(0, {"goal": tasks["goal"][1]})
        >>> state, obs, reward, done = env.step(state, np.array([0.1, 0.0], np.float32))
        >>> obs.tolist(), bool(np.isclose(reward, -np.linalg.norm(obs - tasks["goal"][1])))
        ([0.10000000149011612, 0.0], True)
    """

    def __init__(self, env: gymnasium.Env):
        if not isinstance(getattr(env, "unwrapped", None), MetaEnv):
            raise TypeError(f"env must be an l2l_multi.gym.MetaEnv (possibly wrapped), got {env!r:.200}")
        self.env = env
        self.observation_size = _flat_size(env.observation_space, "observation_space")
        self.action_size = _flat_size(env.action_space, "action_space")
        self._live = None  # the HostEpisode that step() accepts next

    def sample_tasks(self, key, num_tasks: int) -> dict:
        """``num_tasks`` tasks as a dict of numpy arrays with leading axis ``num_tasks``.

        Args:
            key: an int seed (non-negative), a ``numpy.random.Generator``, or None (the env's ``np_random``).
            num_tasks: positive int.
        """
        num_tasks = _check_num_tasks(num_tasks)
        base = self.env.unwrapped
        tasks = base.sample_tasks(num_tasks, seed=_task_generator(key, base.np_random))
        if not all(isinstance(task, dict) for task in tasks):
            raise TypeError(
                f"HostFunctionalEnv needs tasks that are dicts of numbers; {type(base).__name__} "
                f"samples {type(tasks[0]).__name__}"
            )
        return {name: np.stack([np.asarray(task[name]) for task in tasks]) for name in tasks[0]}

    def reset(self, key, task: dict):
        """Sets ``task`` and resets the environment with seed ``key``.

        Args:
            key: None, an int seed, or a ``numpy.random.Generator`` (an int seed is drawn from it).
            task: one task, a dict of arrays without the leading task axis.

        Returns:
            ``(HostEpisode, observation)``; the observation is the environment's (float64 for MuJoCo, float32
            for Particles2D), of shape ``(observation_size,)``.
        """
        if isinstance(key, np.random.Generator):
            key = int(key.integers(2**31))
        if not isinstance(task, dict):
            raise TypeError(f"task must be a dict of arrays (one task of sample_tasks), got {task!r:.200}")
        self.env.unwrapped.set_task({name: np.asarray(value) for name, value in task.items()})
        observation, _ = self.env.reset(seed=key)
        previous = -1 if self._live is None else self._live.episode
        self._live = HostEpisode(previous + 1, 0)
        return self._live, np.asarray(observation).reshape(self.observation_size)

    def step(self, state: HostEpisode, action):
        """One step of the live episode.

        Args:
            state: the ``HostEpisode`` returned by the last ``reset`` or ``step``.
            action: float array ``(action_size,)`` (numpy, jax or torch on the CPU).

        Returns:
            ``(HostEpisode, observation (observation_size,), reward float64 scalar, done bool)``.
        """
        if state != self._live:
            raise ValueError(
                f"state {state!r} is not the live episode {self._live!r}: it was already stepped or a later "
                "reset replaced it (a HostFunctionalEnv runs one episode at a time)"
            )
        action = np.asarray(action, dtype=self.env.action_space.dtype).reshape(self.env.action_space.shape)
        observation, reward, terminated, truncated, _ = self.env.step(action)
        self._live = HostEpisode(state.episode, state.steps + 1)
        observation = np.asarray(observation).reshape(self.observation_size)
        return self._live, observation, np.float64(reward), bool(terminated or truncated)
