"""Meta-descent on jax: ``LearnableOptimizer``, ``ParameterUpdate`` and ``DifferentiableSGD``.

The torch backend's classes of these names are modules that rewrite a model's parameters in
place so that the *next* ``backward()`` reaches the transforms. Here the same rules are pure
functions of explicit trees, in the optax idiom: the learnable transform's parameters are a tree
``init`` returns, every step is a function of ``(transform_params, params, grads)``, and the
meta-gradient is ``jax.grad`` through that step. Given the same initial values and gradients,
both backends compute the same numbers (``tests/test_jax_optim.py`` checks it in float64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from ...._checks import check_learning_rate
from ....transforms import GradientTransformation, apply_updates, is_learnable

Tree = Any


def _check_transform(transform: Any, owner: str) -> GradientTransformation:
    if isinstance(transform, GradientTransformation) and is_learnable(transform):
        return transform
    if isinstance(transform, GradientTransformation) or (
        hasattr(transform, "init") and hasattr(transform, "update")
    ):
        raise TypeError(
            f"{owner}(transform=...) needs a learnable transform whose state is its meta-learned "
            f"parameters (l2l.optim.elementwise_scale(), kronecker(), meta_curvature(), or your own "
            f"pair wrapped in l2l.optim.LearnableTransformation), got {type(transform).__name__}; "
            "a complete optimizer (sgd, adam, an optax transform) belongs in MAML(..., inner=...)"
        )
    raise TypeError(
        f"{owner}(transform=...) must be a LearnableTransformation (l2l.optim.elementwise_scale(), "
        f"kronecker(), meta_curvature()), got {type(transform).__name__}; the torch backend's "
        "factories (ModuleTransform, KroneckerTransform...) build torch modules and do not apply here"
    )


def _scaled(tree: Tree, factor: Any) -> Tree:
    return jax.tree_util.tree_map(lambda leaf: factor * leaf, tree)


class MetaGradients(NamedTuple):
    """What ``LearnableOptimizer.meta_gradients`` returns (every tree shaped like its input).

    Fields:
        loss: 0-d, ``loss_fn`` at ``params``.
        params: the parameters after the step, ``params_before - lr * T(grads_before)``.
        transform_grads: ``d loss / d transform_params`` (the hypergradient), shaped like
            ``transform_params``.
        grads: ``d loss / d params`` at the new parameters: what the next step transforms.
    """

    loss: Any
    params: Tree
    transform_grads: Tree
    grads: Tree


class LearnableOptimizer:
    """An optimizer whose step ``p <- p - lr * T(g)`` is meta-learned through ``T``'s parameters.

    The jax counterpart of the torch backend's ``l2l.optim.LearnableOptimizer`` (meta-descent,
    learn2learn's scheme; with ``elementwise_scale`` it is hypergradient descent with
    per-parameter rates, Baydin et al. 2018). There, ``step()`` leaves the model's parameters
    differentiable w.r.t. the transform so the next ``loss.backward()`` reaches it; here
    ``meta_gradients`` differentiates the next loss through the last step with ``jax.grad``. As on
    torch, the step's inputs (the old parameters and their gradients) are constants: the graph
    spans one step.

    Args:
        transform: a ``LearnableTransformation`` from ``l2l.optim``: ``elementwise_scale(1.0)``
            (torch: ``ModuleTransform(Scale)``), ``kronecker(layout=...)`` (torch:
            ``KroneckerTransform(KroneckerLinear)``), ``meta_curvature(layout=...)`` (torch:
            ``MetaCurvatureTransform``). Use ``layout="flax"`` for flax kernels (``[in, out]``,
            HWIO) so a factor means the same as on torch.
        lr: step size, a float >= 0.

    Methods (all pure; jit/vmap/grad them freely):
        ``init(params) -> transform_params``: the transform's parameters (identity at the start).
        ``update(grads, transform_params, params=None) -> (updates, transform_params)``: the
        optax ``GradientTransformation`` convention, ``updates = -lr * T(grads)`` (added).
        ``step(transform_params, params, grads) -> params``: one update.
        ``meta_gradients(transform_params, params_before, grads_before, loss_fn, *args)``:
        the step, the loss after it and both gradients (``MetaGradients``).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> import l2l_multi as l2l
        >>> with l2l.use_backend("jax"):
        ...     opt = l2l.optim.LearnableOptimizer(l2l.optim.elementwise_scale(1.0), lr=0.1)
        >>> loss = lambda params, x: jnp.sum((x @ params["w"]) ** 2)
        >>> params, x = {"w": jnp.ones((2, 1))}, jnp.ones((4, 2))
        >>> scales, meta_opt = opt.init(params), optax.sgd(0.01)
        >>> meta_state, grads = meta_opt.init(scales), jax.grad(loss)(params, x)
        >>> before = params
        >>> for _ in range(3):  # each pass: one step and one meta-step on the scales
        ...     result = opt.meta_gradients(scales, before, grads, loss, x)
        ...     updates, meta_state = meta_opt.update(result.transform_grads, meta_state)
        ...     scales = optax.apply_updates(scales, updates)
        ...     before, grads = result.params, result.grads
        >>> bool(result.loss < loss(params, x))
        True
    """

    def __init__(self, transform: GradientTransformation, lr: float = 1.0):
        self.transform = _check_transform(transform, "LearnableOptimizer")
        self.lr = check_learning_rate(lr, "lr", arrays=("jax", "numpy"))

    def init(self, params: Tree) -> Tree:
        """The transform's parameters for ``params`` (a tree of arrays), identity maps at first."""
        return self.transform.init(params)

    def update(self, grads: Tree, transform_params: Tree, params: Tree = None) -> tuple[Tree, Tree]:
        """``(-lr * T(grads), transform_params)``: updates shaped like ``grads``, to be added."""
        direction, _ = self.transform.update(grads, transform_params, params)
        return _scaled(direction, -self.lr), transform_params

    def step(self, transform_params: Tree, params: Tree, grads: Tree) -> Tree:
        """``params - lr * T(grads)`` leaf-wise; differentiable in all three trees."""
        updates, _ = self.update(grads, transform_params, params)
        return apply_updates(params, updates)

    def meta_gradients(
        self,
        transform_params: Tree,
        params_before: Tree,
        grads_before: Tree,
        loss_fn: Callable[..., Any],
        *args: Any,
    ) -> MetaGradients:
        """Step from ``params_before`` along ``grads_before`` and differentiate the next loss.

        Args:
            transform_params: from ``init`` (or updated by a meta-optimizer).
            params_before: the parameters before the step (treated as constants, as torch's
                detached values).
            grads_before: their gradients before the step (constants too).
            loss_fn: ``loss_fn(params, *args) -> 0-d loss``.
            *args: the next batch, passed to ``loss_fn``.

        Returns:
            ``MetaGradients(loss, params, transform_grads, grads)``.
        """
        params_before = jax.lax.stop_gradient(params_before)
        grads_before = jax.lax.stop_gradient(grads_before)

        def next_loss(transform_params, before):
            params = self.step(transform_params, before, grads_before)
            return loss_fn(params, *args), params

        # d/d before of L(before - lr T(g)) with g constant is dL/dp at the new parameters.
        (loss, params), (transform_grads, grads) = jax.value_and_grad(
            next_loss, argnums=(0, 1), has_aux=True
        )(transform_params, params_before)
        return MetaGradients(loss, params, transform_grads, grads)

    def __repr__(self) -> str:
        return f"LearnableOptimizer(lr={self.lr!r})"


class ParameterUpdate:
    """Gradients of a loss w.r.t. parameters, each mapped by a learnable transform ``T``.

    The jax counterpart of the torch backend's ``l2l.optim.ParameterUpdate`` (which is called
    like ``torch.autograd.grad``): here the loss is a function and the transform's parameters are
    an explicit tree, so ``jax.grad`` w.r.t. them reaches through the transformed gradients.

    Args:
        transform: a ``LearnableTransformation`` (``elementwise_scale``, ``kronecker``,
            ``meta_curvature``).

    ``init(params) -> transform_params``; ``__call__(transform_params, loss_fn, params, *args)``
    returns ``T(jax.grad(loss_fn)(params, *args))`` shaped like ``params``;
    ``transform_gradients(transform_params, grads)`` maps given gradients. ``apply_updates``
    *adds* updates, so for a descent step add ``-lr`` times them (or use ``DifferentiableSGD``).

    Example:
        >>> import jax.numpy as jnp
        >>> import l2l_multi as l2l
        >>> with l2l.use_backend("jax"):
        ...     update = l2l.optim.ParameterUpdate(l2l.optim.elementwise_scale(0.5))
        >>> params = {"w": jnp.ones(3)}
        >>> update(update.init(params), lambda p: jnp.sum(p["w"] ** 2), params)["w"].tolist()
        [1.0, 1.0, 1.0]
    """

    def __init__(self, transform: GradientTransformation):
        self.transform = _check_transform(transform, "ParameterUpdate")

    def init(self, params: Tree) -> Tree:
        """The transform's parameters for ``params`` (identity maps at first)."""
        return self.transform.init(params)

    def transform_gradients(self, transform_params: Tree, grads: Tree) -> Tree:
        """``T(grads)``, shaped like ``grads``; a ``None`` leaf stays ``None``."""
        return self.transform.update(grads, transform_params)[0]

    def __call__(self, transform_params: Tree, loss_fn: Callable[..., Any], params: Tree, *args: Any) -> Tree:
        return self.transform_gradients(transform_params, jax.grad(loss_fn)(params, *args))


class DifferentiableSGD:
    """``p <- p - lr * g`` on every leaf of a parameter tree (the core ``sgd`` rule).

    The jax counterpart of the torch backend's ``l2l.optim.DifferentiableSGD``, which updates a
    module in place keeping the graph; jax steps are pure, so this returns the new tree.

    Args:
        lr: learning rate, a float >= 0 or a jax/numpy array (a learned rate).

    ``__call__(params, grads) -> params``: ``grads`` shaped like ``params``; a ``None`` gradient
    leaves its parameter unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> import l2l_multi as l2l
        >>> with l2l.use_backend("jax"):
        ...     sgd = l2l.optim.DifferentiableSGD(0.5)
        >>> sgd({"w": jnp.ones(2)}, {"w": jnp.ones(2)})["w"].tolist()
        [0.5, 0.5]
    """

    def __init__(self, lr: Any):
        self.lr = check_learning_rate(lr, "lr", arrays=("jax", "numpy"))

    def __call__(self, params: Tree, grads: Tree) -> Tree:
        return apply_updates(params, None if grads is None else _scaled_keep_none(grads, -self.lr))

    def __repr__(self) -> str:
        return f"DifferentiableSGD(lr={self.lr!r})"


def _scaled_keep_none(tree: Tree, factor: Any) -> Tree:
    return jax.tree_util.tree_map(
        lambda leaf: None if leaf is None else factor * leaf, tree, is_leaf=lambda x: x is None
    )
