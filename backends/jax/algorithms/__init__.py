"""``l2l.algorithms`` for the jax backend: pure, jit/vmap-able meta-learning.

Algorithms hold static configuration; their meta-parameters are pytrees from ``init`` (or
``from_variables``, e.g. weights converted from torch by ``l2l_multi.interop``).
``make_meta_train_step`` compiles a whole meta-step.
"""

from ._carried import carried_gradients as carried_gradients
from ._carried import make_carried_train_step as make_carried_train_step
from ._gbml import GBML as GBML
from ._gradient_based import ANIL as ANIL
from ._gradient_based import MAML as MAML
from ._gradient_based import MetaSGD as MetaSGD
from ._mamlpp import MAMLpp as MAMLpp
from ._mamlpp import msl_weights as msl_weights
from ._metric import MetaOptNet as MetaOptNet
from ._metric import ProtoNet as ProtoNet
from ._metric import prototype_logits as prototype_logits
from ._metric import ridge_logits as ridge_logits
from ._metric import svm_logits as svm_logits
from ._model import cross_entropy as cross_entropy
from ._reptile import Reptile as Reptile
from ._sharding import replicate as replicate
from ._sharding import shard_task_batch as shard_task_batch
from ._sharding import task_mesh as task_mesh
from ._train import CheckedStepMetrics as CheckedStepMetrics
from ._train import MetaStepMetrics as MetaStepMetrics
from ._train import make_evaluate as make_evaluate
from ._train import make_meta_train_step as make_meta_train_step
from ._train import map_tasks as map_tasks
from ._train import meta_batch_loss as meta_batch_loss

__all__ = [
    "ANIL",
    "CheckedStepMetrics",
    "GBML",
    "MAML",
    "MAMLpp",
    "MetaOptNet",
    "MetaSGD",
    "MetaStepMetrics",
    "ProtoNet",
    "Reptile",
    "cross_entropy",
    "make_evaluate",
    "make_meta_train_step",
    "map_tasks",
    "meta_batch_loss",
    "msl_weights",
    "prototype_logits",
    "replicate",
    "ridge_logits",
    "shard_task_batch",
    "svm_logits",
    "task_mesh",
]
