"""The interior point internals of ``solve_qp``: Mehrotra's predictor-corrector on a batch of
dense convex QPs in float64 without autograd, with OSQP-style polishing of the active set."""

from __future__ import annotations

import torch

# Fraction of the way to the boundary that a step may go: keeps slacks and multipliers strictly
# positive so the Newton systems stay nonsingular (the usual choice of interior point codes).
_STEP_FRACTION = 0.99
# A problem whose residual grew this much past its best has met round-off and stops there.
_DIVERGED = 100.0
# Rounds of iterative refinement of each Newton direction (see _newton_step).
_REFINEMENTS = 1


def _max_step(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Per problem, the largest ``a`` with ``x + a dx >= 0`` (inf if none binds); ``x > 0`` is ``[B, m]``."""
    ratios = torch.where(dx < 0, -x / dx.clamp(max=-torch.finfo(x.dtype).tiny), torch.full_like(x, torch.inf))
    return ratios.min(dim=1).values


def _residuals(Q, p, G, h, A, b, z, s, lam, nu):
    """Stationarity, inequality and equality residuals and the largest scaled residual, per problem."""
    Qz = torch.einsum("bij,bj->bi", Q, z)
    Gt_lam = torch.einsum("bji,bj->bi", G, lam)
    At_nu = torch.einsum("bji,bj->bi", A, nu)
    Gz = torch.einsum("bij,bj->bi", G, z)
    Az = torch.einsum("bij,bj->bi", A, z)
    r_dual, r_ineq, r_eq = Qz + p + Gt_lam + At_nu, Gz + s - h, Az - b

    def size(*terms):
        # Terms of a residual cancel at the solution: scale by the largest of them, not the sum.
        return 1 + torch.stack(
            [t.abs().amax(dim=1) if t.shape[1] else t.new_zeros(t.shape[0]) for t in terms]
        ).amax(dim=0)

    def norm(r):
        return r.abs().amax(dim=1) if r.shape[1] else r.new_zeros(r.shape[0])

    worst = torch.stack(
        [
            norm(r_dual) / size(Qz, p, Gt_lam, At_nu),
            norm(r_ineq) / size(Gz, s, h),
            norm(r_eq) / size(Az, b),
            (s * lam).mean(dim=1) if s.shape[1] else s.new_zeros(s.shape[0]),
        ]
    ).amax(dim=0)
    return r_dual, r_ineq, r_eq, worst


def _kkt_factor(Q, G, A, scaling, problems):
    """LU factors of ``[[Q + G^T diag(scaling) G, A^T], [A, 0]]`` (the reduced Newton system).

    ``problems``: the batch indices of these problems in the caller's batch, for the message.
    """
    n, k = Q.shape[1], A.shape[1]
    matrix = Q.new_zeros(Q.shape[0], n + k, n + k)
    matrix[:, :n, :n] = Q + G.transpose(1, 2) @ (scaling.unsqueeze(2) * G)
    matrix[:, :n, n:] = A.transpose(1, 2)
    matrix[:, n:, :n] = A
    lu, pivots, info = torch.linalg.lu_factor_ex(matrix)
    if bool((info > 0).any()):
        problem = int(problems[(info > 0).nonzero()[0]])
        raise ValueError(
            f"solve_qp: the Newton system of problem {problem} of the batch is singular; Q must be "
            f"positive definite and A must have full row rank (linearly independent equality rows)"
        )
    return lu, pivots


def _interior_point(Q, p, G, h, A, b, max_iterations, tolerance):
    """Mehrotra predictor-corrector; returns the primal ``z``, slack ``s`` and duals ``lam``, ``nu``."""
    batch, n = p.shape
    m = h.shape[1]

    # Start (as CVXOPT does) from the solution of the problem with the inequalities replaced by a
    # least-squares penalty: (Q + G^T G) z + A^T nu = G^T h - p, A z = b.
    everyone = torch.arange(batch, device=p.device)
    lu, pivots = _kkt_factor(Q, G, A, torch.ones_like(h), everyone)
    rhs = torch.cat([torch.einsum("bji,bj->bi", G, h) - p, b], dim=1)
    start = torch.linalg.lu_solve(lu, pivots, rhs.unsqueeze(2)).squeeze(2)
    z, nu = start[:, :n], start[:, n:]
    if m == 0:  # an equality-constrained QP is one linear solve
        empty = h.new_zeros(batch, 0)
        _, _, _, worst = _residuals(Q, p, G, h, A, b, z, empty, empty, nu)
        _raise_unless_converged(worst, tolerance, 1)
        return z, empty, empty, nu
    gap = torch.einsum("bij,bj->bi", G, z) - h
    s, lam = _shift_positive(-gap), _shift_positive(gap)

    # The best iterate of each problem is kept: once round-off dominates the Newton directions
    # (residuals near 1e-13), further steps can make a problem worse, never better.
    best = [z, s, lam, nu]
    best_worst = torch.full_like(p[:, 0], torch.inf)
    # Once an iterate meets the tolerance its active set is solved exactly (see _polish); a
    # problem is finished when that succeeds. Until it does (the iterate does not yet show the
    # active set) the iterations go on, to max_iterations or until round-off takes over.
    polished = [x.clone() for x in best]
    polished_worst = torch.full_like(best_worst, torch.inf)
    finished = torch.zeros_like(best_worst, dtype=torch.bool)
    for iteration in range(max_iterations + 1):
        r_dual, r_ineq, r_eq, worst = _residuals(Q, p, G, h, A, b, z, s, lam, nu)
        worst = torch.where(torch.isfinite(worst), worst, torch.full_like(worst, torch.inf))
        improved = worst < best_worst
        best = [torch.where(improved.unsqueeze(1), x, y) for x, y in zip((z, s, lam, nu), best)]
        best_worst = torch.where(improved, worst, best_worst)
        attempt = ~finished & (worst <= tolerance)
        if attempt.any():
            index = attempt.nonzero().squeeze(1)
            data = [x[index] for x in (Q, p, G, h, A, b)]
            candidate = _polish(*data, z[index], s[index], lam[index], nu[index])
            candidate_worst = _residuals(*data, *candidate)[3]
            good = (candidate_worst <= tolerance) & (candidate_worst < worst[index])  # NaN: False
            index = index[good]
            polished = [x.index_put((index,), new[good]) for x, new in zip(polished, candidate)]
            polished_worst = polished_worst.index_put((index,), candidate_worst[good])
            finished = finished.index_put((index,), torch.ones_like(index, dtype=torch.bool))
        open_ = ~finished & (worst < _DIVERGED * best_worst)
        if not open_.any() or iteration == max_iterations:
            break
        # Finished problems take no further step: the batch shrinks to those still open.
        index = slice(None) if open_.all() else open_.nonzero().squeeze(1)
        step = _newton_step(
            Q[index],
            G[index],
            A[index],
            z[index],
            s[index],
            lam[index],
            nu[index],
            r_dual[index],
            r_ineq[index],
            r_eq[index],
            everyone[index],
        )
        if open_.all():
            z, s, lam, nu = step
        else:
            z, s, lam, nu = (x.index_put((index,), new) for x, new in zip((z, s, lam, nu), step))
    best = [torch.where(finished.unsqueeze(1), x, y) for x, y in zip(polished, best)]
    best_worst = torch.where(finished, polished_worst, best_worst)
    _raise_unless_converged(best_worst, tolerance, iteration)
    return tuple(best)


def _polish(Q, p, G, h, A, b, z, s, lam, nu):
    """The exact solution for the active set the interior point iterate shows (``lam > s``).

    An interior point iterate stops at complementarity ``s_j lam_j ~ mu``, which leaves ``z``
    off by about ``mu / lam_j`` (1e-8 at the default tolerance) and the implicit gradient off by
    up to 1e-5 relative to central differences. Solving the equality-constrained QP with the
    active inequalities as equalities (OSQP's "polishing") gives the solution to round-off and
    exactly complementary ``s``, ``lam``, so the backward pass differentiates the exact active
    set. The caller keeps it only where its KKT residual meets the tolerance and is smaller than
    the iterate's (a wrong guess of the active set is never kept). The jax backend's
    ``solve_qp`` does the same.
    """
    n, m, k = z.shape[1], s.shape[1], nu.shape[1]
    active = (lam > s).to(Q.dtype)
    # Rows of inactive constraints become lam_j = 0; active ones G_j z = h_j.
    matrix = Q.new_zeros(Q.shape[0], n + m + k, n + m + k)
    matrix[:, :n, :n] = Q
    matrix[:, :n, n : n + m] = G.transpose(1, 2) * active.unsqueeze(1)
    matrix[:, :n, n + m :] = A.transpose(1, 2)
    matrix[:, n : n + m, :n] = active.unsqueeze(2) * G
    matrix[:, n : n + m, n : n + m] = torch.diag_embed(1 - active)
    matrix[:, n + m :, :n] = A
    rhs = torch.cat([-p, active * h, b], dim=1).unsqueeze(2)
    # A singular system (a wrong active set) gives non-finite values, whose residual is not kept.
    lu, pivots, _ = torch.linalg.lu_factor_ex(matrix)
    solution = torch.linalg.lu_solve(lu, pivots, rhs)
    solution = solution + torch.linalg.lu_solve(lu, pivots, rhs - matrix @ solution)  # one refinement
    solution = solution.squeeze(2)
    z, lam, nu = solution[:, :n], solution[:, n : n + m] * active, solution[:, n + m :]
    s = (h - torch.einsum("bij,bj->bi", G, z)).clamp(min=0) * (1 - active)
    return z, s, lam.clamp(min=0), nu


def _raise_unless_converged(worst, tolerance, iterations):
    if (worst > tolerance).any():
        problem = int(worst.argmax())
        raise RuntimeError(
            f"solve_qp did not converge (stopped after {iterations} iterations): the largest scaled residual "
            f"reached {float(worst[problem]):.3g} (problem {problem} of the batch of {worst.shape[0]}), "
            f"tolerance={tolerance:g}. The problem may be infeasible, Q may not be positive definite, "
            f"or it needs a larger max_iterations or tolerance."
        )


def _shift_positive(x: torch.Tensor) -> torch.Tensor:
    """CVXOPT's start: ``x`` if strictly positive, else ``x`` shifted to have minimum one."""
    lowest = x.min(dim=1, keepdim=True).values
    return torch.where(lowest > 0, x, x - lowest + 1)


def _newton_step(Q, G, A, z, s, lam, nu, r_dual, r_ineq, r_eq, problems):
    """One predictor-corrector step of the problems given (all with ``s, lam > 0``)."""
    n, m = z.shape[1], s.shape[1]
    scaling = lam / s
    lu, pivots = _kkt_factor(Q, G, A, scaling, problems)

    def solve(rd, rp, re, rc):
        # Newton system  Q dz + G^T dlam + A^T dnu = -rd,  G dz + ds = -rp,  A dz = -re,
        # lam ds + s dlam = -rc, with ds and dlam eliminated: dlam = scaling (G dz + rp) - rc / s.
        rhs_z = -rd - torch.einsum("bji,bj->bi", G, scaling * rp - rc / s)
        rhs = torch.cat([rhs_z, -re], dim=1).unsqueeze(2)
        solution = torch.linalg.lu_solve(lu, pivots, rhs).squeeze(2)
        dz, dnu = solution[:, :n], solution[:, n:]
        dlam = scaling * (torch.einsum("bij,bj->bi", G, dz) + rp) - rc / s
        ds = -(rc + s * dlam) / lam
        return dz, ds, dlam, dnu

    def direction(r_comp):
        dz, ds, dlam, dnu = solve(r_dual, r_ineq, r_eq, r_comp)
        # Near the solution `scaling` spans many orders of magnitude and the reduced matrix is
        # ill-conditioned; refining against the unreduced equations keeps the step accurate
        # enough for the residuals to reach ~1e-12 instead of stalling (or growing) near 1e-9.
        for _ in range(_REFINEMENTS):
            errors = (
                torch.einsum("bij,bj->bi", Q, dz)
                + torch.einsum("bji,bj->bi", G, dlam)
                + torch.einsum("bji,bj->bi", A, dnu)
                + r_dual,
                torch.einsum("bij,bj->bi", G, dz) + ds + r_ineq,
                torch.einsum("bij,bj->bi", A, dz) + r_eq,
                lam * ds + s * dlam + r_comp,
            )
            correction = solve(*errors)
            dz, ds, dlam, dnu = (x + c for x, c in zip((dz, ds, dlam, dnu), correction))
        return dz, ds, dlam, dnu

    mu = (s * lam).sum(dim=1, keepdim=True) / m
    # Predictor: the pure Newton (affine scaling) direction, to measure how far mu could fall.
    dz, ds, dlam, dnu = direction(s * lam)
    alpha = torch.minimum(_max_step(s, ds), _max_step(lam, dlam)).clamp(max=1.0).unsqueeze(1)
    mu_affine = ((s + alpha * ds) * (lam + alpha * dlam)).sum(dim=1, keepdim=True) / m
    sigma = (mu_affine / mu).clamp(min=0, max=1) ** 3
    # Corrector: centre towards sigma * mu and cancel the predictor's second-order term.
    dz, ds, dlam, dnu = direction(s * lam + ds * dlam - sigma * mu)
    alpha = (_STEP_FRACTION * torch.minimum(_max_step(s, ds), _max_step(lam, dlam))).clamp(max=1.0)
    alpha = alpha.unsqueeze(1)
    return z + alpha * dz, s + alpha * ds, lam + alpha * dlam, nu + alpha * dnu
