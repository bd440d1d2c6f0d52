# Type stub for the package: its explicit re-exports, and the learn2learn utilities resolved in
# the current backend when accessed (``l2l.clone_module``...). tests/test_stubs.py checks that
# this file lists ``l2l_multi.__all__`` and that each utility exists on the backends it names.
from typing import Any

from . import algorithms as algorithms
from . import data as data
from . import gym as gym
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

__version__: str

def accuracy(predictions: Any, targets: Any) -> Any: ...
def magic_box(x: Any) -> Any: ...

# torch only
clone_distribution: Any
clone_module: Any
clone_named_parameters: Any
clone_parameters: Any
detach_distribution: Any
detach_module: Any
update_module: Any
