"""A batched dense convex quadratic program solver, differentiable by implicit differentiation.

``solve_qp`` solves, for every problem of a batch,

    minimise    1/2 z^T Q z + p^T z
    subject to  G z <= h,   A z = b

with a primal-dual interior point method (Mehrotra's predictor-corrector, as in CVXOPT and
OptNet's solver) in float64 without autograd, followed by an exact solve of the active set the
iterate shows (OSQP's "polishing"), and differentiates the solution through the KKT
conditions at the optimum (Amos & Kolter, "OptNet", ICML 2017): the backward pass solves one
linear system per problem, however many iterations the forward pass took.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ._qp_interior_point import _interior_point

__all__ = ["solve_qp"]


def solve_qp(
    Q: torch.Tensor,
    p: torch.Tensor,
    G: torch.Tensor,
    h: torch.Tensor,
    A: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    max_iterations: int = 50,
    tolerance: float = 1e-10,
) -> torch.Tensor:
    """Solve a batch of convex QPs ``min 1/2 z^T Q z + p^T z  s.t.  G z <= h, A z = b``.

    The solver is a primal-dual interior point method (Mehrotra predictor-corrector) run in
    float64 without autograd. The accuracy test is every problem's largest scaled residual at
    most ``tolerance``: the stationarity residual ``||Q z + p + G^T lam + A^T nu||_inf``, the
    primal residuals ``||G z + s - h||_inf`` and ``||A z - b||_inf`` (each divided by one plus the
    largest norm of its terms, so the test is relative for large data) and the mean
    complementarity ``s^T lam / m``. Once an iterate passes it, the equality-constrained QP of
    the active set it shows is solved exactly ("polishing"); a problem stops when that solution
    passes too with a smaller residual (it is then exact to round-off, where the iterate is off
    by about 1e-8), else it iterates on. Gradients w.r.t. all six inputs come from implicit
    differentiation of the KKT conditions at the solution (OptNet, Amos & Kolter 2017); they
    assume strict complementarity (no constraint both active and with a zero multiplier), as
    OptNet does. Only first derivatives are available (no double backward).

    Every argument may carry the batch dimension ``B`` or omit it to be shared by the whole
    batch (its gradient is then summed over the batch); if none carries it, ``z`` is ``[n]``.

    Args:
        Q: ``[B, n, n]`` symmetric positive definite (only ``(Q + Q^T) / 2`` is used).
        p: ``[B, n]`` linear term.
        G: ``[B, m, n]`` inequality matrix (``m`` may be 0).
        h: ``[B, m]`` inequality bound.
        A: ``[B, k, n]`` equality matrix of full row rank, or None (no equality constraints).
        b: ``[B, k]`` equality right-hand side, or None; given exactly when ``A`` is.
        max_iterations: positive int, the most interior point iterations.
        tolerance: positive float, the largest scaled residual accepted.

    All tensors must be floating point and on one device; the result has their promoted dtype.

    Returns:
        ``z``: ``[B, n]`` (or ``[n]``) minimisers.

    Raises:
        ValueError: a singular Newton system (``Q`` not positive definite, ``A`` rank deficient)
            or non-finite inputs, besides the shape, dtype and argument checks.
        RuntimeError: the solver did not reach ``tolerance`` in ``max_iterations`` iterations
            (an infeasible problem, a ``Q`` that is not positive definite, or too few
            iterations); the message names the residual reached.

    Example:
        >>> import torch
        >>> Q = torch.eye(2, dtype=torch.float64).expand(1, 2, 2)
        >>> p = torch.tensor([[-2.0, -2.0]], dtype=torch.float64)
        >>> G = torch.tensor([[[1.0, 1.0]]], dtype=torch.float64)   # z1 + z2 <= 1
        >>> h = torch.ones(1, 1, dtype=torch.float64)
        >>> torch.allclose(solve_qp(Q, p, G, h), torch.tensor([[0.5, 0.5]], dtype=torch.float64))
        True
    """
    if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive float, got {tolerance!r}")
    if (A is None) != (b is None):
        raise ValueError(
            f"A and b must be given together, got A={'None' if A is None else 'a tensor'} and "
            f"b={'None' if b is None else 'a tensor'}"
        )
    tensors = {"Q": Q, "p": p, "G": G, "h": h}
    if A is not None:
        tensors.update(A=A, b=b)
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must have a floating point dtype, got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must hold finite values, got NaN or infinity")
    devices = {value.device for value in tensors.values()}
    if len(devices) > 1:
        raise ValueError(f"Q, p, G, h, A, b must be on one device, got {sorted(map(str, devices))}")
    dtype = p.dtype
    for value in tensors.values():
        dtype = torch.promote_types(dtype, value.dtype)

    if p.dim() not in (1, 2):
        raise ValueError(f"p must have shape [B, n] or [n], got {tuple(p.shape)}")
    n = p.shape[-1]
    # Unbatched ranks; an argument with one more dimension carries the batch.
    ranks = {"Q": 2, "p": 1, "G": 2, "h": 1, "A": 2, "b": 1}
    batch_sizes = set()
    for name, value in tensors.items():
        if value.dim() == ranks[name] + 1:
            batch_sizes.add(value.shape[0])
        elif value.dim() != ranks[name]:
            raise ValueError(
                f"{name} must have {ranks[name] + 1} dimensions (batched) or {ranks[name]} (shared), "
                f"got shape {tuple(value.shape)}"
            )
    if len(batch_sizes) > 1:
        raise ValueError(f"the batched arguments disagree on the batch size: {sorted(batch_sizes)}")
    batched = bool(batch_sizes)
    batch = batch_sizes.pop() if batched else 1

    def expand(value: torch.Tensor, name: str) -> torch.Tensor:
        # Expanding outside the autograd.Function lets autograd sum a shared argument's gradient.
        value = value.to(dtype)
        return value if value.dim() == ranks[name] + 1 else value.unsqueeze(0).expand(batch, *value.shape)

    Q, p, G, h = expand(Q, "Q"), expand(p, "p"), expand(G, "G"), expand(h, "h")
    m = h.shape[1]
    if A is None:
        A = p.new_zeros(batch, 0, n)
        b = p.new_zeros(batch, 0)
    else:
        A, b = expand(A, "A"), expand(b, "b")
    k = b.shape[1]
    expected = {"Q": (n, n), "G": (m, n), "h": (m,), "A": (k, n), "b": (k,)}
    for name, value in {"Q": Q, "G": G, "h": h, "A": A, "b": b}.items():
        if tuple(value.shape[1:]) != expected[name]:
            raise ValueError(
                f"{name} must have shape [B, {', '.join(map(str, expected[name]))}] for n={n} variables, "
                f"m={m} inequalities and k={k} equalities, got {tuple(value.shape)}"
            )
    if k > n:
        raise ValueError(f"A has k={k} rows for n={n} variables: full row rank needs k <= n")
    z = _QPFunction.apply(Q, p, G, h, A, b, max_iterations, float(tolerance))
    return z if batched else z.squeeze(0)


class _QPFunction(torch.autograd.Function):
    """``(Q, p, G, h, A, b) -> z`` with the OptNet backward; all tensors batched and one dtype."""

    @staticmethod
    def forward(ctx, Q, p, G, h, A, b, max_iterations, tolerance):
        f64 = [x.detach().to(torch.float64) for x in (Q, p, G, h, A, b)]
        f64[0] = (f64[0] + f64[0].transpose(1, 2)) / 2
        z, s, lam, nu = _interior_point(*f64, max_iterations, tolerance)
        ctx.save_for_backward(f64[0], f64[2], f64[4], z, s, lam, nu)
        ctx.dtypes = [x.dtype for x in (Q, p, G, h, A, b)]
        return z.to(p.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z):
        Q, G, A, z, s, lam, nu = ctx.saved_tensors
        batch, n = z.shape
        m, k = G.shape[1], A.shape[1]
        # Adjoint KKT system (OptNet eq. 7, with d_lam scaled by lam so every entry stays bounded):
        # [[Q, G^T, A^T], [diag(lam) G, -diag(s), 0], [A, 0, 0]] [dz; dlam; dnu] = [-grad_z; 0; 0].
        kkt = Q.new_zeros(batch, n + m + k, n + m + k)
        kkt[:, :n, :n] = Q
        kkt[:, :n, n : n + m] = G.transpose(1, 2)
        kkt[:, :n, n + m :] = A.transpose(1, 2)
        # Each complementarity row divided by s_j + lam_j (the same equations): one of the two
        # is zero after polishing, and the rows stay of size one.
        # A degenerate constraint (s = lam = 0 exactly: active with a zero multiplier, as polishing
        # may leave it) would make an empty row and a singular system: it is taken as inactive
        # (dlam_j = 0), one of the one-sided derivatives there (OptNet assumes strict complementarity).
        degenerate = s + lam <= 0
        scale = torch.where(degenerate, torch.ones_like(s), s + lam)
        kkt[:, n : n + m, :n] = (lam / scale).unsqueeze(2) * G
        kkt[:, n : n + m, n : n + m] = torch.diag_embed(
            torch.where(degenerate, -torch.ones_like(s), -s / scale)
        )
        kkt[:, n + m :, :n] = A
        rhs = torch.cat([-grad_z.to(torch.float64), Q.new_zeros(batch, m + k)], dim=1)
        solution = torch.linalg.solve(kkt, rhs)
        dz, dlam, dnu = solution[:, :n], solution[:, n : n + m], solution[:, n + m :]

        def outer(u, v):
            return u.unsqueeze(2) * v.unsqueeze(1)

        grads = [None] * 6
        needs = ctx.needs_input_grad
        if needs[0]:
            grads[0] = (outer(dz, z) + outer(z, dz)) / 2
        if needs[1]:
            grads[1] = dz
        if needs[2]:
            grads[2] = outer(lam, dz) + outer(dlam, z)
        if needs[3]:
            grads[3] = -dlam
        if needs[4]:
            grads[4] = outer(nu, dz) + outer(dnu, z)
        if needs[5]:
            grads[5] = -dnu
        grads = [None if g is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return (*grads, None, None)
