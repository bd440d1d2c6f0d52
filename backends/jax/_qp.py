"""A dense convex quadratic program solver for jax, differentiable by implicit differentiation.

``solve_qp`` solves, for one problem or a batch,

    minimise    1/2 z^T Q z + p^T z
    subject to  G z <= h,   A z = b

with the primal-dual interior point method of the torch backend's ``solve_qp`` (Mehrotra's
predictor-corrector from CVXOPT's start, one round of iterative refinement per direction, the
best iterate kept, then the exact solution of the active set the iterate shows: the same steps),
written for one problem and vmapped over a batch. The iterations run in a
``lax.while_loop``, so the solver jit-compiles once; under ``vmap`` a problem that has converged
takes no further step while the others continue. Gradients come from the KKT conditions at the
solution (Amos & Kolter, "OptNet", ICML 2017) through ``jax.custom_vjp``: the backward pass is
one linear solve per problem, never a pass back through the iterations.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve

__all__ = ["solve_qp"]

# The torch solver's constants, so both backends take the same steps.
_STEP_FRACTION = 0.99  # fraction of the way to the boundary a step may go (keeps s, lam > 0)
_DIVERGED = 100.0  # a residual this much above the best so far means round-off took over: stop
# Default tolerances on the largest scaled KKT residual: float64 reaches the torch default; the
# float32 residuals stall a little above its epsilon (about 1.2e-7) times the data's size: between
# 1e-6 and 2e-6 for a MetaOptNet dual of Omniglot training (kernel entries up to about 500), which
# a tolerance of 1e-6 refused as NaN. The polishing step makes z exact to round-off either way.
_TOLERANCE = {8: 1e-10, 4: 1e-5}
_RANKS = {"Q": 2, "p": 1, "G": 2, "h": 1, "A": 2, "b": 1}


def solve_qp(Q, p, G, h, A=None, b=None, max_iterations: int = 50, tolerance: float | None = None):
    """Solve ``min 1/2 z^T Q z + p^T z  s.t.  G z <= h, A z = b`` (one problem or a batch).

    A primal-dual interior point method (Mehrotra predictor-corrector, as the torch backend's
    ``solve_qp``) iterates until a problem's largest scaled residual is at most ``tolerance``:
    the stationarity residual ``||Q z + p + G^T lam + A^T nu||_inf``, the primal residuals
    ``||G z + s - h||_inf`` and ``||A z - b||_inf`` (each over one plus the largest norm of its
    terms) and the mean complementarity ``s^T lam / m``. Then, as in the torch solver, the
    equality-constrained QP of the active set the iterate shows is solved exactly ("polishing")
    and the problem stops when that solution passes the test with a smaller residual (else it
    iterates on), so ``z`` is exact to round-off (an iterate alone is off by about 1e-4 in
    float32). Gradients with respect to all six inputs come from implicit differentiation of
    the KKT conditions at the solution (OptNet); they assume strict complementarity, as OptNet
    does. ``jit``, ``vmap`` and ``grad`` compose with it.

    Every argument may carry a leading batch dimension ``B`` or omit it to be shared by the
    batch (its gradient is then summed over the batch); if none carries it, ``z`` is ``[n]``.

    Args:
        Q: ``[B, n, n]`` symmetric positive definite (only ``(Q + Q^T) / 2`` is used).
        p: ``[B, n]`` linear term.
        G: ``[B, m, n]`` inequality matrix (``m`` may be 0).
        h: ``[B, m]`` inequality bound.
        A: ``[B, k, n]`` equality matrix of full row rank, or None.
        b: ``[B, k]`` equality right-hand side, or None; given exactly when ``A`` is.
        max_iterations: positive int, the most interior point iterations (static under jit).
        tolerance: positive float, the largest scaled residual accepted; None: 1e-10 in float64
            (the torch default), 1e-5 in float32.

    All arrays are floating point; the solver runs in their promoted dtype (float64 needs
    ``jax_enable_x64``).

    Returns:
        ``z``: ``[B, n]`` (or ``[n]``) minimisers. A problem that does not reach ``tolerance``
        (infeasible, ``Q`` not positive definite, too few iterations) raises ``RuntimeError``
        when called eagerly; under ``jit``/``vmap``/``grad``, where no error can be raised, its
        ``z`` is NaN (so a training step's non-finite guard refuses it instead of training on an
        inexact solution).

    Example:
        >>> import jax.numpy as jnp
        >>> Q, p = jnp.eye(2)[None], jnp.array([[-2.0, -2.0]])
        >>> G, h = jnp.array([[[1.0, 1.0]]]), jnp.ones((1, 1))   # z1 + z2 <= 1
        >>> jnp.round(solve_qp(Q, p, G, h), 5).tolist()
        [[0.5, 0.5]]
    """
    if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}")
    if (A is None) != (b is None):
        raise ValueError(
            f"A and b must be given together, got A={'None' if A is None else 'an array'} and "
            f"b={'None' if b is None else 'an array'}"
        )
    arrays = {"Q": Q, "p": p, "G": G, "h": h}
    if A is not None:
        arrays.update(A=A, b=b)
    for name, value in arrays.items():
        if type(value).__module__.split(".")[0] == "torch":
            raise TypeError(
                f"{name} must be a jax or numpy array, got a torch.Tensor: convert it with "
                "jnp.asarray(t.numpy())"
            )
        arrays[name] = value = jnp.asarray(value)
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating point dtype, got {value.dtype}")
    dtype = jnp.result_type(*arrays.values())
    if tolerance is None:
        tolerance = _TOLERANCE.get(jnp.dtype(dtype).itemsize, 1e-5)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ValueError(f"tolerance must be a positive float or None, got {tolerance!r}")
    p = arrays["p"]
    if p.ndim not in (1, 2):
        raise ValueError(f"p must have shape [B, n] or [n], got {tuple(p.shape)}")
    n = p.shape[-1]
    batch_sizes, axes = set(), {}
    for name, value in arrays.items():
        if value.ndim == _RANKS[name] + 1:
            batch_sizes.add(value.shape[0])
            axes[name] = 0
        elif value.ndim == _RANKS[name]:
            axes[name] = None
        else:
            raise ValueError(
                f"{name} must have {_RANKS[name] + 1} dimensions (batched) or {_RANKS[name]} (shared), "
                f"got shape {tuple(value.shape)}"
            )
    if len(batch_sizes) > 1:
        raise ValueError(f"the batched arguments disagree on the batch size: {sorted(batch_sizes)}")
    if "A" not in arrays:
        arrays.update(A=jnp.zeros((0, n), dtype), b=jnp.zeros((0,), dtype))
        axes.update(A=None, b=None)
    m, k = arrays["h"].shape[-1], arrays["b"].shape[-1]
    expected = {"Q": (n, n), "G": (m, n), "h": (m,), "A": (k, n), "b": (k,)}
    for name, shape in expected.items():
        value = arrays[name]
        if tuple(value.shape[value.ndim - len(shape) :]) != shape:
            raise ValueError(
                f"{name} must have shape [B, {', '.join(map(str, shape))}] for n={n} variables, m={m} "
                f"inequalities and k={k} equalities, got {tuple(value.shape)}"
            )
    if k > n:
        raise ValueError(f"A has k={k} rows for n={n} variables: full row rank needs k <= n")
    order = ("Q", "p", "G", "h", "A", "b")
    inputs = [arrays[name].astype(dtype) for name in order]
    in_axes = tuple(axes[name] for name in order) if batch_sizes else None
    z, worst, iterations = _solve_all(*inputs, in_axes, max_iterations, float(tolerance))
    if not any(isinstance(x, jax.core.Tracer) for x in inputs):
        _raise_unless_converged(worst, iterations, float(tolerance))
    return z


def _raise_unless_converged(worst, iterations, tolerance):
    worst = jnp.atleast_1d(worst)
    if bool((worst > tolerance).any()) or not bool(jnp.isfinite(worst).all()):
        problem = int(jnp.argmax(jnp.where(jnp.isnan(worst), jnp.inf, worst)))
        steps = int(jnp.atleast_1d(iterations)[problem])
        raise RuntimeError(
            f"solve_qp did not converge (stopped after {steps} iterations): the largest scaled residual "
            f"reached {float(worst[problem]):.3g} (problem {problem} of the batch of {worst.shape[0]}), "
            f"tolerance={tolerance:g}. The problem may be infeasible, Q may not be "
            "positive definite, or it needs a larger max_iterations or tolerance."
        )


@partial(jax.jit, static_argnums=(6, 7, 8))
def _solve_all(Q, p, G, h, A, b, in_axes, max_iterations, tolerance):
    """``_solve`` vmapped over ``in_axes`` (None: one problem); jitted so eager calls reuse it."""
    solve = partial(_solve, max_iterations=max_iterations, tolerance=tolerance)
    return solve(Q, p, G, h, A, b) if in_axes is None else jax.vmap(solve, in_axes=in_axes)(Q, p, G, h, A, b)


@partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _solve(Q, p, G, h, A, b, max_iterations, tolerance):
    """One problem: ``(z [n], largest scaled residual, iterations)``; ``z`` is NaN if unconverged."""
    z, _, _, _, worst, iterations = _interior_point((Q + Q.T) / 2, p, G, h, A, b, max_iterations, tolerance)
    return z, worst, iterations


def _solve_forward(Q, p, G, h, A, b, max_iterations, tolerance):
    Q = (Q + Q.T) / 2
    z, s, lam, nu, worst, iterations = _interior_point(Q, p, G, h, A, b, max_iterations, tolerance)
    return (z, worst, iterations), (Q, G, A, z, s, lam, nu)


def _solve_backward(max_iterations, tolerance, saved, cotangents):
    Q, G, A, z, s, lam, nu = saved
    grad_z = cotangents[0]
    n, m, k = Q.shape[0], G.shape[0], A.shape[0]
    # The adjoint KKT system of OptNet (eq. 7, with d_lam scaled by lam), the same equations as
    # the torch backward, with each complementarity row divided by s_j + lam_j: near the solution
    # one of the two is tiny, and the scaled rows are [~G_j, ~0] (active) or [~0, ~-1] (inactive),
    # all of size one, which float32 solves as well as float64 does.
    # A degenerate constraint (s = lam = 0 exactly: active with a zero multiplier, as polishing may
    # leave it) would make an empty row and a singular system: it is taken as inactive (dlam_j = 0),
    # one of the one-sided derivatives there (OptNet assumes strict complementarity).
    degenerate = s + lam <= 0
    scale = jnp.where(degenerate, 1, s + lam)
    diagonal = jnp.where(degenerate, -1, -s / scale)
    kkt = jnp.zeros((n + m + k, n + m + k), Q.dtype)
    kkt = kkt.at[:n, :n].set(Q).at[:n, n : n + m].set(G.T).at[:n, n + m :].set(A.T)
    kkt = (
        kkt.at[n : n + m, :n].set((lam / scale)[:, None] * G).at[n : n + m, n : n + m].set(jnp.diag(diagonal))
    )
    kkt = kkt.at[n + m :, :n].set(A)
    rhs = jnp.concatenate([-grad_z, jnp.zeros(m + k, Q.dtype)])
    solution = jnp.linalg.solve(kkt, rhs)
    dz, dlam, dnu = solution[:n], solution[n : n + m], solution[n + m :]
    grad_Q = (jnp.outer(dz, z) + jnp.outer(z, dz)) / 2
    grad_G = jnp.outer(lam, dz) + jnp.outer(dlam, z)
    grad_A = jnp.outer(nu, dz) + jnp.outer(dnu, z)
    return grad_Q, dz, grad_G, -dlam, grad_A, -dnu


_solve.defvjp(_solve_forward, _solve_backward)


def _residuals(Q, p, G, h, A, b, z, s, lam, nu):
    """Stationarity, inequality and equality residuals and the largest scaled residual."""
    Qz, Gt_lam, At_nu, Gz, Az = Q @ z, G.T @ lam, A.T @ nu, G @ z, A @ z
    r_dual, r_ineq, r_eq = Qz + p + Gt_lam + At_nu, Gz + s - h, Az - b

    def norm(x):
        return jnp.abs(x).max() if x.size else jnp.zeros((), x.dtype)

    def size(*terms):
        # Terms of a residual cancel at the solution: scale by the largest of them, not the sum.
        return 1 + jnp.stack([norm(t) for t in terms]).max()

    worst = jnp.stack(
        [
            norm(r_dual) / size(Qz, p, Gt_lam, At_nu),
            norm(r_ineq) / size(Gz, s, h),
            norm(r_eq) / size(Az, b),
            (s * lam).mean() if s.size else jnp.zeros((), s.dtype),
        ]
    ).max()
    return r_dual, r_ineq, r_eq, jnp.where(jnp.isfinite(worst), worst, jnp.inf)


def _kkt_factor(Q, G, A, scaling):
    """LU factors of the reduced Newton matrix ``[[Q + G^T diag(scaling) G, A^T], [A, 0]]``."""
    k = A.shape[0]
    matrix = jnp.block([[Q + G.T @ (scaling[:, None] * G), A.T], [A, jnp.zeros((k, k), Q.dtype)]])
    return lu_factor(matrix)


def _shift_positive(x):
    """CVXOPT's start: ``x`` if strictly positive, else ``x`` shifted to have minimum one."""
    lowest = x.min()
    return jnp.where(lowest > 0, x, x - lowest + 1)


def _max_step(x, dx):
    """The largest ``a`` with ``x + a dx >= 0`` (inf if no entry binds); ``x > 0``."""
    safe = jnp.where(dx < 0, dx, -1.0)
    return jnp.where(dx < 0, -x / safe, jnp.inf).min()


def _interior_point(Q, p, G, h, A, b, max_iterations, tolerance):
    """Mehrotra predictor-corrector on one problem: ``(z, s, lam, nu, worst, iterations)``."""
    n, m = p.shape[0], h.shape[0]
    # CVXOPT's start: the problem with the inequalities replaced by a least-squares penalty,
    # (Q + G^T G) z + A^T nu = G^T h - p, A z = b.
    start = lu_solve(_kkt_factor(Q, G, A, jnp.ones_like(h)), jnp.concatenate([G.T @ h - p, b]))
    z, nu = start[:n], start[n:]
    if m == 0:  # an equality-constrained QP is one linear solve
        empty = jnp.zeros((0,), p.dtype)
        worst = _residuals(Q, p, G, h, A, b, z, empty, empty, nu)[3]
        z = jnp.where(worst <= tolerance, z, jnp.nan)
        return z, empty, empty, nu, worst, jnp.asarray(0)
    gap = G @ z - h
    point = (z, _shift_positive(-gap), _shift_positive(gap), nu)
    # The carry: iteration, the current iterate and its residual, the best iterate and its
    # residual (once round-off dominates the Newton directions a step can make a problem worse),
    # the polished solution, its residual and whether it succeeded. Once an iterate meets the
    # tolerance its active set is solved exactly (see _polish); the problem is finished when that
    # succeeds, and until then the iterations go on, to max_iterations or until the residual
    # grows far above the best (round-off took over). The torch solver takes the same steps.
    infinity = jnp.asarray(jnp.inf, p.dtype)
    carry = (jnp.asarray(0), point, infinity, point, infinity, point, infinity, jnp.asarray(False))

    def consider(carry):
        iteration, point, _, best, best_worst, polished, polished_worst, finished = carry
        worst = _residuals(Q, p, G, h, A, b, *point)[3]
        improved = worst < best_worst
        best = tuple(jnp.where(improved, new, old) for new, old in zip(point, best))
        best_worst = jnp.where(improved, worst, best_worst)
        candidate = _polish(Q, p, G, h, A, b, *point)
        candidate_worst = _residuals(Q, p, G, h, A, b, *candidate)[3]
        good = ~finished & (worst <= tolerance) & (candidate_worst <= tolerance) & (candidate_worst < worst)
        polished = tuple(jnp.where(good, new, old) for new, old in zip(candidate, polished))
        polished_worst = jnp.where(good, candidate_worst, polished_worst)
        return iteration, point, worst, best, best_worst, polished, polished_worst, finished | good

    def running(carry):
        iteration, _, worst, _, best_worst, _, _, finished = carry
        return (iteration < max_iterations) & ~finished & (worst < _DIVERGED * best_worst)

    def step(carry):
        iteration, point = carry[0], carry[1]
        return consider((iteration + 1, _newton_step(Q, p, G, h, A, b, *point), *carry[2:]))

    carry = jax.lax.while_loop(running, step, consider(carry))
    iterations, _, _, best, best_worst, polished, polished_worst, finished = carry
    z, s, lam, nu = (jnp.where(finished, new, old) for new, old in zip(polished, best))
    worst = jnp.where(finished, polished_worst, best_worst)
    z = jnp.where(worst <= tolerance, z, jnp.nan)
    return z, s, lam, nu, worst, iterations


def _polish(Q, p, G, h, A, b, z, s, lam, nu):
    """The exact solution for the active set the interior point iterate shows (``lam > s``).

    An interior point iterate stops at complementarity ``s_j lam_j ~ mu``, which leaves ``z``
    off by about ``mu / lam_j``: 1e-4 in float32, whose ``mu`` stalls near 1e-8. Solving the
    equality-constrained QP with the active inequalities as equalities (OSQP's "polishing")
    gives the solution to round-off, and makes ``s`` and ``lam`` exactly complementary, so the
    backward pass differentiates the exact active set. The caller keeps it only when its KKT
    residual meets the tolerance and is smaller than the iterate's (a wrong guess of the active
    set is never kept).
    """
    n, m, k = Q.shape[0], G.shape[0], A.shape[0]
    active = (lam > s).astype(Q.dtype)
    # Rows of inactive constraints become dlam_j = 0; active ones G_j z = h_j.
    matrix = jnp.block(
        [
            [Q, G.T * active, A.T],
            [active[:, None] * G, jnp.diag(1 - active), jnp.zeros((m, k), Q.dtype)],
            [A, jnp.zeros((k, m + k), Q.dtype)],
        ]
    )
    rhs = jnp.concatenate([-p, active * h, b])
    factors = lu_factor(matrix)
    solution = lu_solve(factors, rhs)
    solution = solution + lu_solve(factors, rhs - matrix @ solution)  # one refinement round
    z, lam, nu = solution[:n], solution[n : n + m] * active, solution[n + m :]
    return z, jnp.maximum(h - G @ z, 0) * (1 - active), jnp.maximum(lam, 0), nu


def _newton_step(Q, p, G, h, A, b, z, s, lam, nu):
    """One predictor-corrector step (``s, lam > 0``): the next ``(z, s, lam, nu)``."""
    n, m = z.shape[0], s.shape[0]
    r_dual, r_ineq, r_eq, _ = _residuals(Q, p, G, h, A, b, z, s, lam, nu)
    scaling = lam / s
    factors = _kkt_factor(Q, G, A, scaling)

    def solve(rd, rp, re, rc):
        # Newton system  Q dz + G^T dlam + A^T dnu = -rd,  G dz + ds = -rp,  A dz = -re,
        # lam ds + s dlam = -rc, with ds and dlam eliminated: dlam = scaling (G dz + rp) - rc / s.
        rhs_z = -rd - G.T @ (scaling * rp - rc / s)
        solution = lu_solve(factors, jnp.concatenate([rhs_z, -re]))
        dz, dnu = solution[:n], solution[n:]
        dlam = scaling * (G @ dz + rp) - rc / s
        ds = -(rc + s * dlam) / lam
        return dz, ds, dlam, dnu

    def direction(r_comp):
        dz, ds, dlam, dnu = solve(r_dual, r_ineq, r_eq, r_comp)
        # One round of iterative refinement against the unreduced equations: near the solution
        # `scaling` spans many orders of magnitude and the reduced matrix is ill-conditioned.
        errors = (
            Q @ dz + G.T @ dlam + A.T @ dnu + r_dual,
            G @ dz + ds + r_ineq,
            A @ dz + r_eq,
            lam * ds + s * dlam + r_comp,
        )
        return tuple(x + c for x, c in zip((dz, ds, dlam, dnu), solve(*errors)))

    mu = (s * lam).sum() / m
    # Predictor: the affine scaling direction, to measure how far mu could fall.
    dz, ds, dlam, dnu = direction(s * lam)
    alpha = jnp.minimum(jnp.minimum(_max_step(s, ds), _max_step(lam, dlam)), 1.0)
    mu_affine = ((s + alpha * ds) * (lam + alpha * dlam)).sum() / m
    sigma = jnp.clip(mu_affine / mu, 0, 1) ** 3
    # Corrector: centre towards sigma * mu and cancel the predictor's second-order term.
    dz, ds, dlam, dnu = direction(s * lam + ds * dlam - sigma * mu)
    alpha = jnp.minimum(_STEP_FRACTION * jnp.minimum(_max_step(s, ds), _max_step(lam, dlam)), 1.0)
    return z + alpha * dz, s + alpha * ds, lam + alpha * dlam, nu + alpha * dnu
