"""``l2l.nn.metalayers``: learn2learn's path to ``MetaModule`` and ``ParameterTransform`` (torch)."""

from .._paths import path_module

_NAMES = ("MetaModule", "ParameterTransform")
__getattr__, __dir__ = path_module("nn", _NAMES, "l2l.nn.metalayers.")
