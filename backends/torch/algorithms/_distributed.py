"""Data-parallel meta-training on ``torch.distributed``: split a meta-batch of tasks across processes
and average the meta-gradients so that every process steps exactly as one process holding all tasks.

The recipe, in every process (after ``torch.distributed.init_process_group``)::

    model = build_model()                                   # same architecture on every rank
    broadcast_parameters(model)                             # every rank starts from rank 0's weights
    maml = l2l.algorithms.MAML(model, lr=0.1)
    opt = torch.optim.Adam(maml.parameters())
    for tasks in meta_batches:                              # the same meta-batch on every rank
        mine = tasks[task_slice(len(tasks))]               # this rank's contiguous share
        opt.zero_grad()
        if len(mine):
            (sum(query_loss(maml, t) for t in mine) / len(mine)).backward()
        average_gradients(maml.parameters(), num_tasks=len(mine))   # every rank calls it
        opt.step()

With ``num_tasks`` the shards may be unequal (7 tasks on 2 ranks, or fewer tasks than ranks): each
rank's mean gradient is weighted by its share of the tasks, which gives exactly the mean over all
tasks. Without it the ranks' gradients are averaged plainly, which is only that mean when every
rank holds the same number of tasks.
"""

from __future__ import annotations

import torch

from ._rank_agreement import agree_across_ranks

__all__ = ["average_gradients", "broadcast_parameters", "task_slice"]


def _require_initialised(caller: str):
    """Return ``torch.distributed`` once it is known to be usable, else raise a RuntimeError."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(f"{caller} needs torch.distributed, which this torch build does not include")
    if not dist.is_initialized():
        raise RuntimeError(
            f"{caller} needs an initialised process group: call "
            "torch.distributed.init_process_group(backend, ...) in every process first"
        )
    return dist


def _group_rank_and_size(dist, group, caller: str) -> tuple[int, int]:
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    if rank < 0:
        # torch turns collectives on a group this process is not in into silent no-ops, which would
        # leave this process's gradients un-averaged: refuse instead.
        raise ValueError(
            f"{caller}: this process (global rank {dist.get_rank()}) is not a member of group={group!r}"
        )
    return rank, size


def _as_tensor_list(parameters, name: str) -> list[torch.Tensor]:
    if isinstance(parameters, torch.nn.Module):
        parameters = parameters.parameters()
    elif isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    tensors, seen = [], set()
    for i, p in enumerate(parameters):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{i}] is a {type(p).__name__}; expected torch tensors (parameters)")
        if id(p) not in seen:  # a tensor listed twice must be averaged once
            seen.add(id(p))
            tensors.append(p)
    return tensors


def task_slice(batch_size: int, rank: int | None = None, world_size: int | None = None, group=None) -> slice:
    """The contiguous part of a meta-batch of ``batch_size`` tasks that process ``rank`` handles.

    The batch is split as evenly as possible: the first ``batch_size % world_size`` ranks get one task
    more than the others, and ranks beyond ``batch_size`` get an empty slice. Pass the shard's length
    as ``num_tasks`` to ``average_gradients`` so the unequal shares are weighted correctly.

    Args:
        batch_size: number of tasks in the meta-batch (int >= 0), the same on every rank.
        rank: this process's rank in ``[0, world_size)``; default: its rank in ``group``.
        world_size: number of processes sharing the batch (int >= 1); default: the size of ``group``.
        group: the process group to read ``rank``/``world_size`` from when they are not given
            (default: the global group). Needs ``torch.distributed`` initialised only in that case.

    Returns:
        A ``slice`` with step 1; ``tasks[task_slice(len(tasks))]`` indexes lists, tensors and arrays.
        Over all ranks the slices are disjoint and cover ``range(batch_size)`` in order.

    Example:
        >>> from l2l_multi.backends.torch.algorithms import task_slice
        >>> [task_slice(7, rank, world_size=2) for rank in range(2)]
        [slice(0, 4, None), slice(4, 7, None)]
        >>> list(range(10))[task_slice(10, rank=2, world_size=4)]
        [6, 7]
    """
    if rank is None or world_size is None:
        dist = _require_initialised("task_slice without rank= and world_size=")
        group_rank, group_size = _group_rank_and_size(dist, group, "task_slice")
        rank = group_rank if rank is None else rank
        world_size = group_size if world_size is None else world_size
    for name, value, low in (("batch_size", batch_size, 0), ("world_size", world_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an int >= {low}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be an int in [0, world_size={world_size})")
    base, extra = divmod(batch_size, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def _checked_arguments(parameters, num_tasks) -> list[torch.Tensor]:
    """This rank's parameters that require a gradient, after the checks that need no communication."""
    bad_count = isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 0
    if num_tasks is not None and bad_count:
        raise ValueError(f"num_tasks={num_tasks!r} must be None or an int >= 0 (this rank's task count)")
    params = [p for p in _as_tensor_list(parameters, "parameters") if p.requires_grad]
    devices = {(p.grad if p.grad is not None else p).device for p in params}
    if len(devices) > 1:
        raise ValueError(
            f"parameters have gradients on several devices {sorted(map(str, devices))}; "
            "average_gradients needs them on one device (one flat buffer); call it once per device"
        )
    for p in params:
        if p.grad is not None and p.grad.layout != torch.strided:
            raise TypeError(
                f"a gradient has layout {p.grad.layout}; average_gradients supports dense (strided) "
                "gradients only (e.g. build nn.Embedding with sparse=False)"
            )
    if not params:
        # Most often a generator such as model.parameters() that was already consumed.
        raise ValueError("parameters holds no tensor with requires_grad=True (an exhausted generator?)")
    return params


def average_gradients(parameters, group=None, num_tasks: int | None = None, *, check: bool = True) -> int:
    """All-reduce the ``.grad`` of ``parameters`` across processes so every rank holds the mean
    meta-gradient over all tasks of the meta-batch, exactly as one process holding every task would.

    Call it in every process of ``group``, after each has backpropagated the *mean* loss over its own
    tasks and before the optimiser step. All gradients travel in one flat buffer and one
    ``all_reduce`` call (fewer, larger messages; the same collective sequence on every rank), on the
    gradients' device, so it works with gloo on CPU tensors and with nccl on CUDA tensors.

    Before that (``check=True``, the default, and more than one rank), one ``all_gather`` of six int64
    per rank checks that the ranks agree: the same number, shapes, dtypes and order of parameters,
    ``num_tasks`` given on every rank or on none, no rank with a bad argument. Without it, mismatched
    buffers make gloo abort a process or, for small ones, return a wrong gradient on some rank. When
    they disagree every rank raises the same ValueError naming the ranks and what differs, and the
    group stays usable. The check costs one more small collective per call, whose latency does not grow
    with the model (gloo, 2 processes on a busy 2-core machine: 1.1-1.7 ms more per call, about the
    all-reduce of a small model; a CUDA group also waits once for its result), and a hash of the
    parameter shapes on the host (about 1 us per parameter tensor).

    A parameter whose ``.grad`` is None on some ranks (unused by their tasks) contributes zeros
    there; it ends with the averaged gradient on every rank, or stays None on every rank if no rank
    had a gradient for it (as in one process, where an optimiser skips it). Parameters with
    ``requires_grad=False`` are left alone.

    Args:
        parameters: a ``torch.nn.Module``, a tensor, or an iterable of tensors, the same ones in the
            same order on every rank (e.g. ``maml.parameters()``). Gradients must be dense and on one
            device; mixed float dtypes are communicated in their promoted dtype.
        group: the process group to average over (default: the global group).
        num_tasks: how many tasks this rank's gradient is the mean over (int >= 0; 0 for an empty
            shard, whose gradients are ignored). Give it on every rank or on none. With it, rank
            ``r``'s gradient is weighted by ``num_tasks_r / sum(num_tasks)``, exact for unequal shards;
            without it every rank weighs ``1 / world_size``, exact only for equal shards.
        check: ``True`` (default): verify first that the ranks agree (above). ``False`` saves that
            collective for code whose ranks are known to agree; a disagreement then goes unnoticed
            (a wrong gradient) or aborts a process inside the backend, and an argument error on one
            rank leaves the others waiting until the group's timeout.

    Returns:
        The total weight divided by: ``sum(num_tasks)`` over the ranks if given, else the group size.

    Raises:
        RuntimeError: torch.distributed is not initialised.
        ValueError: a bad ``num_tasks``, all ranks passing ``num_tasks=0``, ``num_tasks`` given on
            some ranks only, parameters that differ across ranks, no parameter requiring a gradient,
            gradients on several devices, or this process not being in ``group``.
        TypeError: a sparse gradient, a non-tensor in ``parameters``, or a ``check`` that is not a bool.

    With ``check=True``, every error except the two that leave no group to meet in (not initialised,
    not a member) is raised on every rank of the group before any gradient is communicated: a rank
    whose own argument is bad raises its message, the others raise the same type naming that rank.

    Half-precision gradients (float16, bfloat16) are summed in float32, so the average is not
    rounded once per rank; the result is cast back to each gradient's dtype.

    Example:
        >>> import torch, torch.distributed as dist
        >>> from l2l_multi.backends.torch.algorithms import average_gradients
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> layer = torch.nn.Linear(3, 1)
        >>> layer(torch.ones(2, 3)).sum().backward()
        >>> average_gradients(layer.parameters(), num_tasks=2)  # alone: the gradient is unchanged
        2
        >>> layer.bias.grad
        tensor([2.])
        >>> dist.destroy_process_group()
    """
    dist = _require_initialised("average_gradients")
    _, world_size = _group_rank_and_size(dist, group, "average_gradients")
    if not isinstance(check, bool):
        raise TypeError(f"check={check!r} must be a bool")
    gather = check and world_size > 1
    try:
        params = _checked_arguments(parameters, num_tasks)
    except (TypeError, ValueError) as error:
        if gather:
            agree_across_ranks(dist, group, world_size, [], num_tasks, error)  # raises on every rank
        raise
    counts = None  # every rank's num_tasks, when known before the all-reduce
    if gather:
        counts = agree_across_ranks(dist, group, world_size, params, num_tasks, None)
    elif world_size == 1:
        counts = [num_tasks or 0]
    # Unchecked, the task counts travel in one more slot of the gradient buffer instead.
    count_slot = int(num_tasks is not None and counts is None)
    total = world_size if num_tasks is None else None if counts is None else sum(counts)
    if total == 0:
        # Every rank sees the same counts, so every rank raises here: no rank is left waiting.
        raise ValueError("num_tasks=0 on every rank: there is no task gradient to average")
    device = (params[0].grad if params[0].grad is not None else params[0]).device

    # float32 is the floor: a low-precision sum over many ranks would lose digits, and the "has a
    # gradient" flags below must be exact integers in the buffer's dtype.
    dtype = torch.float32
    for p in params:
        dtype = torch.promote_types(dtype, p.dtype)
    weight = 1.0 if num_tasks is None else float(num_tasks)

    # Layout: [grad_0, ..., grad_{n-1}, has_grad_0, ..., has_grad_{n-1}, (num_tasks if count_slot)].
    sizes = [p.numel() for p in params]
    flat = torch.zeros(sum(sizes) + len(params) + count_slot, dtype=dtype, device=device)
    offset = 0
    for p, size in zip(params, sizes):
        if p.grad is not None and weight != 0:  # an empty shard's stale (maybe non-finite) grads are ignored
            flat[offset : offset + size].copy_(p.grad.detach().reshape(-1))
        offset += size
    flags = flat[offset : offset + len(params)]
    flags.copy_(torch.tensor([p.grad is not None for p in params], dtype=dtype))
    if num_tasks is not None:
        # Weight by the task count: sum_r n_r * mean_r = the sum over all tasks, divided below.
        flat[:offset].mul_(weight)
    if count_slot:
        flat[-1] = weight

    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    if total is None:
        total = int(round(flat[-1].item()))
        if total == 0:
            raise ValueError("num_tasks=0 on every rank: there is no task gradient to average")
    flat[:offset].div_(total)

    has_grad = flags.cpu().tolist()  # one device sync for all flags
    offset = 0
    with torch.no_grad():
        for p, size, flag in zip(params, sizes, has_grad):
            averaged = flat[offset : offset + size].view(p.shape)
            offset += size
            if not flag:
                continue  # no rank had a gradient: keep None, as one process would
            if p.grad is None:
                p.grad = averaged.to(dtype=p.dtype, copy=True)
            else:
                p.grad.copy_(averaged)  # in place: keeps the grad's memory format and any views of it
    return total


def broadcast_parameters(module: torch.nn.Module, src: int = 0, group=None) -> None:
    """Overwrite ``module``'s parameters and buffers with those of process ``src``, in place.

    Call it once in every process after building the model (and before creating the optimiser's
    state), so that all ranks start from identical weights and batch-norm statistics even if they
    were initialised with different random seeds. Tensors are sent in one flat buffer per
    (dtype, device) group, so a model needs a handful of broadcasts rather than one per tensor.

    Args:
        module: a ``torch.nn.Module`` with the same parameter and buffer names, shapes and dtypes on
            every rank (e.g. the model, or the ``MAML`` wrapper around it).
        src: the global rank whose values everyone takes (int in ``[0, world_size)``).
        group: the process group to broadcast in (default: the global group); ``src`` must be in it.

    Returns:
        None; ``module`` is modified in place (``requires_grad`` and gradients are untouched).

    Example:
        >>> import torch, torch.distributed as dist
        >>> from l2l_multi.backends.torch.algorithms import broadcast_parameters
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> before = {k: v.clone() for k, v in model.state_dict().items()}
        >>> broadcast_parameters(model, src=0)  # alone, rank 0 keeps its own values
        >>> all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        True
        >>> dist.destroy_process_group()
    """
    dist = _require_initialised("broadcast_parameters")
    _group_rank_and_size(dist, group, "broadcast_parameters")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module is a {type(module).__name__}; expected a torch.nn.Module")
    world_size = dist.get_world_size()
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < world_size:
        raise ValueError(f"src={src!r} must be a global rank, an int in [0, world_size={world_size})")

    tensors = list(module.parameters()) + [b for b in module.buffers() if b is not None]
    # Group by (dtype, device) in order of first appearance: the same sequence on every rank since the
    # modules match, so every rank issues the same broadcasts in the same order.
    groups: dict[tuple, list[torch.Tensor]] = {}
    seen = set()
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            groups.setdefault((t.dtype, t.device), []).append(t)
    with torch.no_grad():
        for members in groups.values():
            flat = torch.cat([t.detach().reshape(-1) for t in members])
            dist.broadcast(flat, src=src, group=group)
            offset = 0
            for t in members:
                t.copy_(flat[offset : offset + t.numel()].view(t.shape))
                offset += t.numel()
