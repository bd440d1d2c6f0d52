"""Recognise framework arrays without importing a framework.

A torch tensor can only exist if ``torch`` was imported by someone, so looking the class up in
``sys.modules`` is enough (array-api-compat's trick). jax tracers are virtual subclasses of
``jax.Array``, so they are recognised too.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def is_jax_array(value: Any) -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def framework_of(value: Any) -> str:
    """``"torch"``, ``"jax"`` or ``"numpy"`` (anything else numpy can read)."""
    if is_torch_tensor(value):
        return "torch"
    if is_jax_array(value):
        return "jax"
    return "numpy"


def to_numpy(value: Any) -> np.ndarray:
    """A numpy view or copy of a torch tensor, jax array, numpy array or Python scalar/list."""
    if is_torch_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def to_python_label(value: Any) -> Any:
    """A hashable Python value for a label: 0-d arrays and tensors become Python scalars."""
    if is_torch_tensor(value) or is_jax_array(value) or isinstance(value, (np.ndarray, np.generic)):
        if getattr(value, "ndim", 0) == 0 or getattr(value, "size", 0) == 1:
            return value.item()
        return to_numpy(value).tolist()  # a list: rejected later as unhashable, with its index
    return value
