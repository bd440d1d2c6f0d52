"""``l2l.optim`` for the torch backend: differentiable optimisation and learnable transforms.

The stateless rules come from the backend-neutral core (``l2l_multi.transforms``) and are
re-exported here, so ``l2l.optim.sgd`` is the same object on every backend.
"""

from ....transforms import GradientTransformation as GradientTransformation
from ....transforms import apply_updates as apply_updates
from ....transforms import chain as chain
from ....transforms import hypergradient_sgd as hypergradient_sgd
from ....transforms import per_parameter_sgd as per_parameter_sgd
from ....transforms import scale as scale
from ....transforms import sgd as sgd
from ._learnable_optimizer import LearnableOptimizer as LearnableOptimizer
from ._parameter_update import AdaptationError as AdaptationError
from ._parameter_update import ParameterUpdate as ParameterUpdate
from ._sgd import DifferentiableSGD as DifferentiableSGD
from ._transforms import KroneckerTransform as KroneckerTransform
from ._transforms import MetaCurvatureTransform as MetaCurvatureTransform
from ._transforms import ModuleTransform as ModuleTransform
from ._transforms import ReshapedTransform as ReshapedTransform
from ._transforms import TransformDictionary as TransformDictionary

__all__ = [
    "AdaptationError", "DifferentiableSGD", "GradientTransformation", "KroneckerTransform",
    "LearnableOptimizer", "MetaCurvatureTransform", "ModuleTransform", "ParameterUpdate",
    "ReshapedTransform", "TransformDictionary", "apply_updates", "chain", "hypergradient_sgd",
    "per_parameter_sgd", "scale", "sgd",
]
