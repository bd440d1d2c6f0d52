"""Core utilities of the torch backend, exposed as ``l2l.clone_module`` etc."""

from ._distributions import clone_distribution as clone_distribution
from ._distributions import detach_distribution as detach_distribution
from ._functions import accuracy as accuracy
from ._functions import magic_box as magic_box
from ._module_utils import clone_module as clone_module
from ._module_utils import clone_named_parameters as clone_named_parameters
from ._module_utils import clone_parameters as clone_parameters
from ._module_utils import detach_module as detach_module
from ._module_utils import update_module as update_module

__all__ = [
    "accuracy",
    "clone_distribution",
    "clone_module",
    "clone_named_parameters",
    "clone_parameters",
    "detach_distribution",
    "detach_module",
    "magic_box",
    "update_module",
]
