"""Prototypical networks, the R2D2 ridge head and MetaOptNet's SVM head as pure functions (jax).

Same conventions as the torch backend's ``ProtoNet`` / ``MetaOptNet(head="ridge"|"svm")``:
support and query go through the feature extractor in separate calls (batch statistics per
set), labels are ``0 .. ways-1``, logits are negative squared euclidean distances (or cosine
similarities) to class means, ``scale * query @ W + bias`` for the ridge head, or
``scale * (query X^T) alpha`` for the SVM head (``alpha`` the solution of its dual QP).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._qp import solve_qp
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


def svm_dual_problem(support, labels, ways: int, C_reg):
    """MetaOptNet's dual QP of one task in ``solve_qp``'s form (as the torch ``svm_dual_problem``).

    Args:
        support: ``[n, d]`` floating point embeddings; labels: ``[n]`` ints in ``0..ways-1``;
        ways: the number of classes ``k``; C_reg: positive float, the SVM's ``C``.

    Returns:
        ``(Q [nk, nk], p [nk], G [nk, nk], h [nk], A [n, nk], b [n])``, the variable of example
        ``i`` and class ``c`` at index ``i * k + c``.

    Example:
        >>> import jax.numpy as jnp
        >>> Q, p, G, h, A, b = svm_dual_problem(jnp.ones((2, 3)), jnp.array([0, 1]), 2, 0.1)
        >>> Q.shape, A.tolist()
        ((4, 4), [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    """
    n, dtype = support.shape[0], support.dtype
    # Q = K kron I_k + I_nk with the linear kernel K = X X^T (MetaOptNet's released code adds
    # the identity too: it makes the dual strictly convex).
    Q = jnp.kron(support @ support.T, jnp.eye(ways, dtype=dtype)) + jnp.eye(n * ways, dtype=dtype)
    targets = jax.nn.one_hot(labels, ways, dtype=dtype).reshape(n * ways)
    A = jnp.kron(jnp.eye(n, dtype=dtype), jnp.ones((1, ways), dtype))  # sum_c alpha_ic = 0
    return Q, -targets, jnp.eye(n * ways, dtype=dtype), C_reg * targets, A, jnp.zeros(n, dtype)


def svm_logits(
    support,
    labels,
    query,
    ways: int,
    C_reg=0.1,
    scale=1.0,
    normalize=False,
    max_iterations=50,
    tolerance=None,
):
    """MetaOptNet-SVM (Lee et al. 2019): the Crammer-Singer multi-class linear SVM's query logits.

    Solves, over ``alpha`` in ``R^{n x ways}`` (row-major in ``z``), the dual

        minimise    1/2 z^T (K kron I + I) z - onehot(y)^T z
        subject to  z <= C_reg * onehot(y),   sum_c alpha_{i,c} = 0 for every i,

    with ``K = support @ support.T``, by ``solve_qp`` (differentiated implicitly through its KKT
    conditions), and returns ``scale * (query @ support.T) @ alpha``, ``[q, ways]`` (the torch
    ``SVClassifier``'s logits). One task; ``vmap`` it over a batch.

    Args:
        support: ``[n, d]`` float embeddings.
        labels: ``[n]`` ints in ``0..ways-1``.
        query: ``[q, d]`` float embeddings.
        ways: static int.
        C_reg: positive float.
        scale: float or 0-d array.
        normalize: L2-normalise embeddings first.
        max_iterations: ``solve_qp``'s.
        tolerance: ``solve_qp``'s (a task whose QP does not reach ``tolerance`` gets NaN logits
            under jit).

    Example:
        >>> import jax.numpy as jnp
        >>> support = jnp.array([[1.0], [-1.0]])
        >>> jnp.round(svm_logits(support, jnp.array([0, 1]), jnp.array([[5.0]]), ways=2), 4).tolist()
        [[1.0, -1.0]]
    """
    if isinstance(C_reg, bool) or not isinstance(C_reg, (int, float)) or not C_reg > 0:
        raise ValueError(f"C_reg must be a positive float, got {C_reg!r}")
    if normalize:
        support, query = _normalise(support), _normalise(query)
    problem = svm_dual_problem(support, labels, ways, float(C_reg))
    alpha = solve_qp(*problem, max_iterations=max_iterations, tolerance=tolerance).reshape(-1, ways)
    return scale * ((query @ support.T) @ alpha)


class _Metric:
    """Embed support and query with ``features``; no inner loop (``steps`` is ignored)."""

    def __init__(self, features, ways: int):
        if isinstance(ways, bool) or not isinstance(ways, int) or ways < 2:
            raise ValueError(f"ways={ways!r} must be an int >= 2 (it fixes the logits' shape under jit)")
        self.features, self.ways = features, ways
        self.apply_features = as_apply(features, "features")

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
        logits = self.head_logits(meta_params, support, support_y, query)
        loss = cross_entropy if loss is None else loss  # the contract's default, as for MAML
        return loss(logits, query_y), logits

    def head_logits(self, meta_params, support, support_y, query):
        """Logits ``[q, ways]`` of embedded ``query [q, d]`` against the prototypes of the
        embedded ``support [s, d]`` with int labels ``support_y [s]`` (``meta_params`` unused).

        Example:
            >>> import jax.numpy as jnp, flax.linen as nn
            >>> support, labels = jnp.array([[0.0, 0.0], [2.0, 0.0]]), jnp.array([0, 1])
            >>> ProtoNet(nn.Dense(2), ways=2).head_logits({}, support, labels, jnp.ones((1, 2))).tolist()
            [[-2.0, -2.0]]
        """
        return prototype_logits(support, support_y, query, self.ways, self.distance, self.normalize)


class MetaOptNet(_Metric):
    """A feature extractor with a closed-form or convex head fitted on each task's support set.

    ``head="ridge"``: R2D2's ridge regression (``ridge_logits``), logits ``scale * query @ W +
    bias``; ``head="svm"``: MetaOptNet's multi-class SVM (``svm_logits``, Lee et al. 2019), logits
    ``scale * (query X^T) alpha``, with the dual QP solved by ``solve_qp`` and differentiated
    through its KKT conditions. The meta-gradient reaches the features through the head's
    solution. With ``learn_scale`` the head's scalars are meta-learned in ``meta_params["head"]``
    (ridge: ``scale`` and ``bias``; svm: ``scale``, MetaOptNet's ``enable_scale``).

    Args:
        features: ``flax.linen.Module`` (or ``f(variables, x)``) mapping ``[N, ...]`` to
            embeddings (flattened to ``[N, d]``).
        ways: classes per task (static, for jit).
        head: ``"svm"`` or ``"ridge"``.
        reg: the ridge head's regulariser (positive float).
        learn_scale: meta-learn the head's scalars; None: as the torch heads (ridge True, svm
            False). A ridge head that does not learn them keeps them fixed at 1 and 0.
        normalize: L2-normalise embeddings first.
        C_reg: the SVM's box constraint ``C`` (positive float; MetaOptNet uses 0.1).
        max_iterations: the SVM's ``solve_qp`` iteration limit.
        tolerance: the SVM's ``solve_qp`` tolerance (``None``: 1e-10 in float64, 1e-5 in
            float32); a task whose QP does not converge gets NaN logits.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> net = MetaOptNet(nn.Dense(8), ways=3, head="ridge", reg=1.0)
        >>> sorted(net.init(jax.random.PRNGKey(0), jnp.ones((1, 4))))
        ['features', 'head']
        >>> svm = MetaOptNet(nn.Dense(8), ways=3, head="svm")   # no learned scale: no "head"
        >>> sorted(svm.init(jax.random.PRNGKey(0), jnp.ones((1, 4))))
        ['features']
    """

    HEADS = ("svm", "ridge")

    def __init__(
        self,
        features,
        ways: int,
        head: str = "ridge",
        reg: float = 1.0,
        learn_scale: bool | None = None,
        normalize: bool = False,
        C_reg: float = 0.1,
        max_iterations: int = 50,
        tolerance: float | None = None,
    ):
        super().__init__(features, ways)
        if head not in self.HEADS:
            raise ValueError(f"head must be one of {', '.join(map(repr, self.HEADS))}, got {head!r}")
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg > 0:
            raise ValueError(f"reg must be a positive float, got {reg!r}")
        if isinstance(C_reg, bool) or not isinstance(C_reg, (int, float)) or not C_reg > 0:
            raise ValueError(f"C_reg must be a positive float, got {C_reg!r}")
        if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
            raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}")
        if tolerance is not None and (
            isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0
        ):
            raise ValueError(f"tolerance must be a positive float or None, got {tolerance!r}")
        self.head = head
        self.reg, self.normalize, self.C_reg = float(reg), bool(normalize), float(C_reg)
        self.learn_scale = (head == "ridge") if learn_scale is None else bool(learn_scale)
        self.max_iterations, self.tolerance = max_iterations, tolerance

    def from_variables(self, variables, head=None):
        """``{"features": variables[, "head": head]}``; ``head`` defaults to the initial scalars
        (ridge: ``{"scale": 1.0, "bias": 0.0}``; svm with ``learn_scale``: ``{"scale": 1.0}``;
        an svm head without learned scale has no ``"head"`` entry, like the torch module)."""
        meta = super().from_variables(variables)
        if head is not None:
            meta["head"] = head
        elif self.head == "ridge":
            meta["head"] = {"scale": jnp.asarray(1.0), "bias": jnp.asarray(0.0)}
        elif self.learn_scale:
            meta["head"] = {"scale": jnp.asarray(1.0)}
        return meta

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        """``(query loss, logits [q, ways])`` for one task (``steps`` is ignored: no inner loop)."""
        support, query = self._embed(meta_params, support_x, query_x, train)
        logits = self.head_logits(meta_params, support, support_y, query)
        loss = cross_entropy if loss is None else loss  # the contract's default, as for MAML
        return loss(logits, query_y), logits

    def head_logits(self, meta_params, support, support_y, query):
        """Logits ``[q, ways]`` of embedded ``query [q, d]`` from the head fitted on the embedded
        ``support [s, d]`` with int labels ``support_y [s]`` (its scalars in ``meta_params``).

        Example:
            >>> import jax.numpy as jnp, flax.linen as nn
            >>> ridge = MetaOptNet(nn.Dense(2), ways=2, head="ridge", reg=1.0)
            >>> meta = {"head": {"scale": 1.0, "bias": 0.0}}
            >>> jnp.round(ridge.head_logits(meta, jnp.eye(2), jnp.array([0, 1]), jnp.eye(2)), 4).tolist()
            [[0.5, 0.0], [0.0, 0.5]]
        """
        head = meta_params.get("head", {})
        if not self.learn_scale:
            head = jax.lax.stop_gradient(head)
        if self.head == "svm":
            logits = svm_logits(
                support,
                support_y,
                query,
                self.ways,
                self.C_reg,
                head.get("scale", 1.0),
                self.normalize,
                self.max_iterations,
                self.tolerance,
            )
        else:
            logits = ridge_logits(
                support, support_y, query, self.ways, self.reg, head["scale"], head["bias"], self.normalize
            )
        return logits
