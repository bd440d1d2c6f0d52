"""Checks shared by both backends, one wording per mistake: learning rates, class labels, the
error of a non-finite inner-loop loss and that of a refused non-finite meta-update.

Like ``_arrays``, this module never imports a framework: torch tensors and jax arrays are
recognised through ``sys.modules``. Values that are not concrete (jax tracers, tensors inside
``torch.func`` transforms) are passed through unchecked, since reading them would fail or force a
trace-time error; the callers document what happens to them.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._arrays import is_jax_array, is_torch_tensor


def _is_abstract(value: Any) -> bool:
    """True for values whose contents cannot be read on the host right now."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.core.Tracer):
        return True
    if is_torch_tensor(value):
        torch = sys.modules["torch"]
        wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
        return bool(wrapped is not None and wrapped(value)) or value.device.type == "meta"
    return False


def _framework(value: Any) -> str | None:
    if is_torch_tensor(value):
        return "torch"
    if is_jax_array(value):
        return "jax"
    return "numpy" if isinstance(value, np.ndarray) else None


def _host_array(value: Any) -> np.ndarray:
    if is_torch_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def check_learning_rate(
    value: Any, argument: str = "lr", *, arrays: tuple[str, ...] = ("torch", "jax", "numpy")
) -> Any:
    """Refuse a learning rate that is not a finite number >= 0; returns ``value`` unchanged.

    Args:
        value: a Python/numpy real number, or an array of a framework named in ``arrays``, of any
            shape (a learned or per-parameter rate, e.g. Meta-SGD's); every entry must be finite
            and >= 0. Traced values (``jax.jit``, ``torch.func``) are not read.
        argument: the name the error message gives the value (``"lr"``, ``"meta_lr"``, ``"lrs[2]"``).
        arrays: the frameworks whose arrays are accepted: "torch", "jax", "numpy"; ``()`` for
            rates that must be numbers.

    Raises:
        TypeError: ``value`` is a bool, a string, None, or an array of a framework not in ``arrays``.
        ValueError: ``value`` (or one of its entries) is negative, NaN or infinite.

    Example:
        >>> check_learning_rate(0.4)
        0.4
        >>> check_learning_rate(float("inf"), "meta_lr")
        Traceback (most recent call last):
        ...
        ValueError: meta_lr=inf must be >= 0 and finite
    """
    allowed = "a float >= 0"
    if arrays:
        allowed += " or a " + ("torch tensor" if arrays == ("torch",) else "/".join(arrays) + " array")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument}={value!r} must be {allowed}")
    if isinstance(value, numbers.Real):
        if not (value >= 0 and np.isfinite(float(value))):
            raise ValueError(f"{argument}={value!r} must be >= 0 and finite")
        return value
    if _framework(value) not in arrays:
        raise TypeError(f"{argument}={value!r:.80} must be {allowed}")
    if _is_abstract(value):
        return value
    entries = _host_array(value)
    if not np.issubdtype(entries.dtype, np.number) or np.issubdtype(entries.dtype, np.complexfloating):
        raise TypeError(f"{argument} must hold real numbers >= 0, got dtype {entries.dtype}")
    bad = ~(np.isfinite(entries) & (entries >= 0))
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = {"torch": "torch tensor", "jax": "jax array", "numpy": "numpy array"}[_framework(value)]
        raise ValueError(
            f"{argument}=<{kind} of shape {tuple(entries.shape)}> must be >= 0 and finite everywhere; "
            f"entry {index} is {entries[index].item()!r} ({int(bad.sum())} of {entries.size} entries are not)"
        )
    return value


def check_labels(labels: Any, argument: str, classes: int | None = None) -> None:
    """Refuse class labels outside ``[0, classes)`` (``classes=None``: only negative ones).

    Args:
        labels: integer labels of any shape (numpy, torch, jax). Tracers, tensors inside
            ``torch.func`` transforms and tensors on an accelerator are not read (reading a CUDA
            tensor would wait for the device; torch's ``cross_entropy`` checks those itself).
        argument: the argument's name for the message (``"support_y"``).
        classes: the number of classes the model scores.

    Raises:
        ValueError: naming ``argument``, the offending value and the allowed range.

    Example:
        >>> check_labels(np.array([0, 2, 1]), "query_y", classes=3)
        >>> check_labels(np.array([0, -1]), "query_y", classes=3)
        Traceback (most recent call last):
        ...
        ValueError: query_y holds the label -1; class labels must lie in [0, 3) (0 .. 2)
    """
    if _is_abstract(labels) or (is_torch_tensor(labels) and labels.device.type != "cpu"):
        return
    values = _host_array(labels)
    if values.size == 0 or not np.issubdtype(values.dtype, np.integer):
        return  # float labels are refused elsewhere, with their own message
    low, high = values.min(), values.max()
    allowed = "[0, ...)" if classes is None else f"[0, {classes}) (0 .. {classes - 1})"
    if low < 0:
        raise ValueError(f"{argument} holds the label {int(low)}; class labels must lie in {allowed}")
    if classes is not None and high >= classes:
        raise ValueError(f"{argument} holds the label {int(high)}; class labels must lie in {allowed}")


def nonfinite_inputs(named_arrays: Iterable[tuple[str, Any]]) -> list[str]:
    """Names of the floating-point arrays that contain NaN or inf (for error messages only: this
    reads every array on the host)."""
    names = []
    for name, array in named_arrays:
        if _is_abstract(array):
            continue
        values = _host_array(array)
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            names.append(name)
    return names


def nonfinite_loss_error(where: str, value: Any) -> FloatingPointError:
    """The error for a non-finite loss met in an eager inner loop (both backends).

    Args:
        where: which loss, e.g. "adapt: the support loss" or "meta_batch_loss: a task's query loss".
        value: the loss as read on the host (a float, or an array of per-task losses).

    Example:
        >>> str(nonfinite_loss_error("adapt: the support loss", float("nan")))[:45]
        'adapt: the support loss is non-finite (nan); '
    """
    return FloatingPointError(
        f"{where} is non-finite ({value}); the inner-loop learning rate may be too large or the inputs "
        "contain NaN/inf"
    )


class NonFiniteUpdate(FloatingPointError):
    """A refused meta-update: ``iteration`` (int) is the 1-based number of the step that was not
    committed; a ``FloatingPointError``, so code that catches that still does."""

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration

    def __reduce__(self):  # pickles (a worker process's error) with its iteration
        return type(self), (str(self), self.iteration)


def nonfinite_update_error(
    iteration: int,
    loss: float,
    bad_gradients: Sequence[str],
    bad_inputs: Sequence[str],
    reason: str | None = None,
) -> NonFiniteUpdate:
    """The error ``MetaLearner.train_step`` raises for a refused update (both backends).

    Args:
        iteration: the 1-based number of the refused step (committed updates + 1).
        loss: the meta-loss of that step; bad_gradients: names of the meta-parameters whose
            gradient is NaN/inf; bad_inputs: names of the batch arrays that contain NaN/inf.
        reason: what stopped the step before a meta-loss existed (e.g. the inner loop's own
            ``FloatingPointError``); replaces the loss/gradient description.
    """
    if reason is not None:
        what = reason
    elif not np.isfinite(loss):
        what = f"the meta-loss is {loss}"
        if bad_gradients:
            what += " and so are the meta-gradients"
    else:
        more = len(bad_gradients) - 3
        shown = ", ".join(bad_gradients[:3]) + (f" and {more} more" if more > 0 else "")
        what = f"the meta-loss is finite ({loss:.6g}) but the meta-gradient of {shown} is non-finite"
    if bad_inputs:
        what += f"; {' and '.join(bad_inputs)} contain{'s' if len(bad_inputs) == 1 else ''} NaN/inf"
    else:
        what += "; the inputs are finite, so the learning rates may be too large"
    return NonFiniteUpdate(
        f"non-finite meta-update at iteration {iteration}: {what}. The update was skipped: the "
        f"meta-parameters and optimizer state are still those after iteration {iteration - 1}",
        iteration,
    )


__all__ = [
    "NonFiniteUpdate",
    "check_labels",
    "check_learning_rate",
    "nonfinite_inputs",
    "nonfinite_loss_error",
    "nonfinite_update_error",
]
