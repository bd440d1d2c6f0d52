"""Gradient transforms as pure ``(init, update)`` pairs, shared by every backend (optax-style).

Transforms without learnable state live here once; the torch backend wraps them in modules
where their parameters are meta-learned, the jax backend uses them as they are.
"""

from ._base import EmptyState as EmptyState
from ._base import GradientTransformation as GradientTransformation
from ._base import apply_updates as apply_updates
from ._base import chain as chain
from ._base import identity as identity
from ._hypergradient import HypergradientState as HypergradientState
from ._hypergradient import hypergradient_sgd as hypergradient_sgd
from ._learnable import elementwise_scale as elementwise_scale
from ._learnable import kronecker as kronecker
from ._learnable import meta_curvature as meta_curvature
from ._sgd import per_parameter_sgd as per_parameter_sgd
from ._sgd import scale as scale
from ._sgd import sgd as sgd
from ._tree import tree_leaves as tree_leaves
from ._tree import tree_map as tree_map

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "HypergradientState",
    "apply_updates",
    "chain",
    "elementwise_scale",
    "hypergradient_sgd",
    "identity",
    "kronecker",
    "meta_curvature",
    "per_parameter_sgd",
    "scale",
    "sgd",
    "tree_leaves",
    "tree_map",
]
