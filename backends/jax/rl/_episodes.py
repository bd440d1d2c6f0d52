"""Episodes of a functional meta-environment, collected with ``lax.scan`` and ``vmap`` (jax backend).

A functional meta-environment is any object with ``sample_tasks(key, n)`` (a pytree of ``n`` tasks, leading
axis ``n``), ``reset(key, task) -> (state, observation)`` and ``step(state, action) -> (state, observation,
reward, done)``, all for one episode and pure, so they can be vmapped and compiled.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Episodes(NamedTuple):
    """A batch of ``N`` episodes of ``T`` steps, time-major (the torch twin's fields).

    Fields: ``observations [T, N, obs]``, ``actions [T, N, act]`` (as sampled, before any clipping by the
    environment), ``rewards [T, N]`` and ``masks [T, N]`` (1 while the episode runs, including its last
    step, and 0 after it ended; rewards are 0 there). All in the policy's float dtype.
    """

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array

    def mean_return(self) -> jax.Array:
        """Undiscounted return averaged over the ``N`` episodes: a 0-d array (a float on torch; this
        one stays traceable under ``jit``)."""
        return (self.rewards * self.masks).sum(0).mean()


def check_environment(env) -> None:
    """Refuses an ``env`` without the functional meta-environment methods, naming the missing ones."""
    missing = [name for name in ("sample_tasks", "reset", "step") if not callable(getattr(env, name, None))]
    if missing:
        raise TypeError(
            f"env must be a functional meta-environment with sample_tasks(key, n), reset(key, task) and "
            f"step(state, action); {type(env).__name__} lacks {', '.join(missing)}"
        )


def rollout_episodes(env, policy, task, key: jax.Array, episodes: int, horizon: int) -> Episodes:
    """Runs ``episodes`` episodes of ``horizon`` steps on one ``task`` with actions sampled from ``policy``.

    Args:
        env: functional meta-environment (see the module docstring).
        policy: callable from observations ``[episodes, obs]`` to a distribution with ``sample(key)``
            (e.g. :class:`DiagNormalPolicy`); the sampled actions carry no gradient (they are data).
        task: one task (a pytree without the leading task axis).
        key: PRNG key for the resets and the action noise.
        episodes: ``N``, the number of episodes (static int >= 1).
        horizon: ``T``, the steps per episode (static int >= 1).

    Returns:
        :class:`Episodes` ``[T, N, ...]``; steps after an episode reported ``done`` are masked.

    Example:
        >>> import jax
        >>> from l2l_multi.backends.jax.gym import Particles2D
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy
        >>> env = Particles2D()
        >>> task = jax.tree_util.tree_map(lambda x: x[0], env.sample_tasks(jax.random.key(0), 1))
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(1))
        >>> rollout_episodes(env, policy, task, jax.random.key(2), episodes=3, horizon=5).rewards.shape
        (5, 3)
    """
    for name, value in (("episodes", episodes), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int (static), got {value!r}")
    reset_key, noise_key = jax.random.split(key)
    state, observation = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, episodes), task)

    def body(carry, step_key):
        state, observation, alive = carry
        dist = policy(observation)
        action = jax.lax.stop_gradient(dist.sample(step_key))  # actions are data, not functions of the policy
        state, next_observation, reward, done = jax.vmap(env.step)(state, action)
        mask = alive.astype(dist.mean.dtype)
        record = (observation.astype(mask.dtype), action, reward.astype(mask.dtype) * mask, mask)
        return (state, next_observation, alive & ~done), record

    alive = jnp.ones((episodes,), dtype=bool)
    _, records = jax.lax.scan(body, (state, observation, alive), jax.random.split(noise_key, horizon))
    return Episodes(*records)
