"""The PyTorch backend: array conversion for the data layer and capability flags."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..._arrays import to_numpy

NAME = "torch"
SUPPORTS_JIT = False  # eager autograd; torch.compile is not part of the contract
SUPPORTS_VMAP = True  # torch.func.vmap


def asarray(value: Any, device: Any = None) -> torch.Tensor:
    """A tensor from numpy (zero-copy on CPU), a tensor, or anything numpy reads; dtype kept."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        array = to_numpy(value)
        if not array.flags.writeable:
            array = array.copy()  # torch.from_numpy would warn and alias read-only memory
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if device is None else tensor.to(device)


def stack(items: list, device: Any = None) -> torch.Tensor:
    """Stack a list of tensors / arrays / scalars along a new first axis."""
    if all(isinstance(item, torch.Tensor) for item in items):
        tensor = torch.stack(items)
        return tensor if device is None else tensor.to(device)
    return asarray(np.stack([to_numpy(item) for item in items]), device)
