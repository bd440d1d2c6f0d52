"""Non-transductive scoring for ``MetaLearner.evaluate(..., transductive=False)`` (jax).

The same protocol as the torch backend's ``_non_transductive`` (Nichol, Achiam and Schulman 2018,
Sec. 5): each query ``j`` is scored by a forward pass over ``[support ; query j]`` and only its
own row is kept, so batch statistics come from the support set and that query alone. Adaptation
is unchanged (support set only); metric learners embed the support set alone for their head.

The per-query passes are vmapped in chunks of about ``IMAGES_PER_CALL`` inputs, the chunks and
the tasks mapped one after another (``jax.lax.map``), so memory stays bounded for large query
sets.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from .algorithms._gradient_based import ANIL
from .algorithms._mamlpp import MAMLpp
from .algorithms._metric import _Metric

IMAGES_PER_CALL = 512  # as on torch: inputs per vectorised call


def each_query(
    forward: Callable[[jax.Array], jax.Array], support_x: jax.Array, query_x: jax.Array
) -> jax.Array:
    """``out[j] = forward(concatenate([support_x, query_x[j:j+1]]))[-1]`` for every query ``j``.

    Args:
        forward: pure function mapping ``[n, ...]`` inputs to ``[n, ...]`` outputs.
        support_x: ``[s, ...]`` float inputs of one task.
        query_x: ``[q, ...]`` float inputs of the same task (same per-input shape and dtype).

    Returns:
        ``[q, ...]``: each query's output from a pass whose batch is the support set plus it.

    Example:
        >>> import jax.numpy as jnp
        >>> def centre(x):  # a batch statistic: the mean over the batch
        ...     return x - x.mean(0)
        >>> each_query(centre, jnp.array([[-1.0], [1.0]]), jnp.array([[0.0], [3.0]])).ravel().tolist()
        [0.0, 2.0]
    """
    width = support_x.shape[0] + 1

    def one(x: jax.Array) -> jax.Array:
        return forward(jnp.concatenate([support_x, x[None]]))[-1]

    count = query_x.shape[0]
    chunk = max(1, min(IMAGES_PER_CALL // width, count))
    chunks = -(-count // chunk)
    # (jax.lax.map's batch_size= does this from jax 0.4.31; the jax extra allows 0.4.30)
    padded = jnp.concatenate([query_x, jnp.repeat(query_x[-1:], chunks * chunk - count, axis=0)])
    outputs = jax.lax.map(jax.vmap(one), padded.reshape(chunks, chunk, *query_x.shape[1:]))
    return outputs.reshape(chunks * chunk, *outputs.shape[2:])[:count]


def _flat(embeddings: jax.Array) -> jax.Array:
    return embeddings.reshape(embeddings.shape[0], -1)


def task_outputs(algorithm, meta_params, support_x, support_y, query_x, loss, steps: int) -> jax.Array:
    """One task's non-transductive query outputs ``[q, ways]`` (or ``[q, outputs]``).

    ``algorithm``: a jax learner (``MAML``, ``MetaSGD``, ``GBML``, ``ANIL``, ``MAMLpp``: adapted on
    ``(support_x [s, ...], support_y [s])`` with ``steps`` inner steps and ``loss``; ``ProtoNet``,
    ``MetaOptNet``: the head fitted on the support set embedded alone). Batch norm runs on batch
    statistics (``train=True``), as in the transductive evaluation.
    """
    if isinstance(algorithm, _Metric):
        features = meta_params["features"]
        support = _flat(algorithm.apply_features(features, support_x, True))
        query = each_query(lambda x: _flat(algorithm.apply_features(features, x, True)), support_x, query_x)
        return algorithm.head_logits(meta_params, support, support_y, query)
    adapted = algorithm.adapt(meta_params, support_x, support_y, loss=loss, steps=steps)
    if isinstance(algorithm, ANIL):
        features = meta_params["features"]

        def forward(x):
            return algorithm.apply_model(adapted, algorithm.apply_features(features, x, True), True)

    else:
        if isinstance(algorithm, MAMLpp):  # the batch-norm row of the last step, as its task_loss
            adapted = algorithm.step_variables(adapted, steps)

        def forward(x):
            return algorithm.apply_model(adapted, x, True)

    return each_query(forward, support_x, query_x)


def evaluate_tasks(algorithm, meta_params, batch, loss, steps: int):
    """``(task losses [B], outputs [B, q, ...])`` of ``(sx [B, s, ...], sy [B, s], qx [B, q, ...],
    qy [B, q])`` scored non-transductively, task after task (``jax.lax.map``); jit it."""

    def task(arrays):
        sx, sy, qx, qy = arrays
        outputs = task_outputs(algorithm, meta_params, sx, sy, qx, loss, steps)
        return loss(outputs, qy), outputs

    return jax.lax.map(task, tuple(batch))
