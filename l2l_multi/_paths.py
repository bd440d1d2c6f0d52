"""learn2learn's module paths (``l2l.optim.transforms``, ``l2l.nn.metalayers``...) over our areas.

learn2learn 0.2.0 spreads its names over submodules that its scripts import directly
(``from learn2learn.optim.transforms import MetaCurvatureTransform``). Each such path here is a
small module that exposes a fixed set of names of one backend area, resolved like the area itself
(``l2l_multi._dispatch``): at attribute access, in the current backend. They are torch names in
learn2learn; under another backend a name that backend lacks raises an AttributeError naming it.
"""

from __future__ import annotations

from collections.abc import Callable

from ._dispatch import resolve


def path_module(area: str, names: tuple[str, ...], public_prefix: str) -> tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for a module that re-exports ``names`` of backend ``area``."""
    allowed = frozenset(names)

    def __getattr__(name: str):
        if name not in allowed:
            provided = ", ".join(sorted(allowed))
            raise AttributeError(f"{public_prefix.rstrip('.')} has no attribute {name!r}; it has {provided}")
        return resolve(area, name, public_prefix)

    def __dir__() -> list[str]:
        return sorted(allowed)

    return __getattr__, __dir__
