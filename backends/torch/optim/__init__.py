"""``l2l.optim`` for the torch backend: differentiable optimisation and learnable transforms.

The stateless rules come from the backend-neutral core (``l2l_multi.transforms``) and are
re-exported here, so ``l2l.optim.sgd`` is the same object on every backend; so are the inner-loop
optimizers (``adam``, ``sgd(lr, momentum=...)``, ``clip_by_global_norm``...) that
``MAML(model, inner=l2l.optim.adam(1e-3))`` threads through its clones.
"""

from ....transforms import GradientTransformation as GradientTransformation
from ....transforms import LearnableTransformation as LearnableTransformation
from ....transforms import adam as adam
from ....transforms import apply_updates as apply_updates
from ....transforms import chain as chain
from ....transforms import clip as clip
from ....transforms import clip_by_global_norm as clip_by_global_norm
from ....transforms import hypergradient_sgd as hypergradient_sgd
from ....transforms import per_parameter_sgd as per_parameter_sgd
from ....transforms import scale as scale
from ....transforms import scale_by_adam as scale_by_adam
from ....transforms import sgd as sgd
from ....transforms import trace as trace
from ._learnable_optimizer import LearnableOptimizer as LearnableOptimizer
from ._parameter_update import AdaptationError as AdaptationError
from ._parameter_update import ParameterUpdate as ParameterUpdate
from ._sgd import DifferentiableSGD as DifferentiableSGD
from ._transforms import KroneckerTransform as KroneckerTransform
from ._transforms import LearnableTransformModule as LearnableTransformModule
from ._transforms import MetaCurvatureTransform as MetaCurvatureTransform
from ._transforms import ModuleTransform as ModuleTransform
from ._transforms import PairTransform as PairTransform
from ._transforms import ReshapedTransform as ReshapedTransform
from ._transforms import TransformDictionary as TransformDictionary

__all__ = [
    "AdaptationError",
    "DifferentiableSGD",
    "GradientTransformation",
    "KroneckerTransform",
    "LearnableOptimizer",
    "LearnableTransformModule",
    "LearnableTransformation",
    "MetaCurvatureTransform",
    "ModuleTransform",
    "PairTransform",
    "ParameterUpdate",
    "ReshapedTransform",
    "TransformDictionary",
    "adam",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "hypergradient_sgd",
    "per_parameter_sgd",
    "scale",
    "scale_by_adam",
    "sgd",
    "trace",
]
