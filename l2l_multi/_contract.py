"""The functional contract that both backends implement, and the batch checks they share.

A *gradient-based learner* (MAML, Meta-SGD, ANIL, GBML, Reptile) and a *metric learner*
(ProtoNet, MetaOptNet) are described by the ``Protocol`` classes below; each backend's classes
follow them with the same signatures, and ``meta_batch_loss`` returns ``MetaBatchLoss`` on both.

Meta-parameter trees have the same top-level keys on both backends: ``"model"`` (the adapted
network, or ANIL's head), ``"lrs"`` (Meta-SGD), ``"transform"`` (GBML's learnable transform),
``"features"`` (ANIL's and the metric learners' backbone), ``"head"`` (a head's own learnable
scalars). Leaves are named in the backend's own layout.

Like ``_checks``, this module never imports a framework: arrays are recognised through
``sys.modules``, so one function checks a batch for either backend with one wording per mistake.
"""

from __future__ import annotations

import numbers
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ._arrays import is_jax_array, is_torch_tensor
from ._checks import check_labels

TASK_MAPS = ("auto", "vmap", "sequential")
# Old spellings, accepted without a warning for one release: torch's path="loop", jax's "map".
TASK_MAP_ALIASES = {"loop": "sequential", "map": "sequential"}
BATCH_NAMES = ("support_x", "support_y", "query_x", "query_y")
_BACKENDS = {
    # backend: (its array type in messages, the foreign framework, the conversion function)
    "torch": ("torch", "jax", "l2l_multi.interop.to_torch"),
    "jax": ("jax", "torch", "l2l_multi.interop.to_jax"),
}


_KINDS = {"torch": "torch.Tensor", "jax": "jax array"}


class MetaBatchLoss(NamedTuple):
    """What ``meta_batch_loss`` returns on every backend.

    ``loss``: the mean query loss over tasks (0-d, differentiable w.r.t. the meta-parameters);
    ``task_losses``: ``[B]``, one query loss per task; ``query_logits``: the adapted models'
    outputs on the query sets, ``[B, q, ways]`` (``[B, q, ...]`` for other losses).
    """

    loss: Any
    task_losses: Any
    query_logits: Any


@runtime_checkable
class GradientBasedLearner(Protocol):
    """A learner that adapts a model to a task with inner gradient steps (both backends).

    ``meta_params`` is the tree from ``init``/``from_variables``/``meta_parameters()``; every
    method is a function of it (no hidden state), so it can be differentiated (``jax.grad``,
    ``torch.func.grad``) and mapped over tasks.
    """

    def init(self, key: Any, x: Any) -> dict:
        """Fresh meta-parameters from ``key`` (jax PRNG key, or an int seed on torch) and a sample
        input ``x`` ``[N, ...]``."""

    def from_variables(self, variables: Any) -> dict:
        """Meta-parameters around existing model variables (e.g. converted by ``interop``)."""

    def adapt(
        self,
        meta_params: dict,
        x: Any,
        y: Any,
        *,
        loss: Callable | None = None,
        steps: int = 1,
        inner: Any = None,
        train: bool = True,
    ) -> Any:
        """The adapted model's parameters after ``steps`` inner steps on ``(x [s, ...], y [s])``
        (``loss=None``: cross-entropy; ``inner``: an inner optimizer for this call)."""

    def task_loss(
        self,
        meta_params: dict,
        support_x: Any,
        support_y: Any,
        query_x: Any,
        query_y: Any,
        *,
        loss: Callable | None = None,
        steps: int = 1,
        train: bool = True,
    ) -> tuple[Any, Any]:
        """``(query loss 0-d, query outputs [q, ...])`` after adapting on the support set."""


@runtime_checkable
class MetricLearner(Protocol):
    """A learner with no inner loop: a head fitted on support embeddings scores the queries."""

    def init(self, key: Any, x: Any) -> dict:
        """Fresh meta-parameters (see ``GradientBasedLearner.init``)."""

    def from_variables(self, variables: Any) -> dict:
        """Meta-parameters around the feature extractor's variables."""

    def task_loss(
        self,
        meta_params: dict,
        support_x: Any,
        support_y: Any,
        query_x: Any,
        query_y: Any,
        *,
        loss: Callable | None = None,
        steps: int = 1,
        train: bool = True,
    ) -> tuple[Any, Any]:
        """``(query loss 0-d, query logits [q, ways])`` (``steps`` is ignored)."""


def resolve_task_map(task_map: Any, argument: str = "task_map") -> str:
    """``task_map`` in the shared vocabulary: "auto", "vmap" or "sequential" (aliases "loop",
    "map" -> "sequential").

    Example:
        >>> resolve_task_map("loop")
        'sequential'
    """
    resolved = TASK_MAP_ALIASES.get(task_map, task_map) if isinstance(task_map, str) else task_map
    if resolved not in TASK_MAPS:
        raise ValueError(
            f"{argument}={task_map!r} is not one of {TASK_MAPS} (old spellings 'loop' and 'map' mean "
            "'sequential')"
        )
    return resolved


def resolve_steps(steps: Any, adaptation_steps: Any = None) -> int:
    """The number of inner steps from ``steps=`` or its old spelling ``adaptation_steps=``.

    Example:
        >>> resolve_steps(1, adaptation_steps=3)
        3
    """
    argument = "steps"
    if adaptation_steps is not None:
        steps, argument = adaptation_steps, "adaptation_steps"
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"{argument}={steps!r} must be a non-negative int (inner gradient steps per task)")
    return int(steps)


def check_meta_params(meta_params: Any, backend: str) -> None:
    """Refuse an array where the meta-parameter tree belongs (the old torch call form
    ``meta_batch_loss(maml, sx, sy, qx, qy)``), showing the new call."""
    if isinstance(meta_params, Mapping):
        return
    got = type(meta_params).__name__
    if is_torch_tensor(meta_params) or is_jax_array(meta_params) or isinstance(meta_params, np.ndarray):
        source = "algorithm.meta_parameters()" if backend == "torch" else "algorithm.init(key, x)"
        raise TypeError(
            f"meta_batch_loss got an array ({got}) where meta_params belongs; the call is "
            f"meta_batch_loss(algorithm, meta_params, support_x, support_y, query_x, query_y), e.g. "
            f"meta_batch_loss(algorithm, {source}, sx, sy, qx, qy)"
        )
    raise TypeError(
        f"meta_params must be a dict tree of meta-parameters (from the {backend} algorithm), got {got}"
    )


def _inside_torch_transform() -> bool:
    torch = sys.modules.get("torch")
    peek = getattr(getattr(getattr(torch, "_C", None), "_functorch", None), "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def _is_floating(value: Any) -> bool:
    if is_torch_tensor(value):
        return value.is_floating_point()
    return np.issubdtype(np.dtype(value.dtype), np.floating)


def not_a_learner(algorithm: Any) -> TypeError:
    """The error for an ``algorithm`` argument that is not a learner (both backends' wording)."""
    return TypeError(
        f"algorithm must be an l2l learner (MAML, MetaSGD, ANIL, ...), got {type(algorithm).__name__}"
    )


def _refuse_foreign(name: str, value: Any, backend: str) -> None:
    """The other framework's array, refused naming the conversion function."""
    native, foreign, conversion = _BACKENDS[backend]
    if (is_torch_tensor if foreign == "torch" else is_jax_array)(value):
        raise TypeError(
            f"{name} is a {_KINDS[foreign]}; the {backend} backend takes {native} or numpy arrays: "
            f"convert it with {conversion}"
        )


def _check_label_count(x_name: str, x: Any, y_name: str, y: Any, axis: int) -> None:
    """One label per sample: ``x.shape[axis] == y.shape[axis]`` (axis 1 in a stacked batch)."""
    if x.shape[axis] != y.shape[axis]:
        raise ValueError(
            f"{y_name} must hold one label per sample of {x_name}: {x_name} has shape {tuple(x.shape)}, "
            f"{y_name} {tuple(y.shape)}"
        )


def _refuse_float_labels(y_name: str, y: Any, backend: str) -> None:
    """Floating-point labels with cross-entropy, refused naming the backend's conversion."""
    if _is_floating(y):
        conversion = f"{y_name}.long()" if backend == "torch" else f"{y_name}.astype(int)"
        raise TypeError(
            f"{y_name} has dtype {y.dtype}; loss=cross_entropy needs integer class labels (e.g. {conversion})"
        )


def check_task(
    meta_params: Any,
    x: Any,
    y: Any,
    backend: str,
    x_name: str = "x",
    y_name: str = "y",
    cross_entropy: bool = True,
) -> None:
    """Checks one task's arguments of the functional ``adapt``/``task_loss`` (both backends):
    shapes only, so it also runs on traced arrays (jit, vmap, ``torch.func``).

    Args:
        meta_params: the tree from ``algorithm.init``/``from_variables``/``meta_parameters()``
            (a dict with a ``"model"`` entry).
        x: ``[n, ...]`` samples; y: ``[n]`` (or ``[n, ...]`` targets), arrays of the backend or
            numpy; the other framework's arrays are refused, naming the conversion.
        backend: ``"torch"`` or ``"jax"``; x_name/y_name: the names used in messages.
        cross_entropy: the loss is cross-entropy, so floating-point ``y`` is refused.

    Raises:
        ValueError: ``meta_params`` without a ``"model"`` entry, or a label count that differs
            from the sample count. TypeError: the other framework's array, float labels.
    """
    if not isinstance(meta_params, Mapping) or "model" not in meta_params:
        found = sorted(meta_params) if isinstance(meta_params, Mapping) else type(meta_params).__name__
        raise ValueError(
            f"meta_params must be the dict from algorithm.init / from_variables (with a 'model' entry), "
            f"got {found}"
        )
    for name, value in ((x_name, x), (y_name, y)):
        _refuse_foreign(name, value, backend)
    x_rows, y_rows = getattr(x, "shape", (None,))[:1], getattr(y, "shape", (None,))[:1]
    if x_rows and y_rows and None not in (x_rows[0], y_rows[0]):
        _check_label_count(x_name, x, y_name, y, axis=0)
    if cross_entropy and hasattr(y, "dtype"):
        _refuse_float_labels(y_name, y, backend)


def check_task_batch(
    support_x: Any,
    support_y: Any,
    query_x: Any,
    query_y: Any,
    *,
    backend: str,
    cross_entropy: bool,
    convert: Callable[[np.ndarray, str], Any],
) -> tuple[Any, Any, Any, Any]:
    """Check a stacked task batch for ``backend`` ("torch" or "jax") and return it converted.

    Args:
        support_x: ``[B, s, ...]``; support_y: ``[B, s]``; query_x: ``[B, q, ...]``; query_y:
            ``[B, q]``: arrays of the backend, or numpy arrays (converted with
            ``convert(array, name)``).
        cross_entropy: the loss is cross-entropy: labels must be integers, and concrete
            negative labels are refused.

    Raises:
        TypeError: an array of the other framework (naming the conversion function), another
            type, or float labels with cross-entropy.
        ValueError: shapes that are not ``[B, n, ...]`` with one B, a label count that differs
            from the sample count, an empty support or query set, a negative label.

    Returns:
        ``(support_x, support_y, query_x, query_y)``, numpy arrays converted.
    """
    native = _BACKENDS[backend][0]
    values = dict(zip(BATCH_NAMES, (support_x, support_y, query_x, query_y)))
    for name, value in values.items():
        _refuse_foreign(name, value, backend)
        framework = "torch" if is_torch_tensor(value) else "jax" if is_jax_array(value) else None
        if isinstance(value, np.ndarray):
            values[name] = convert(value, name)
        elif framework != backend:
            raise TypeError(f"{name} must be a {native} or numpy array, got {type(value).__name__}")
    batch = values["support_x"].shape[0] if values["support_x"].ndim >= 2 else None
    for name, value in values.items():
        if value.ndim < 2 or value.shape[0] != batch:
            raise ValueError(
                f"{name} must have shape [B, samples, ...] with the same B as support_x ({batch}) "
                f"(stacked tasks); got {tuple(value.shape)}"
            )
    for x_name, y_name in (("support_x", "support_y"), ("query_x", "query_y")):
        x, y = values[x_name], values[y_name]
        _check_label_count(x_name, x, y_name, y, axis=1)
        if x.shape[1] == 0:
            raise ValueError(
                f"{x_name} has no samples (shape {tuple(x.shape)}); with partition_task_batch, keep shots "
                "below the samples per class"
            )
        if cross_entropy:
            _refuse_float_labels(y_name, y, backend)
            if not _inside_torch_transform():  # torch.func.grad cannot read even plain tensors
                check_labels(y, y_name)  # concrete values only: a negative label would index from the end
    return values["support_x"], values["support_y"], values["query_x"], values["query_y"]


__all__ = [
    "BATCH_NAMES",
    "GradientBasedLearner",
    "MetaBatchLoss",
    "MetricLearner",
    "TASK_MAPS",
    "check_meta_params",
    "check_task",
    "check_task_batch",
    "not_a_learner",
    "resolve_steps",
    "resolve_task_map",
]
