"""A minimal pytree map for the core: nested dicts, lists and tuples (named tuples included).

The core may not import jax, so it cannot use ``jax.tree_util``; the containers meta-learning
code passes around (a list of torch parameters, a dict of flax parameters, a NamedTuple state)
are all covered here. ``None`` is a leaf that maps to ``None`` (a parameter without gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def tree_map(function: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``function`` leaf-wise to ``tree`` and the trees in ``rest`` (same structure).

    ``None`` leaves of ``tree`` stay ``None`` without calling ``function``.

    Example:
        >>> tree_map(lambda a, b: a + b, {"w": [1, 2], "b": None}, {"w": [10, 20], "b": 5})
        {'w': [11, 22], 'b': None}
    """
    if tree is None:
        return None
    if isinstance(tree, dict):
        for other in rest:
            if not isinstance(other, dict) or other.keys() != tree.keys():
                raise ValueError(f"tree structures differ: keys {sorted(tree)} vs {other!r:.80}")
        return {key: tree_map(function, tree[key], *(other[key] for other in rest)) for key in tree}
    if isinstance(tree, (list, tuple)):
        for other in rest:
            if not isinstance(other, (list, tuple)) or len(other) != len(tree):
                raise ValueError(f"tree structures differ: length {len(tree)} vs {other!r:.80}")
        mapped = [tree_map(function, *items) for items in zip(tree, *rest)]
        if _is_namedtuple(tree):
            return type(tree)(*mapped)
        return type(tree)(mapped) if isinstance(tree, tuple) else mapped
    return function(tree, *rest)


def tree_leaves(tree: Any) -> list[Any]:
    """The non-``None`` leaves of ``tree`` in a fixed order (dict insertion order)."""
    leaves: list[Any] = []

    def collect(leaf: Any) -> Any:
        leaves.append(leaf)
        return leaf

    tree_map(collect, tree)
    return leaves
