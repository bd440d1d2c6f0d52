"""``l2l.algorithms.base_learner``: learn2learn's path to ``BaseLearner`` (torch backend)."""

from .._paths import path_module

_NAMES = ("BaseLearner",)
__getattr__, __dir__ = path_module("algorithms", _NAMES, "l2l.algorithms.base_learner.")
