"""Gradient transforms whose parameters are meta-learned, as pure ``(init, update)`` pairs.

``init(params)`` returns the transform's learnable parameters (identity maps at the start);
``update(grads, transform_params, params=None)`` returns ``(transformed grads, transform_params)``.
They are ``LearnableTransformation``s: preconditioners that return a direction (no learning
rate, no sign flip, like ``optax.scale_by_adam``); ``GBML`` steps ``-lr`` along it.
Put the transform parameters in the meta-parameter tree and differentiate through ``update``
(the jax backend's ``GBML`` does this); the torch backend's ``l2l.optim`` offers the same
transforms as modules.

Parameters are viewed through ``layout``: "torch" (a weight is ``[out, in, *kernel]``) or
"flax" (``[*kernel, in, out]``: a dense kernel is ``[in, out]``, a conv kernel HWIO), so the
same preconditioner means the same thing on both backends.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import array_namespace

from ._base import LearnableTransformation
from ._tree import tree_map

LAYOUTS = ("torch", "flax")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    return layout


def _modes(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """``(out,)``, ``(out, in)`` or ``(out, in, prod(kernel))`` for a parameter shape."""
    if len(shape) <= 1:
        return (math.prod(shape),)
    if layout == "torch":
        out, inp, kernel = shape[0], shape[1], shape[2:]
    else:
        out, inp, kernel = shape[-1], shape[-2], shape[:-2]
    return (out, inp) if not kernel else (out, inp, math.prod(kernel))


def _to_modes(grad: Any, layout: str) -> Any:
    """View ``grad`` as an ``[out, in, k]`` (or ``[out, in]``) array."""
    shape = tuple(grad.shape)
    modes = _modes(shape, layout)
    if len(shape) <= 1 or layout == "torch":
        return grad.reshape(modes)
    # flax: [*kernel, in, out] -> [out, in, kernel]
    flat = grad.reshape((math.prod(shape[:-2]), shape[-2], shape[-1]))
    moved = array_namespace(grad).permute_dims(flat, (2, 1, 0))
    return moved.reshape(modes)


def _from_modes(value: Any, shape: tuple[int, ...], layout: str) -> Any:
    if len(shape) <= 1 or layout == "torch":
        return value.reshape(shape)
    flat = value.reshape((shape[-1], shape[-2], math.prod(shape[:-2])))
    return array_namespace(value).permute_dims(flat, (2, 1, 0)).reshape(shape)


def elementwise_scale(initial: float = 1.0) -> LearnableTransformation:
    """Meta-SGD's transform: a learned scale per gradient element, ``initial`` at init.

    Example:
        >>> import numpy as np
        >>> t = elementwise_scale(0.5)
        >>> scales = t.init({"w": np.ones(2)})
        >>> t.update({"w": np.array([2.0, 4.0])}, scales)[0]["w"].tolist()
        [1.0, 2.0]
    """

    def init(params):
        return tree_map(lambda p: array_namespace(p).full_like(p, initial), params)

    def update(grads, scales, params=None):
        return tree_map(lambda g, s: s * g, grads, scales), scales

    return LearnableTransformation(init, update)


def kronecker(psd: bool = True, layout: str = "torch") -> LearnableTransformation:
    """Meta-KFO's transform (Arnold et al. 2019): ``G -> L G R`` with learned factors, identity at
    init. As learn2learn factorises: a vector is an ``[n, 1]`` matrix, a dense weight an
    ``[out, in]`` one, and a conv kernel ``[out, in, *kernel]`` a stack of ``out`` matrices
    ``[in, prod(kernel)]`` sharing one ``L`` (``in x in``) and one ``R`` (``k x k``): a 640-channel
    3x3 conv needs ``640^2 + 9^2`` numbers, not ``5760^2``. With ``psd`` the factors are
    ``A^T A`` and ``C^T C`` (learn2learn's ``psd=True``).

    Example:
        >>> import numpy as np
        >>> t = kronecker(layout="flax")
        >>> factors = t.init({"kernel": np.zeros((3, 3, 4, 8))})
        >>> [f.shape for f in factors["kernel"].values()]
        [(4, 4), (9, 9)]
        >>> g = {"kernel": np.arange(6.0).reshape(3, 2)}
        >>> bool(np.allclose(t.update(g, t.init(g))[0]["kernel"], g["kernel"]))
        True
    """
    _check_layout(layout)

    def factor_shape(shape):
        modes = _modes(tuple(shape), layout)
        if len(modes) == 3:  # conv: [out, in, k], the factors shared across output channels
            return modes[1], modes[2]
        return (modes[0], modes[1] if len(modes) == 2 else 1)

    def init(params):
        def factors(p):
            xp = array_namespace(p)
            n, m = factor_shape(p.shape)
            return {"left": xp.eye(n, dtype=p.dtype), "right": xp.eye(m, dtype=p.dtype)}

        return tree_map(factors, params)

    def update(grads, factors, params=None):
        def apply(g, f):
            left, right = f["left"], f["right"]
            if psd:
                left, right = left.T @ left, right.T @ right
            shape = tuple(g.shape)
            modes = _modes(shape, layout)
            view = _to_modes(g, layout)
            if len(modes) < 3:
                view = view.reshape(factor_shape(shape))
            return _from_modes((left @ view @ right).reshape(modes), shape, layout)

        return _map_with_factors(apply, grads, factors), factors

    return LearnableTransformation(init, update)


def meta_curvature(layout: str = "torch") -> LearnableTransformation:
    """Meta-Curvature (Park & Oliva 2019): the gradient viewed as ``[out, in, k]`` is multiplied
    along each mode by a learned matrix (vectors: an element-wise scale). Identity at init. As in
    learn2learn, a dense weight maps to ``M_out G M_in`` and a conv kernel's ``out`` and ``k`` modes
    are multiplied from the left, its ``in`` mode from the right.

    Example:
        >>> import numpy as np
        >>> t = meta_curvature()
        >>> state = t.init({"w": np.zeros((4, 3, 2, 2))})
        >>> [m.shape for m in state["w"]]
        [(4, 4), (3, 3), (4, 4)]
    """
    _check_layout(layout)

    def init(params):
        def matrices(p):
            xp = array_namespace(p)
            modes = _modes(tuple(p.shape), layout)
            if len(modes) == 1:
                return [xp.ones(modes, dtype=p.dtype)]
            return [xp.eye(size, dtype=p.dtype) for size in modes]

        return tree_map(matrices, params)

    def update(grads, state, params=None):
        def apply(g, mats):
            shape = tuple(g.shape)
            if len(mats) == 1:
                return mats[0].reshape(shape) * g
            view = _to_modes(g, layout)
            if len(mats) == 2:
                out = mats[0] @ view @ mats[1]
            else:
                m_out, m_in, m_k = mats
                n_out, n_in, n_k = view.shape
                step = (m_out @ view.reshape((n_out, n_in * n_k))).reshape((n_out, n_in, n_k))
                step = array_namespace(g).permute_dims(step, (0, 2, 1)) @ m_in  # [out, k, in]
                # as learn2learn, the kernel mode is multiplied from the left: sum_k M_k[k', k] step[.., k]
                step = array_namespace(g).permute_dims(step, (0, 2, 1)) @ m_k.T  # [out, in, k]
                out = step
            return _from_modes(out, shape, layout)

        return _map_with_factors(apply, grads, state), state

    return LearnableTransformation(init, update)


def _map_with_factors(function, grads, factors):
    """``tree_map`` over gradients where each gradient's factors form a small subtree."""
    if grads is None:
        return None
    if isinstance(grads, dict):
        return {k: _map_with_factors(function, grads[k], factors[k]) for k in grads}
    if isinstance(grads, (list, tuple)):
        mapped = [_map_with_factors(function, g, f) for g, f in zip(grads, factors)]
        return type(grads)(mapped) if not hasattr(grads, "_fields") else type(grads)(*mapped)
    return function(grads, factors)
