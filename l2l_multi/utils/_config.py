"""Backend-neutral helpers of learn2learn's ``utils`` module: ``flatten_config`` and ``warn_once``."""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from typing import Any

_CATEGORIES = {"default": UserWarning, "deprecation": DeprecationWarning}


def flatten_config(args: Any, prefix: str | None = None) -> dict[str | None, Any]:
    """Flatten a nested configuration into one level of dotted keys (for experiment loggers).

    Args:
        args: an ``argparse.Namespace``, a dataclass instance, a dict (string keys), or nests of
            them; any other value is a leaf.
        prefix: key of ``args`` itself in the result (None at the top level).

    Returns:
        ``dict`` from dotted key (``"model.width"``) to leaf value. A leaf passed at the top level
        comes back as ``{prefix: args}``, as in learn2learn.

    Example:
        >>> flatten_config({"lr": 0.1, "model": {"width": 64, "depth": 4}})
        {'lr': 0.1, 'model.width': 64, 'model.depth': 4}
    """
    if isinstance(args, argparse.Namespace):
        children = vars(args)
    elif dataclasses.is_dataclass(args) and not isinstance(args, type):
        children = {field.name: getattr(args, field.name) for field in dataclasses.fields(args)}
    elif isinstance(args, dict):
        children = args
    else:
        return {prefix: args}
    flat: dict[str | None, Any] = {}
    for key, value in children.items():
        if not isinstance(key, str):
            raise TypeError(f"flatten_config: keys must be strings, got {key!r} ({type(key).__name__})")
        flat.update(flatten_config(value, key if prefix is None else f"{prefix}.{key}"))
    return flat


class _WarnOnce:
    """``warn_once(message, severity=None)``: issue each distinct message once per process.

    ``severity`` is None or "default" (UserWarning), "deprecation" (DeprecationWarning), "error"
    (raises RuntimeError every time) or a Warning subclass.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     for _ in range(3):
        ...         warn_once("the doctest's warning")
        >>> len(caught)
        1
    """

    def __init__(self) -> None:
        self.warned_messages: list[str] = []

    def __call__(self, message: str, severity: str | type[Warning] | None = None) -> None:
        if severity == "error":
            raise RuntimeError(message)
        if isinstance(severity, str) or severity is None:
            key = "default" if severity is None else severity
            if key not in _CATEGORIES:
                raise ValueError(
                    f"warn_once: severity={severity!r} is not one of None, 'default', 'deprecation', "
                    "'error' or a Warning subclass"
                )
            category = _CATEGORIES[key]
        elif isinstance(severity, type) and issubclass(severity, Warning):
            category = severity
        else:
            raise ValueError(f"warn_once: severity={severity!r} is not a string or a Warning subclass")
        if message in self.warned_messages:
            return
        self.warned_messages.append(message)
        warnings.warn(message, category=category, stacklevel=2)


warn_once = _WarnOnce()
