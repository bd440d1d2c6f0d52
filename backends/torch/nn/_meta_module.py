"""Reparametrised modules: a layer's weights are produced by learnable transforms of fixed weights.

``ParameterTransform(p, T)`` stands for the tensor ``T(p)``; ``MetaModule`` replaces the
parameters of chosen layer types by such transforms and runs the original module with them
(through ``torch.func.functional_call``), so the transforms can be meta-learned while the
original weights stay frozen (e.g. warped or preconditioned layers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._module_utils import clone_module


class ParameterTransform(torch.nn.Module):
    """A parameter seen through a learnable transform: ``forward() = transform(parameter)``.

    Args:
        parameter: the tensor to transform (kept by reference, any shape ``S``).
        transform: a module (or callable) mapping a tensor of shape ``S`` to shape ``S``.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> weight = torch.nn.Parameter(torch.ones(2, 2))
        >>> ParameterTransform(weight, Scale(alpha=3.0))().sum().item()
        12.0
    """

    def __init__(self, parameter: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        if not isinstance(parameter, torch.Tensor):
            raise TypeError(f"parameter must be a tensor, got {type(parameter).__name__}")
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.parameter = (
            parameter if isinstance(parameter, torch.nn.Parameter) else torch.nn.Parameter(parameter)
        )
        self.transform = transform

    def forward(self) -> torch.Tensor:
        value = self.transform(self.parameter)
        if value.shape != self.parameter.shape:
            raise ValueError(
                f"the transform returned shape {tuple(value.shape)} for a parameter of shape "
                f"{tuple(self.parameter.shape)}"
            )
        return value


class MetaModule(torch.nn.Module):
    """Run ``module`` with the parameters of some layer types replaced by ``ParameterTransform``s.

    Args:
        module: the base network.
        substitutions: ``{layer type: factory}``; every parameter ``p`` directly owned by a
            submodule of that type is seen as ``ParameterTransform(p, factory(p))``.
        freeze_module: set ``requires_grad=False`` on the base network's own parameters, so only
            the transforms (and nothing else) are learned.

    ``forward(*args, **kwargs)`` has the base module's signature. ``module()`` returns a
    differentiable clone of the base network carrying the transformed parameters.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> meta = MetaModule(net, {torch.nn.Linear: lambda p: Scale.for_parameter(p)})
        >>> sorted(n for n, p in meta.named_parameters() if p.requires_grad)
        ['transforms.0-bias.transform.alpha', 'transforms.0-weight.transform.alpha']
        >>> torch.allclose(meta(torch.ones(1, 3)), net(torch.ones(1, 3)))
        True
    """

    def __init__(self, module: torch.nn.Module, substitutions: dict, freeze_module: bool = True):
        super().__init__()
        if not isinstance(substitutions, dict) or not substitutions:
            raise ValueError("substitutions must be a non-empty dict {layer type: factory(parameter)}")
        self.base = module
        if freeze_module:
            for param in module.parameters():
                param.requires_grad_(False)
        transforms = {}
        for prefix, submodule in module.named_modules():
            factory = next((f for kind, f in substitutions.items() if isinstance(submodule, kind)), None)
            if factory is None:
                continue
            for name, param in submodule.named_parameters(recurse=False):
                full = f"{prefix}.{name}" if prefix else name
                transforms[full.replace(".", "-")] = ParameterTransform(param, factory(param))
        if not transforms:
            raise ValueError(f"no parameter of module matches the substituted types {list(substitutions)}")
        self.transforms = torch.nn.ModuleDict(transforms)

    def transformed_parameters(self) -> dict[str, torch.Tensor]:
        """``{dotted parameter name: transformed tensor}`` for every substituted parameter."""
        return {key.replace("-", "."): transform() for key, transform in self.transforms.items()}

    def forward(self, *args, **kwargs):
        return torch.func.functional_call(self.base, self.transformed_parameters(), args, kwargs)

    def module(self) -> torch.nn.Module:
        """A clone of the base module whose substituted parameters are the transformed tensors."""
        clone = clone_module(self.base)
        for name, value in self.transformed_parameters().items():
            owner_name, _, leaf = name.rpartition(".")
            owner = clone.get_submodule(owner_name) if owner_name else clone
            owner._parameters[leaf] = value
        return clone
