"""``l2l.algorithms`` for the torch backend: the MAML family as stateful learners, plus the
vmapped fast path, metric-learning heads as algorithms, and distributed meta-gradient averaging."""

from ._anil import ANIL as ANIL
from ._base import AdaptationError as AdaptationError
from ._base import BaseLearner as BaseLearner
from ._batched import MetaBatchResult as MetaBatchResult
from ._batched import meta_batch_loss as meta_batch_loss
from ._distributed import average_gradients as average_gradients
from ._distributed import broadcast_parameters as broadcast_parameters
from ._distributed import task_slice as task_slice
from ._gbml import GBML as GBML
from ._maml import MAML as MAML
from ._maml import MetaSGD as MetaSGD
from ._mamlpp import MAMLpp as MAMLpp
from ._mamlpp import PerStepBatchNorm as PerStepBatchNorm
from ._mamlpp import msl_weights as msl_weights
from ._metric import MetaOptNet as MetaOptNet
from ._metric import ProtoNet as ProtoNet
from ._reptile import Reptile as Reptile
from ._updates import maml_update as maml_update
from ._updates import meta_sgd_update as meta_sgd_update

__all__ = [
    "ANIL",
    "AdaptationError",
    "BaseLearner",
    "GBML",
    "MAML",
    "MAMLpp",
    "MetaBatchResult",
    "MetaOptNet",
    "MetaSGD",
    "PerStepBatchNorm",
    "ProtoNet",
    "Reptile",
    "maml_update",
    "meta_batch_loss",
    "meta_sgd_update",
    "msl_weights",
    "average_gradients",
    "broadcast_parameters",
    "task_slice",
]

# learn2learn's l2l.algorithms.Lightning* names; resolved on first use so that importing the
# algorithms never imports Lightning (the optional ``lightning`` extra).
_LIGHTNING_NAMES = frozenset(
    {
        "LightningANIL",
        "LightningEpisodicModule",
        "LightningMAML",
        "LightningMetaOptNet",
        "LightningPrototypicalNetworks",
    }
)


def __getattr__(name: str):
    if name in _LIGHTNING_NAMES:
        from .. import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
