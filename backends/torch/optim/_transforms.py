"""Learnable gradient transforms: factories that build one module per parameter.

A *transform factory* is any callable ``factory(parameter) -> module`` where the module maps a
gradient to its transformed value (same shape). ``ParameterUpdate``, ``GBML`` and
``LearnableOptimizer`` call the factory once per parameter. Classes of ``l2l.nn`` that define
``for_parameter`` (``Scale``) are built from it; other module classes (``torch.nn.Linear``) act on
the flattened gradient, as a ``numel x numel`` map.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ....transforms import LearnableTransformation, is_learnable
from ....transforms._learnable import meta_curvature
from ..nn._kronecker import KroneckerLinear

_CURVATURE = meta_curvature(layout="torch")  # the core pair MetaCurvatureTransform holds


def _flatten(tree, path=()):
    """``[(path, leaf)]`` of a small tree of dicts (sorted keys) and lists."""
    if isinstance(tree, dict):
        return [item for key in sorted(tree) for item in _flatten(tree[key], path + (key,))]
    if isinstance(tree, (list, tuple)):
        return [item for index, value in enumerate(tree) for item in _flatten(value, path + (index,))]
    return [(path, tree)]


def _unflatten(template, leaves):
    leaves = iter(leaves)

    def build(node):
        if isinstance(node, dict):
            return {key: build(node[key]) for key in sorted(node)}
        if isinstance(node, (list, tuple)):
            return [build(value) for value in node]
        return next(leaves)

    return build(template)


class LearnableTransformModule(torch.nn.Module):
    """One parameter's share of a core ``LearnableTransformation`` (``l2l_multi.transforms``), held
    as a module: its parameters are ``transform.init(parameter)``'s leaves and ``forward(grad)``
    is ``transform.update(grad, those parameters)``, so the torch module and the core pair (and
    the jax backend, which uses the pair as is) compute the same thing by construction.

    Args:
        transform: a ``LearnableTransformation`` (``transforms.elementwise_scale()``,
            ``transforms.kronecker()``, ``transforms.meta_curvature()``, or your own).
        parameter: the model parameter it preconditions (shape, dtype and device are used).

    Example:
        >>> import torch
        >>> from l2l_multi import transforms
        >>> module = LearnableTransformModule(transforms.kronecker(), torch.nn.Parameter(torch.zeros(4, 3)))
        >>> g = torch.randn(4, 3)
        >>> torch.allclose(module(g), g)
        True
    """

    def __init__(self, transform: LearnableTransformation, parameter: torch.Tensor):
        super().__init__()
        if not is_learnable(transform):
            raise TypeError(f"transform must be a LearnableTransformation, got {transform!r:.80}")
        self.transform = transform
        state = transform.init({"parameter": parameter.detach()})["parameter"]
        leaves = [
            torch.as_tensor(leaf).to(device=parameter.device, dtype=parameter.dtype)
            for _, leaf in _flatten(state)
        ]
        self.structure = _unflatten(state, [None] * len(leaves))  # the tree's shape, no tensors
        self.factors = torch.nn.ParameterList([torch.nn.Parameter(leaf.clone()) for leaf in leaves])

    def state(self):
        """The core pair's state for this parameter, built from this module's parameters."""
        return _unflatten(self.structure, list(self.factors))

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return self.transform.update({"parameter": grad}, {"parameter": self.state()})[0]["parameter"]


class PairTransform:
    """Factory: one ``LearnableTransformModule`` of the core pair ``transform`` per parameter (how
    torch ``GBML`` takes a core ``LearnableTransformation`` directly).

    Example:
        >>> import torch
        >>> from l2l_multi import transforms
        >>> module = PairTransform(transforms.elementwise_scale(0.5))(torch.nn.Parameter(torch.ones(3)))
        >>> module(torch.ones(3)).tolist()
        [0.5, 0.5, 0.5]
    """

    def __init__(self, transform: LearnableTransformation):
        if not is_learnable(transform):
            raise TypeError(f"transform must be a LearnableTransformation, got {transform!r:.80}")
        self.transform = transform

    def __call__(self, parameter: torch.Tensor) -> torch.nn.Module:
        return LearnableTransformModule(self.transform, parameter)

    def __repr__(self) -> str:
        return f"PairTransform({self.transform!r:.60})"


class ReshapedTransform(torch.nn.Module):
    """Apply ``transform`` to the gradient reshaped to ``shape``, then restore its shape.

    Args:
        transform: a module acting on tensors of shape ``shape``.
        shape: the working shape (``-1`` allowed once), e.g. ``(1, numel)`` for a linear layer.

    Example:
        >>> import torch
        >>> t = ReshapedTransform(torch.nn.Identity(), (1, -1))
        >>> t(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, transform: Callable, shape: tuple[int, ...]):
        super().__init__()
        self.transform = transform
        self.shape = tuple(shape)

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return self.transform(grad.reshape(self.shape)).reshape(grad.shape)


class ModuleTransform:
    """Factory: one ``module_cls`` instance per parameter.

    If ``module_cls`` has a ``for_parameter(parameter)`` constructor (``l2l.nn.Scale``), it is
    used; otherwise the module is built as ``module_cls(numel, numel, **kwargs)`` and applied to
    the flattened gradient (``torch.nn.Linear`` gives a full-matrix preconditioner).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> transform = ModuleTransform(Scale)(torch.nn.Parameter(torch.zeros(2, 3)))
        >>> transform.alpha.shape
        torch.Size([2, 3])
    """

    def __init__(self, module_cls: type, **kwargs):
        if not callable(module_cls):
            raise TypeError(f"module_cls must be a module class, got {module_cls!r}")
        self.module_cls, self.kwargs = module_cls, kwargs

    def __call__(self, parameter: torch.Tensor) -> torch.nn.Module:
        if hasattr(self.module_cls, "for_parameter"):
            return self.module_cls.for_parameter(parameter, **self.kwargs)
        numel = parameter.numel()
        module = self.module_cls(numel, numel, **self.kwargs).to(
            device=parameter.device, dtype=parameter.dtype
        )
        return ReshapedTransform(module, (1, numel))

    def __repr__(self) -> str:
        return f"ModuleTransform({getattr(self.module_cls, '__name__', self.module_cls)})"


def matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int]:
    """The ``(n, m)`` Kronecker factor sizes of a parameter, as learn2learn chooses them: a vector is
    ``(n, 1)``, a dense weight ``(out, in)``, a conv kernel ``[out, in, *kernel]`` a stack of
    ``out`` matrices ``(in, prod(kernel))`` (so a 640-channel 3x3 conv gets 640x640 and 9x9
    factors, not a 5760x5760 one).

    Example:
        >>> matrix_shape((64, 32, 3, 3)), matrix_shape((10,)), matrix_shape((5, 4))
        ((32, 9), (10, 1), (5, 4))
    """
    if len(shape) == 0:
        return (1, 1)
    if len(shape) == 1:
        return (shape[0], 1)
    if len(shape) == 2:
        return (shape[0], shape[1])
    return (shape[1], math.prod(shape[2:]))


class KroneckerTransform:
    """Factory: a Kronecker-factored preconditioner per parameter (Meta-KFO, Arnold et al. 2019).

    The gradient of a parameter is viewed as ``[-1, n, m]`` matrices (``matrix_shape``: for a conv
    kernel one ``[in, prod(kernel)]`` matrix per output channel) and mapped by
    ``kronecker_cls(n, m, bias=bias, psd=psd)`` (identity at initialisation). The same factors
    as the core pair ``l2l_multi.transforms.kronecker``.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import KroneckerLinear
        >>> transform = KroneckerTransform(KroneckerLinear)(torch.nn.Parameter(torch.zeros(4, 3)))
        >>> g = torch.randn(4, 3)
        >>> torch.allclose(transform(g), g)
        True
    """

    def __init__(self, kronecker_cls: type = KroneckerLinear, bias: bool = False, psd: bool = True):
        self.kronecker_cls, self.bias, self.psd = kronecker_cls, bias, psd

    def __call__(self, parameter: torch.Tensor) -> torch.nn.Module:
        n, m = matrix_shape(parameter.shape)
        module = self.kronecker_cls(
            n, m, bias=self.bias, psd=self.psd, dtype=parameter.dtype, device=parameter.device
        )
        return ReshapedTransform(module, (-1, n, m))

    def __repr__(self) -> str:
        return f"KroneckerTransform({self.kronecker_cls.__name__}, bias={self.bias}, psd={self.psd})"


class MetaCurvatureTransform(torch.nn.Module):
    """Meta-Curvature (Park & Oliva, NeurIPS 2019): a learned tensor-product preconditioner.

    For a parameter of shape ``[out]`` the transform is an element-wise scale; for ``[out, in]``
    it is ``M_out G M_in``; for ``[out, in, k...]`` the gradient is viewed as ``[out, in, K]``
    and multiplied along each mode by ``M_out``, ``M_in``, ``M_k`` (all identity at init).
    The output is multiplied by ``lr``. A thin holder of the core pair
    ``l2l_multi.transforms.meta_curvature(layout="torch")``: its parameters (``scale`` or
    ``mode_matrices``) are that pair's state for ``param`` and ``forward`` is its ``update``.
    Passing the class itself as a factory (``GBML(model, MetaCurvatureTransform)``) builds one per
    parameter.

    Args:
        param: the parameter to precondition (its shape, dtype and device are used).
        lr: a constant multiplier (float).

    ``load_state_dict`` also reads learn2learn's parameter names (``mc``, ``mc_in``, ``mc_out``,
    ``mc_f``), which multiply the same modes the same way.

    Example:
        >>> import torch
        >>> transform = MetaCurvatureTransform(torch.nn.Parameter(torch.zeros(8, 4, 3, 3)))
        >>> g = torch.randn(8, 4, 3, 3)
        >>> torch.allclose(transform(g), g)
        True
    """

    def __init__(self, param: torch.Tensor, lr: float = 1.0):
        super().__init__()
        self.lr = lr
        self.shape = tuple(param.shape)
        options = {"dtype": param.dtype, "device": param.device}
        matrices = [torch.as_tensor(m).to(**options) for m in _CURVATURE.init({"p": param.detach()})["p"]]
        self.modes = len(self.shape) if len(self.shape) <= 2 else 3
        if self.modes <= 1:
            self.scale = torch.nn.Parameter(matrices[0].clone())
        else:
            self.mode_matrices = torch.nn.ParameterList([torch.nn.Parameter(m.clone()) for m in matrices])
        self.register_load_state_dict_pre_hook(_read_learn2learn_curvature)

    def state(self) -> list[torch.Tensor]:
        """The core pair's state for this parameter (this module's parameters)."""
        return [self.scale] if self.modes <= 1 else list(self.mode_matrices)

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        direction = _CURVATURE.update({"p": grad}, {"p": self.state()})[0]["p"]
        return self.lr * direction


# learn2learn's MetaCurvatureTransform names: mc (vectors); mc_in, mc_out, mc_f for the output,
# input and kernel modes (its "in" is the weight's first axis).
_LEARN2LEARN_CURVATURE = {
    "mc": "scale",
    "mc_in": "mode_matrices.0",
    "mc_out": "mode_matrices.1",
    "mc_f": "mode_matrices.2",
}


def _read_learn2learn_curvature(module, state_dict, prefix, *args) -> None:
    for theirs, ours in _LEARN2LEARN_CURVATURE.items():
        if prefix + theirs in state_dict:
            state_dict.setdefault(prefix + ours, state_dict.pop(prefix + theirs))


class TransformDictionary:
    """Factory choosing a factory per parameter: ``{parameter, module or name: factory}`` plus a default.

    Keys are parameter tensors (``model.fc.weight``), modules (``model.fc``: every parameter it
    holds, as learn2learn's ``TransformDictionary`` reads a module key) or names from
    ``named_parameters()``; a parameter key wins over a module key that contains it. A
    parameter matching no key uses ``default`` (``None``: no transform, so its gradient passes
    through unchanged).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.nn import Scale
        >>> model = torch.nn.Linear(2, 2)
        >>> factory = TransformDictionary({model.weight: ModuleTransform(Scale)})
        >>> type(factory(model.weight)).__name__, factory(model.bias)
        ('Scale', None)
        >>> by_module = TransformDictionary({model: ModuleTransform(Scale)})
        >>> type(by_module(model.bias)).__name__
        'Scale'
    """

    def __init__(self, transforms: dict, default: Callable | None = None):
        if not isinstance(transforms, dict):
            raise TypeError(f"transforms must be a dict, got {type(transforms).__name__}")
        modules = [(k, v) for k, v in transforms.items() if isinstance(k, torch.nn.Module)]
        self.by_tensor = {id(p): v for k, v in modules for p in k.parameters()}
        self.by_tensor.update({id(k): v for k, v in transforms.items() if isinstance(k, torch.Tensor)})
        self._keep = [k for k in transforms if not isinstance(k, str)]  # ids stay valid while held
        self.by_name = {k: v for k, v in transforms.items() if isinstance(k, str)}
        allowed = (str, torch.Tensor, torch.nn.Module)
        wrong = sorted({type(k).__name__ for k in transforms if not isinstance(k, allowed)})
        if wrong:
            raise TypeError(
                f"transforms keys must be parameter tensors, modules or parameter names (str), got {wrong}"
            )
        self.default = default

    def __call__(self, parameter: torch.Tensor, name: str | None = None):
        factory = self.by_tensor.get(id(parameter))
        if factory is None and name is not None:
            factory = self.by_name.get(name)
        factory = self.default if factory is None else factory
        return None if factory is None else factory(parameter)


def build_transform(factory: Callable, parameter: torch.Tensor, name: str | None) -> torch.nn.Module | None:
    """``factory(parameter)``, passing the name to factories that select by it."""
    if isinstance(factory, TransformDictionary):
        return factory(parameter, name)
    if not callable(factory):
        raise TypeError(
            f"transform must be a callable transform factory (e.g. l2l.optim.ModuleTransform(...)), got "
            f"{type(factory).__name__}"
        )
    return factory(parameter)
