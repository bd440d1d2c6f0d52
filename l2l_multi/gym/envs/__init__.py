"""``l2l.gym.envs``: learn2learn's module paths to the meta-RL environments.

``l2l.gym.envs.mujoco.HalfCheetahForwardBackwardEnv`` is ``l2l.gym.HalfCheetahForwardBackwardEnv``,
and so on; the environments follow the gymnasium API (``reset`` returns ``(obs, info)``, ``step``
returns five values). MuJoCo and metaworld are imported only when an environment is accessed.
"""

from . import metaworld as metaworld
from . import mujoco as mujoco
from . import particles as particles

__all__ = ["metaworld", "mujoco", "particles"]
