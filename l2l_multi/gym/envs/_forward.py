"""The module hooks (PEP 562) that make ``l2l.gym.envs.<family>.Name`` an alias of ``l2l.gym.Name``."""

from __future__ import annotations

import importlib


def forwarding_hooks(module_name: str, names: tuple[str, ...]):
    """``(__getattr__, __dir__)`` for the module ``module_name`` exposing ``names`` of
    ``l2l_multi.gym``; ``l2l_multi.gym`` (and so gymnasium) is imported only when a name is read."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(
                f"module {module_name!r} has no attribute {name!r}; it has {', '.join(names)}"
            )
        return getattr(importlib.import_module("l2l_multi.gym"), name)

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__
