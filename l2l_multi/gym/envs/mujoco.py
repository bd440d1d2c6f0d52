"""``l2l.gym.envs.mujoco``: learn2learn's path to the MuJoCo environments (gymnasium MuJoCo v5 models)."""

_NAMES = (
    "AntDirectionEnv", "AntForwardBackwardEnv", "HalfCheetahForwardBackwardEnv", "HumanoidDirectionEnv",
    "HumanoidForwardBackwardEnv",
)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}; it has {', '.join(_NAMES)}")
    from ... import gym  # resolves lazily, so importing this path stays cheap

    return getattr(gym, name)


def __dir__() -> list[str]:
    return list(_NAMES)
