"""What every gradient-based learner shares: wrapping a module, flags, checked gradients."""

from __future__ import annotations

import torch

from ...._checks import check_learning_rate
from ....transforms import sgd
from ....transforms._inner import resolve_inner
from .._module_utils import clone_module, update_module
from ..optim._parameter_update import AdaptationError, differentiate


def check_lr(lr, argument: str = "lr"):
    """A learning rate: a finite Python number >= 0 or a tensor of them (learned or scheduled rates)."""
    return check_learning_rate(lr, argument, arrays=("torch",))  # one wording for both backends


def check_loss(loss: torch.Tensor) -> None:
    """Refuse a non-finite adaptation loss: an update from it would silently poison the clone."""
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not bool(torch.isfinite(loss.detach())):
        raise FloatingPointError(
            f"adapt(loss=...) got a non-finite loss ({loss.item()}); the inner-loop learning rate may be too "
            "large or the inputs contain NaN/inf"
        )


class BaseLearner(torch.nn.Module):
    """A module wrapper with the learn2learn calling convention: ``learner(x) == module(x)``.

    Subclasses implement ``adapt(loss)``; ``clone()`` returns a differentiable copy (parameters
    cloned with ``clone_module``, buffers copied, never shared silently).
    """

    def __init__(
        self, module: torch.nn.Module, first_order: bool, allow_unused: bool | None, allow_nograd: bool
    ):
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self.first_order = bool(first_order)
        self.allow_nograd = bool(allow_nograd)
        self.allow_unused = self.allow_nograd if allow_unused is None else bool(allow_unused)
        self.inner = None
        self.inner_state = None  # the inner optimizer's state after the last adapt (per clone)

    def _set_inner(self, lr, inner) -> None:
        """``self.lr`` and ``self.inner`` from the ``lr=``/``inner=`` pair (``transforms._inner``)."""
        self.lr, self.inner = resolve_inner(type(self).__name__, lr, inner, check_lr)

    def inner_transform(self):
        """The inner optimizer: ``inner`` when given, else ``sgd(lr)`` (rebuilt per call, so a
        changed or cloned ``lr`` tensor is the one used)."""
        return self.inner if self.inner is not None else sgd(self.lr)

    def _inner_step(self, module: torch.nn.Module, grads, scales=None) -> None:
        """Apply one step of the inner optimizer to ``module`` in place, differentiably.

        The state lives on this learner (``inner_state``: created at the first ``adapt``, copied
        by ``clone``), so successive ``adapt`` calls continue one optimizer run and gradients
        flow through it. ``scales`` (Meta-SGD's learned rates) multiply the updates.
        """
        params = list(module.parameters())
        transform = self.inner_transform()
        state = transform.init(params) if self.inner_state is None else self.inner_state
        updates, self.inner_state = transform.update(grads, state, params)
        if scales is not None:
            updates = [None if u is None else rate * u for u, rate in zip(updates, scales)]
        update_module(module, updates)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def _options(self, first_order, allow_unused, allow_nograd) -> tuple[bool, bool, bool]:
        first_order = self.first_order if first_order is None else bool(first_order)
        allow_nograd = self.allow_nograd if allow_nograd is None else bool(allow_nograd)
        allow_unused = (allow_nograd or self.allow_unused) if allow_unused is None else bool(allow_unused)
        return first_order, allow_unused, allow_nograd

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A differentiable copy of this learner (same class) to adapt on one task.

        The flags default to this learner's; gradients of the copy's losses reach the
        original's parameters.
        """
        clone = clone_module(self)
        clone.first_order, clone.allow_unused, clone.allow_nograd = self._options(
            first_order, allow_unused, allow_nograd
        )
        return clone

    def _gradients(self, loss, parameters, first_order, allow_unused, allow_nograd, extra_retain=False):
        check_loss(loss)
        second_order = not first_order
        return differentiate(
            loss,
            parameters,
            create_graph=second_order,
            retain_graph=second_order or extra_retain,
            allow_unused=allow_unused,
            allow_nograd=allow_nograd,
        )


__all__ = ["AdaptationError", "BaseLearner", "check_loss", "check_lr"]
