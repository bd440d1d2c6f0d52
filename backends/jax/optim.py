"""``l2l.optim`` for the jax backend: the core's pure gradient transforms (they compose with optax).

Learned transforms (``elementwise_scale``, ``kronecker``, ``meta_curvature``) keep their
parameters in the state, which ``GBML`` places in the meta-parameter tree; use
``layout="flax"`` for flax kernels. The torch backend's module classes (``ParameterUpdate``,
``LearnableOptimizer``...) are stateful by design and exist only there.
"""

from ...transforms import EmptyState as EmptyState
from ...transforms import GradientTransformation as GradientTransformation
from ...transforms import apply_updates as apply_updates
from ...transforms import chain as chain
from ...transforms import elementwise_scale as elementwise_scale
from ...transforms import hypergradient_sgd as hypergradient_sgd
from ...transforms import identity as identity
from ...transforms import kronecker as kronecker
from ...transforms import meta_curvature as meta_curvature
from ...transforms import per_parameter_sgd as per_parameter_sgd
from ...transforms import scale as scale
from ...transforms import sgd as sgd

__all__ = [
    "EmptyState",
    "GradientTransformation",
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
]
