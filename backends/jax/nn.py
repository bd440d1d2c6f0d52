"""``l2l.nn`` for the jax backend: the few-shot heads as pure functions."""

from .algorithms._metric import prototype_logits as prototype_logits
from .algorithms._metric import ridge_logits as ridge_logits

__all__ = ["prototype_logits", "ridge_logits"]
