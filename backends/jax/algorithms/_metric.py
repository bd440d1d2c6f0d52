"""Prototypical networks and the R2D2 ridge head as pure functions (jax backend).

Same conventions as the torch backend's ``ProtoNet`` / ``MetaOptNet(head="ridge")``: support
and query go through the feature extractor in separate calls (batch statistics per set),
labels are ``0 .. ways-1``, logits are negative squared euclidean distances (or cosine
similarities) to class means, or ``scale * query @ W + bias`` for the ridge head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._model import as_apply, cross_entropy, init_variables

DISTANCES = ("euclidean", "cosine")


def _flatten(embeddings: jax.Array) -> jax.Array:
    return embeddings.reshape(embeddings.shape[0], -1)


def _normalise(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype_logits(support, labels, query, ways: int, distance: str = "euclidean", normalize=False):
    """Logits ``[q, ways]`` of ``query [q, d]`` against the class means of ``support [s, d]``.

    Example:
        >>> import jax.numpy as jnp
        >>> support = jnp.array([[0.0, 0.0], [2.0, 0.0]])
        >>> prototype_logits(support, jnp.array([0, 1]), jnp.array([[1.0, 1.0]]), ways=2).tolist()
        [[-2.0, -2.0]]
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r} is not one of {DISTANCES}")
    if normalize:
        support, query = _normalise(support), _normalise(query)
    one_hot = jax.nn.one_hot(labels, ways, dtype=support.dtype)
    prototypes = (one_hot.T @ support) / one_hot.sum(0)[:, None]
    if distance == "cosine":
        return _normalise(query) @ _normalise(prototypes).T
    squared = (query**2).sum(-1)[:, None] - 2 * query @ prototypes.T + (prototypes**2).sum(-1)[None, :]
    return -squared


def ridge_logits(support, labels, query, ways: int, reg, scale=1.0, bias=0.0, normalize=False):
    """R2D2 (Bertinetto et al. 2019): ``W = X^T (X X^T + reg I)^{-1} Y``; logits
    ``scale * query @ W + bias``, ``[q, ways]``.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = ridge_logits(jnp.eye(2), jnp.array([0, 1]), jnp.eye(2), ways=2, reg=1.0)
        >>> jnp.round(logits, 4).tolist()
        [[0.5, 0.0], [0.0, 0.5]]
    """
    if normalize:
        support, query = _normalise(support), _normalise(query)
    one_hot = jax.nn.one_hot(labels, ways, dtype=support.dtype)
    gram = support @ support.T + reg * jnp.eye(support.shape[0], dtype=support.dtype)
    weights = support.T @ jax.scipy.linalg.solve(gram, one_hot, assume_a="pos")
    return scale * (query @ weights) + bias


class _Metric:
    """Embed support and query with ``features``; no inner loop (``steps`` is ignored)."""

    def __init__(self, features, ways: int):
        if isinstance(ways, bool) or not isinstance(ways, int) or ways < 2:
            raise ValueError(f"ways={ways!r} must be an int >= 2 (it fixes the logits' shape under jit)")
        self.features, self.ways = features, ways
        self.apply_features = as_apply(features)

    def init(self, key, x):
        return self.from_variables(init_variables(self.features, key, x))

    def from_variables(self, variables):
        return {"features": dict(variables)}

    def _embed(self, meta_params, support_x, query_x, train):
        support = _flatten(self.apply_features(meta_params["features"], support_x, train))
        query = _flatten(self.apply_features(meta_params["features"], query_x, train))
        return support, query


class ProtoNet(_Metric):
    """Prototypical networks (Snell et al. 2017) with a flax feature extractor.

    Args:
        features: ``flax.linen.Module`` mapping ``[N, ...]`` to ``[N, ...]`` embeddings (flattened).
        ways: classes per task (static, for jit); distance: "euclidean" or "cosine";
        normalize: L2-normalise embeddings first.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> protonet = ProtoNet(nn.Dense(8), ways=3)
        >>> meta = protonet.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> x, y = jnp.ones((6, 4)), jnp.arange(6) % 3
        >>> protonet.task_loss(meta, x, y, x, y)[1].shape
        (6, 3)
    """

    def __init__(self, features, ways: int, distance: str = "euclidean", normalize: bool = False):
        super().__init__(features, ways)
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r} is not one of {DISTANCES}")
        self.distance, self.normalize = distance, bool(normalize)

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        """``(query loss, logits [q, ways])``."""
        support, query = self._embed(meta_params, support_x, query_x, train)
        logits = prototype_logits(support, support_y, query, self.ways, self.distance, self.normalize)
        loss = cross_entropy if loss is None else loss  # the contract's default, as for MAML
        return loss(logits, query_y), logits


class MetaOptNet(_Metric):
    """A feature extractor with R2D2's ridge-regression head (``head="ridge"``); ``scale`` and
    ``bias`` are meta-learned (``meta_params["head"]``) when ``learn_scale``.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> net = MetaOptNet(nn.Dense(8), ways=3, head="ridge", reg=1.0)
        >>> sorted(net.init(jax.random.PRNGKey(0), jnp.ones((1, 4))))
        ['features', 'head']
    """

    HEADS = ("ridge",)

    def __init__(
        self,
        features,
        ways: int,
        head: str = "ridge",
        reg: float = 1.0,
        learn_scale: bool = True,
        normalize: bool = False,
    ):
        super().__init__(features, ways)
        if head not in self.HEADS:
            raise ValueError(
                f"head={head!r} is not available on the jax backend (available: {self.HEADS}; the SVM head "
                "is torch-only)"
            )
        if not reg > 0:
            raise ValueError(f"reg must be a positive float, got {reg!r}")
        self.reg, self.learn_scale, self.normalize = float(reg), bool(learn_scale), bool(normalize)

    def from_variables(self, variables, head=None):
        meta = super().from_variables(variables)
        meta["head"] = head if head is not None else {"scale": jnp.asarray(1.0), "bias": jnp.asarray(0.0)}
        return meta

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        support, query = self._embed(meta_params, support_x, query_x, train)
        head = meta_params["head"] if self.learn_scale else jax.lax.stop_gradient(meta_params["head"])
        logits = ridge_logits(
            support, support_y, query, self.ways, self.reg, head["scale"], head["bias"], self.normalize
        )
        loss = cross_entropy if loss is None else loss  # the contract's default, as for MAML
        return loss(logits, query_y), logits
