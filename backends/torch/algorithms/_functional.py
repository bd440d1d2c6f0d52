"""The functional torch core: a learner's inner loop as a pure function of a meta-parameter tree.

``torch.func.functional_call`` runs the learner's module on the tree's tensors and
``torch.func.grad`` differentiates the support loss; the learner's inner transform (its
``inner_transform()``, Meta-SGD's rates, GBML's preconditioner) maps the gradients to updates.
This one loop serves the functional ``adapt``/``task_loss``, the vmapped ``meta_batch_loss``
and its sequential twin for trees that are not the module's live tensors; the stateful
``clone()``/``adapt(loss)`` API is the compatibility shell beside it.

Batch norm: every forward pass runs with the affine scale and shift applied outside the fused
``F.batch_norm`` (exact under ``torch.func.vmap``, where the fused affine op gives a wrong
second-order gradient, pytorch/functorch issue 534) and never updates running statistics, as
the clones' own copies never reach the model either.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ...._arrays import is_jax_array
from ...._checks import _is_abstract
from ._base import check_loss


def _batch_norm_affine_outside(layer: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    use_batch_stats = layer.training or layer.running_mean is None
    y = F.batch_norm(
        x,
        None if use_batch_stats else layer.running_mean,
        None if use_batch_stats else layer.running_var,
        None,
        None,
        use_batch_stats,
        0.0,
        layer.eps,
    )
    if layer.affine:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = y * layer.weight.reshape(shape) + layer.bias.reshape(shape)
    return y


@contextlib.contextmanager
def functional_mode(*modules: torch.nn.Module | None, train: bool | None = None):
    """Route every BatchNorm layer of ``modules`` through ``_batch_norm_affine_outside`` and, when
    ``train`` is given, put the modules in that mode; both are undone on exit."""
    modules = [m for m in modules if m is not None]
    layers = [
        m
        for module in modules
        for m in module.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    modes = [[(m, m.training) for m in module.modules()] for module in modules]
    for layer in layers:
        layer.forward = lambda x, layer=layer: _batch_norm_affine_outside(layer, x)
    if train is not None:
        for module in modules:
            module.train(bool(train))
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
        for pairs in modes:
            for module, mode in pairs:
                module.training = mode


def task_tensors(algorithm: torch.nn.Module, **arrays) -> list[torch.Tensor]:
    """One task's arrays as tensors: torch tensors pass, numpy arrays become tensors on the
    model's device (floats in its dtype), anything else raises ``TypeError`` naming the argument
    (jax arrays: ``l2l_multi.interop.to_torch``), as ``meta_batch_loss`` does for a batch."""
    param = next((p for p in algorithm.parameters() if p.is_floating_point()), None)
    out = []
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
            if param is not None:
                value = value.to(param.device)
                value = value.to(param.dtype) if value.is_floating_point() else value
        elif not isinstance(value, torch.Tensor):
            hint = "; convert it with l2l_multi.interop.to_torch" if is_jax_array(value) else ""
            raise TypeError(f"{name} must be a torch or numpy array, got {type(value).__name__}{hint}")
        out.append(value)
    return out


def reset_parameters(networks: list[torch.nn.Module], key) -> None:
    """Re-initialise every layer of ``networks`` that has ``reset_parameters`` under the int seed
    ``key``; the global random state is left as it was (``init(key, x)`` on torch)."""
    if isinstance(key, bool) or not isinstance(key, numbers.Integral):
        raise TypeError(f"key={key!r} must be an int seed on the torch backend")
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(int(key))
        for network in networks:
            for layer in network.modules():
                if callable(getattr(layer, "reset_parameters", None)):
                    layer.reset_parameters()


def check_tree(tree: object, module: torch.nn.Module, key: str) -> dict:
    """``tree`` (``meta_params[key]``) must name exactly ``module``'s parameters."""
    if not isinstance(tree, Mapping):
        raise TypeError(f"meta_params[{key!r}] must be a dict {{name: tensor}}, got {type(tree).__name__}")
    names = [name for name, _ in module.named_parameters()]
    if set(tree) != set(names):
        missing, extra = sorted(set(names) - set(tree)), sorted(set(tree) - set(names))
        raise ValueError(
            f"meta_params[{key!r}] must hold the parameters of the learner's module: missing {missing}, "
            f"unexpected {extra} (build it with algorithm.meta_parameters())"
        )
    return dict(tree)


def call(module: torch.nn.Module, params: Mapping, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` with ``params`` (names of ``named_parameters``) in place of its parameters;
    its buffers are read as they are."""
    return torch.func.functional_call(module, {**dict(module.named_buffers()), **params}, (x,))


def _check_finite(value: torch.Tensor, where: str) -> None:
    if not _is_abstract(value):  # tensors inside vmap/grad cannot be read
        check_loss(value)


def inner_loop(
    algorithm,
    meta_params: Mapping,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: Callable,
    steps: int,
    inner=None,
) -> dict:
    """The adapted module's parameters ``{name: tensor}`` after ``steps`` inner steps on
    ``(x [s, ...], y [s])``; ``x`` is already embedded for ANIL. Differentiable w.r.t.
    ``meta_params`` (second order unless the learner is first order; Reptile is detached)."""
    module = algorithm.module
    tree = check_tree(meta_params["model"], module, "model")
    live = dict(module.named_parameters())
    adapted = [name for name, param in live.items() if param.requires_grad]
    if len(adapted) < len(live) and not algorithm.allow_nograd:
        frozen = sorted(set(live) - set(adapted))
        raise ValueError(
            f"parameters {frozen} do not require grad; construct the algorithm with allow_nograd=True"
        )
    detach = getattr(algorithm, "detached_inner_loop", False)
    first_order = algorithm.first_order or detach
    params = {name: tree[name].detach() if detach else tree[name] for name in adapted}
    fixed = {name: tree[name] for name in live if name not in adapted}
    transform = algorithm.inner_transform() if inner is None else inner
    rates = meta_params.get("lrs") if getattr(algorithm, "learned_rates", False) else None

    def support_loss(params, x, y):
        value = loss(call(module, {**fixed, **params}, x), y)
        return value, value

    state = transform.init(params)
    for batch_x, batch_y in algorithm.inner_batches(x, y, steps):  # Reptile's minibatches
        grads, value = torch.func.grad(support_loss, has_aux=True)(params, batch_x, batch_y)
        _check_finite(value, "adapt")
        if first_order:
            grads = {name: grad.detach() for name, grad in grads.items()}
        grads = algorithm.precondition(meta_params, grads)
        updates, state = transform.update(grads, state, params)
        if rates is not None:
            updates = {name: rates[name] * update for name, update in updates.items()}
        params = {name: params[name] + updates[name] for name in adapted}
    return {**fixed, **params}


def task_loss(algorithm, meta_params: Mapping, sx, sy, qx, qy, loss: Callable, steps: int, inner=None):
    """``(query loss 0-d, query outputs [q, ...])`` of one task after ``inner_loop``."""
    features = getattr(algorithm, "features", None)
    if features is not None and "features" in meta_params:
        feature_params = check_tree(meta_params["features"], features, "features")
        sx, qx = call(features, feature_params, sx), call(features, feature_params, qx)
    adapted = inner_loop(algorithm, meta_params, sx, sy, loss, steps, inner)
    outputs = call(algorithm.module, adapted, qx)
    return loss(outputs, qy), outputs


__all__ = ["call", "check_tree", "functional_mode", "inner_loop", "reset_parameters", "task_loss"]
