"""``l2l.algorithms.maml``: learn2learn's path to ``MAML`` and ``maml_update`` (torch backend)."""

from .._paths import path_module

_NAMES = ("MAML", "maml_update")
__getattr__, __dir__ = path_module("algorithms", _NAMES, "l2l.algorithms.maml.")
