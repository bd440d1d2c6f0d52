"""One call for a whole MAML / Meta-SGD / ANIL meta-step over a stacked batch of tasks.

Two paths give the same loss and meta-gradients:

* ``"loop"``: the stateful API, ``clone()`` and ``adapt()`` task after task;
* ``"vmap"``: a pure per-task function (``torch.func.functional_call`` + ``torch.func.grad``
  for the inner loop) vectorised over tasks with ``torch.func.vmap``.

``path="auto"`` takes the loop on CPU and vmap on accelerators (measured, ``benchmarks/
maml_step.py``: vmap was ~1.4x slower than the loop on 2 CPU cores and ~10x faster on a GPU).

Batch norm under vmap: ``torch.func.vmap`` through ``F.batch_norm`` with affine weight and bias
gives a wrong second-order meta-gradient (pytorch/functorch issue 534, relative error ~2e-3 in
float64). The vmap path normalises without the affine part and applies scale and shift
outside the fused op, which is exact. Running statistics are not updated by either path (the
loop's clones update their own copies), so the model's buffers are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ...._arrays import is_jax_array
from ._anil import ANIL
from ._base import BaseLearner, check_loss
from ._maml import MAML, MetaSGD

PATHS = ("auto", "loop", "vmap")
VMAPPABLE = (MAML, MetaSGD, ANIL)


class MetaBatchResult(NamedTuple):
    """``loss``: mean query loss over tasks (0-d, differentiable w.r.t. the meta-parameters);
    ``task_losses``: ``[B]``; ``query_logits``: the adapted models' outputs on the queries,
    ``[B, q, ...]``."""

    loss: torch.Tensor
    task_losses: torch.Tensor
    query_logits: torch.Tensor


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
def _vmap_safe_batch_norm(module: torch.nn.Module):
    """Temporarily route every BatchNorm layer of ``module`` through ``_batch_norm_affine_outside``."""
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.forward = lambda x, layer=layer: _batch_norm_affine_outside(layer, x)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def choose_path(algorithm: torch.nn.Module, path: str) -> str:
    """Resolve ``path="auto"``: the loop on CPU, vmap when the parameters live on an accelerator."""
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not one of {PATHS}")
    if path != "auto":
        return path
    device = next(algorithm.parameters()).device
    return "loop" if device.type == "cpu" or not isinstance(algorithm, VMAPPABLE) else "vmap"


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _check_batch(support_x, support_y, query_x, query_y, loss=None, algorithm=None) -> int:
    names = ("support_x", "support_y", "query_x", "query_y")
    tensors = (support_x, support_y, query_x, query_y)
    for name, tensor in zip(names, tensors):
        if not isinstance(tensor, torch.Tensor):
            hint = "; convert it with l2l_multi.interop.to_torch" if is_jax_array(tensor) else ""
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}{hint}")
    batch = support_x.shape[0]
    for name, tensor in zip(names, tensors):
        if tensor.dim() < 2 or tensor.shape[0] != batch:
            raise ValueError(
                f"{name} must have shape [B={batch}, samples, ...] (stacked tasks), got {tuple(tensor.shape)}"
            )
    if support_y.shape[1] != support_x.shape[1] or query_y.shape[1] != query_x.shape[1]:
        raise ValueError(
            f"labels must match inputs per task: support {tuple(support_x.shape[:2])} vs "
            f"{tuple(support_y.shape)}, "
            f"query {tuple(query_x.shape[:2])} vs {tuple(query_y.shape)}"
        )
    for name, tensor in (("support_x", support_x), ("query_x", query_x)):
        if tensor.shape[1] == 0:
            raise ValueError(
                f"{name} has no samples (shape {tuple(tensor.shape)}); with partition_task_batch, keep "
                "shots below the samples per class"
            )
    if loss is F.cross_entropy:
        for name, tensor in (("support_y", support_y), ("query_y", query_y)):
            if tensor.is_floating_point():
                raise TypeError(
                    f"{name} has dtype {tensor.dtype}; loss=cross_entropy needs integer class labels "
                    "(e.g. labels.long())"
                )
    if algorithm is not None and not _autocast_enabled(support_x.device.type):
        dtype = next((p.dtype for p in algorithm.parameters() if p.is_floating_point()), None)
        for name, tensor in (("support_x", support_x), ("query_x", query_x)):
            if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
                raise TypeError(
                    f"{name} has dtype {tensor.dtype} but the model's parameters are {dtype}; convert one "
                    "of them (e.g. x.to(dtype) or model.to(dtype))"
                )
    return batch


def meta_batch_loss(
    algorithm: MAML | MetaSGD | ANIL,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    adaptation_steps: int = 1,
    path: str = "auto",
    chunk_size: int | None = None,
) -> MetaBatchResult:
    """Adapt on every task's support set, evaluate on its query set, average over tasks.

    Args:
        algorithm: a ``MAML``, ``MetaSGD`` or ``ANIL`` (its ``lr``/``lrs``/``inner``,
            ``first_order`` and ``allow_nograd`` apply; parameters with ``requires_grad=False``
            stay fixed; the inner optimizer's state is threaded through the steps on both paths);
            the loop path also takes any other learner with ``clone()``/``adapt()`` (``GBML``,
            ``MAMLpp``, ...).
        support_x: ``[B, s, ...]`` inputs; support_y: ``[B, s]`` targets (int64 for
            classification); query_x: ``[B, q, ...]``; query_y: ``[B, q]``.
        loss: ``loss(outputs, targets) -> 0-d tensor`` (mean over samples), used for both the
            inner steps and the query loss.
        adaptation_steps: inner gradient steps per task (positive int).
        path: "loop", "vmap" or "auto" (loop on CPU, vmap on accelerators).
        chunk_size: tasks per vectorised chunk for the vmap path (memory); ``None``: all.

    Returns:
        ``MetaBatchResult(loss, task_losses, query_logits)``; call ``result.loss.backward()`` for
        the meta-gradients (identical, up to rounding, on both paths).

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> maml = l2l.algorithms.MAML(torch.nn.Linear(4, 3).double(), lr=0.5)
        >>> sx, qx = torch.randn(8, 3, 4, dtype=torch.double), torch.randn(8, 6, 4, dtype=torch.double)
        >>> sy, qy = torch.arange(3).repeat(8, 1), torch.arange(3).repeat(8, 2)
        >>> loop = meta_batch_loss(maml, sx, sy, qx, qy, path="loop").loss
        >>> fast = meta_batch_loss(maml, sx, sy, qx, qy, path="vmap").loss
        >>> abs(loop.item() - fast.item()) < 1e-12
        True
    """
    if not isinstance(algorithm, BaseLearner):
        raise TypeError(
            f"algorithm must be an l2l learner (MAML, MetaSGD, ANIL, ...), got {type(algorithm).__name__}"
        )
    if isinstance(adaptation_steps, bool) or not isinstance(adaptation_steps, int) or adaptation_steps < 0:
        raise ValueError(f"adaptation_steps={adaptation_steps!r} must be a non-negative int")
    _check_batch(support_x, support_y, query_x, query_y, loss, algorithm)
    if choose_path(algorithm, path) == "loop":
        return _loop(algorithm, support_x, support_y, query_x, query_y, loss, adaptation_steps)
    if not isinstance(algorithm, VMAPPABLE):
        raise TypeError(
            f"path='vmap' supports {', '.join(c.__name__ for c in VMAPPABLE)}; "
            f"got {type(algorithm).__name__} (use path='loop')"
        )
    return _vmapped(algorithm, support_x, support_y, query_x, query_y, loss, adaptation_steps, chunk_size)


def _loop(algorithm, support_x, support_y, query_x, query_y, loss, steps) -> MetaBatchResult:
    task_losses, logits = [], []
    for task in range(support_x.shape[0]):
        learner = algorithm.clone()
        for _ in range(steps):
            learner.adapt(loss(learner(support_x[task]), support_y[task]))
        outputs = learner(query_x[task])
        task_losses.append(loss(outputs, query_y[task]))
        logits.append(outputs)
    task_losses = torch.stack(task_losses)
    return MetaBatchResult(task_losses.mean(), task_losses, torch.stack(logits))


def _step_rule(algorithm, names):
    """``(init(params) -> state, step(params, grads, state) -> (params, state))``: the
    algorithm's inner optimizer on a ``{name: tensor}`` tree, its state threaded by the caller
    exactly as ``adapt`` threads it on a clone (Meta-SGD's rates multiply the updates)."""
    transform = algorithm.inner_transform()
    rates = None
    if isinstance(algorithm, MetaSGD):
        all_names = [n for n, _ in algorithm.module.named_parameters()]
        rates = dict(zip(all_names, algorithm.lrs))

    def step(params, grads, state):
        updates, state = transform.update(grads, state, params)
        if rates is not None:
            updates = {n: rates[n] * updates[n] for n in names}
        return {n: params[n] + updates[n] for n in names}, state

    return transform.init, step


def _vmapped(algorithm, support_x, support_y, query_x, query_y, loss, steps, chunk_size) -> MetaBatchResult:
    module = algorithm.module  # the adapted part: the whole model, or ANIL's head
    features = algorithm.features if isinstance(algorithm, ANIL) else None
    named = dict(module.named_parameters())
    adapted = [n for n, p in named.items() if p.requires_grad]
    if len(adapted) < len(named) and not algorithm.allow_nograd:
        frozen = sorted(set(named) - set(adapted))
        raise ValueError(
            f"parameters {frozen} do not require grad; construct the algorithm with allow_nograd=True"
        )
    fixed = {n: p for n, p in named.items() if n not in adapted}
    fixed.update(dict(module.named_buffers()))
    init_state, step = _step_rule(algorithm, adapted)
    first_order = algorithm.first_order

    def forward(params, x):
        return torch.func.functional_call(module, {**fixed, **params}, (x,))

    def inner_loss(params, x, y):
        return loss(forward(params, x), y)

    def task(sx, sy, qx, qy):
        if features is not None:
            sx, qx = features(sx), features(qx)
        params = {n: named[n] for n in adapted}
        state = init_state(params)
        for _ in range(steps):
            grads = torch.func.grad(inner_loss)(params, sx, sy)
            if first_order:
                grads = {n: g.detach() for n, g in grads.items()}
            params, state = step(params, grads, state)
        outputs = forward(params, qx)
        return loss(outputs, qy), outputs

    with contextlib.ExitStack() as stack:
        stack.enter_context(_vmap_safe_batch_norm(module))
        if features is not None:
            stack.enter_context(_vmap_safe_batch_norm(features))
        batched = torch.func.vmap(task, randomness="different", chunk_size=chunk_size)
        task_losses, logits = batched(support_x, support_y, query_x, query_y)
    for value in task_losses:
        check_loss(value)
    return MetaBatchResult(task_losses.mean(), task_losses, logits)
