"""MAML, Meta-SGD, GBML and ANIL as pure functions of a meta-parameter tree (jax backend).

Each algorithm object holds only static configuration (model, learning rate, flags). Its
meta-parameters are a dict returned by ``init`` (or ``from_variables``); ``task_loss`` adapts
on a support set and scores the query set, purely, so it can be differentiated, vmapped over
tasks and jit-compiled (``make_meta_train_step``). The same names and ideas as the torch
backend: MAML's ``lr``/``first_order``, Meta-SGD's ``lrs``, GBML's learned transforms.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

import jax

from ...._arrays import is_torch_tensor
from ...._checks import check_learning_rate
from ....transforms import EmptyState, GradientTransformation, per_parameter_sgd, sgd
from ._model import as_apply, cross_entropy, init_variables, with_params

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def check_task(meta_params: Any, x: Any, y: Any, steps: Any = 0, x_name: str = "x", y_name: str = "y",
               loss: Any = None) -> None:
    """Python-level checks of one task's arguments (free under jit: they run while tracing)."""
    if not isinstance(meta_params, Mapping) or "model" not in meta_params:
        found = sorted(meta_params) if isinstance(meta_params, Mapping) else type(meta_params).__name__
        raise ValueError(
            f"meta_params must be the dict from algorithm.init / from_variables (with a 'model' entry), "
            f"got {found}"
        )
    for name, value in ((x_name, x), (y_name, y)):
        if is_torch_tensor(value):
            raise TypeError(
                f"{name} is a torch.Tensor; the jax backend takes jax or numpy arrays: convert it with "
                "l2l_multi.interop.to_jax"
            )
    x_rows, y_rows = getattr(x, "shape", (None,))[:1], getattr(y, "shape", (None,))[:1]
    if x_rows and y_rows and None not in (x_rows[0], y_rows[0]) and x_rows != y_rows:
        raise ValueError(
            f"{y_name} must hold one label per sample of {x_name}: {x_name} has shape {tuple(x.shape)}, "
            f"{y_name} {tuple(y.shape)}"
        )
    if loss is cross_entropy and hasattr(y, "dtype") and jax.numpy.issubdtype(y.dtype, jax.numpy.floating):
        raise TypeError(
            f"{y_name} has dtype {y.dtype}; loss=cross_entropy needs integer class labels "
            "(e.g. y.astype(int))"
        )
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"steps={steps!r} must be a non-negative int (inner steps, static under jit)")


def check_finite(value: Any, where: str) -> None:
    """Refuse a non-finite concrete loss (eager calls); traced values pass (jit, vmap, grad)."""
    if isinstance(value, jax.core.Tracer):
        return
    if not bool(jax.numpy.isfinite(value).all()):
        raise FloatingPointError(
            f"{where} is non-finite ({value}); the inner-loop learning rate may be too large or the inputs "
            "contain NaN/inf"
        )


class _GradientBased:
    """Shared inner loop: ``steps`` gradient steps on ``variables["params"]``."""

    def __init__(self, model: Any, lr: float, first_order: bool = False):
        check_learning_rate(lr, "lr", arrays=("jax", "numpy"))  # one wording for both backends
        self.model, self.lr, self.first_order = model, lr, bool(first_order)
        self.apply_model = as_apply(model)

    # -- meta-parameters -------------------------------------------------------------
    def init(self, key: jax.Array, sample_input: jax.Array) -> dict:
        """Fresh meta-parameters: ``{"model": variables, ...}`` (sample_input ``[N, ...]``)."""
        return self.from_variables(init_variables(self.model, key, sample_input))

    def from_variables(self, variables: dict) -> dict:
        """Meta-parameters around existing model variables (e.g. converted from torch)."""
        if "params" not in variables:
            raise ValueError(f"variables must hold a 'params' collection; got keys {sorted(variables)}")
        return {"model": dict(variables)}

    # -- inner loop ---------------------------------------------------------------------
    def inner_update(self, meta_params: dict, params: Any, grads: Any) -> Any:
        updates, _ = sgd(self.lr).update(grads, EmptyState())
        return jax.tree_util.tree_map(lambda p, u: p + u, params, updates)

    def _inner_gradients(self, variables, x, y, loss, train):
        def support_loss(params):
            return loss(self.apply_model(with_params(variables, params), x, train), y)

        value, grads = jax.value_and_grad(support_loss)(variables["params"])
        check_finite(value, "adapt: the support loss")
        return jax.lax.stop_gradient(grads) if self.first_order else grads

    def adapt(self, meta_params: dict, x: jax.Array, y: jax.Array, loss: Loss = cross_entropy,
              steps: int = 1, train: bool = True) -> dict:
        """Model variables after ``steps`` inner steps on ``(x [s, ...], y [s])``; differentiable
        w.r.t. ``meta_params`` (second order unless ``first_order``).

        Called eagerly (outside jit/vmap/grad), a non-finite support loss raises
        ``FloatingPointError`` as on the torch backend; traced calls propagate NaN (see
        ``make_meta_train_step``)."""
        check_task(meta_params, x, y, steps, loss=loss)
        variables = meta_params["model"]
        for _ in range(steps):
            grads = self._inner_gradients(variables, x, y, loss, train)
            variables = with_params(variables, self.inner_update(meta_params, variables["params"], grads))
        return variables

    def task_loss(self, meta_params: dict, support_x, support_y, query_x, query_y,
                  loss: Loss = cross_entropy, steps: int = 1, train: bool = True):
        """``(query loss 0-d, query outputs [q, ...])`` after adapting on the support set."""
        check_task(meta_params, support_x, support_y, steps, "support_x", "support_y", loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        adapted = self.adapt(meta_params, support_x, support_y, loss, steps, train)
        outputs = self.apply_model(adapted, query_x, train)
        return loss(outputs, query_y), outputs


class MAML(_GradientBased):
    """MAML (Finn et al. 2017): inner step ``p <- p - lr * grad`` on the model's ``params``.

    Args:
        model: a ``flax.linen.Module`` (or ``f(variables, x)``).
        lr: inner learning rate (float); first_order: stop gradients through inner gradients.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> maml = MAML(nn.Dense(3), lr=0.5)
        >>> meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> x, y = jnp.ones((6, 4)), jnp.arange(6) % 3
        >>> loss, outputs = maml.task_loss(meta, x, y, x, y)
        >>> outputs.shape
        (6, 3)
    """


class MetaSGD(_GradientBased):
    """Meta-SGD (Li et al. 2017): a learned learning rate per parameter element, ``lr`` at init,
    stored in ``meta_params["lrs"]`` and meta-learned with the model.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> meta = MetaSGD(nn.Dense(3), lr=0.1).init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> round(float(meta["lrs"]["kernel"][0, 0]), 6)
        0.1
    """

    def __init__(self, model, lr=1.0, first_order=False):
        super().__init__(model, lr, first_order)

    def from_variables(self, variables):
        meta = super().from_variables(variables)
        meta["lrs"] = jax.tree_util.tree_map(lambda p: jax.numpy.full_like(p, self.lr), variables["params"])
        return meta

    def inner_update(self, meta_params, params, grads):
        updates, _ = per_parameter_sgd(meta_params["lrs"]).update(grads, EmptyState())
        return jax.tree_util.tree_map(lambda p, u: p + u, params, updates)


class GBML(_GradientBased):
    """Gradient-based meta-learning with a learned transform (``l2l_multi.transforms``):
    ``p <- p - lr * T(grad)``, ``T``'s parameters in ``meta_params["transform"]``.

    Args:
        model: as in ``MAML``.
        transform: a learnable ``GradientTransformation`` such as
            ``transforms.elementwise_scale()`` (Meta-SGD), ``transforms.kronecker(layout="flax")``
            (Meta-KFO) or ``transforms.meta_curvature(layout="flax")``, or any optax-style pair
            whose state is differentiable.
        lr: float; adapt_transform: also take a gradient step on the transform's parameters at
            each inner step (Meta-KFO); first_order: as in ``MAML``.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from l2l_multi import transforms
        >>> gbml = GBML(nn.Dense(2), transforms.kronecker(layout="flax"), lr=0.1)
        >>> meta = gbml.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
        >>> meta["transform"]["kernel"]["left"].shape   # the [out, out] factor of a [3, 2] kernel
        (2, 2)
    """

    def __init__(
        self, model, transform: GradientTransformation, lr=1.0, adapt_transform=False, first_order=False
    ):
        super().__init__(model, lr, first_order)
        if not (callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None))):
            raise TypeError(f"transform must be a GradientTransformation (init, update), got {transform!r}")
        self.transform, self.adapt_transform = transform, bool(adapt_transform)

    def from_variables(self, variables):
        meta = super().from_variables(variables)
        meta["transform"] = self.transform.init(variables["params"])
        return meta

    def adapt(self, meta_params, x, y, loss=cross_entropy, steps=1, train=True):
        check_task(meta_params, x, y, steps, loss=loss)
        variables, transform_params = meta_params["model"], meta_params["transform"]
        tree = jax.tree_util.tree_map

        def support_loss(params):
            return loss(self.apply_model(with_params(variables, params), x, train), y)

        params, previous = variables["params"], None
        for _ in range(steps):
            if self.adapt_transform and previous is not None:
                # The current parameters came from the previous step through the current
                # transform: differentiate the loss w.r.t. that transform (as the torch backend
                # does) and update the transform before it maps this step's gradient.
                def loss_through_transform(transform_params, offset, last=previous):
                    last_params, last_grads = last
                    transformed, _ = self.transform.update(last_grads, transform_params, last_params)
                    moved = tree(lambda p, u, o: p - self.lr * u + o, last_params, transformed, offset)
                    return support_loss(moved)

                zeros = tree(jax.numpy.zeros_like, params)
                gradient = jax.grad(loss_through_transform, argnums=(0, 1))
                transform_grads, grads = gradient(transform_params, zeros)
                if self.first_order:
                    transform_grads = jax.lax.stop_gradient(transform_grads)
                transform_params = tree(lambda t, g: t - self.lr * g, transform_params, transform_grads)
            else:
                value, grads = jax.value_and_grad(support_loss)(params)
                check_finite(value, "adapt: the support loss")
            if self.first_order:
                grads = jax.lax.stop_gradient(grads)
            transformed, _ = self.transform.update(grads, transform_params, params)
            previous = (params, grads)
            params = tree(lambda p, u: p - self.lr * u, params, transformed)
        return with_params(variables, params)


class ANIL(_GradientBased):
    """ANIL (Raghu et al. 2020): ``head(features(x))``; only the head is adapted.

    Meta-parameters ``{"features": variables, "model": head variables}``; the embeddings of the
    support and query sets are computed once per task.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> anil = ANIL(nn.Dense(8), nn.Dense(3), lr=0.5)
        >>> meta = anil.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        >>> sorted(meta)
        ['features', 'model']
    """

    def __init__(self, features, head, lr, first_order=False):
        super().__init__(head, lr, first_order)
        self.features = features
        self.apply_features = as_apply(features)

    def init(self, key, sample_input):
        feature_key, head_key = jax.random.split(key)
        features = init_variables(self.features, feature_key, sample_input)
        embedding = self.apply_features(features, sample_input, False)
        return {"features": features, "model": init_variables(self.model, head_key, embedding)}

    def from_variables(self, variables, head_variables=None):
        """``variables``: the feature extractor's; ``head_variables``: the head's."""
        if head_variables is None:
            raise ValueError("ANIL.from_variables needs both the features' and the head's variables")
        return {"features": dict(variables), "model": dict(head_variables)}

    def adapt(self, meta_params, x, y, loss=cross_entropy, steps=1, train=True):
        """The head's variables after adapting on the embeddings of ``x``."""
        check_task(meta_params, x, y, steps, loss=loss)
        embeddings = self.apply_features(meta_params["features"], x, train)
        return self.adapt_head(meta_params, embeddings, y, loss, steps, train)

    adapt_head = _GradientBased.adapt  # the inner loop on precomputed embeddings

    def task_loss(self, meta_params, support_x, support_y, query_x, query_y, loss=cross_entropy, steps=1,
                  train=True):
        check_task(meta_params, support_x, support_y, steps, "support_x", "support_y", loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        support = self.apply_features(meta_params["features"], support_x, train)
        query = self.apply_features(meta_params["features"], query_x, train)
        adapted = self.adapt_head(meta_params, support, support_y, loss, steps, train)
        outputs = self.apply_model(adapted, query, train)
        return loss(outputs, query_y), outputs
