"""Gradient transforms as pure ``(init, update)`` pairs, shared by every backend (optax-style).

Updates are *added* to parameters (optax's sign convention). Stateful optimizers (``sgd`` with
momentum, ``adam``) keep their state in NamedTuples of arrays, so an inner loop can thread it
and differentiate through it on torch and jax alike; ``clip``/``clip_by_global_norm`` compose
with them through ``chain``. ``LearnableTransformation``s are meta-learned preconditioners.

Transforms without learnable state live here once; the torch backend wraps them in modules
where their parameters are meta-learned, the jax backend uses them as they are.
"""

from ._adam import DEFAULT_EPS_ROOT as DEFAULT_EPS_ROOT
from ._adam import ScaleByAdamState as ScaleByAdamState
from ._adam import adam as adam
from ._adam import scale_by_adam as scale_by_adam
from ._base import EmptyState as EmptyState
from ._base import GradientTransformation as GradientTransformation
from ._base import LearnableTransformation as LearnableTransformation
from ._base import apply_updates as apply_updates
from ._base import chain as chain
from ._base import identity as identity
from ._base import is_learnable as is_learnable
from ._clipping import clip as clip
from ._clipping import clip_by_global_norm as clip_by_global_norm
from ._hypergradient import HypergradientState as HypergradientState
from ._hypergradient import hypergradient_sgd as hypergradient_sgd
from ._learnable import elementwise_scale as elementwise_scale
from ._learnable import kronecker as kronecker
from ._learnable import meta_curvature as meta_curvature
from ._momentum import TraceState as TraceState
from ._momentum import trace as trace
from ._sgd import per_parameter_sgd as per_parameter_sgd
from ._sgd import scale as scale
from ._sgd import sgd as sgd
from ._tree import tree_leaves as tree_leaves
from ._tree import tree_map as tree_map

__all__ = [
    "DEFAULT_EPS_ROOT",
    "EmptyState",
    "GradientTransformation",
    "HypergradientState",
    "LearnableTransformation",
    "ScaleByAdamState",
    "TraceState",
    "adam",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "elementwise_scale",
    "hypergradient_sgd",
    "identity",
    "is_learnable",
    "kronecker",
    "meta_curvature",
    "per_parameter_sgd",
    "scale",
    "scale_by_adam",
    "sgd",
    "trace",
    "tree_leaves",
    "tree_map",
]
