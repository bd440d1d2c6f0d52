"""``l2l.optim.update_rules``: learn2learn's path to ``DifferentiableSGD``."""

from .._paths import path_module

_NAMES = ("DifferentiableSGD",)
__getattr__, __dir__ = path_module("optim", _NAMES, "l2l.optim.update_rules.")
