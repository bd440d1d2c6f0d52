"""The one collective that ``average_gradients`` runs before its all-reduce: every rank's signature
(its argument error, task count and parameter layout) gathered, so that a mistake on one rank raises
the same error on every rank instead of leaving the others waiting in the all-reduce."""

from __future__ import annotations

import hashlib

import torch

# Error codes in the signature: which exception a rank raised while checking its own arguments.
_ERROR_TYPES = (None, ValueError, TypeError)


def _signature(params, num_tasks, error) -> list[int]:
    """Six int64s: [error code, num_tasks given, num_tasks, tensor count, element count, layout hash].

    The last three must agree across ranks before their gradients can be summed element-wise.
    """
    # A fixed-width fingerprint of the buffer layout: the shapes and dtypes in order. Python's hash()
    # is salted per process, so the ranks would never agree on it; blake2b is stable.
    layout = str([(*p.shape, p.dtype) for p in params]).encode()
    fingerprint = int.from_bytes(hashlib.blake2b(layout, digest_size=8).digest(), "little", signed=True)
    given = num_tasks is not None
    return [
        _ERROR_TYPES.index(type(error)) if error is not None else 0,
        int(given),
        num_tasks if given and error is None else 0,
        len(params),
        sum(p.numel() for p in params),
        fingerprint,
    ]


def _collective_device(dist, group) -> torch.device:
    # The signature travels on a device the group's backend serves on every rank: nccl needs CUDA
    # tensors, gloo (alone or in a "cpu:gloo,cuda:nccl" pair) takes CPU ones without a device sync.
    backend = str(dist.get_backend(group)).lower()
    if "gloo" in backend or "mpi" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def agree_across_ranks(dist, group, world_size, params, num_tasks, error) -> list[int]:
    """One all_gather of every rank's signature; raises the same error on every rank when they differ.

    Returns every rank's ``num_tasks`` (zeros when none was given).
    """
    signature = torch.tensor(
        _signature(params, num_tasks, error), dtype=torch.int64, device=_collective_device(dist, group)
    )
    gathered = [torch.empty_like(signature) for _ in range(world_size)]
    dist.all_gather(gathered, signature, group=group)
    rows = torch.stack(gathered).cpu().tolist()
    where = "" if group is None else " (ranks within group)"

    def ranks(test):
        return [rank for rank, row in enumerate(rows) if test(row)]

    refused = ranks(lambda row: row[0] != 0)
    if refused:
        if error is not None:
            raise error  # this rank's own message says what was wrong
        kind = _ERROR_TYPES[rows[refused[0]][0]]
        raise kind(
            f"average_gradients: rank(s) {refused}{where} refused their arguments ({kind.__name__}; "
            "their own error says which); every rank raises so that none waits in the all-reduce"
        )
    given = ranks(lambda row: row[1] == 1)
    if 0 < len(given) < world_size:
        missing = ranks(lambda row: row[1] == 0)
        raise ValueError(
            f"average_gradients: num_tasks was given on rank(s) {given} and not on rank(s) {missing}{where}; "
            "give it on every rank (each rank's task count) or on none (equal shards), else the ranks weigh "
            "their gradients differently"
        )
    differ = ranks(lambda row: row[3:] != rows[0][3:])
    if differ:
        layouts = "; ".join(
            f"rank {rank}: {rows[rank][3]} tensors, {rows[rank][4]} elements" for rank in [0, *differ]
        )
        same_size = all(rows[rank][3:5] == rows[0][3:5] for rank in differ)
        raise ValueError(
            f"average_gradients: the parameters of rank(s) {differ}{where} differ from rank 0's "
            f"({layouts}{'; same counts, other shapes, dtypes or order' if same_size else ''}); every rank "
            "must pass the same tensors in the same order (same model, same shapes and dtypes)"
        )
    return [row[2] for row in rows]
