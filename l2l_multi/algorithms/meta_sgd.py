"""``l2l.algorithms.meta_sgd``: learn2learn's path to ``MetaSGD`` and ``meta_sgd_update`` (torch)."""

from .._paths import path_module

_NAMES = ("MetaSGD", "meta_sgd_update")
__getattr__, __dir__ = path_module("algorithms", _NAMES, "l2l.algorithms.meta_sgd.")
