"""MAML++ (Antoniou, Edwards & Storkey, ICLR 2019) on the jax backend, numerically the torch
backend's ``MAMLpp``.

Per-step batch norm (BNWB + BNRS) lives in the meta-parameter tree, not in a special layer:
every batch-norm leaf of the model's variables gets a leading axis of ``adaptation_steps + 1``
rows, and the forward at step ``s`` runs the model's ordinary ``apply`` on the variables with
row ``s`` selected (``step_variables``). Any flax model with batch norm works unchanged, and
the selection is a dynamic index, so the inner loop is one ``lax.scan``. A batch-norm layer is
recognised in ``params`` as a dict holding ``"scale"`` and no ``"kernel"`` (this library's
``BatchNorm`` and flax's ``nn.BatchNorm``; a ``LayerNorm`` would be treated the same way);
every leaf of ``batch_stats`` is per step. Running statistics are read, never written, as in
the other jax learners (torch's clones update the model's per-step rows).

Inner step ``s`` (learned per-layer per-step rates, LSLR): ``p <- p - lrs[p][s] * grad``. For a
per-step batch-norm leaf the gradient lives in row ``s`` and moves every later row (torch's
``carry_to_later_rows``): the next forward reads row ``s + 1``, so the rates of batch-norm
weights are meta-learned like the others.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ...._multi_step_loss import msl_weights as msl_weights
from ._gradient_based import _check_lr, check_finite, check_task
from ._model import as_apply, cross_entropy, init_variables, with_params

_STATS = "batch_stats"


def _batch_norm_mask(params: Any) -> Any:
    """A tree like ``params`` of Python bools: True for the leaves of batch-norm layers."""

    def walk(tree: Any, inside: bool) -> Any:
        if isinstance(tree, Mapping):
            here = inside or ("scale" in tree and "kernel" not in tree)
            return {key: walk(value, here) for key, value in tree.items()}
        return inside

    return walk(params, False)


def _tree_map(function, tree, *rest):
    return jax.tree_util.tree_map(function, tree, *rest)


def _later_rows(step: Any, rows: int, like: jax.Array) -> jax.Array:
    """``[rows, 1, ...]``: 1 for the rows after ``step``, else 0 (``like``'s dtype and rank)."""
    later = (jnp.arange(rows) > step).astype(like.dtype)
    return later.reshape((rows,) + (1,) * (like.ndim - 1))


class MAMLpp:
    """MAML++: learned per-layer per-step learning rates (LSLR), per-step batch-norm weights
    and statistics (BNWB + BNRS) and the multi-step loss (MSL, ``step_weights``).

    Args:
        model: a ``flax.linen.Module`` (or ``f(variables, x)``), with or without batch norm.
        lr: initial value of every learning rate (float).
        adaptation_steps: the largest number of inner steps (one rate per parameter per step;
            ``adaptation_steps + 1`` batch-norm rows, the last for the query after the last step).
        first_order: stop gradients through the inner gradients.

    Meta-parameters: ``{"model": variables with per-step batch-norm rows, "lrs": a tree like
    ``params`` of ``[adaptation_steps]`` rates}``.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn
        >>> from l2l_multi.backends.jax.vision.models import BatchNorm
        >>> model = nn.Sequential([nn.Dense(3), BatchNorm(track_running_stats=False), nn.Dense(2)])
        >>> mamlpp = MAMLpp(model, lr=0.1, adaptation_steps=2)
        >>> meta = mamlpp.init(jax.random.PRNGKey(0), jnp.ones((4, 5)))
        >>> meta["model"]["params"]["layers_1"]["scale"].shape, meta["lrs"]["layers_0"]["kernel"].shape
        ((3, 3), (2,))
        >>> x, y = jnp.ones((6, 5)).at[:, 0].set(jnp.arange(6.0)), jnp.arange(6) % 2
        >>> loss, outputs = mamlpp.task_loss(meta, x, y, x, y, steps=2, step_weights=[0.5, 0.5])
        >>> outputs.shape
        (6, 2)
    """

    def __init__(self, model: Any, lr: float, adaptation_steps: int, first_order: bool = False):
        if (
            isinstance(adaptation_steps, bool)
            or not isinstance(adaptation_steps, numbers.Integral)
            or adaptation_steps < 1
        ):
            raise ValueError(f"adaptation_steps={adaptation_steps!r} must be a positive int")
        self.lr = _check_lr(lr)
        self.adaptation_steps, self.rows = int(adaptation_steps), int(adaptation_steps) + 1
        self.model, self.first_order = model, bool(first_order)
        self.apply_model = as_apply(model)

    # -- meta-parameters -------------------------------------------------------------------
    def init(self, key: jax.Array, sample_input: jax.Array) -> dict:
        """Fresh meta-parameters (sample_input ``[N, ...]``): every row a copy of the initial
        batch-norm variables, every rate ``lr``."""
        return self.from_variables(init_variables(self.model, key, sample_input))

    def from_variables(self, variables: dict, lrs: Any = None, per_step: bool = False) -> dict:
        """Meta-parameters around model variables.

        Args:
            variables: ``{"params": ..., ["batch_stats": ...]}``; with ``per_step=False`` plain
                variables (each batch-norm leaf copied into every row), with ``per_step=True``
                batch-norm leaves already ``[adaptation_steps + 1, ...]``.
            lrs: a tree like ``params`` of ``[adaptation_steps]`` rates; None: ``lr`` everywhere.
        """
        if not isinstance(variables, Mapping) or "params" not in variables:
            found = sorted(variables) if isinstance(variables, Mapping) else type(variables).__name__
            raise ValueError(f"variables must hold a 'params' collection; got {found}")
        params = variables["params"]
        mask = _batch_norm_mask(params)

        def rows(leaf: Any, is_per_step: bool, where: str) -> Any:
            leaf = jnp.asarray(leaf)
            if not is_per_step:
                return leaf
            if not per_step:
                return jnp.broadcast_to(leaf, (self.rows,) + leaf.shape)
            if leaf.ndim < 1 or leaf.shape[0] != self.rows:
                raise ValueError(
                    f"per_step=True: {where} leaf has shape {tuple(leaf.shape)}; it needs "
                    f"adaptation_steps + 1 = {self.rows} rows first"
                )
            return leaf

        model = dict(variables)
        model["params"] = _tree_map(lambda p, m: rows(p, m, "params"), params, mask)
        if _STATS in variables:
            model[_STATS] = _tree_map(lambda v: rows(v, True, _STATS), variables[_STATS])
        if lrs is None:
            dtype = (
                jnp.result_type(*jax.tree_util.tree_leaves(params))
                if jax.tree_util.tree_leaves(params)
                else jnp.float32
            )
            lrs = _tree_map(lambda p: jnp.full((self.adaptation_steps,), self.lr, dtype), params)
        else:
            lrs = _tree_map(jnp.asarray, lrs)
            shapes = {leaf.shape for leaf in jax.tree_util.tree_leaves(lrs)}
            if jax.tree_util.tree_structure(lrs) != jax.tree_util.tree_structure(params) or shapes != {
                (self.adaptation_steps,)
            }:
                raise ValueError(
                    f"lrs must be a tree like variables['params'] with [{self.adaptation_steps}] rates per "
                    f"leaf; got shapes {sorted(shapes)}"
                )
        return {"model": model, "lrs": lrs}

    def from_step_variables(
        self, step_variables: Sequence[dict], step_rates: Sequence[Any] | None = None
    ) -> dict:
        """Meta-parameters from one plain variables tree per batch-norm row (``adaptation_steps
        + 1`` of them, e.g. ``interop.torch_to_flax`` of torch ``MAMLpp.plain_module(row)``);
        ``step_rates``: one parameter-shaped tree per step, each leaf filled with that
        parameter's rate (``plain_module(0, rates_of_step=s)``). Non-batch-norm leaves must be
        equal in every row."""
        if len(step_variables) != self.rows:
            raise ValueError(
                f"step_variables has {len(step_variables)} trees; need adaptation_steps + 1 = {self.rows}"
            )
        first = step_variables[0]
        mask = _batch_norm_mask(first["params"])
        for row, other in enumerate(step_variables[1:], 1):
            for a, b, m in zip(
                *(jax.tree_util.tree_leaves(t) for t in (first["params"], other["params"], mask))
            ):
                if not m and not np.array_equal(np.asarray(a), np.asarray(b)):
                    raise ValueError(f"step_variables[{row}] differs from row 0 outside batch norm")
        model = {
            "params": _tree_map(
                lambda m, *leaves: jnp.stack(leaves) if m else leaves[0],
                mask,
                *(v["params"] for v in step_variables),
            )
        }
        if _STATS in first:
            model[_STATS] = _tree_map(lambda *leaves: jnp.stack(leaves), *(v[_STATS] for v in step_variables))
        lrs = None
        if step_rates is not None:
            if len(step_rates) != self.adaptation_steps:
                raise ValueError(f"step_rates has {len(step_rates)} trees; need {self.adaptation_steps}")
            lrs = _tree_map(lambda *leaves: jnp.stack([jnp.ravel(leaf)[0] for leaf in leaves]), *step_rates)
        return self.from_variables(model, lrs, per_step=True)

    def step_variables(self, variables: dict, step: Any) -> dict:
        """Plain model variables with batch-norm row ``step`` selected (``step`` may be traced)."""
        mask = _batch_norm_mask(variables["params"])
        plain = dict(variables)
        plain["params"] = _tree_map(lambda p, m: p[step] if m else p, variables["params"], mask)
        if _STATS in variables:
            plain[_STATS] = _tree_map(lambda v: v[step], variables[_STATS])
        return plain

    # -- inner loop --------------------------------------------------------------------------
    def _steps(self, steps: Any) -> int:
        steps = self.adaptation_steps if steps is None else steps
        if (
            isinstance(steps, bool)
            or not isinstance(steps, numbers.Integral)
            or not 0 <= steps <= self.adaptation_steps
        ):
            raise ValueError(
                f"steps={steps!r} must be an int in [0, adaptation_steps={self.adaptation_steps}]"
            )
        return int(steps)

    def _run(self, meta_params, x, y, loss, steps, train, query=None):
        """``(adapted variables, per-step query losses [steps] or None, query outputs or None)``."""
        variables, lrs = meta_params["model"], meta_params["lrs"]
        mask = _batch_norm_mask(variables["params"])

        def forward(params, step, inputs):
            return self.apply_model(self.step_variables(with_params(variables, params), step), inputs, train)

        def step_fn(params, step):
            def support_loss(row_params):
                plain = with_params(self.step_variables(variables, step), row_params)
                return loss(self.apply_model(plain, x, train), y)

            row_params = self.step_variables(with_params(variables, params), step)["params"]
            value, grads = jax.value_and_grad(support_loss)(row_params)
            if self.first_order:
                grads = jax.lax.stop_gradient(grads)

            def update(p, g, rates, per_step):
                if per_step:
                    g = _later_rows(step, self.rows, p) * g[None]
                return (p - rates[step] * g).astype(p.dtype)

            params = _tree_map(update, params, grads, lrs, mask)
            if query is None:
                return params, (value, None, None)
            outputs = forward(params, step + 1, query[0])
            return params, (value, loss(outputs, query[1]), outputs)

        params = variables["params"]
        if steps == 0:
            values, query_losses, outputs = jnp.zeros(()), None, None
            if query is not None:
                outputs = forward(params, 0, query[0])
                query_losses = loss(outputs, query[1])[None]
        elif steps == 1:  # nothing to roll: keep the single step's graph plain
            params, (values, query_losses, outputs) = step_fn(params, 0)
            query_losses = None if query_losses is None else query_losses[None]
        else:
            params, (values, query_losses, outputs) = jax.lax.scan(step_fn, params, jnp.arange(steps))
            outputs = None if outputs is None else outputs[-1]
        check_finite(values, "adapt: the support loss")
        return with_params(variables, params), query_losses, outputs

    def adapt(
        self,
        meta_params: dict,
        x: jax.Array,
        y: jax.Array,
        loss: Any = None,
        steps: int | None = None,
        train: bool = True,
        *,
        inner: Any = None,
    ) -> dict:
        """Model variables (per-step batch-norm rows kept) after ``steps`` (default
        ``adaptation_steps``) inner steps on ``(x [s, ...], y [s])``; differentiable w.r.t.
        ``meta_params``. ``loss=None``: cross-entropy. ``inner`` is refused: MAML++'s inner
        optimizer is its learned per-step SGD. Use ``step_variables(adapted, steps)`` to call
        the model."""
        if inner is not None:
            raise ValueError(
                f"MAMLpp adapts with its learned per-step rates; inner={inner!r:.60} is not supported"
            )
        loss = cross_entropy if loss is None else loss
        steps = self._steps(steps)
        check_task(meta_params, x, y, steps, loss=loss)
        return self._run(meta_params, x, y, loss, steps, train)[0]

    def task_loss(
        self,
        meta_params: dict,
        support_x,
        support_y,
        query_x,
        query_y,
        loss: Any = None,
        steps: int | None = None,
        train: bool = True,
        *,
        step_weights: Any = None,
    ):
        """``(query loss 0-d, query outputs [q, ...])`` after ``steps`` (default
        ``adaptation_steps``) inner steps; the outputs are the last step's (batch-norm row
        ``steps``).

        ``step_weights``: None: the query loss after the last step; a sequence or array of
        ``steps`` weights (``l2l_multi.msl_weights``-style, may be traced): the multi-step loss
        ``sum_s w[s] * L_query(after step s + 1)``.
        """
        loss = cross_entropy if loss is None else loss
        steps = self._steps(steps)
        check_task(meta_params, support_x, support_y, steps, "support_x", "support_y", loss)
        check_task(meta_params, query_x, query_y, steps, "query_x", "query_y", loss)
        if step_weights is None:
            adapted = self._run(meta_params, support_x, support_y, loss, steps, train)[0]
            outputs = self.apply_model(self.step_variables(adapted, steps), query_x, train)
            return loss(outputs, query_y), outputs
        weights = jnp.asarray(step_weights)
        if weights.shape != (max(steps, 1),):
            raise ValueError(
                f"step_weights has shape {tuple(weights.shape)}; need one weight per step ({steps})"
            )
        _, query_losses, outputs = self._run(
            meta_params, support_x, support_y, loss, steps, train, (query_x, query_y)
        )
        return (weights.astype(query_losses.dtype) * query_losses).sum(), outputs


__all__ = ["MAMLpp", "msl_weights"]
