"""Reptile's compiled meta-step with one inner-optimizer state carried from task to task, as
Nichol et al.'s code keeps one Adam for every task: the tasks of a batch are adapted in order
(``lax.scan``), each from the state the previous one left."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

from ...._contract import MetaBatchLoss
from ._model import cross_entropy
from ._reptile import Reptile
from ._train import _check_algorithm, _check_batch, _check_flag, _check_steps, _committed, _update


def carried_gradients(
    algorithm: Reptile, meta_params, inner_state, batch: tuple, loss, steps: int, train=True
):
    """``(mean theta - phi, MetaBatchLoss, inner state after the last task)`` for ``batch``
    (``support_x [B, s, ...]``, ``support_y [B, s]``, ``query_x [B, q, ...]``, ``query_y
    [B, q]``), its tasks adapted in order (``lax.scan``), each starting from the inner state the
    previous one left (the first from ``inner_state``)."""

    def task(state, one):
        meta = {**meta_params, "inner_state": state}
        direction, value, outputs, state = algorithm._task_loss_and_direction(
            meta, *one, loss=loss, steps=steps, train=train
        )
        return state, (direction, value, outputs)

    new_state, (directions, task_losses, logits) = jax.lax.scan(task, inner_state, batch)
    grads = jax.tree_util.tree_map(lambda d: d.mean(0), directions)
    return grads, MetaBatchLoss(task_losses.mean(), task_losses, logits), new_state


def make_carried_train_step(
    algorithm: Reptile,
    optimizer: optax.GradientTransformation,
    loss: Callable = cross_entropy,
    adaptation_steps: int = 1,
    train: bool = True,
    skip_nonfinite: bool = False,
):
    """A jit-compiled ``step(meta_params, opt_state, inner_state, support_x, support_y, query_x,
    query_y) -> (meta_params, opt_state, inner_state, metrics)`` for ``Reptile`` with one
    inner-optimizer state carried from task to task (Nichol et al.'s code keeps one Adam):

    the batch's tasks are adapted in order (``lax.scan``), task ``i`` starting from the state
    task ``i - 1`` left (the first from ``inner_state``, e.g. ``algorithm.inner.init(params)``);
    the optimizer steps on the mean of ``theta - phi``; the last task's state is returned.
    ``skip_nonfinite``: as in ``make_meta_train_step``; a refused step also keeps the old
    ``inner_state``. Arrays: ``support_x [B, s, ...]``, ``support_y [B, s]``, ``query_x [B, q, ...]``,
    ``query_y [B, q]``; ``metrics`` as ``make_meta_train_step``'s."""
    adaptation_steps = _check_steps(adaptation_steps)
    _check_algorithm(algorithm, optimizer)
    if not isinstance(algorithm, Reptile):
        raise TypeError(
            f"algorithm must be a Reptile (its inner state is carried), got {type(algorithm).__name__}"
        )
    skip_nonfinite = _check_flag(skip_nonfinite, "skip_nonfinite")

    @jax.jit
    def step(meta_params, opt_state, inner_state, support_x, support_y, query_x, query_y):
        batch = (support_x, support_y, query_x, query_y)
        grads, result, new_inner_state = carried_gradients(
            algorithm, meta_params, inner_state, batch, loss, adaptation_steps, train
        )
        kept = (new_inner_state, inner_state)
        return _update(optimizer, skip_nonfinite, meta_params, opt_state, grads, result, query_y, kept)

    def checked_step(meta_params, opt_state, inner_state, support_x, support_y, query_x, query_y):
        support_x, support_y, query_x, query_y = _check_batch(support_x, support_y, query_x, query_y, loss)
        meta_params, opt_state, inner_state = _committed((meta_params, opt_state, inner_state))
        return step(meta_params, opt_state, inner_state, support_x, support_y, query_x, query_y)

    checked_step.jitted = step
    return checked_step
