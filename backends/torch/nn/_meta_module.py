"""Reparametrised modules with learn2learn's arguments (``learn2learn.nn.metalayers``).

``ParameterTransform(module, transform)`` runs ``module`` with every parameter ``p`` replaced by
``transform(p)(p)``, a learnable function of it (e.g. a learned scale, a low-rank correction);
``MetaModule(module, substitutions)`` swaps chosen submodule types for such wrappers and freezes
the original weights, so only the transforms are (meta-)learned.

Two deliberate differences from learn2learn 0.2.0: the module passed in is never modified
(learn2learn replaces its children in place; here the wrapped tree is a shallow copy that shares
the parameters), and ``ParameterTransform`` calls the module functionally
(``torch.func.functional_call``) instead of swapping its parameters and swapping them back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch


def _key(name: str) -> str:
    return name.replace(".", "-")  # ModuleDict keys may not contain dots


class ParameterTransform(torch.nn.Module):
    """Call ``module`` with each of its parameters ``p`` replaced by ``transform(p)(p)``.

    Args:
        module: the layer to wrap (its parameters are kept by reference, not copied).
        transform: ``transform(parameter) -> callable``, called once per parameter of ``module``
            at construction; the callable (usually a module, whose parameters are learned) maps a
            tensor of the parameter's shape and dtype to one of the same shape.

    ``forward(*args, **kwargs)`` has ``module``'s signature and returns its output.
    ``meta_parameters()`` yields the transforms' parameters; ``module`` is the wrapped layer.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> linear = torch.nn.Linear(3, 2)
        >>> doubled = ParameterTransform(linear, lambda p: Scale(alpha=2.0))
        >>> x = torch.ones(1, 3)
        >>> torch.allclose(doubled(x), x @ (2 * linear.weight).t() + 2 * linear.bias)
        True
    """

    def __init__(self, module: torch.nn.Module, transform: Callable):
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not callable(transform):
            raise TypeError(
                f"transform must be callable (parameter -> transform), got {type(transform).__name__}"
            )
        self.module = module
        self.transform = transform
        self._parameter_names = [name for name, _ in module.named_parameters()]
        self.parameter_transforms = torch.nn.ModuleDict()
        self._plain_transforms: dict[str, Callable] = {}  # callables that are not modules
        for name, parameter in module.named_parameters():
            built = transform(parameter)
            if not callable(built):
                raise TypeError(
                    f"transform({name}) must return a callable mapping the parameter to its new value, "
                    f"got {type(built).__name__}"
                )
            if isinstance(built, torch.nn.Module):
                self.parameter_transforms[_key(name)] = built
            else:
                self._plain_transforms[name] = built

    def _transform_of(self, name: str) -> Callable:
        return self._plain_transforms.get(name) or self.parameter_transforms[_key(name)]

    def transformed_parameters(self) -> dict[str, torch.Tensor]:
        """``{name in module: transformed tensor}``, each of the parameter's shape."""
        values = {}
        for name, parameter in self.module.named_parameters():
            value = self._transform_of(name)(parameter)
            if value.shape != parameter.shape:
                raise ValueError(
                    f"the transform of {name} returned shape {tuple(value.shape)} for a parameter of shape "
                    f"{tuple(parameter.shape)}"
                )
            values[name] = value
        return values

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.module, self.transformed_parameters(), args, kwargs)

    def meta_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The transforms' parameters (not the wrapped module's)."""
        yield from self.parameter_transforms.parameters()


class MetaModule(torch.nn.Module):
    """Wrap ``module`` with every submodule of a listed type replaced by ``substitutions[type](sub)``.

    Args:
        module: the network to wrap. It is not modified: the wrapped network is a copy of its
            module tree that shares its parameters and buffers.
        substitutions: ``{module class: function(submodule) -> new module}``; a submodule is
            replaced when its exact type is a key (as in learn2learn), after its own children
            have been processed. Typically ``lambda layer: ParameterTransform(layer, ...)``.
        freeze_module: set ``requires_grad=False`` on ``module``'s parameters, so that only the
            substituted parts are learned.

    ``forward(*args, **kwargs)`` calls the wrapped network. ``wrapped_module`` is that network,
    ``meta_parameters()`` yields the parameters of the substitutes that define
    ``meta_parameters`` (the transforms of ``ParameterTransform``), and ``module()`` returns the
    original network.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> scaled = lambda linear: ParameterTransform(linear, lambda p: Scale())
        >>> meta = MetaModule(net, {torch.nn.Linear: scaled})
        >>> len(list(meta.meta_parameters())), any(p.requires_grad for p in net.parameters())
        (2, False)
        >>> torch.allclose(meta(torch.ones(1, 3)), net(torch.ones(1, 3)))
        True
    """

    def __init__(self, module: torch.nn.Module, substitutions: dict, freeze_module: bool = True):
        super().__init__()
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if not isinstance(substitutions, dict) or not all(
            isinstance(kind, type) and callable(build) for kind, build in substitutions.items()
        ):
            raise TypeError("substitutions must be a dict {module class: function(submodule) -> module}")
        self.substitutions = substitutions
        self.freeze_module = freeze_module
        self._original = [module]  # a list, so it is not registered a second time as a submodule
        if freeze_module:
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        self.wrapped_module = self._wrap(module)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if module._modules:
            shell = copy.copy(module)  # shares parameters and buffers, gets its own child table
            children = module._modules.items()
            shell._modules = type(module._modules)(
                (name, None if child is None else self._wrap(child)) for name, child in children
            )
            module = shell
        build = self.substitutions.get(type(module))
        return module if build is None else build(module)

    def meta_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The parameters of every substitute that defines ``meta_parameters()``."""
        for submodule in self.wrapped_module.modules():
            if submodule is not self and hasattr(submodule, "meta_parameters"):
                yield from submodule.meta_parameters()

    def module(self) -> torch.nn.Module:
        """The original ``module`` (never modified by the wrapping)."""
        return self._original[0]

    def forward(self, *args, **kwargs):
        return self.wrapped_module(*args, **kwargs)
