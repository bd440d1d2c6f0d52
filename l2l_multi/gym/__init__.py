"""``l2l.gym``: meta-reinforcement-learning environments on gymnasium (numpy only, no torch/jax).

Importing this package registers ``Particles2D-v1``, ``HalfCheetahForwardBackward-v1``,
``AntForwardBackward-v1``, ``AntDirection-v1``, ``HumanoidForwardBackward-v1`` and ``HumanoidDirection-v1``.
MuJoCo and metaworld are imported only when their environments are made.
"""

try:
    import gymnasium as _gymnasium  # noqa: F401  (checked first, for the error below)
except ModuleNotFoundError as _error:
    if (_error.name or "").split(".")[0] != "gymnasium":
        raise
    raise ImportError(
        'l2l_multi.gym needs gymnasium, which is not installed; install it with: pip install "l2l_multi[rl]"'
    ) from _error

from . import envs as envs  # learn2learn's module paths (l2l.gym.envs.mujoco...), resolved lazily
from ._functional import FunctionalMetaEnv as FunctionalMetaEnv
from ._functional import HostEpisode as HostEpisode
from ._functional import HostFunctionalEnv as HostFunctionalEnv
from ._meta_env import MetaEnv as MetaEnv
from ._particles import Particles2DEnv as Particles2DEnv
from ._particles import particles_reset as particles_reset
from ._particles import particles_step as particles_step
from ._registration import register_environments as register_environments
from ._vector import AsyncVectorEnv as AsyncVectorEnv
from ._vector import WorkerError as WorkerError

register_environments()

_LAZY = {
    "HalfCheetahForwardBackwardEnv": "._mujoco",
    "AntForwardBackwardEnv": "._mujoco",
    "AntDirectionEnv": "._mujoco",
    "HumanoidForwardBackwardEnv": "._mujoco",
    "HumanoidDirectionEnv": "._mujoco",
    "MetaWorldML1": "._metaworld",
    "MetaWorldML10": "._metaworld",
    "MetaWorldML45": "._metaworld",
}


def __getattr__(name):
    # MuJoCo env modules import mujoco (~0.3 s); keep `import l2l_multi.gym` cheap.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AntDirectionEnv",
    "AntForwardBackwardEnv",
    "AsyncVectorEnv",
    "FunctionalMetaEnv",
    "HalfCheetahForwardBackwardEnv",
    "HostEpisode",
    "HostFunctionalEnv",
    "HumanoidDirectionEnv",
    "HumanoidForwardBackwardEnv",
    "MetaEnv",
    "MetaWorldML1",
    "MetaWorldML10",
    "MetaWorldML45",
    "Particles2DEnv",
    "WorkerError",
    "particles_reset",
    "particles_step",
    "register_environments",
]
