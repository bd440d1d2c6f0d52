"""Reptile (Nichol, Achiam & Schulman 2018): first-order meta-learning by interpolation."""

from __future__ import annotations

import torch

from ...._inner_batches import batch_plan, check_batch_order, check_batch_size, shuffled_plan_numpy
from .._module_utils import clone_module, detach_module
from ._base import BaseLearner


def interleaved_order(y: torch.Tensor) -> torch.Tensor:
    """Positions ``[s]`` of the class-interleaved order of integer labels ``y [s]``
    (``l2l_multi._inner_batches``); other targets (regression) keep their order."""
    if y.ndim != 1 or y.is_floating_point() or y.is_complex():
        return torch.arange(y.shape[0], device=y.device)
    same = y[:, None] == y[None, :]
    rank = torch.tril(same, -1).sum(1)
    return torch.argsort(rank, stable=True)


def task_seed(x: torch.Tensor) -> int:
    """``l2l_multi._inner_batches.task_seed_numpy`` of a tensor (on its device)."""
    x = x.detach()
    if x.element_size() < 4:
        x = x.float()
    words = x.contiguous().view(torch.int32)  # the same words, read as signed
    return int(words.sum(dtype=torch.int64)) % 2**32


def inner_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size, steps: int, order: str = "interleaved"
) -> list:
    """The ``steps`` inner batches ``[(x_i, y_i)]`` of ``Reptile(batch_size=..., batch_order=...)``
    on the support set ``(x [s, ...], y [s])``: the whole set each step when ``batch_size`` is None
    or not smaller than ``s``; else the next ``batch_size`` samples in class-interleaved order
    (``order="interleaved"``) or in the task-seeded passes of ``order="shuffled"``."""
    plan = batch_plan(x.shape[0], batch_size, steps)
    if plan is None:
        return [(x, y)] * steps
    if check_batch_order(order, "order") == "shuffled":
        plan = shuffled_plan_numpy(task_seed(x), x.shape[0], batch_size, steps)
        positions = torch.as_tensor(plan, device=x.device)
    else:
        positions = interleaved_order(y)[torch.as_tensor(plan, device=x.device)]
    return [(x[p], y[p]) for p in positions]


class Reptile(BaseLearner):
    """Adapt a detached copy, then move the model towards the adapted weights.

    Args:
        model: any ``torch.nn.Module``.
        lr: inner-loop SGD learning rate (float); or instead ``inner``: an inner optimizer from
            ``l2l_multi.transforms`` (the paper's ``transforms.adam(1e-3, b1=0.0)``), its state
            kept on the clone (fresh for each task). Pass one of them.
        allow_unused: as in ``MAML``.
        allow_nograd: as in ``MAML``.
        batch_size: samples per inner step (int) in the functional ``adapt`` and in
            ``MetaLearner``, or ``None``: every step on the whole support set. Step ``i`` takes
            the next ``batch_size`` samples of the support set in class-interleaved order,
            wrapping around (``inner_batches``; the jax backend's rule): the paper's Omniglot
            setting is 5 steps on batches of 10 from 10 samples per class. With the stateful
            ``learner.adapt(loss)`` the caller picks each step's samples.
        batch_order: "interleaved" (the default, above) or "shuffled": Nichol et al.'s rule,
            each pass over the support set in a new random order drawn from the task's own data
            (``l2l_multi._inner_batches``; the jax backend draws the same batches).

    Workflow per meta-batch: ``learner = reptile.clone()``; ``learner.adapt(loss)`` for k steps;
    ``reptile.accumulate(learner, weight=1 / meta_batch)`` adds ``weight * (theta - phi)`` to the
    model's ``.grad``; then ``meta_optimizer.step()``. With ``torch.optim.SGD(lr=epsilon)`` this is
    the paper's update ``theta <- theta + epsilon * mean(phi - theta)``.

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(3, 1)
        >>> reptile = l2l.algorithms.Reptile(model, lr=0.1)
        >>> learner = reptile.clone()
        >>> learner.adapt(learner(torch.ones(2, 3)).pow(2).mean())
        >>> reptile.accumulate(learner)
        >>> torch.allclose(model.weight.grad, model.weight - learner.module.weight)
        True
    """

    def __init__(
        self,
        model,
        lr=None,
        allow_unused=None,
        allow_nograd=False,
        inner=None,
        batch_size=None,
        batch_order="interleaved",
    ):
        super().__init__(model, True, allow_unused, allow_nograd)
        self._set_inner(lr, inner)
        if self.lr is not None:
            self.lr = float(self.lr)
        self.batch_size = check_batch_size(batch_size)
        self.batch_order = check_batch_order(batch_order)

    def clone(self, first_order=None, allow_unused=None, allow_nograd=None):
        """A detached copy (no graph to the model) whose parameters require grad as the model's do."""
        clone = clone_module(self)
        detach_module(clone, keep_requires_grad=True)
        _, clone.allow_unused, clone.allow_nograd = self._options(True, allow_unused, allow_nograd)
        return clone

    functional = True
    detached_inner_loop = True

    def inner_batches(self, x, y, steps):
        """``inner_batches(x, y, self.batch_size, steps, self.batch_order)``: each step's
        ``batch_size`` samples (the whole set when ``batch_size`` is None)."""
        return inner_batches(x, y, self.batch_size, steps, self.batch_order)

    def adapt_loss(self, loss: torch.Tensor, first_order=None, allow_unused=None, allow_nograd=None) -> None:
        """One inner step (``phi <- phi - lr * grad``, or the inner optimizer's) on this (cloned)
        learner, in place; no graph is kept."""
        _, allow_unused, allow_nograd = self._options(True, allow_unused, allow_nograd)
        params = list(self.module.parameters())
        grads = self._gradients(loss, params, True, allow_unused, allow_nograd)
        with torch.no_grad():  # in place: the clone's parameters stay leaves that require grad
            transform = self.inner_transform()
            state = transform.init(params) if self.inner_state is None else self.inner_state
            updates, self.inner_state = transform.update(grads, state, params)
            for param, update in zip(params, updates):
                if update is not None:
                    param.add_(update)

    def accumulate(self, learner: Reptile, weight: float = 1.0) -> None:
        """Add ``weight * (theta - phi)`` to each model parameter's ``.grad`` (created if missing)."""
        if not isinstance(learner, Reptile):
            raise TypeError(f"learner must come from Reptile.clone(), got {type(learner).__name__}")
        with torch.no_grad():
            for theta, phi in zip(self.module.parameters(), learner.module.parameters()):
                if not theta.requires_grad:
                    continue
                delta = weight * (theta - phi)
                theta.grad = delta.clone() if theta.grad is None else theta.grad + delta
