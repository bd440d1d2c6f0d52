"""Backend-resolved public namespaces (``l2l.optim``, ``l2l.nn``, ``l2l.algorithms``, ...).

A public name such as ``l2l.algorithms.MAML`` is looked up in the current backend's package
(``l2l_multi.backends.<backend>.algorithms``) when it is accessed, i.e. when an object is about
to be made. The object then keeps that backend's implementation; switching backends later never
changes it. Nothing here imports a framework until a name is actually requested.

So ``l2l.algorithms.MAML`` is looked up at each attribute access (inside
``with l2l.use_backend("jax"):`` it is the jax class), whereas ``from l2l_multi.algorithms import
MAML`` runs the lookup once, at import time, and binds the class of the backend current then.
Tools cannot see names resolved this way: the stub files beside these modules
(``algorithms/__init__.pyi``, ``nn/__init__.pyi``, ``optim/__init__.pyi``, ``vision/models/__init__.pyi``,
``__init__.pyi``) list them,
and ``tests/test_stubs.py`` keeps them in step with both backends.
"""

from __future__ import annotations

import importlib
import types

from ._backend import get_backend, load_backend


def backend_area(area: str, backend: str | None = None) -> types.ModuleType:
    """The module ``l2l_multi.backends.<backend>.<area>`` (``area`` like "optim" or "nn")."""
    package = load_backend(backend)
    return importlib.import_module(f"{package.__name__}.{area}")


def resolve(area: str, name: str, public_prefix: str) -> object:
    """``getattr(backend_area(area), name)`` with an error that names the backend."""
    backend = get_backend()
    try:
        module = backend_area(area, backend)
    except ModuleNotFoundError as error:
        if error.name != f"l2l_multi.backends.{backend}.{area}":
            raise
        raise AttributeError(
            f"{public_prefix}{name} is not provided by the {backend!r} backend (it has no {area!r} area)"
        ) from None
    try:
        return getattr(module, name)
    except AttributeError:
        available = sorted(n for n in getattr(module, "__all__", dir(module)) if not n.startswith("_"))
        raise AttributeError(
            f"{public_prefix}{name} is not provided by the {backend!r} backend; "
            f"available there: {', '.join(available) or '(nothing)'}"
        ) from None


def area_names(area: str) -> list[str]:
    """Public names of ``area`` under the current backend (for ``dir()`` and tab completion)."""
    try:
        module = backend_area(area)
    except ImportError:  # framework missing, or the backend has no such area yet
        return []
    return sorted(getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]))


def area_module_hooks(area: str):
    """The module-level ``__getattr__`` and ``__dir__`` (PEP 562) of ``l2l_multi.<area>``: each
    attribute access resolves the name in the current backend's ``area``; dunder names are not
    looked up (so ``copy``, ``pickle`` and ``inspect`` probes get a plain ``AttributeError``)."""
    prefix = f"l2l.{area}."

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return resolve(area, name, prefix)

    def __dir__() -> list[str]:
        return area_names(area)

    return __getattr__, __dir__
