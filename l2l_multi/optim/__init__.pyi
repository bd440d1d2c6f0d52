# Type stub for ``l2l.optim``, whose names are resolved in the current backend at access. First
# the names both backends provide: the gradient transforms are the core's own objects on both
# (re-exported here with their real signatures); the meta-descent classes share names and
# meaning but not call signatures (torch: modules over a model's parameters; jax: pure functions
# of explicit trees), so their calls are typed loosely. Then the names of one backend only.
# tests/test_stubs.py checks this file against both backends.
from typing import Any

from ..transforms import GradientTransformation as GradientTransformation
from ..transforms import LearnableTransformation as LearnableTransformation
from ..transforms import adam as adam
from ..transforms import apply_updates as apply_updates
from ..transforms import chain as chain
from ..transforms import clip as clip
from ..transforms import clip_by_global_norm as clip_by_global_norm
from ..transforms import hypergradient_sgd as hypergradient_sgd
from ..transforms import per_parameter_sgd as per_parameter_sgd
from ..transforms import scale as scale
from ..transforms import scale_by_adam as scale_by_adam
from ..transforms import sgd as sgd
from ..transforms import trace as trace

class LearnableOptimizer:
    # torch: (model, transform factory, lr); jax: (LearnableTransformation, lr)
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    lr: Any
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

class ParameterUpdate:
    # torch: (parameters, transform factory); jax: (LearnableTransformation)
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

class DifferentiableSGD:
    def __init__(self, lr: Any) -> None: ...
    lr: Any
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...  # torch: (module, grads); jax: (params, grads)
    def __getattr__(self, name: str) -> Any: ...

# torch only
AdaptationError: Any
KroneckerTransform: Any
LearnableTransformModule: Any
MetaCurvatureTransform: Any
ModuleTransform: Any
PairTransform: Any
ReshapedTransform: Any
TransformDictionary: Any

# jax only
EmptyState: Any
MetaGradients: Any
elementwise_scale: Any
identity: Any
kronecker: Any
meta_curvature: Any
