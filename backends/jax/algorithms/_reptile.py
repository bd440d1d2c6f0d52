"""Reptile (Nichol et al. 2018) on the jax backend: adapt, then move towards the result."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ...._inner_batches import batch_plan, check_batch_order, check_batch_size
from ._gradient_based import _GradientBased, check_task
from ._model import cross_entropy, with_params


def interleaved_order(y: jax.Array) -> jax.Array:
    """Positions ``[s]`` of the class-interleaved order of integer labels ``y [s]``
    (``l2l_multi._inner_batches``); other targets (regression) keep their order."""
    if y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer):
        return jnp.arange(y.shape[0])
    same = y[:, None] == y[None, :]
    rank = jnp.tril(same, -1).sum(1)
    return jnp.argsort(rank, stable=True)


def _mix32(words: jax.Array) -> jax.Array:
    """``l2l_multi._inner_batches.mix32_numpy`` on uint32 arrays."""
    words = words ^ (words >> 16)
    words = words * jnp.uint32(0x7FEB352D)
    words = words ^ (words >> 15)
    words = words * jnp.uint32(0x846CA68B)
    return words ^ (words >> 16)


def task_seed(x: jax.Array) -> jax.Array:
    """``l2l_multi._inner_batches.task_seed_numpy`` of ``x`` as a 0-d uint32 array (traceable)."""
    if x.dtype.itemsize < 4:
        x = x.astype(jnp.float32)
    words = x if x.dtype == jnp.uint32 else jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.sum(words, dtype=jnp.uint32)  # wraps modulo 2**32, in any order of summation


def shuffled_plan(seed: jax.Array, support_size: int, batch_size: int, steps: int) -> jax.Array:
    """``l2l_multi._inner_batches.shuffled_plan_numpy`` for a traced ``seed`` (uint32) and
    ``batch_size < support_size``: positions ``[steps, batch_size]`` (int32)."""
    passes = -(-steps * batch_size // support_size)
    counter = jnp.arange(passes * support_size, dtype=jnp.uint32)
    keys = _mix32(_mix32(counter) ^ seed).reshape(passes, support_size)
    order = jnp.argsort(keys, axis=1, stable=True).reshape(-1)
    return order[: steps * batch_size].reshape(steps, batch_size)


class Reptile(_GradientBased):
    """First-order by construction: ``meta_gradient`` returns ``theta - phi`` for one task, the
    pseudo-gradient that an optax optimizer (``optax.sgd(epsilon)``) turns into the paper's step
    ``theta <- theta + epsilon * (phi - theta)`` (averaged over tasks by the train step).

    Args:
        model: a ``flax.linen.Module`` (or ``f(variables, x)``).
        lr: the inner SGD rate (float); or instead ``inner``: any ``GradientTransformation``
            (the paper's ``optax.adam(1e-3, b1=0.0)`` or ``l2l_multi.transforms.adam(1e-3,
            b1=0.0)``). Pass one of them. Its state starts afresh for each task, unless
            ``meta_params`` holds an ``"inner_state"`` entry (a state of ``inner``, e.g. the one
            the previous task left): every adaptation then starts from it. ``MetaLearner(...,
            inner_state="carried")`` threads it from task to task, as Nichol et al.'s code
            keeps one Adam's moments for all tasks.
        batch_size: samples per inner step (int), or ``None``: every step on the whole support
            set. Step ``i`` takes the next ``batch_size`` samples of the support set in
            class-interleaved order, wrapping around (``l2l_multi._inner_batches``): the
            paper's Omniglot setting is 5 steps on batches of 10 from 10 samples per class.
            The same rule as the torch backend's, so the two agree sample for sample.
        batch_order: "interleaved" (the default, above) or "shuffled": Nichol et al.'s rule,
            each pass over the support set in a new random order drawn from the task's own data
            (``l2l_multi._inner_batches``; the torch backend draws the same batches).

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> reptile = Reptile(nn.Dense(2), lr=0.1)
        >>> meta = reptile.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
        >>> direction = reptile.meta_gradient(meta, jnp.ones((4, 3)), jnp.array([0, 1, 0, 1]), steps=2)
        >>> direction["model"]["params"]["kernel"].shape
        (3, 2)
    """

    def __init__(self, model, lr=None, inner=None, batch_size=None, batch_order="interleaved"):
        super().__init__(model, lr, first_order=True, inner=inner)
        self.batch_size = check_batch_size(batch_size)
        self.batch_order = check_batch_order(batch_order)

    def inner_init(self, meta_params, params):
        """The inner-optimizer state a task's adaptation starts from: ``meta_params["inner_state"]``
        when present (a state carried from task to task), else a fresh ``inner.init(params)``."""
        carried = meta_params.get("inner_state")
        return super().inner_init(meta_params, params) if carried is None else carried

    def _inner_batches(self, x, y, steps):
        plan = batch_plan(x.shape[0], self.batch_size, steps)
        if plan is None:
            return None
        if self.batch_order == "shuffled":
            positions = shuffled_plan(task_seed(x), x.shape[0], self.batch_size, steps)
        else:
            positions = interleaved_order(y)[plan]  # [steps, batch_size]
        return x[positions], y[positions]

    def meta_gradient(self, meta_params, x, y, *, loss=None, steps=1, train=True):
        """``theta - phi`` as a tree shaped like ``meta_params`` (zeros for non-params)."""
        adapted = self.adapt(jax.lax.stop_gradient(meta_params), x, y, loss=loss, steps=steps, train=train)
        return self._direction(meta_params, adapted)

    def _task_loss_and_direction(
        self, meta_params, support_x, support_y, query_x, query_y, *, loss=None, steps=1, train=True
    ):
        """``(theta - phi, query loss 0-d, query outputs [q, ...], inner state)`` from one
        adaptation: what a train step needs (``meta_gradient`` and ``task_loss`` would adapt
        twice); the inner state is the optimizer's after the task (to carry to the next)."""
        loss = cross_entropy if loss is None else loss
        check_task(meta_params, support_x, support_y, steps, loss=loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        meta = jax.lax.stop_gradient(meta_params)
        params, state = self._inner_run(meta, meta["model"], support_x, support_y, loss, steps, train)
        adapted = with_params(meta["model"], params)
        outputs = self.apply_model(adapted, query_x, train)
        return self._direction(meta_params, adapted), loss(outputs, query_y), outputs, state

    @staticmethod
    def _direction(meta_params, adapted):
        """``theta - phi`` shaped like ``meta_params`` without its ``inner_state`` (zeros for
        non-params): the tree the meta-optimizer updates."""
        meta_params = {key: value for key, value in meta_params.items() if key != "inner_state"}
        delta = jax.tree_util.tree_map(lambda a, b: a - b, meta_params["model"]["params"], adapted["params"])
        zeros = jax.tree_util.tree_map(jax.numpy.zeros_like, meta_params)
        zeros["model"] = {**zeros["model"], "params": delta}
        return zeros
