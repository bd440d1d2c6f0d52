"""``ParameterUpdate``: ``torch.autograd.grad`` followed by a learnable per-parameter transform."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ._transforms import build_transform


class AdaptationError(RuntimeError):
    """Autograd could not differentiate an adaptation loss w.r.t. the parameters."""


def _named(parameters) -> list[tuple[str | None, torch.Tensor]]:
    items = list(parameters)
    return [item if isinstance(item, tuple) else (None, item) for item in items]


def differentiate(
    loss: torch.Tensor,
    parameters: list[torch.Tensor],
    create_graph: bool = False,
    retain_graph: bool | None = None,
    allow_unused: bool = False,
    allow_nograd: bool = False,
) -> list[torch.Tensor | None]:
    """Gradients of ``loss`` w.r.t. ``parameters``, ``None`` for those skipped.

    ``allow_nograd`` skips parameters with ``requires_grad=False``; ``allow_unused`` returns
    ``None`` for parameters ``loss`` does not depend on. Otherwise either case raises one
    ``AdaptationError`` that says what failed and which flag allows it.
    """
    if not isinstance(loss, torch.Tensor):
        raise ValueError(
            f"loss must be a scalar torch.Tensor computed from the learner's outputs, got "
            f"{type(loss).__name__}"
        )
    if loss.numel() != 1:
        raise ValueError(f"loss must be a scalar tensor, got shape {tuple(loss.shape)}; reduce it (.mean())")
    if not loss.requires_grad:
        raise AdaptationError(
            "loss does not require grad: it was computed without any parameter that requires grad "
            "(under torch.no_grad(), or from detached / frozen parameters)"
        )
    frozen = [i for i, p in enumerate(parameters) if not p.requires_grad]
    if frozen and not allow_nograd:
        raise AdaptationError(
            f"parameters {frozen} do not require grad; pass allow_nograd=True to adapt only those that do"
        )
    targets = [i for i, p in enumerate(parameters) if p.requires_grad]
    retain = create_graph if retain_graph is None else retain_graph
    try:
        grads = torch.autograd.grad(
            loss,
            [parameters[i] for i in targets],
            create_graph=create_graph,
            retain_graph=retain,
            allow_unused=True,
        )
    except RuntimeError as error:
        raise AdaptationError(f"could not differentiate the adaptation loss: {error}") from error
    unused = [targets[k] for k, g in enumerate(grads) if g is None]
    if unused and not allow_unused:
        raise AdaptationError(
            f"parameters {unused} were not used to compute the loss; pass allow_unused=True to leave them "
            "unchanged"
        )
    result: list[torch.Tensor | None] = [None] * len(parameters)
    for k, index in enumerate(targets):
        result[index] = grads[k]
    return result


class ParameterUpdate(torch.nn.Module):
    """Called like ``torch.autograd.grad``, returns the *transformed* gradients ``T_i(grad_i)``.

    Args:
        parameters: the parameters (or ``named_parameters()``) the updates are for; one
            transform is built per parameter with ``transform(parameter)``.
        transform: a transform factory (``ModuleTransform(Scale)``, ``KroneckerTransform(...)``,
            ``MetaCurvatureTransform``, ``TransformDictionary``, or any ``f(param) -> module``).

    ``forward(loss, parameters, create_graph=False, retain_graph=None, allow_unused=False,
    allow_nograd=False)`` returns a list with one tensor (the parameter's shape and dtype) or
    ``None`` per parameter. ``retain_graph`` defaults to ``create_graph``, as in
    ``torch.autograd.grad``. ``l2l.update_module(clone, updates)`` *adds* updates, so for a
    descent step pass ``[-lr * u for u in updates]`` (or let ``DifferentiableSGD`` do it).

    Example:
        >>> import torch
        >>> import l2l_multi as l2l
        >>> model = torch.nn.Linear(3, 1)
        >>> update = ParameterUpdate(model.parameters(), l2l.optim.ModuleTransform(l2l.nn.Scale))
        >>> clone = l2l.clone_module(model)
        >>> updates = update(clone(torch.ones(2, 3)).sum(), clone.parameters(), create_graph=True)
        >>> [tuple(u.shape) for u in updates]
        [(1, 3), (1,)]
    """

    def __init__(self, parameters: Iterable, transform: Callable):
        super().__init__()
        named = _named(parameters)
        if not named:
            raise ValueError("parameters is empty")
        modules = [build_transform(transform, p, name) for name, p in named]
        self.has_transform = [m is not None for m in modules]
        self.transforms_modules = torch.nn.ModuleList([m for m in modules if m is not None])

    def forward(
        self,
        loss: torch.Tensor,
        parameters: Iterable[torch.Tensor],
        create_graph: bool = False,
        retain_graph: bool | None = None,
        allow_unused: bool = False,
        allow_nograd: bool = False,
    ) -> list[torch.Tensor | None]:
        parameters = [p for _, p in _named(parameters)]
        if len(parameters) != len(self.has_transform):
            raise ValueError(
                f"parameters has {len(parameters)} entries; this ParameterUpdate was built for "
                f"{len(self.has_transform)}"
            )
        grads = differentiate(loss, parameters, create_graph, retain_graph, allow_unused, allow_nograd)
        return self.transform_gradients(grads)

    def transform_gradients(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """Apply each parameter's transform to its gradient (``None`` stays ``None``)."""
        if len(grads) != len(self.has_transform):
            raise ValueError(f"grads has {len(grads)} entries; expected {len(self.has_transform)}")
        updates, modules = [], iter(self.transforms_modules)
        for grad, has in zip(grads, self.has_transform):
            module = next(modules) if has else None
            if grad is None or module is None:
                updates.append(grad)
            else:
                updates.append(module(grad))
        return updates
