"""Finite-difference checks of meta-gradients (float64), shared by the torch tests."""

from __future__ import annotations

import torch


def directional_check(loss_fn, params, directions: int = 3, eps: float = 1e-6, seed: int = 0):
    """Compare autograd's gradient of ``loss_fn()`` w.r.t. ``params`` with central differences.

    ``loss_fn`` recomputes the scalar loss from the current values of ``params`` (perturbed in
    place here). Returns the largest relative error over random directions; each direction
    touches every parameter, so a wrong gradient anywhere shows.
    """
    params = list(params)
    for p in params:
        p.grad = None
    loss_fn().backward()
    grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(directions):
        vs = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
        _shift(params, vs, eps)
        plus = loss_fn().item()  # with autograd on: inner loops differentiate
        _shift(params, vs, -2 * eps)
        minus = loss_fn().item()
        _shift(params, vs, eps)
        numeric = (plus - minus) / (2 * eps)
        analytic = sum((g * v).sum().item() for g, v in zip(grads, vs))
        worst = max(worst, abs(numeric - analytic) / max(abs(numeric), 1e-8))
    return worst


@torch.no_grad()
def _shift(params, directions, step):
    for p, v in zip(params, directions):
        p.add_(step * v)
