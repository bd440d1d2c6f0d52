"""Registers the meta-environments with gymnasium (gymnasium 1.x has no plugin auto-loading)."""

from __future__ import annotations

import gymnasium

# Horizons: 100 for 2-D navigation and 200 for locomotion, as in the MAML paper's experiments.
_ENVIRONMENTS = {
    "Particles2D-v1": ("l2l_multi.gym._particles:Particles2DEnv", 100),
    "HalfCheetahForwardBackward-v1": ("l2l_multi.gym._mujoco:HalfCheetahForwardBackwardEnv", 200),
    "AntForwardBackward-v1": ("l2l_multi.gym._mujoco:AntForwardBackwardEnv", 200),
    "AntDirection-v1": ("l2l_multi.gym._mujoco:AntDirectionEnv", 200),
    "HumanoidForwardBackward-v1": ("l2l_multi.gym._mujoco:HumanoidForwardBackwardEnv", 200),
    "HumanoidDirection-v1": ("l2l_multi.gym._mujoco:HumanoidDirectionEnv", 200),
}


def register_environments() -> None:
    """Registers the ids above once per process; later calls change nothing.

    Example:
        >>> register_environments()
        >>> "Particles2D-v1" in gymnasium.registry
        True
    """
    for env_id, (entry_point, horizon) in _ENVIRONMENTS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=horizon)
