"""Episode collection from gymnasium vector environments into time-major torch tensors."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Episodes(NamedTuple):
    """A batch of ``N`` episodes of at most ``T`` steps, time-major.

    Fields: ``observations [T, N, obs]``, ``actions [T, N, act]`` (float32, as sampled, before any clipping by
    the environment), ``rewards [T, N]`` and ``masks [T, N]`` (float32; ``masks`` is 1 while the episode runs,
    including its last step, and 0 after it ended; rewards are 0 there).
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    masks: torch.Tensor

    def mean_return(self) -> float:
        """Undiscounted return averaged over the ``N`` episodes."""
        return float((self.rewards * self.masks).sum(0).mean())


def set_task(env, task) -> None:
    """Gives every worker of a gymnasium vector env (or a single env) the same ``task``.

    Uses the ``task`` attribute of :class:`l2l_multi.gym.MetaEnv` (``set_attr`` reaches it through wrappers).

    Example:
        >>> import gymnasium
        >>> from l2l_multi.gym._particles import Particles2DEnv
        >>> env = gymnasium.vector.SyncVectorEnv([Particles2DEnv] * 2)
        >>> set_task(env, {"goal": [0.1, 0.2]})
        >>> [task["goal"] for task in env.get_attr("task")]
        [[0.1, 0.2], [0.1, 0.2]]
    """
    if hasattr(env, "num_envs"):
        env.set_attr("task", [task] * env.num_envs)
    else:
        env.unwrapped.set_task(task)


@torch.no_grad()
def collect_episodes(
    env, policy, max_steps: int, seed=None, generator: torch.Generator | None = None
) -> Episodes:
    """Runs one episode per worker of ``env`` with actions sampled from ``policy``.

    Args:
        env: a ``gymnasium.vector.VectorEnv`` with ``num_envs = N`` workers and a Box action space.
        policy: callable mapping float32 observations ``[N, obs]`` to a distribution with ``mean``/``stddev``
            (e.g. :class:`DiagNormalPolicy`, or a ``MAML`` clone of one).
        max_steps: episode length cap ``T`` (int >= 1); rollouts stop earlier once every episode ended.
        seed: passed to ``env.reset``.
        generator: torch generator for the action noise (explicit randomness).

    Returns:
        :class:`Episodes`. Steps taken after a worker's episode ended (auto-reset) are masked out.

    Example:
        >>> import gymnasium
        >>> from l2l_multi.gym._particles import Particles2DEnv
        >>> from l2l_multi.backends.torch.rl import DiagNormalPolicy
        >>> env = gymnasium.vector.SyncVectorEnv([Particles2DEnv] * 3)
        >>> episodes = collect_episodes(env, DiagNormalPolicy(2, 2, hiddens=(8,)), max_steps=5, seed=0)
        >>> episodes.observations.shape, episodes.rewards.shape
        (torch.Size([5, 3, 2]), torch.Size([5, 3]))
    """
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    observation, _ = env.reset(seed=seed)
    alive = np.ones(env.num_envs, dtype=bool)
    records = {"observations": [], "actions": [], "rewards": [], "masks": []}
    for _ in range(max_steps):
        observation = torch.as_tensor(np.asarray(observation), dtype=torch.float32)
        dist = policy(observation)
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=dist.mean.dtype)
        action = dist.mean + dist.stddev * noise
        observation_next, reward, terminated, truncated, _ = env.step(action.numpy())
        mask = torch.as_tensor(alive, dtype=torch.float32)
        records["observations"].append(observation)
        records["actions"].append(action.float())
        records["rewards"].append(torch.as_tensor(np.asarray(reward), dtype=torch.float32) * mask)
        records["masks"].append(mask)
        alive = alive & ~(np.asarray(terminated) | np.asarray(truncated))
        if not alive.any():
            break
        observation = observation_next
    return Episodes(**{name: torch.stack(values) for name, values in records.items()})
