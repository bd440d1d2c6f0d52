"""``l2l.gym.envs.particles``: learn2learn's path to the 2-D particle navigation environment."""

from ._forward import forwarding_hooks

_NAMES = ("Particles2DEnv",)

__getattr__, __dir__ = forwarding_hooks(__name__, _NAMES)
