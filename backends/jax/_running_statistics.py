"""Metric learners whose backbone keeps running batch-norm statistics (``MetaLearner(...,
batch_norm="running")``, the protocol of Snell et al.'s and Lee et al.'s code), on jax.

The statistics live in a flax ``batch_stats`` collection kept beside the meta-parameters, not
in them: Adam never sees them and the meta-gradient does not reach them. ``make_train_step``
threads them through the compiled meta-step: every task's support set, one task after another
(``lax.scan``), then every task's query set, each set embedded with its own batch statistics
(``train=True``) and each updating the running mean and unbiased variance with torch's momentum
rule, in the order in which the torch backend's ``ProtoNet``/``MetaOptNet`` modules do.
``evaluate_tasks`` normalises with the running statistics (``train=False``), so every input's
embedding depends on that input only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from .algorithms import CheckedStepMetrics, map_tasks
from .algorithms._train import _committed


def with_statistics(meta_params: dict, batch_stats: Any) -> dict:
    """``meta_params`` with ``batch_stats`` beside the feature extractor's ``params``, the
    variables the metric learners' feature function reads (``meta["features"]["batch_stats"]``)
    for a meta-gradient. That function runs in train mode whatever ``train`` says, so
    evaluation calls the model itself (``evaluate_tasks``).

    Example:
        >>> sorted(with_statistics({"features": {"params": {}}}, {})["features"])
        ['batch_stats', 'params']
    """
    return {**meta_params, "features": {**meta_params["features"], "batch_stats": batch_stats}}


def make_train_step(algorithm, model, optimizer: optax.GradientTransformation, loss: Callable):
    """A jit-compiled ``step(meta_params, opt_state, batch_stats, sx, sy, qx, qy) ->
    (meta_params, opt_state, batch_stats, CheckedStepMetrics)`` for a metric learner
    (``ProtoNet`` or ``MetaOptNet`` built on ``model``'s ``embed``).

    Inputs: ``sx [B, s, ...]`` float, ``sy [B, s]`` int, ``qx [B, q, ...]``, ``qy [B, q]``;
    ``meta_params`` without the statistics (``{"features": {"params": ...}[, "head": ...]}``),
    ``batch_stats`` the model's collection. The meta-loss is the mean query cross-entropy (or
    ``loss``) over the tasks. As ``make_meta_train_step(..., skip_nonfinite=True)``: unless the
    loss and every gradient are finite, the parameters, Adam's state and the statistics all stay
    as they were (``metrics.is_finite`` says which).
    """

    def embed(params, stats, x):
        embeddings, updated = model.apply(
            {"params": params, "batch_stats": stats}, x, True, method="embed", mutable=["batch_stats"]
        )
        return embeddings.reshape(embeddings.shape[0], -1), updated["batch_stats"]

    def meta_loss(meta_params, stats, batch):
        support_x, support_y, query_x, query_y = batch
        params = meta_params["features"]["params"]

        def embed_set(carried, x):
            embeddings, carried = embed(params, carried, x)
            return carried, embeddings

        stats, support = jax.lax.scan(embed_set, stats, support_x)  # [B, s, d]
        stats, query = jax.lax.scan(embed_set, stats, query_x)  # [B, q, d]

        def one_task(support, support_y, query, query_y):
            logits = algorithm.head_logits(meta_params, support, support_y, query)
            return loss(logits, query_y), logits

        task_losses, logits = jax.vmap(one_task)(support, support_y, query, query_y)
        return task_losses.mean(), (stats, task_losses, logits)

    @jax.jit
    def step(meta_params, opt_state, batch_stats, support_x, support_y, query_x, query_y):
        batch = (support_x, support_y, query_x, query_y)
        (value, (new_stats, task_losses, logits)), grads = jax.value_and_grad(meta_loss, has_aux=True)(
            meta_params, batch_stats, batch
        )
        updates, new_opt_state = optimizer.update(grads, opt_state, meta_params)
        new_params = optax.apply_updates(meta_params, updates)
        accuracy = (logits.argmax(-1) == query_y).mean()
        gradients_finite = jax.tree_util.tree_map(lambda g: jnp.isfinite(g).all(), grads)
        is_finite = functools.reduce(
            jnp.logical_and, jax.tree_util.tree_leaves(gradients_finite), jnp.isfinite(value)
        )

        def keep_if_finite(new, old):
            return jnp.where(is_finite, new, old)

        new_params, new_opt_state, new_stats = jax.tree_util.tree_map(
            keep_if_finite, (new_params, new_opt_state, new_stats), (meta_params, opt_state, batch_stats)
        )
        metrics = CheckedStepMetrics(value, accuracy, task_losses, is_finite, gradients_finite)
        return new_params, new_opt_state, new_stats, metrics

    def committed_step(meta_params, opt_state, batch_stats, *batch):
        # the step's outputs are committed to their devices; committing its inputs too keeps the
        # first call from compiling a variant that only that call uses
        return step(*_committed((meta_params, opt_state, batch_stats)), *batch)

    return committed_step


def evaluate_tasks(algorithm, model, meta_params, batch_stats, batch, loss, task_map: str = "auto"):
    """``(task losses [B], logits [B, q, ways])`` of a metric learner on ``model``'s ``embed``
    with every input normalised by the running statistics (``train=False``: nothing updated);
    traceable (the caller jits it). ``batch`` is ``(sx [B, s, ...], sy [B, s], qx [B, q, ...],
    qy [B, q])``; ``algorithm.ways`` sets the logits' classes."""
    variables = {"params": meta_params["features"]["params"], "batch_stats": batch_stats}

    def embed(x):
        embeddings = model.apply(variables, x, False, method="embed")
        return embeddings.reshape(embeddings.shape[0], -1)

    def one_task(support_x, support_y, query_x, query_y):
        logits = algorithm.head_logits(meta_params, embed(support_x), support_y, embed(query_x))
        return loss(logits, query_y), logits

    return map_tasks(one_task, batch, task_map)
