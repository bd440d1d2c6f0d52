"""l2l_multi: meta-learning for PyTorch and JAX from one backend-neutral core.

``import l2l_multi as l2l`` imports neither torch nor jax; a backend is loaded when first used.
"""

from . import data as data
from ._backend import available_backends as available_backends
from ._backend import get_backend as get_backend
from ._backend import load_backend as load_backend
from ._backend import set_backend as set_backend
from ._backend import use_backend as use_backend

__version__ = "0.1.0"

__all__ = [
    "available_backends", "data", "get_backend", "load_backend", "set_backend", "use_backend",
]
