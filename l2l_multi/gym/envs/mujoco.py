"""``l2l.gym.envs.mujoco``: learn2learn's path to the MuJoCo environments (gymnasium MuJoCo v5 models)."""

from ._forward import forwarding_hooks

_NAMES = (
    "AntDirectionEnv",
    "AntForwardBackwardEnv",
    "HalfCheetahForwardBackwardEnv",
    "HumanoidDirectionEnv",
    "HumanoidForwardBackwardEnv",
)

__getattr__, __dir__ = forwarding_hooks(__name__, _NAMES)
