"""MuJoCo locomotion meta-environments on gymnasium's v5 robots.

Forward/backward tasks follow the MAML paper (Finn et al. 2017, appendix A.3): the task is a direction
``d`` in {-1, +1} and the reward replaces the forward velocity ``v_x`` by ``d * v_x``; all other terms
(control cost, and for Ant/Humanoid contact cost and survive bonus) are gymnasium v5's. Direction tasks
follow ProMP (Rothfuss et al. 2019): a unit vector ``d`` drawn uniformly on the circle and the reward
``w * <d, v_xy> - ctrl_cost - contact_cost + survive_bonus``, with gymnasium v5's weights.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv

from ._meta_env import MetaEnv, _task_array


class _ForwardBackwardMixin(MetaEnv):
    def _sample_task(self, rng):
        return {"direction": float(rng.choice([-1.0, 1.0]))}

    def _apply_task(self, task):
        allowed = "-1.0 (backward) or 1.0 (forward)"
        direction = float(_task_array(task, "direction", (), allowed))
        if direction not in (-1.0, 1.0):
            raise ValueError(f"task['direction'] must be {allowed}, got {task['direction']!r}")
        self._direction = direction

    def _get_rew(self, x_velocity: float, action):
        # gymnasium v5 computes every reward term from x_velocity here, so flipping it flips only the
        # forward term and leaves the costs and the survive bonus as they are.
        return super()._get_rew(self._direction * x_velocity, action)


class _DirectionMixin(MetaEnv):
    def _sample_task(self, rng):
        angle = rng.uniform(0.0, 2.0 * np.pi)
        return {"direction": np.array([np.cos(angle), np.sin(angle)])}

    def _apply_task(self, task):
        allowed = "a finite unit vector: real numbers of shape (2,)"
        direction = _task_array(task, "direction", (2,), allowed)
        if not np.isclose(np.linalg.norm(direction), 1.0):
            raise ValueError(
                f"task['direction'] must be {allowed}, got {task['direction']!r} "
                f"(norm {np.linalg.norm(direction):.6g})"
            )
        self._direction = direction

    def step(self, action):
        observation, _, terminated, truncated, info = super().step(action)
        velocity = np.array([info["x_velocity"], info["y_velocity"]])
        forward = self._forward_reward_weight * float(velocity @ self._direction)
        info["reward_forward"] = forward
        reward = forward + info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"]
        return observation, reward, terminated, truncated, info


class HalfCheetahForwardBackwardEnv(_ForwardBackwardMixin, HalfCheetahEnv):
    """HalfCheetah-v5 running forward or backward: reward ``d * v_x - ctrl_cost_weight * ||a||^2``.

    ``ctrl_cost_weight`` defaults to gymnasium v5's 0.1; the MAML paper's code and learn2learn use
    ``0.5 * 0.1 = 0.05`` (pass ``ctrl_cost_weight=0.05`` for theirs).
    Task: ``{"direction": -1.0 | 1.0}`` (default +1). Observation float64 ``(17,)``, action float32 ``(6,)``.
    Keyword arguments go to gymnasium's ``HalfCheetahEnv``. ``HalfCheetahForwardBackward-v1`` adds the
    MAML horizon of 200 steps.

    Example:
        >>> env = HalfCheetahForwardBackwardEnv()
        >>> env.set_task({"direction": -1.0})
        >>> obs, info = env.reset(seed=0)
        >>> obs, reward, *_ , info = env.step(env.action_space.sample())
        >>> bool(np.isclose(info["reward_forward"], -info["x_velocity"]))
        True
    """

    def __init__(self, task: dict | None = None, **kwargs):
        self.set_task(task if task is not None else {"direction": 1.0})
        super().__init__(**kwargs)


class AntForwardBackwardEnv(_ForwardBackwardMixin, AntEnv):
    """Ant-v5 walking forward or backward (MAML paper's task; gymnasium v5 costs and survive bonus).

    Reward ``d * v_x + 1 - 0.5 * ||a||^2 - contact_cost``. Task ``{"direction": -1.0 | 1.0}``.
    Observation float64 ``(105,)``, action float32 ``(8,)``. ``AntForwardBackward-v1``: horizon 200.

    Example:
        >>> env = AntForwardBackwardEnv({"direction": -1.0})
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape
        (105,)
    """

    def __init__(self, task: dict | None = None, **kwargs):
        self.set_task(task if task is not None else {"direction": 1.0})
        super().__init__(**kwargs)


class AntDirectionEnv(_DirectionMixin, AntEnv):
    """Ant-v5 walking in a 2-D direction (ProMP's reward: ``<d, v_xy> - costs + survive bonus``).

    Task ``{"direction": float64 unit vector (2,)}`` sampled uniformly on the circle (default ``(1, 0)``).
    Observation float64 ``(105,)``, action float32 ``(8,)``. ``AntDirection-v1``: horizon 200.

    Example:
        >>> env = AntDirectionEnv()
        >>> env.set_task(env.sample_tasks(1, seed=0)[0])
        >>> round(float(np.linalg.norm(env.get_task()["direction"])), 6)
        1.0
    """

    def __init__(self, task: dict | None = None, **kwargs):
        self.set_task(task if task is not None else {"direction": np.array([1.0, 0.0])})
        super().__init__(**kwargs)


class HumanoidForwardBackwardEnv(_ForwardBackwardMixin, HumanoidEnv):
    """Humanoid-v5 walking forward or backward (MAML-style direction flip of the v5 forward term).

    Reward ``1.25 * d * v_x + 5 - 0.1 * ||a||^2 - contact_cost`` (v5 weights). Task
    ``{"direction": -1.0 | 1.0}``. Observation float64 ``(348,)``, action float32 ``(17,)``.
    ``HumanoidForwardBackward-v1``: horizon 200.

    Example:
        >>> env = HumanoidForwardBackwardEnv({"direction": -1.0})
        >>> env.get_task()
        {'direction': -1.0}
    """

    def __init__(self, task: dict | None = None, **kwargs):
        self.set_task(task if task is not None else {"direction": 1.0})
        super().__init__(**kwargs)


class HumanoidDirectionEnv(_DirectionMixin, HumanoidEnv):
    """Humanoid-v5 walking in a 2-D direction (ProMP's reward with gymnasium v5 weights).

    Reward ``1.25 * <d, v_xy> + 5 - 0.1 * ||a||^2 - contact_cost``; task
    ``{"direction": float64 unit vector (2,)}``. ``HumanoidDirection-v1``: horizon 200.

    Example:
        >>> env = HumanoidDirectionEnv()
        >>> env.get_task()["direction"].tolist()
        [1.0, 0.0]
    """

    def __init__(self, task: dict | None = None, **kwargs):
        self.set_task(task if task is not None else {"direction": np.array([1.0, 0.0])})
        super().__init__(**kwargs)
