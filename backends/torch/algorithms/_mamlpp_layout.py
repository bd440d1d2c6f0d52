"""Torch ``MAMLpp`` trees in the jax ``MAMLpp``'s layout (for the cross-check and ``MetaLearner``):
every row of a per-step batch-norm tensor becomes a plain model converted by
``l2l_multi.interop.torch_to_flax``, and the rows are stacked again on the flax side."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch


def flax_layout(mamlpp, tree: Mapping, **conversion) -> dict:
    """A torch-layout tree ``{"model": {name: value}, "lrs": {name: [steps]}}`` (values:
    this learner's parameters, their gradients, adapted parameters...; tensors or numpy) in
    the layout of the jax ``MAMLpp``'s meta-parameters: ``{"model": {"params": ...}, "lrs":
    ...}`` with ``adaptation_steps + 1`` rows on batch-norm leaves (numpy arrays).
    ``conversion``: ``flax_module=``, ``input_shape=`` of ``interop.torch_to_flax``."""
    from ....interop import torch_to_flax

    names = [name for name, _ in mamlpp.module.named_parameters()]

    def params_of(values: Mapping, row: int) -> dict:
        model = mamlpp.plain_module(row)
        with torch.no_grad():
            for name, param in zip(names, model.parameters()):
                if name in values:
                    param.copy_(torch.as_tensor(np.asarray(values[name])))
                else:
                    param.zero_()
        return _numpy(torch_to_flax(model, **conversion)["params"])

    # which flax leaves are per step: convert ones on batch-norm tensors, zeros elsewhere
    flags = dict(zip(names, mamlpp.per_step_parameters()))
    mask = params_of(
        {
            n: torch.ones(mamlpp.module.get_parameter(n).shape[-1:])
            if flags[n]
            else torch.zeros(mamlpp.module.get_parameter(n).shape)
            for n in names
        },
        0,
    )
    flat_mask = [bool(np.any(leaf)) for leaf in _leaves(mask)]
    converted = {}
    if "model" in tree:
        values = {
            n: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
            for n, v in tree["model"].items()
        }
        rows = [
            _leaves(params_of({n: v[row] if flags[n] else v for n, v in values.items()}, 0))
            for row in range(mamlpp.adaptation_steps + 1)
        ]
        leaves = [
            np.stack(per_row) if per_step else per_row[0] for per_step, per_row in zip(flat_mask, zip(*rows))
        ]
        converted["model"] = {"params": _rebuild(mask, leaves)}
    if "lrs" in tree:
        rates = {
            n: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
            for n, v in tree["lrs"].items()
        }
        steps = [
            _leaves(
                params_of(
                    {
                        n: np.full(
                            mamlpp.module.get_parameter(n).shape[-1:]
                            if flags[n]
                            else mamlpp.module.get_parameter(n).shape,
                            r[s],
                        )
                        for n, r in rates.items()
                    },
                    0,
                )
            )
            for s in range(mamlpp.adaptation_steps)
        ]
        converted["lrs"] = _rebuild(
            mask, [np.array([leaf.ravel()[0] for leaf in per_step]) for per_step in zip(*steps)]
        )
    for key in set(tree) - {"model", "lrs"}:
        raise ValueError(f"flax_layout cannot convert the {key!r} entry of MAMLpp's tree")
    return converted


def _numpy(tree):
    if isinstance(tree, Mapping):
        return {key: _numpy(value) for key, value in tree.items()}
    return np.asarray(tree)


def _leaves(tree) -> list:
    if isinstance(tree, Mapping):
        return [leaf for key in sorted(tree) for leaf in _leaves(tree[key])]
    return [tree]


def _rebuild(template, leaves: list):
    """``leaves`` (in ``_leaves`` order) put back into ``template``'s nested dicts."""
    iterator = iter(leaves)

    def build(node):
        if isinstance(node, Mapping):
            return {key: build(node[key]) for key in sorted(node)}
        return next(iterator)

    return build(template)


__all__ = ["flax_layout"]
