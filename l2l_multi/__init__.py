"""l2l_multi: meta-learning for PyTorch and JAX from one backend-neutral core.

``import l2l_multi as l2l`` imports neither torch nor jax; a backend is loaded when first used.
"""

from . import algorithms as algorithms
from . import data as data
from . import interop as interop
from . import nn as nn
from . import optim as optim
from . import text as text
from . import transforms as transforms
from . import utils as utils
from . import vision as vision
from ._backend import available_backends as available_backends
from ._backend import get_backend as get_backend
from ._backend import load_backend as load_backend
from ._backend import set_backend as set_backend
from ._backend import use_backend as use_backend
from ._training import MetaLearner as MetaLearner
from .utils import flatten_config as flatten_config
from .utils import warn_once as warn_once

__version__ = "0.1.0"

# The learn2learn core utilities, resolved in the current backend when accessed.
_BACKEND_UTILITIES = (
    "accuracy",
    "clone_distribution",
    "clone_module",
    "clone_named_parameters",
    "clone_parameters",
    "detach_distribution",
    "detach_module",
    "magic_box",
    "update_module",
)

__all__ = [
    "MetaLearner",
    "algorithms",
    "available_backends",
    "data",
    "flatten_config",
    "get_backend",
    "gym",
    "interop",
    "load_backend",
    "nn",
    "optim",
    "set_backend",
    "text",
    "transforms",
    "use_backend",
    "utils",
    "vision",
    "warn_once",
    *_BACKEND_UTILITIES,
]


def __getattr__(name: str):
    if name == "gym":  # imported on first use: it needs gymnasium (the "rl" extra) and takes ~0.4 s
        import importlib

        return importlib.import_module(".gym", __name__)
    if name in _BACKEND_UTILITIES:
        from ._dispatch import resolve

        return resolve("utils", name, "l2l.")
    raise AttributeError(f"module 'l2l_multi' has no attribute {name!r}")
