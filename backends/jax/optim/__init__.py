"""``l2l.optim`` for the jax backend: the core's pure gradient transforms (they compose with optax).

Learned transforms (``elementwise_scale``, ``kronecker``, ``meta_curvature``) keep their
parameters in the state, which ``GBML`` places in the meta-parameter tree; use
``layout="flax"`` for flax kernels. ``LearnableOptimizer``, ``ParameterUpdate`` and
``DifferentiableSGD`` carry the torch backend's names and meaning as pure functions of explicit
trees (the transform's parameters come from ``init``; meta-gradients are ``jax.grad`` through the
step). The inner-loop optimizers (``adam``, ``sgd(lr, momentum=...)``, ``clip_by_global_norm``...)
are the same objects as on the torch backend; any optax transform works as well
(``MAML(model, inner=optax.adam(1e-3))``).
"""

from ....transforms import EmptyState as EmptyState
from ....transforms import GradientTransformation as GradientTransformation
from ....transforms import LearnableTransformation as LearnableTransformation
from ....transforms import adam as adam
from ....transforms import apply_updates as apply_updates
from ....transforms import chain as chain
from ....transforms import clip as clip
from ....transforms import clip_by_global_norm as clip_by_global_norm
from ....transforms import elementwise_scale as elementwise_scale
from ....transforms import hypergradient_sgd as hypergradient_sgd
from ....transforms import identity as identity
from ....transforms import kronecker as kronecker
from ....transforms import meta_curvature as meta_curvature
from ....transforms import per_parameter_sgd as per_parameter_sgd
from ....transforms import scale as scale
from ....transforms import scale_by_adam as scale_by_adam
from ....transforms import sgd as sgd
from ....transforms import trace as trace
from ._learnable_optimizer import DifferentiableSGD as DifferentiableSGD
from ._learnable_optimizer import LearnableOptimizer as LearnableOptimizer
from ._learnable_optimizer import MetaGradients as MetaGradients
from ._learnable_optimizer import ParameterUpdate as ParameterUpdate

__all__ = [
    "DifferentiableSGD",
    "EmptyState",
    "GradientTransformation",
    "LearnableOptimizer",
    "LearnableTransformation",
    "MetaGradients",
    "ParameterUpdate",
    "adam",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "elementwise_scale",
    "hypergradient_sgd",
    "identity",
    "kronecker",
    "meta_curvature",
    "per_parameter_sgd",
    "scale",
    "scale_by_adam",
    "sgd",
    "trace",
]
