"""MAML, Meta-SGD and ANIL (GBML in ``_gbml.py``) as pure functions of a meta-parameter tree (jax backend).

Each algorithm object holds only static configuration (model, learning rate, flags). Its
meta-parameters are a dict returned by ``init`` (or ``from_variables``); ``task_loss`` adapts
on a support set and scores the query set, purely, so it can be differentiated, vmapped over
tasks and jit-compiled (``make_meta_train_step``). The same names and ideas as the torch
backend: MAML's ``lr``/``first_order``/``inner``, Meta-SGD's ``lrs``, GBML's learned transforms.

Inner loops: the inner optimizer (``sgd(lr)`` by default, or ``inner=``: any transform of
``l2l_multi.transforms`` or of optax, updates added) is initialised per task and its state
threaded through the steps; more than one step runs as one ``jax.lax.scan`` (the step is traced
and compiled once, whatever the number of steps), a single step directly.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import Any

import jax

from ...._checks import check_learning_rate, nonfinite_loss_error
from ...._contract import check_task as shared_task_check
from ....transforms import sgd
from ....transforms._inner import check_inner, resolve_inner
from ._model import as_apply, cross_entropy, init_variables, with_params

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def check_task(
    meta_params: Any, x: Any, y: Any, steps: Any = 0, x_name: str = "x", y_name: str = "y", loss: Any = None
) -> None:
    """Python-level checks of one task's arguments (free under jit: they run while tracing)."""
    shared_task_check(meta_params, x, y, "jax", x_name, y_name, cross_entropy=loss is cross_entropy)
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative int (inner steps, static under jit)")


def check_finite(value: Any, where: str) -> None:
    """Refuse a non-finite concrete loss (eager calls); traced values pass (jit, vmap, grad)."""
    if isinstance(value, jax.core.Tracer):
        return
    if not bool(jax.numpy.isfinite(value).all()):
        raise nonfinite_loss_error(where, value)  # one wording for both backends


def _check_lr(lr: Any, argument: str = "lr") -> Any:
    return check_learning_rate(lr, argument, arrays=("jax", "numpy"))  # one wording for both backends


def _apply(params: Any, updates: Any) -> Any:
    # keep each parameter's dtype: a float64 rate must not promote a float32 scan carry
    return jax.tree_util.tree_map(lambda p, u: (p + u).astype(p.dtype), params, updates)


class _GradientBased:
    """Shared inner loop: ``steps`` inner-optimizer steps on ``variables["params"]``."""

    def __init__(self, model: Any, lr: Any = None, first_order: bool = False, inner: Any = None):
        self.lr, self.inner = resolve_inner(type(self).__name__, lr, inner, _check_lr)
        self.model, self.first_order = model, bool(first_order)
        self.apply_model = as_apply(model)

    # -- meta-parameters -------------------------------------------------------------
    def init(self, key: jax.Array, x: jax.Array) -> dict:
        """Fresh meta-parameters: ``{"model": variables, ...}`` from a PRNG ``key`` and a sample
        input ``x`` ``[N, ...]`` (the contract's ``init(key, x)``)."""
        return self.from_variables(init_variables(self.model, key, x))

    def from_variables(self, variables: dict) -> dict:
        """Meta-parameters around existing model variables (e.g. converted from torch)."""
        if "params" not in variables:
            raise ValueError(f"variables must hold a 'params' collection; got keys {sorted(variables)}")
        return {"model": dict(variables)}

    # -- inner loop ---------------------------------------------------------------------
    def inner_transform(self) -> Any:
        """The inner optimizer: ``inner`` when given, else ``sgd(lr)``."""
        return self.inner if self.inner is not None else sgd(self.lr)

    def inner_init(self, meta_params: dict, params: Any) -> Any:
        """The inner optimizer's state at the start of a task's adaptation."""
        return self.inner_transform().init(params)

    def inner_step(self, meta_params: dict, params: Any, grads: Any, state: Any) -> tuple[Any, Any]:
        """``(params, state)`` after one inner step with ``grads`` (trees shaped like ``params``)."""
        updates, state = self.inner_transform().update(grads, state, params)
        return _apply(params, updates), state

    def _inner_batches(self, x: jax.Array, y: jax.Array, steps: int) -> tuple | None:
        """``(xs [steps, b, ...], ys [steps, b])``, each inner step's batch, or ``None``: every
        step on the whole support set (Reptile's minibatches override this)."""
        return None

    def _inner_run(self, meta_params, variables, x, y, loss, steps, train) -> tuple[Any, Any]:
        """``(adapted params, inner-optimizer state)`` after ``steps`` inner steps from
        ``variables["params"]`` and ``inner_init``'s state."""

        def support_loss(params, batch_x, batch_y):
            return loss(self.apply_model(with_params(variables, params), batch_x, train), batch_y)

        def step(carry, batch):
            params, state = carry
            value, grads = jax.value_and_grad(support_loss)(params, *batch)
            if self.first_order:
                grads = jax.lax.stop_gradient(grads)
            return self.inner_step(meta_params, params, grads, state), value

        params = variables["params"]
        carry = (params, self.inner_init(meta_params, params))
        batches = self._inner_batches(x, y, steps)
        if batches is not None:
            carry, values = jax.lax.scan(step, carry, batches)
        elif steps == 1:  # nothing to roll: keep the single step's graph plain
            carry, values = step(carry, (x, y))
        elif steps > 1:
            carry, values = jax.lax.scan(lambda c, _: step(c, (x, y)), carry, length=steps)
        else:
            values = jax.numpy.zeros(())
        check_finite(values, "adapt: the support loss")
        return carry

    def _inner_loop(self, meta_params, variables, x, y, loss, steps, train):
        params, _ = self._inner_run(meta_params, variables, x, y, loss, steps, train)
        return with_params(variables, params)

    def _with_inner(self, inner: Any) -> _GradientBased:
        """This learner with ``inner`` as its inner optimizer (a per-call ``adapt(inner=...)``)."""
        if inner is None:
            return self
        other = copy.copy(self)
        other.inner = check_inner(inner)
        return other

    def adapt(
        self,
        meta_params: dict,
        x: jax.Array,
        y: jax.Array,
        *,
        loss: Loss | None = None,
        steps: int = 1,
        inner: Any = None,
        train: bool = True,
    ) -> dict:
        """Model variables after ``steps`` inner steps on ``(x [s, ...], y [s])``; differentiable
        w.r.t. ``meta_params`` (second order unless ``first_order``). ``loss=None``:
        cross-entropy; ``inner``: an inner optimizer for this call instead of the learner's.
        The same signature as the torch backend's functional ``adapt``.

        Called eagerly (outside jit/vmap/grad), a non-finite support loss raises
        ``FloatingPointError`` as on the torch backend; traced calls propagate NaN (see
        ``make_meta_train_step``)."""
        loss = cross_entropy if loss is None else loss
        check_task(meta_params, x, y, steps, loss=loss)
        learner = self._with_inner(inner)
        return learner._inner_loop(meta_params, meta_params["model"], x, y, loss, steps, train)

    def task_loss(
        self,
        meta_params: dict,
        support_x,
        support_y,
        query_x,
        query_y,
        *,
        loss: Loss | None = None,
        steps: int = 1,
        train: bool = True,
    ):
        """``(query loss 0-d, query outputs [q, ...])`` after adapting on the support set
        (``loss=None``: cross-entropy)."""
        loss = cross_entropy if loss is None else loss
        check_task(meta_params, support_x, support_y, steps, "support_x", "support_y", loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        adapted = self.adapt(meta_params, support_x, support_y, loss=loss, steps=steps, train=train)
        outputs = self.apply_model(adapted, query_x, train)
        return loss(outputs, query_y), outputs


class MAML(_GradientBased):
    """MAML (Finn et al. 2017): inner step ``p <- p - lr * grad`` on the model's ``params``, or
    any inner optimizer.

    Args:
        model: a ``flax.linen.Module`` (or ``f(variables, x)``).
        lr: inner learning rate (float): the inner step is ``sgd(lr)``.
        first_order: stop gradients through inner gradients.
        inner: instead of ``lr``, any ``GradientTransformation`` (``optax.adam(1e-3)``,
            ``optax.sgd(0.1, momentum=0.9)``, ``optax.chain(optax.clip_by_global_norm(1.0),
            optax.sgd(0.4))``, ``l2l_multi.transforms.adam(1e-3)``...), updates added; its state
            is created per task and threaded through the steps (differentiably). Pass ``lr`` or
            ``inner``, not both (``ValueError``). For Adam prefer ``eps_root > 0``
            (``transforms.adam``'s default) so second-order meta-gradients stay finite.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> maml = MAML(nn.Dense(3), lr=0.5)
        >>> meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> x, y = jnp.ones((6, 4)), jnp.arange(6) % 3
        >>> loss, outputs = maml.task_loss(meta, x, y, x, y)
        >>> outputs.shape
        (6, 3)
        >>> import optax
        >>> adam = MAML(nn.Dense(3), inner=optax.adam(1e-2, eps_root=1e-16))
        >>> loss, outputs = adam.task_loss(meta, x, y, x, y, steps=3)
    """


class MetaSGD(_GradientBased):
    """Meta-SGD (Li et al. 2017): a learned learning rate per parameter element, ``lr`` at init,
    stored in ``meta_params["lrs"]`` and meta-learned with the model.

    ``inner``: an inner optimizer whose updates the learned rates multiply element-wise
    (``p <- p + lrs * u``); default ``sgd(1.0)`` (``u = -grad``, Meta-SGD). Give it a unit
    learning rate (``optax.adam(1.0)``) so that ``lrs`` stay the step sizes. As on torch.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> meta = MetaSGD(nn.Dense(3), lr=0.1).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> round(float(meta["lrs"]["kernel"][0, 0]), 6)
        0.1
    """

    def __init__(self, model, lr=1.0, first_order=False, inner=None):
        super().__init__(model, lr, first_order)
        if inner is not None:
            self.inner = check_inner(inner)

    def from_variables(self, variables):
        meta = super().from_variables(variables)
        meta["lrs"] = jax.tree_util.tree_map(lambda p: jax.numpy.full_like(p, self.lr), variables["params"])
        return meta

    def inner_transform(self):
        """The inner optimizer whose updates ``lrs`` multiply: ``inner``, else ``sgd(1.0)``."""
        return self.inner if self.inner is not None else sgd(1.0)

    def inner_step(self, meta_params, params, grads, state):
        updates, state = self.inner_transform().update(grads, state, params)
        updates = jax.tree_util.tree_map(lambda rate, u: rate * u, meta_params["lrs"], updates)
        return _apply(params, updates), state


class ANIL(_GradientBased):
    """ANIL (Raghu et al. 2020): ``head(features(x))``; only the head is adapted.

    Meta-parameters ``{"features": variables, "model": head variables}``; the embeddings of the
    support and query sets are computed once per task.
    ``lr`` or ``inner``: the head's inner optimizer, as in ``MAML``.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> anil = ANIL(nn.Dense(8), nn.Dense(3), lr=0.5)
        >>> meta = anil.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> sorted(meta)
        ['features', 'model']
    """

    def __init__(self, features, head, lr=None, first_order=False, inner=None):
        self.apply_features = as_apply(features, "features")
        as_apply(head, "head")  # the base class would name it "model"
        super().__init__(head, lr, first_order, inner)
        self.features = features

    def init(self, key, x):
        feature_key, head_key = jax.random.split(key)
        features = init_variables(self.features, feature_key, x)
        embedding = self.apply_features(features, x, False)
        return {"features": features, "model": init_variables(self.model, head_key, embedding)}

    def from_variables(self, variables, head_variables=None):
        """``variables``: the feature extractor's; ``head_variables``: the head's."""
        if head_variables is None:
            raise ValueError("ANIL.from_variables needs both the features' and the head's variables")
        return {"features": dict(variables), "model": dict(head_variables)}

    def adapt(self, meta_params, x, y, *, loss=None, steps=1, inner=None, train=True):
        """The head's variables after adapting on the embeddings of ``x``."""
        loss = cross_entropy if loss is None else loss
        check_task(meta_params, x, y, steps, loss=loss)
        embeddings = self.apply_features(meta_params["features"], x, train)
        return self.adapt_head(meta_params, embeddings, y, loss=loss, steps=steps, inner=inner, train=train)

    adapt_head = _GradientBased.adapt  # the inner loop on precomputed embeddings

    def task_loss(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        loss = cross_entropy if loss is None else loss
        check_task(meta_params, support_x, support_y, steps, "support_x", "support_y", loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        support = self.apply_features(meta_params["features"], support_x, train)
        query = self.apply_features(meta_params["features"], query_x, train)
        adapted = self.adapt_head(meta_params, support, support_y, loss=loss, steps=steps, train=train)
        outputs = self.apply_model(adapted, query, train)
        return loss(outputs, query_y), outputs
