"""``l2l.nn`` for the jax backend: the few-shot heads as pure functions and the QP solver."""

from ._qp import solve_qp as solve_qp
from .algorithms._metric import prototype_logits as prototype_logits
from .algorithms._metric import ridge_logits as ridge_logits
from .algorithms._metric import svm_logits as svm_logits

__all__ = ["prototype_logits", "ridge_logits", "solve_qp", "svm_logits"]
