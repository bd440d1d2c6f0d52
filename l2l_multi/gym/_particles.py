"""2-D point navigation of the MAML paper (Finn et al. 2017, section 5.3)."""

from __future__ import annotations

import gymnasium
import numpy as np

from ._meta_env import MetaEnv, _task_array

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
MAX_ACTION = 0.1
GOAL_TOLERANCE = 0.01


def particles_reset(goal: np.ndarray) -> np.ndarray:
    """Initial position of the point: the origin.

    Args:
        goal: float array of shape ``(..., 2)``; only its batch shape is used.

    Returns:
        float32 array of shape ``(..., 2)``, all zeros.

    Example:
        >>> particles_reset(np.array([0.3, -0.2]))
        array([0., 0.], dtype=float32)
    """
    return np.zeros(np.shape(goal), dtype=np.float32)


def particles_step(position: np.ndarray, goal: np.ndarray, action: np.ndarray):
    """One step of the point dynamics: move by the clipped action, reward is minus the distance to the goal.

    Args:
        position: float array ``(..., 2)``.
        goal: float array ``(..., 2)``.
        action: float array ``(..., 2)``; clipped to ``[-0.1, 0.1]`` per coordinate.

    Returns:
        ``(new_position float32 (..., 2), reward float64 (...), terminated bool (...))``; the reward is
        ``-||new_position - goal||`` and the episode ends within 0.01 of the goal.

    Example:
        >>> pos, reward, done = particles_step(np.zeros(2), np.array([0.3, 0.4]), np.array([1.0, 1.0]))
        >>> pos.tolist(), round(float(reward), 4), bool(done)
        ([0.10000000149011612, 0.10000000149011612], -0.3606, False)
    """
    action = np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
    new_position = (np.asarray(position, dtype=np.float64) + action).astype(np.float32)
    distance = np.linalg.norm(new_position.astype(np.float64) - goal, axis=-1)
    return new_position, -distance, distance < GOAL_TOLERANCE


class Particles2DEnv(MetaEnv):
    """2-D navigation (MAML paper): a point starts at the origin and moves towards a goal.

    Task: ``{"goal": float64 array (2,)}`` drawn uniformly in ``[-0.5, 0.5]^2`` (``set_task`` accepts any
    finite goal of shape ``(2,)`` and raises a ValueError naming ``task['goal']`` otherwise). Observation:
    position, float32 ``(2,)``. Action: float32 ``(2,)``, clipped to ``[-0.1, 0.1]``. Reward: minus the
    Euclidean distance to the goal (as the brief asks; the MAML paper's text says squared distance); the
    episode terminates within 0.01 of the goal. ``Particles2D-v1`` adds the paper's horizon of 100 steps.

    Example:
        >>> env = Particles2DEnv()
        >>> env.set_task(env.sample_tasks(1, seed=0)[0])
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, terminated, truncated, info = env.step(np.array([0.1, 0.1], dtype=np.float32))
        >>> bool(np.isclose(reward, -np.linalg.norm(obs - env.get_task()["goal"])))
        True
    """

    metadata = {"render_modes": []}

    def __init__(self, task: dict | None = None):
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        self.set_task(task if task is not None else {"goal": np.zeros(2)})
        self._position = particles_reset(self._goal)

    def _sample_task(self, rng):
        return {"goal": rng.uniform(GOAL_LOW, GOAL_HIGH, size=2)}

    def _apply_task(self, task):
        self._goal = _task_array(task, "goal", (2,), "a finite goal position: real numbers of shape (2,)")

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._position = particles_reset(self._goal)
        return self._position.copy(), {}

    def step(self, action):
        self._position, reward, terminated = particles_step(self._position, self._goal, action)
        return self._position.copy(), float(reward), bool(terminated), False, {}
