"""``l2l.gym.envs.metaworld``: learn2learn's path to the metaworld 3 benchmarks."""

_NAMES = ("MetaWorldML1", "MetaWorldML10", "MetaWorldML45")


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}; it has {', '.join(_NAMES)}")
    from ... import gym  # resolves lazily, so importing this path stays cheap

    return getattr(gym, name)


def __dir__() -> list[str]:
    return list(_NAMES)
