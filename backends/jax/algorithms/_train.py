"""The compiled meta-training step: inner loops with ``jax.grad``, tasks with ``vmap`` (or
``lax.map``), the outer update with optax, all in one ``jax.jit`` function traced once per
input shape. Batches may be sharded over devices along the task axis (``shard_task_batch``); XLA
then splits the tasks between devices and averages the meta-gradient across them (the placing
helpers live in ``_sharding.py``).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .... import _contract
from ...._checks import check_labels
from ...._contract import MetaBatchLoss
from ._gradient_based import check_finite
from ._model import cross_entropy
from ._reptile import Reptile

TASK_MAPS = _contract.TASK_MAPS


class MetaStepMetrics(NamedTuple):
    """``loss``: mean query loss (0-d); ``accuracy``: mean query accuracy (0-d, NaN-free only for
    classification); ``task_losses``: ``[B]``."""

    loss: jax.Array
    accuracy: jax.Array
    task_losses: jax.Array


class CheckedStepMetrics(NamedTuple):
    """What ``make_meta_train_step(..., skip_nonfinite=True)`` returns: ``MetaStepMetrics``'s three
    fields, plus ``is_finite`` (0-d bool: the meta-loss and every meta-gradient were finite, so the
    update was applied) and ``gradients_finite`` (a tree shaped like the meta-parameters of 0-d
    bools, one per leaf, to name the culprit)."""

    loss: jax.Array
    accuracy: jax.Array
    task_losses: jax.Array
    is_finite: jax.Array
    gradients_finite: Any


def resolve_task_map(task_map: str) -> str:
    """ "auto" -> "vmap" (with the models' matmul convolutions on CPU, ``Conv2d(implementation=
    "auto")``, vmap is the fastest formulation on every platform measured, ``benchmarks/
    maml_step.py``); "sequential" (old spelling "map") is ``lax.map``."""
    resolved = _contract.resolve_task_map(task_map)
    return "vmap" if resolved == "auto" else resolved


def map_tasks(function: Callable, batch: tuple, task_map: str = "auto"):
    """``function(*task)`` for every task of ``batch`` (arrays ``[B, ...]``), results stacked:
    ``jax.vmap`` for "vmap"/"auto", ``jax.lax.map`` for "sequential" (old spelling "map")."""
    if resolve_task_map(task_map) == "vmap":
        return jax.vmap(function)(*batch)
    return jax.lax.map(lambda task: function(*task), batch)


def _check_batch(support_x, support_y, query_x, query_y, loss=None) -> tuple:
    """The shared batch checks (``l2l_multi._contract.check_task_batch``) for the jax backend:
    numpy arrays become jax arrays (``jnp.asarray``), torch tensors are refused naming
    ``l2l_multi.interop.to_jax``."""
    return _contract.check_task_batch(
        support_x,
        support_y,
        query_x,
        query_y,
        backend="jax",
        cross_entropy=loss is cross_entropy,
        convert=lambda array, name: jnp.asarray(array),
    )


OPTIONS = ("adaptation_steps", "path")


def _meta_batch_loss(
    algorithm,
    meta_params,
    support_x,
    support_y,
    query_x,
    query_y,
    *,
    loss: Callable | None = None,
    steps: int = 1,
    train: bool = True,
    task_map: str = "auto",
    **options,
) -> MetaBatchLoss:
    """Adapt on every task's support set, score its query set, average over tasks.

    The same signature and meaning as the torch backend's ``meta_batch_loss``.

    Args:
        algorithm: ``MAML``, ``MetaSGD``, ``GBML``, ``ANIL``, ``ProtoNet`` or ``MetaOptNet``.
        meta_params: from ``algorithm.init`` / ``from_variables``.
        support_x ``[B, s, ...]``, support_y ``[B, s]`` (int), query_x ``[B, q, ...]``, query_y
            ``[B, q]``: jax or numpy arrays (``jnp.asarray``); torch tensors raise ``TypeError``
            (convert with ``l2l_multi.interop.to_jax``).
        loss: ``loss(logits, labels) -> 0-d``; ``None``: cross-entropy.
        steps: inner steps (static int); train: the model's train flag (batch statistics);
        task_map: "vmap", "sequential" (``lax.map``) or "auto" (vmap).
        **options: old spellings accepted for one release: ``adaptation_steps=`` (``steps``),
            ``path=`` / ``task_map="map"`` ("sequential").

    Returns:
        ``MetaBatchLoss(loss 0-d, task_losses [B], query_logits [B, q, ...])``.

    Called eagerly, a non-finite task loss raises ``FloatingPointError`` and, with
    ``loss=None`` (cross-entropy), labels outside ``[0, classes)`` raise ``ValueError``; under
    ``jax.jit`` or ``jax.grad`` neither is checked: NaN propagates, a negative label indexes the
    logits from the end (a finite, wrong loss) and a label >= classes gives NaN (see
    ``make_meta_train_step``).

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from l2l_multi.backends.jax.algorithms import MAML
        >>> maml = MAML(nn.Dense(3), lr=0.5)
        >>> meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> x, y = jnp.ones((8, 6, 4)), jnp.tile(jnp.arange(3), (8, 2))
        >>> result = meta_batch_loss(maml, meta, x, y, x, y)
        >>> result.task_losses.shape, result.query_logits.shape
        ((8,), (8, 6, 3))
    """
    _contract.check_meta_params(meta_params, "jax")
    if not callable(getattr(algorithm, "task_loss", None)):
        raise _contract.not_a_learner(algorithm)
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"meta_batch_loss got unexpected keyword arguments {unknown}; the jax backend takes loss, steps, "
            "train, task_map and adaptation_steps/path (old spellings of steps and task_map)"
        )
    steps = _contract.resolve_steps(steps, options.get("adaptation_steps"))
    argument = "path" if "path" in options else "task_map"
    task_map = _contract.resolve_task_map(options.get("path", task_map), argument)
    task_map = "vmap" if task_map == "auto" else task_map
    loss = cross_entropy if loss is None else loss
    batch = _check_batch(support_x, support_y, query_x, query_y, loss)

    def one_task(sx, sy, qx, qy):
        return algorithm.task_loss(meta_params, sx, sy, qx, qy, loss=loss, steps=steps, train=train)

    task_losses, logits = map_tasks(one_task, batch, task_map)
    if loss is cross_entropy and logits.ndim == batch[3].ndim + 1:  # eager calls: labels vs classes
        check_labels(batch[1], "support_y", logits.shape[-1])
        check_labels(batch[3], "query_y", logits.shape[-1])
    check_finite(task_losses, "meta_batch_loss: a task's query loss")
    return MetaBatchLoss(task_losses.mean(), task_losses, logits)


@functools.wraps(_meta_batch_loss)
def meta_batch_loss(*args, **kwargs) -> MetaBatchLoss:
    # The old torch call form (no meta_params) must read as such, not as a missing query_y.
    if len(args) == 5 and not isinstance(args[1], Mapping):
        _contract.check_meta_params(args[1], "jax")
    return _meta_batch_loss(*args, **kwargs)


meta_batch_loss.__name__ = meta_batch_loss.__qualname__ = "meta_batch_loss"
_meta_batch_loss.__doc__ = "``meta_batch_loss`` itself (its docstring, signature and example live there)."


def _check_flag(value: Any, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument}={value!r} must be True or False")
    return value


def _check_steps(adaptation_steps: Any) -> int:
    if (
        isinstance(adaptation_steps, bool)
        or not isinstance(adaptation_steps, numbers.Integral)
        or adaptation_steps < 0
    ):
        raise ValueError(f"adaptation_steps={adaptation_steps!r} must be a non-negative int")
    return int(adaptation_steps)


def _check_algorithm(algorithm: Any, optimizer: Any = None) -> None:
    if not callable(getattr(algorithm, "task_loss", None)):
        raise _contract.not_a_learner(algorithm)
    if optimizer is not None and not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"optimizer must be an optax GradientTransformation (init, update), got {optimizer!r:.80}"
        )


def _accuracy(logits, labels):
    if logits.ndim != labels.ndim + 1:
        return jnp.asarray(jnp.nan)
    return (logits.argmax(-1) == labels).mean()


def make_meta_train_step(
    algorithm,
    optimizer: optax.GradientTransformation,
    loss: Callable = cross_entropy,
    adaptation_steps: int = 1,
    task_map: str = "auto",
    train: bool = True,
    skip_nonfinite: bool = False,
):
    """A jit-compiled ``step(meta_params, opt_state, support_x, support_y, query_x, query_y)
    -> (meta_params, opt_state, MetaStepMetrics)``.

    Compiled once per input shape and dtype; later calls with same-shaped batches reuse it. For
    ``Reptile`` the optimizer receives the mean of ``theta - phi`` over tasks.

    Non-finite losses: eager calls of ``adapt`` and ``meta_batch_loss`` raise
    ``FloatingPointError`` (as the torch backend does), but the compiled step does not raise,
    since that would wait for every step to finish. By default a NaN support or query loss gives
    NaN metrics and NaN meta-parameters: check ``metrics.loss``, or run under
    ``jax.debug_nans(True)``, which raises ``FloatingPointError`` where the NaN appears.
    With ``skip_nonfinite=True`` the step computes the update and then keeps the old
    meta-parameters and optimizer state (every leaf, Adam's moments and count included) unless
    the meta-loss and every meta-gradient are finite, selected inside the same compiled function
    (no second compile, no host round trip); it returns ``CheckedStepMetrics``, whose
    ``is_finite`` says whether the update was applied. ``l2l.MetaLearner`` uses this and raises.

    Labels: concrete labels (the arrays this function receives) that are negative are refused
    with ``ValueError``. Labels >= the number of classes are not checked here (the class count is
    only known inside the model): optax's cross-entropy gives NaN for them, which
    ``skip_nonfinite=True`` refuses. Traced code that calls ``meta_batch_loss`` directly gets no
    label check: a negative label there indexes from the end and gives a finite, wrong loss.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, optax
        >>> from l2l_multi.backends.jax.algorithms import MAML
        >>> maml = MAML(nn.Dense(3), lr=0.5)
        >>> meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> optimizer = optax.adam(1e-3)
        >>> step = make_meta_train_step(maml, optimizer)
        >>> x, y = jnp.ones((8, 6, 4)), jnp.tile(jnp.arange(3), (8, 2))
        >>> meta, state, metrics = step(meta, optimizer.init(meta), x, y, x, y)
        >>> metrics.task_losses.shape
        (8,)
    """
    resolve_task_map(task_map)
    adaptation_steps = _check_steps(adaptation_steps)
    _check_algorithm(algorithm, optimizer)

    def gradients(meta_params, support_x, support_y, query_x, query_y):
        if isinstance(algorithm, Reptile):

            def direction(sx, sy, qx, qy):  # one adaptation gives the direction and the query loss
                return algorithm._task_loss_and_direction(
                    meta_params, sx, sy, qx, qy, loss=loss, steps=adaptation_steps, train=train
                )

            directions, task_losses, logits, _ = map_tasks(
                direction, (support_x, support_y, query_x, query_y), task_map
            )
            grads = jax.tree_util.tree_map(lambda d: d.mean(0), directions)
            return grads, MetaBatchLoss(task_losses.mean(), task_losses, logits)

        def value(meta_params):
            result = meta_batch_loss(
                algorithm,
                meta_params,
                support_x,
                support_y,
                query_x,
                query_y,
                loss=loss,
                steps=adaptation_steps,
                train=train,
                task_map=task_map,
            )
            return result.loss, result

        (_, result), grads = jax.value_and_grad(value, has_aux=True)(meta_params)
        return grads, result

    skip_nonfinite = _check_flag(skip_nonfinite, "skip_nonfinite")

    @jax.jit
    def step(meta_params, opt_state, support_x, support_y, query_x, query_y):
        grads, result = gradients(meta_params, support_x, support_y, query_x, query_y)
        new_params, new_opt_state, _, metrics = _update(
            optimizer, skip_nonfinite, meta_params, opt_state, grads, result, query_y
        )
        return new_params, new_opt_state, metrics

    def checked_step(meta_params, opt_state, support_x, support_y, query_x, query_y):
        support_x, support_y, query_x, query_y = _check_batch(support_x, support_y, query_x, query_y, loss)
        # The step's outputs are committed to their devices; committing its inputs too keeps the
        # first call from compiling a variant that only that call uses.
        meta_params, opt_state = _committed((meta_params, opt_state))
        return step(meta_params, opt_state, support_x, support_y, query_x, query_y)

    checked_step.jitted = step  # exposes the compiled function (e.g. its cache size)
    return checked_step


def _update(optimizer, skip_nonfinite, meta_params, opt_state, grads, result, query_y, new_and_old=None):
    """``(meta_params, opt_state, kept, metrics)`` after the optimizer's step on ``grads``
    (``result``: the ``MetaBatchLoss``). With ``skip_nonfinite`` the old trees are kept unless the
    meta-loss and every meta-gradient are finite, and ``new_and_old`` (a pair of trees, e.g. a
    carried inner state) is selected by the same flag into ``kept``."""
    value, task_losses, logits = result
    updates, new_opt_state = optimizer.update(grads, opt_state, meta_params)
    new_params = optax.apply_updates(meta_params, updates)
    accuracy = _accuracy(logits, query_y)
    kept = None if new_and_old is None else new_and_old[0]
    if not skip_nonfinite:
        return new_params, new_opt_state, kept, MetaStepMetrics(value, accuracy, task_losses)
    gradients_finite = jax.tree_util.tree_map(lambda g: jnp.isfinite(g).all(), grads)
    is_finite = functools.reduce(
        jnp.logical_and, jax.tree_util.tree_leaves(gradients_finite), jnp.isfinite(value)
    )

    def keep_if_finite(new, old):  # selects whole trees: the old state survives bit for bit
        return jax.tree_util.tree_map(lambda a, b: jnp.where(is_finite, a, b), new, old)

    new_params = keep_if_finite(new_params, meta_params)
    new_opt_state = keep_if_finite(new_opt_state, opt_state)
    if new_and_old is not None:
        kept = keep_if_finite(*new_and_old)
    metrics = CheckedStepMetrics(value, accuracy, task_losses, is_finite, gradients_finite)
    return new_params, new_opt_state, kept, metrics


def _committed(tree):
    def commit(leaf):
        if isinstance(leaf, jax.Array) and not leaf.committed:
            return jax.device_put(leaf, leaf.sharding)
        return jnp.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf

    return jax.tree_util.tree_map(commit, tree)


def make_evaluate(
    algorithm,
    loss: Callable = cross_entropy,
    adaptation_steps: int = 1,
    task_map: str = "auto",
    train: bool = True,
):
    """A jit-compiled ``evaluate(meta_params, support_x, support_y, query_x, query_y) ->
    MetaStepMetrics`` (adapt on each support set, score its query set; no update)."""
    resolve_task_map(task_map)
    adaptation_steps = _check_steps(adaptation_steps)
    _check_algorithm(algorithm)

    @jax.jit
    def evaluate(meta_params, support_x, support_y, query_x, query_y):
        value, task_losses, logits = meta_batch_loss(
            algorithm,
            meta_params,
            support_x,
            support_y,
            query_x,
            query_y,
            loss=loss,
            steps=adaptation_steps,
            train=train,
            task_map=task_map,
        )
        return MetaStepMetrics(value, _accuracy(logits, query_y), task_losses)

    return evaluate
