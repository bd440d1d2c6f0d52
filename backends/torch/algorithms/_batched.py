"""One call for a whole meta-step over a stacked batch of tasks: ``meta_batch_loss``.

Two task maps give the same loss and meta-gradients:

* ``"sequential"`` (old spelling ``"loop"``): the stateful API, ``clone()`` and ``adapt()`` task
  after task, when ``meta_params`` are the learner's live tensors; for any other tree of the same
  structure (functional use, ``torch.func.grad``) the functional core task after task;
* ``"vmap"``: the functional core (``torch.func.functional_call`` + ``torch.func.grad``, see
  ``_functional``) vectorised over tasks with ``torch.func.vmap``.

``task_map="auto"`` takes the sequential map on CPU and vmap on accelerators (measured,
``benchmarks/maml_step.py``: vmap was ~1.4x slower than the loop on 2 CPU cores and ~10x faster
on a GPU). Running statistics are not updated by either map (the loop's clones update their own
copies; the functional core never writes them), so the model's buffers are unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ...._contract import (
    MetaBatchLoss,
    check_meta_params,
    check_task_batch,
    not_a_learner,
    resolve_steps,
    resolve_task_map,
)
from . import _functional
from ._anil import ANIL
from ._base import BaseLearner, check_loss
from ._gbml import GBML
from ._maml import MAML, MetaSGD
from ._mamlpp import MAMLpp
from ._reptile import Reptile

MetaBatchResult = MetaBatchLoss  # the old name of the shared return type, kept for imports
PATHS = ("auto", "loop", "vmap")
VMAPPABLE = (MAML, MetaSGD, ANIL, GBML, Reptile, MAMLpp)
OPTIONS = ("adaptation_steps", "path", "chunk_size")
_batch_norm_affine_outside = _functional._batch_norm_affine_outside


@contextlib.contextmanager
def _vmap_safe_batch_norm(module: torch.nn.Module):
    """Route every BatchNorm layer of ``module`` through ``_batch_norm_affine_outside``."""
    with _functional.functional_mode(module):
        yield


def choose_path(algorithm: torch.nn.Module, path: str) -> str:
    """Resolve ``task_map``/``path`` to "sequential" or "vmap": "auto" is sequential on CPU and
    for learners without a vmapped form, vmap when the parameters live on an accelerator."""
    task_map = resolve_task_map(path)
    if task_map != "auto":
        return task_map
    device = next(algorithm.parameters()).device
    return "vmap" if device.type != "cpu" and _vmappable(algorithm) else "sequential"


def _vmappable(algorithm) -> bool:
    return isinstance(algorithm, VMAPPABLE) and algorithm.functional


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _model_dtype_device(algorithm):
    param = next((p for p in algorithm.parameters() if p.is_floating_point()), None)
    return (None, torch.device("cpu")) if param is None else (param.dtype, param.device)


def check_batch(algorithm, support_x, support_y, query_x, query_y, loss) -> tuple:
    """The shared batch checks (``l2l_multi._contract.check_task_batch``) for the torch backend:
    numpy arrays become tensors on the model's device (floats in the model's dtype), jax arrays
    are refused naming ``l2l_multi.interop.to_torch``; then the inputs' dtype must match the
    model's (outside autocast)."""
    dtype, device = _model_dtype_device(algorithm)

    def convert(array: np.ndarray, name: str) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
        return tensor.to(dtype) if tensor.is_floating_point() and dtype is not None else tensor

    batch = check_task_batch(
        support_x,
        support_y,
        query_x,
        query_y,
        backend="torch",
        cross_entropy=loss is F.cross_entropy,
        convert=convert,
    )
    if dtype is not None and not _autocast_enabled(batch[0].device.type):
        for name, tensor in (("support_x", batch[0]), ("query_x", batch[2])):
            if tensor.is_floating_point() and tensor.dtype != dtype:
                raise TypeError(
                    f"{name} has dtype {tensor.dtype} but the model's parameters are {dtype}; convert one "
                    "of them (e.g. x.to(dtype) or model.to(dtype))"
                )
    return batch


def _options(options: dict, steps, task_map):
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(
            f"meta_batch_loss got unexpected keyword arguments {unknown}; the torch backend takes loss, "
            f"steps, train, task_map and {', '.join(OPTIONS)} (adaptation_steps and path: old spellings "
            "of steps and task_map)"
        )
    steps = resolve_steps(steps, options.get("adaptation_steps"))
    argument = "path" if "path" in options else "task_map"
    task_map = options.get("path", task_map)
    chunk_size = options.get("chunk_size")
    bad_chunk = isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    if chunk_size is not None and bad_chunk:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int or None")
    return steps, resolve_task_map(task_map, argument), chunk_size


def _is_live(algorithm: BaseLearner, meta_params: Mapping) -> bool:
    """``meta_params`` holds exactly the learner's own parameter tensors (the stateful API can run)."""
    live = algorithm.meta_parameters()
    if set(live) != set(meta_params):
        return False
    for key, tree in live.items():
        given = meta_params[key]
        if not isinstance(given, Mapping) or set(given) != set(tree):
            return False
        if any(given[name] is not tensor for name, tensor in tree.items()):
            return False
    return True


def _meta_batch_loss(
    algorithm: BaseLearner,
    meta_params: Mapping,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    *,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    steps: int = 1,
    train: bool = True,
    task_map: str = "auto",
    **options,
) -> MetaBatchLoss:
    """Adapt on every task's support set, evaluate on its query set, average over tasks.

    The same signature and meaning as the jax backend's ``meta_batch_loss``.

    Args:
        algorithm: a ``MAML``, ``MetaSGD``, ``ANIL``, ``GBML``, ``Reptile`` or ``MAMLpp`` (its
            ``lr``/``lrs``/``inner``/transform, ``first_order`` and ``allow_nograd`` apply; parameters with
            ``requires_grad=False`` stay fixed; the inner optimizer's state is threaded through
            the steps); the sequential map also takes any other learner with
            ``clone()``/``adapt()`` (GBML with ``adapt_transform``).
        meta_params: ``algorithm.meta_parameters()`` (the learner's live tensors:
            ``result.loss.backward()`` fills their ``.grad``, so a torch optimizer over
            ``algorithm.parameters()`` works as before), or any dict of the same structure
            (functional use: ``torch.func.grad(lambda m: meta_batch_loss(algorithm, m, ...).loss)``).
        support_x: ``[B, s, ...]`` inputs; support_y: ``[B, s]`` targets (int64 for
            classification); query_x: ``[B, q, ...]``; query_y: ``[B, q]``. Torch tensors or
            numpy arrays (converted with ``torch.from_numpy`` to the model's device, floats to
            its dtype); jax arrays raise ``TypeError`` (convert with ``l2l_multi.interop.to_torch``).
        loss: ``loss(outputs, targets) -> 0-d tensor`` (mean over samples), used for the inner
            steps and the query loss; ``None``: cross-entropy.
        steps: inner gradient steps per task (non-negative int).
        train: the modules' mode during the call (batch norm with batch statistics when True);
            the previous modes are restored afterwards.
        task_map: "sequential", "vmap" or "auto" (sequential on CPU, vmap on accelerators).
        **options: ``chunk_size`` (tasks per vectorised chunk of the vmap map; ``None``: all);
            old spellings accepted for one release: ``adaptation_steps=`` (``steps``),
            ``path=`` ("loop" = "sequential").

    Returns:
        ``MetaBatchLoss(loss, task_losses [B], query_logits [B, q, ...])``; ``result.loss.backward()``
        gives the meta-gradients (identical, up to rounding, on both maps).

    Raises:
        TypeError: ``meta_params`` is a tensor (the old call form ``meta_batch_loss(maml, sx, sy,
        qx, qy)``), or the batch's types are wrong; ValueError: shapes (one message per mistake,
        shared with the jax backend, ``l2l_multi._contract.check_task_batch``).

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <...>
        >>> maml = l2l.algorithms.MAML(torch.nn.Linear(4, 3).double(), lr=0.5)
        >>> sx, qx = torch.randn(8, 3, 4, dtype=torch.double), torch.randn(8, 6, 4, dtype=torch.double)
        >>> sy, qy = torch.arange(3).repeat(8, 1), torch.arange(3).repeat(8, 2)
        >>> meta = maml.meta_parameters()
        >>> loop = meta_batch_loss(maml, meta, sx, sy, qx, qy, task_map="sequential").loss
        >>> fast = meta_batch_loss(maml, meta, sx, sy, qx, qy, task_map="vmap").loss
        >>> abs(loop.item() - fast.item()) < 1e-12
        True
    """
    check_meta_params(meta_params, "torch")
    if not isinstance(algorithm, BaseLearner):
        raise not_a_learner(algorithm)
    steps, task_map, chunk_size = _options(options, steps, task_map)
    loss = F.cross_entropy if loss is None else loss
    batch = check_batch(algorithm, support_x, support_y, query_x, query_y, loss)
    task_map = choose_path(algorithm, task_map)
    if task_map == "vmap" and not _vmappable(algorithm):
        raise TypeError(
            f"task_map='vmap' supports {', '.join(c.__name__ for c in VMAPPABLE)} (GBML without "
            f"adapt_transform); got {type(algorithm).__name__} (use task_map='sequential')"
        )
    if task_map == "sequential" and _is_live(algorithm, meta_params):
        with _modes(algorithm, train):
            return _loop(algorithm, *batch, loss, steps)
    if not algorithm.functional:
        raise TypeError(
            f"{type(algorithm).__name__} runs on its live parameters only (clone()/adapt()): pass "
            "algorithm.meta_parameters() as meta_params"
        )
    features = algorithm.features if isinstance(algorithm, ANIL) else None
    with _functional.functional_mode(algorithm.module, features, train=train):
        return _vmapped(algorithm, meta_params, *batch, loss, steps, chunk_size, task_map == "vmap")


@functools.wraps(_meta_batch_loss)
def meta_batch_loss(*args, **kwargs) -> MetaBatchLoss:
    # The old call form meta_batch_loss(maml, sx, sy, qx, qy) must read as such, not as a
    # missing query_y: show the new call.
    if len(args) == 5 and not isinstance(args[1], Mapping):
        check_meta_params(args[1], "torch")
    return _meta_batch_loss(*args, **kwargs)


meta_batch_loss.__name__ = meta_batch_loss.__qualname__ = "meta_batch_loss"
_meta_batch_loss.__doc__ = "``meta_batch_loss`` itself (its docstring, signature and example live there)."


@contextlib.contextmanager
def _modes(algorithm: torch.nn.Module, train: bool):
    modes = [(m, m.training) for m in algorithm.modules()]
    algorithm.train(bool(train))
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _loop(algorithm, support_x, support_y, query_x, query_y, loss, steps) -> MetaBatchLoss:
    task_losses, logits = [], []
    for task in range(support_x.shape[0]):
        learner = algorithm.clone()
        for x, y in algorithm.inner_batches(support_x[task], support_y[task], steps):
            learner.adapt(loss(learner(x), y))
        outputs = learner(query_x[task])
        task_losses.append(loss(outputs, query_y[task]))
        logits.append(outputs)
    task_losses = torch.stack(task_losses)
    return MetaBatchLoss(task_losses.mean(), task_losses, torch.stack(logits))


def _vmapped(
    algorithm, meta_params, support_x, support_y, query_x, query_y, loss, steps, chunk_size, vectorise
) -> MetaBatchLoss:
    own = getattr(algorithm, "functional_task_loss", None)  # a learner with its own inner loop (MAML++)

    def task(sx, sy, qx, qy):
        if own is not None:
            return own(meta_params, sx, sy, qx, qy, loss, steps)
        return _functional.task_loss(algorithm, meta_params, sx, sy, qx, qy, loss, steps)

    if vectorise:
        batched = torch.func.vmap(task, randomness="different", chunk_size=chunk_size)
        task_losses, logits = batched(support_x, support_y, query_x, query_y)
    else:
        results = [task(*arrays) for arrays in zip(support_x, support_y, query_x, query_y)]
        task_losses = torch.stack([value for value, _ in results])
        logits = torch.stack([outputs for _, outputs in results])
    for value in task_losses:
        if not _functional._is_abstract(value):
            check_loss(value)
    return MetaBatchLoss(task_losses.mean(), task_losses, logits)
