"""``l2l.gym.envs.metaworld``: learn2learn's path to the metaworld 3 benchmarks."""

from ._forward import forwarding_hooks

_NAMES = ("MetaWorldML1", "MetaWorldML10", "MetaWorldML45")

__getattr__, __dir__ = forwarding_hooks(__name__, _NAMES)
