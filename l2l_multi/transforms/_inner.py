"""How a MAML-style learner picks its inner-loop optimizer: ``lr=`` or ``inner=``, one rule for
both backends (the learners of ``l2l_multi.backends.*.algorithms`` call ``resolve_inner``).

* ``lr=`` alone: the learner's classic step (MAML and ANIL: ``sgd(lr)``; Meta-SGD: ``lr`` is the
  initial value of the learned rates).
* ``inner=`` alone: any ``GradientTransformation`` (ours, or any optax transform on the jax
  backend) with optax's sign convention: its updates are *added* to the parameters, so
  ``inner=sgd(0.4)`` is ``lr=0.4``. Its state is created per task and threaded through the
  inner steps, differentiably.
* both: refused (``ValueError`` naming both): the inner optimizer carries its own learning rate.
* neither: refused (``TypeError``).

A ``LearnableTransformation`` (``elementwise_scale``, ``kronecker``, ``meta_curvature``) is not an
inner optimizer: its state is meta-learned parameters, which ``GBML`` owns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import is_learnable, is_transform


class _Unset:
    """Marks an argument the caller did not pass (``None`` is a value some checks refuse)."""

    def __repr__(self) -> str:
        return "<not given>"


UNSET: Any = _Unset()


def check_inner(inner: Any, argument: str = "inner") -> Any:
    """Refuse anything but a non-learnable ``GradientTransformation``; returns it unchanged."""
    if not is_transform(inner):
        raise TypeError(
            f"{argument}={inner!r:.80} must be a GradientTransformation (init, update), e.g. "
            "l2l_multi.transforms.adam(1e-3) or, on the jax backend, any optax transform"
        )
    if is_learnable(inner):
        raise TypeError(
            f"{argument} is a LearnableTransformation (its state is meta-learned parameters): pass it as "
            "GBML(model, transform) instead, or give a plain optimizer such as transforms.sgd(lr)"
        )
    return inner


def resolve_inner(owner: str, lr: Any, inner: Any, check_lr: Callable[[Any, str], Any]) -> tuple[Any, Any]:
    """``(lr, inner)`` with exactly one of them set (the other ``None``); see the module docstring.

    ``check_lr(value, argument)`` is the backend's learning-rate check; ``lr`` may be ``UNSET``
    or ``None`` (not given).
    """
    given_lr = lr is not None and lr is not UNSET
    if inner is not None:
        check_inner(inner)
        if given_lr:
            raise ValueError(
                f"{owner} got both lr={lr!r} and inner={inner!r:.60}; pass one: the inner optimizer carries "
                "its own learning rate (inner=transforms.sgd(lr) is lr=lr)"
            )
        return None, inner
    if not given_lr:
        raise TypeError(
            f"{owner}: lr={lr!r} must be a float >= 0, or pass inner= (a GradientTransformation such as "
            "transforms.adam(1e-3)); got neither"
        )
    return check_lr(lr, "lr"), None


__all__ = ["UNSET", "check_inner", "resolve_inner"]
