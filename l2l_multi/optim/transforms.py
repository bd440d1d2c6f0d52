"""``l2l.optim.transforms``: learn2learn's path to its module transforms (torch backend).

The same objects as ``l2l.optim.KroneckerTransform`` etc. Not to be confused with
``l2l_multi.transforms``, our backend-neutral (init, update) gradient transforms.
"""

from .._paths import path_module

_NAMES = (
    "KroneckerTransform",
    "MetaCurvatureTransform",
    "ModuleTransform",
    "ReshapedTransform",
    "TransformDictionary",
)
__getattr__, __dir__ = path_module("optim", _NAMES, "l2l.optim.transforms.")
