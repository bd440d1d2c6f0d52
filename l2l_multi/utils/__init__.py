"""``l2l.utils``: learn2learn's ``learn2learn.utils`` module path.

``flatten_config`` and ``warn_once`` are backend-neutral. The tensor utilities (``clone_module``,
``update_module``, ``clone_distribution``... the same objects as ``l2l.clone_module``) are resolved
in the current backend when accessed, like ``l2l.nn``: they are all there on the torch backend,
which learn2learn's API assumes; under ``set_backend("jax")`` only ``accuracy`` and ``magic_box``
exist, and any other name raises an AttributeError naming the backend.
"""

from __future__ import annotations

from .._dispatch import area_names, resolve
from ._config import flatten_config as flatten_config
from ._config import warn_once as warn_once


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return resolve("utils", name, "l2l.utils.")


def __dir__() -> list[str]:
    return sorted({"flatten_config", "warn_once", *area_names("utils")})
