"""GBML: gradient-based meta-learning with a learned transform (jax backend; torch's twin is
``backends/torch/algorithms/_gbml.py``). Built on ``_gradient_based._GradientBased``."""

from __future__ import annotations

import jax

from ....transforms import GradientTransformation, is_learnable
from ....transforms._base import is_transform
from ....transforms._inner import UNSET
from ._gradient_based import _GradientBased, check_finite, check_task
from ._model import cross_entropy, with_params


class GBML(_GradientBased):
    """Gradient-based meta-learning with a learned transform (``l2l_multi.transforms``):
    ``p <- p - lr * T(grad)``, ``T``'s parameters in ``meta_params["transform"]``; or any
    complete inner optimizer.

    The rule for ``transform`` (the same on the torch backend):

    * a ``LearnableTransformation`` (``transforms.elementwise_scale()`` (Meta-SGD),
      ``transforms.kronecker(layout="flax")`` (Meta-KFO), ``transforms.meta_curvature(
      layout="flax")``, or your own pair wrapped in ``LearnableTransformation``) is a learnable
      preconditioner: ``T(g)`` is a direction (``scale_by_*`` in optax's terms), its parameters
      ``init(params)`` are meta-parameters, and the inner optimizer steps along it: ``sgd(lr)``
      by default, i.e. ``p - lr * T(g)`` (``lr`` defaults to 1.0), or ``inner=`` (then ``lr`` is
      refused);
    * any other ``GradientTransformation`` (``optax.sgd(0.4)``, ``optax.adam(1e-3)``,
      ``transforms.sgd(0.4)``...) is a complete optimizer whose updates are added, exactly as
      ``MAML(model, inner=transform)``; ``lr``, ``inner`` and ``adapt_transform`` are refused
      with it, and the meta-parameters hold no ``"transform"`` entry.

    Args:
        model: as in ``MAML``.
        transform: see above.
        lr: float (the step along ``T(g)``); adapt_transform: also take a gradient step on the
            transform's parameters at each inner step (Meta-KFO; needs the default SGD inner step
            and runs as an unrolled loop, since each step differentiates through the previous
            one's transform); first_order: as in ``MAML``; inner: as in ``MAML``.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from l2l_multi import transforms
        >>> gbml = GBML(nn.Dense(2), transforms.kronecker(layout="flax"), lr=0.1)
        >>> meta = gbml.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
        >>> meta["transform"]["kernel"]["left"].shape   # the [out, out] factor of a [3, 2] kernel
        (2, 2)
    """

    def __init__(
        self,
        model,
        transform: GradientTransformation,
        lr=UNSET,
        adapt_transform=False,
        first_order=False,
        inner=None,
    ):
        if not is_transform(transform):
            raise TypeError(f"transform must be a GradientTransformation (init, update), got {transform!r}")
        self.transform, self.adapt_transform = transform, bool(adapt_transform)
        self.learnable = is_learnable(transform)
        if not self.learnable:
            refused = [
                f"{name}={value!r:.60}"
                for name, value in (("lr", lr), ("inner", inner))
                if value is not UNSET and value is not None
            ]
            refused += ["adapt_transform=True"] if self.adapt_transform else []
            if refused:
                raise ValueError(
                    f"transform is a complete optimizer (not a LearnableTransformation: its updates are "
                    f"added), so GBML refuses {', '.join(refused)}: put the learning rate into the "
                    "transform, e.g. GBML(model, optax.sgd(lr))"
                )
            super().__init__(model, None, first_order, inner=transform)
            return
        if self.adapt_transform and inner is not None:
            raise ValueError(
                f"adapt_transform=True takes the default SGD inner step (lr=...); got inner={inner!r:.60}"
            )
        super().__init__(model, 1.0 if lr is UNSET and inner is None else lr, first_order, inner)

    def from_variables(self, variables):
        meta = super().from_variables(variables)
        if self.learnable:
            meta["transform"] = self.transform.init(variables["params"])
        return meta

    def inner_step(self, meta_params, params, grads, state):
        if self.learnable:  # precondition, then let the inner optimizer step along T(g)
            grads, _ = self.transform.update(grads, meta_params["transform"], params)
        return super().inner_step(meta_params, params, grads, state)

    def adapt(self, meta_params, x, y, *, loss=None, steps=1, inner=None, train=True):
        if not self.adapt_transform:
            return super().adapt(meta_params, x, y, loss=loss, steps=steps, inner=inner, train=train)
        if inner is not None:
            raise ValueError(
                f"adapt_transform=True takes the default SGD inner step (lr=...); got inner={inner!r:.60}"
            )
        loss = cross_entropy if loss is None else loss
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
