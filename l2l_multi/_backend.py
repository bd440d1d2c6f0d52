"""Backend selection: which framework (torch or jax) new objects bind to.

The choice is a process-wide default (``set_backend``), optionally overridden in a scope
(``use_backend``, backed by a ``contextvars.ContextVar`` so threads and asyncio tasks do not
leak choices into each other). ``L2L_BACKEND`` is read once, lazily, the first time a backend
is needed; importing ``l2l_multi`` itself imports neither framework.

Objects resolve the backend once, when they are made, and keep it: switching backends later
never changes what an existing object computes.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import types
from collections.abc import Iterator

# name -> (module implementing it, the framework it needs, the pip extra that installs it)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "torch": ("l2l_multi.backends.torch", "torch", "torch"),
    "jax": ("l2l_multi.backends.jax", "jax", "jax"),
}
DEFAULT_BACKEND = "torch"  # the full feature set; "jax" is the default only where torch is missing
ENVIRONMENT_VARIABLE = "L2L_BACKEND"

_process_default: str | None = None  # None until set_backend() or the first lookup
_scoped: contextvars.ContextVar[str | None] = contextvars.ContextVar("l2l_backend", default=None)


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``set_backend``: ``("torch", "jax")``."""
    return tuple(_REGISTRY)


def _check_name(name: object, argument: str = "name") -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"{argument}={name!r} is not a known backend; available backends: "
            f"{', '.join(repr(n) for n in _REGISTRY)}"
        )
    return name


def installed(framework: str) -> bool:
    """Whether ``framework`` (e.g. "torch", "jax", "gymnasium") can be imported, without importing it.

    Example:
        >>> installed("numpy"), installed("no_such_framework")
        (True, False)
    """
    try:
        return importlib.util.find_spec(framework) is not None
    except (ImportError, ValueError):  # a blocked or half-removed package counts as missing
        return False


def missing_framework_hint(name: str) -> str:
    """How to get backend ``name`` working (a str): its pip extra, then the other backend, with
    its extra unless it is installed."""
    hint = f"install it with: pip install 'l2l_multi[{_REGISTRY[name][2]}]'"
    for other, (_, framework, extra) in _REGISTRY.items():
        if other != name:
            hint += (
                f', or use the installed one: l2l.set_backend("{other}")'
                if installed(framework)
                else f", or pip install 'l2l_multi[{extra}]' and l2l.set_backend(\"{other}\")"
            )
    return hint


def load_backend(name: str | None = None) -> types.ModuleType:
    """Import and return the module implementing backend ``name`` (default: the current one).

    Raises:
        ValueError: ``name`` is not one of ``available_backends()``.
        ImportError: the backend's framework is not installed; the message names the pip extra
            (and ``l2l.set_backend(...)`` of the other backend when that one is installed).
    """
    name = get_backend() if name is None else _check_name(name)
    module_name, framework, _ = _REGISTRY[name]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if missing in {framework, "jaxlib", "flax", "optax"}:
            raise ImportError(
                f"the {name!r} backend needs {missing!r}, which is not installed; "
                f"{missing_framework_hint(name)}"
            ) from error
        raise


def startup_backend() -> str:
    """The backend a fresh process starts with (``"torch"`` or ``"jax"``): ``L2L_BACKEND`` when
    set, else torch where installed, else jax. The examples' ``--backend`` default."""
    from_env = os.environ.get(ENVIRONMENT_VARIABLE)
    return _check_name(from_env, ENVIRONMENT_VARIABLE) if from_env else _default_backend()


def _default_backend() -> str:
    # torch when installed; else jax when only jax is, so a `[jax]` install works without a
    # set_backend call; else torch, whose load error then names the extras.
    if not installed("torch") and installed("jax"):
        return "jax"
    return DEFAULT_BACKEND


def set_backend(name: str) -> None:
    """Make ``name`` ("torch" or "jax") the process-wide backend for objects made from now on.

    The framework is imported here, so a missing installation fails at this call.

    Example:
        >>> import l2l_multi as l2l
        >>> l2l.available_backends()
        ('torch', 'jax')
        >>> l2l.set_backend("tensorflow")
        Traceback (most recent call last):
        ValueError: name='tensorflow' is not a known backend; available backends: 'torch', 'jax'
    """
    global _process_default
    _check_name(name)
    load_backend(name)
    _process_default = name


def get_backend() -> str:
    """Name of the backend that an object made now would bind to.

    Order: the innermost ``use_backend`` scope, then ``set_backend``, then the ``L2L_BACKEND``
    environment variable (read on first use), then ``"torch"`` (``"jax"`` when jax is
    installed and torch is not).
    """
    global _process_default
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _process_default is None:
        _process_default = startup_backend()
    return _process_default


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[types.ModuleType]:
    """Scope a backend choice: ``with l2l.use_backend("jax"): ...``.

    Scopes nest; on exit the previous choice is restored exactly, even after an exception.
    Yields the backend module.
    """
    _check_name(name)
    module = load_backend(name)
    token = _scoped.set(name)
    try:
        yield module
    finally:
        _scoped.reset(token)
