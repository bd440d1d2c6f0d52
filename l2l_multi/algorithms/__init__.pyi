# Type stub for ``l2l.algorithms``, whose names are resolved in the current backend at access.
# First the names both backends provide, with the calls that work on both (arrays, models and
# trees are typed ``Any``: a torch.Tensor / torch.nn.Module on torch, a jax.Array / flax module
# on jax); then the names of one backend only. tests/test_stubs.py checks this file against
# both backends. Backend-specific methods and attributes are reached through ``__getattr__``.
from collections.abc import Callable
from typing import Any

from .._contract import MetaBatchLoss

class _GradientBased:
    # the functional contract of l2l_multi._contract.GradientBasedLearner
    def init(self, key: Any, x: Any, /) -> dict[str, Any]: ...
    def from_variables(self, variables: Any) -> dict[str, Any]: ...
    def adapt(
        self,
        meta_params: dict[str, Any],
        x: Any,
        y: Any,
        *,
        loss: Callable[[Any, Any], Any] | None = None,
        steps: int = 1,
        inner: Any = None,
        train: bool = True,
    ) -> Any: ...
    def task_loss(
        self,
        meta_params: dict[str, Any],
        support_x: Any,
        support_y: Any,
        query_x: Any,
        query_y: Any,
        *,
        loss: Callable[[Any, Any], Any] | None = None,
        steps: int = 1,
        train: bool = True,
    ) -> tuple[Any, Any]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...  # torch: the wrapped module's forward
    def __getattr__(self, name: str) -> Any: ...

class MAML(_GradientBased):
    def __init__(
        self, model: Any, lr: Any = None, first_order: bool = False, *, inner: Any = None, **kwargs: Any
    ) -> None: ...

class MetaSGD(_GradientBased):
    def __init__(
        self, model: Any, lr: Any = 1.0, first_order: bool = False, *, inner: Any = None, **kwargs: Any
    ) -> None: ...

class ANIL(_GradientBased):
    def from_variables(self, variables: Any, head_variables: Any = None) -> dict[str, Any]: ...
    def __init__(
        self,
        features: Any,
        head: Any,
        lr: Any = None,
        first_order: bool = False,
        *,
        inner: Any = None,
        **kwargs: Any,
    ) -> None: ...

class GBML(_GradientBased):
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...  # torch: module=, jax: model=

class Reptile(_GradientBased):
    def __init__(
        self,
        model: Any,
        lr: Any = None,
        *,
        inner: Any = None,
        batch_size: int | None = None,
        batch_order: str = "interleaved",
        **kwargs: Any,
    ) -> None: ...

class MAMLpp:
    def __init__(
        self, model: Any, lr: float, adaptation_steps: int, first_order: bool = False, **kwargs: Any
    ) -> None: ...
    def init(self, key: Any, x: Any, /) -> dict[str, Any]: ...
    def from_variables(self, variables: Any, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

class ProtoNet:
    # jax needs ways=, torch reads them from the labels
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

class MetaOptNet:
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __getattr__(self, name: str) -> Any: ...

def meta_batch_loss(
    algorithm: Any,
    meta_params: dict[str, Any],
    support_x: Any,
    support_y: Any,
    query_x: Any,
    query_y: Any,
    *,
    loss: Callable[[Any, Any], Any] | None = None,
    steps: int = 1,
    train: bool = True,
    task_map: str = "auto",
    **options: Any,
) -> MetaBatchLoss: ...
def msl_weights(adaptation_steps: int, epoch: int, anneal_epochs: int = 10) -> list[float]: ...

# torch only
AdaptationError: Any
BaseLearner: Any
MetaBatchResult: Any
PerStepBatchNorm: Any
average_gradients: Any
broadcast_parameters: Any
maml_update: Any
meta_sgd_update: Any
task_slice: Any

# jax only
CheckedStepMetrics: Any
MetaStepMetrics: Any
cross_entropy: Any
make_evaluate: Any
make_meta_train_step: Any
map_tasks: Any
prototype_logits: Any
replicate: Any
ridge_logits: Any
shard_task_batch: Any
svm_logits: Any
task_mesh: Any
