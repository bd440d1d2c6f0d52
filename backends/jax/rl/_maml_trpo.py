"""MAML-TRPO (Finn et al. 2017) on jax: DiCE (or the original code's plain) policy-gradient inner step, TRPO
outer step, all pure.

The formulas are those of ``l2l_multi.backends.torch.rl`` (tests/test_rl_crosscheck.py compares the two in
float64 on the same episodes); tasks are a leading axis of every array and are vmapped.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ...._adaptation_steps import adaptation_steps as _adaptation_steps
from ...._adaptation_steps import task_batch_from_steps, task_batch_steps
from ...._inner_losses import check_inner_loss
from ._episodes import Episodes
from ._losses import INNER_LOSS_FUNCTIONS
from ._policy import discounted_returns, generalized_advantages


@functools.partial(jax.jit, static_argnames="normalize")
def episode_advantages(baseline, episodes: Episodes, gamma: float, tau: float, normalize: bool = True):
    """Fits ``baseline`` (a :class:`LinearValue`) on the discounted returns of ``episodes`` and returns GAE
    advantages ``[T, N]`` (normalised to zero mean, unit variance over valid steps when ``normalize``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from l2l_multi.backends.jax.rl import Episodes, LinearValue
        >>> k = jax.random.split(jax.random.key(0), 3)
        >>> e = Episodes(jax.random.normal(k[0], (4, 2, 2)), jax.random.normal(k[1], (4, 2, 2)),
        ...              jax.random.normal(k[2], (4, 2)), jnp.ones((4, 2)))
        >>> episode_advantages(LinearValue(2), e, 0.99, 1.0).shape
        (4, 2)
    """
    returns = discounted_returns(episodes.rewards, episodes.masks, gamma)
    values = baseline.fit(episodes.observations, returns, episodes.masks)(episodes.observations)
    advantages = generalized_advantages(episodes.rewards, values, episodes.masks, gamma, tau)
    if normalize:
        count = episodes.masks.sum()
        mean = advantages.sum() / count
        std = jnp.sqrt((((advantages - mean) * episodes.masks) ** 2).sum() / count)
        advantages = (advantages - mean) / (std + 1e-8) * episodes.masks
    return jax.lax.stop_gradient(advantages)


def conjugate_gradient(matrix_vector, vector: jax.Array, iterations: int = 10, tol: float = 1e-10):
    """Solves ``A x = b`` for a symmetric positive-definite ``A`` given only ``matrix_vector(v) = A v``.

    Args:
        matrix_vector: function from a 1-d array ``[n]`` to ``[n]`` (traceable).
        vector: ``b``, 1-d array ``[n]``.
        iterations: at most this many iterations (a ``lax.while_loop``: compiled once).
        tol: stop once the squared residual norm falls below it.

    Returns:
        ``x``, ``[n]`` array of ``vector``'s dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> [round(v, 4) for v in conjugate_gradient(lambda v: A @ v, jnp.array([1.0, 2.0])).tolist()]
        [0.0909, 0.6364]
    """

    def keep_going(carry):
        index, _, _, _, residual_norm = carry
        return (index < iterations) & (residual_norm >= tol)

    def iterate(carry):
        index, solution, residual, direction, residual_norm = carry
        product = matrix_vector(direction)
        step = residual_norm / (direction @ product)
        solution = solution + step * direction
        residual = residual - step * product
        new_norm = residual @ residual
        direction = residual + (new_norm / residual_norm) * direction
        return index + 1, solution, residual, direction, new_norm

    start = (0, jnp.zeros_like(vector), vector, vector, vector @ vector)
    return jax.lax.while_loop(keep_going, iterate, start)[1]


def _natural_direction(fisher_vector, vector, iterations, tol=1e-10):
    """:func:`conjugate_gradient`'s solution ``x`` of ``F x = vector`` and its curvature ``x @ F x``, with
    ``fisher_vector`` traced at one call site: the loop's last trip multiplies ``x`` instead of a search
    direction (a second call site would double the compiled Hessian-vector graph, most of the compile
    time)."""

    def keep_going(carry):
        return ~carry[-1]

    def iterate(carry):
        index, solution, residual, direction, residual_norm, solved, _, _ = carry
        product = fisher_vector(jnp.where(solved, solution, direction))
        step = residual_norm / (direction @ product)
        new_residual = residual - step * product
        new_norm = new_residual @ new_residual
        update = lambda new, old: jnp.where(solved, old, new)  # noqa: E731
        solution = update(solution + step * direction, solution)
        direction = update(new_residual + (new_norm / residual_norm) * direction, direction)
        residual, residual_norm = update(new_residual, residual), update(new_norm, residual_norm)
        index = index + 1
        now_solved = solved | (index >= iterations) | (residual_norm < tol)
        return index, solution, residual, direction, residual_norm, now_solved, solution @ product, solved

    norm = vector @ vector
    solved = (iterations < 1) | (norm < tol)
    zero = jnp.zeros((), vector.dtype)
    start = (0, jnp.zeros_like(vector), vector, vector, norm, solved, zero, jnp.asarray(False))
    _, solution, _, _, _, _, curvature, _ = jax.lax.while_loop(keep_going, iterate, start)
    return solution, curvature


class TaskBatch(NamedTuple):
    """Tasks' data for the outer loop: the episodes the adaptation steps were taken on (``train``) and the
    episodes of the adapted policies (``valid``), with their fixed advantages (``[T, N]`` each); on jax every
    array carries a leading task axis ``[B, ...]``.

    With one adaptation step, ``train`` is an :class:`Episodes` and ``train_advantages`` an array. With ``S``
    steps (learn2learn's ``adapt_steps``) both are tuples of length ``S`` in the order of the steps: step
    ``k``'s episodes were collected by the policy after ``k`` steps (see :func:`collect_task_batch`).

    Example:
        >>> import jax.numpy as jnp
        >>> e = Episodes(jnp.zeros((3, 2, 2)), jnp.zeros((3, 2, 2)), jnp.zeros((3, 2)), jnp.ones((3, 2)))
        >>> a = jnp.zeros((3, 2))
        >>> TaskBatch(e, a, e, a).adapt_steps, TaskBatch((e, e), (a, a), e, a).adapt_steps
        (1, 2)
    """

    train: Episodes | tuple[Episodes, ...]
    train_advantages: jax.Array | tuple[jax.Array, ...]
    valid: Episodes
    valid_advantages: jax.Array

    # the container logic is backend-neutral (l2l_multi._adaptation_steps)
    adapt_steps = property(task_batch_steps, doc="The number of adaptation steps ``S`` (int >= 1).")
    from_steps = classmethod(task_batch_from_steps)


def _check_adapt_steps(adapt_steps) -> None:
    """Refuses an ``adapt_steps`` that is not an int >= 1, naming the argument."""
    if isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int) or adapt_steps < 1:
        raise ValueError(f"adapt_steps must be an int >= 1, got {adapt_steps!r}")


def adapted_policy(
    policy, episodes, advantages, lr: float, first_order: bool = False, inner_loss: str = "dice"
):
    """``policy`` after one gradient step of size ``lr`` on :func:`dice_policy_loss` (``inner_loss="dice"``)
    or :func:`plain_policy_loss` (``"plain"``) per episode batch of one task: ``episodes`` is one
    :class:`Episodes` ``[T, N, ...]`` with ``advantages [T, N]``, or a list/tuple of them (one step on each,
    in order, each under the policy the steps before produced); ``first_order`` stops gradients through
    the inner gradients.

    (The torch twin, ``adapt_policy(maml, ...)``, adapts a ``MAML`` clone; here the step size is an argument.)

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy, Episodes
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
        >>> k = jax.random.split(jax.random.key(1), 4)
        >>> e = Episodes(jax.random.normal(k[0], (3, 2, 2)), jax.random.normal(k[1], (3, 2, 2)),
        ...              jnp.zeros((3, 2)), jnp.ones((3, 2)))
        >>> new = adapted_policy(policy, e, jax.random.normal(k[2], (3, 2)), lr=0.1)
        >>> bool((new.log_std != policy.log_std).any())
        True
    """
    return _adapted_policy(policy, episodes, advantages, lr, first_order, check_inner_loss(inner_loss))


@functools.partial(jax.jit, static_argnames=("first_order", "inner_loss"))
def _adapted_policy(policy, episodes, advantages, lr, first_order, inner_loss):
    policy_loss = INNER_LOSS_FUNCTIONS[inner_loss]
    for step_episodes, step_advantages in _adaptation_steps(episodes, advantages):

        def loss(params, step_episodes=step_episodes, step_advantages=step_advantages):
            log_probs = params(step_episodes.observations).log_prob(step_episodes.actions)
            return policy_loss(log_probs, step_advantages, step_episodes.masks)

        grads = jax.grad(loss)(policy)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        policy = jax.tree_util.tree_map(lambda p, g: p - lr * g, policy, grads)
    return policy


def _task_surrogate(policy, batch: TaskBatch, old, lr: float, first_order: bool, inner_loss: str):
    """One task's importance-weighted surrogate and mean KL(old || new) on its valid episodes."""
    learner = _adapted_policy(policy, batch.train, batch.train_advantages, lr, first_order, inner_loss)
    dist = learner(batch.valid.observations)
    old = jax.lax.stop_gradient(dist) if old is None else old
    masks = batch.valid.masks
    ratio = jnp.exp(dist.log_prob(batch.valid.actions) - old.log_prob(batch.valid.actions))
    loss = -(ratio * batch.valid_advantages * masks).sum() / masks.sum()
    kl = (old.kl_divergence(dist) * masks).sum() / masks.sum()
    return loss, kl, old


def surrogate_and_kl(
    policy, batches: TaskBatch, lr: float, old=None, first_order: bool = False, inner_loss: str = "dice"
):
    """Mean over the tasks of ``batches`` (leading axis ``B``) of the surrogate loss and of KL(old || new).

    Args:
        policy: the meta-policy (:class:`DiagNormalPolicy`).
        batches: :class:`TaskBatch` with a leading task axis.
        lr: adaptation step size.
        old: the old adapted distributions per task (``DiagNormal`` ``[B, T, N, act]``), or ``None`` for those
            of ``policy`` itself (gradients stopped: the ratio is then 1 and the KL 0, not their
            derivatives).
        first_order: stop gradients through the inner gradient.
        inner_loss: ``"dice"`` or ``"plain"`` (see :func:`adapted_policy`).

    Returns:
        ``(loss, kl, old)``: two 0-d arrays and the old distributions used.
    """
    check_inner_loss(inner_loss)

    def task(batch, old_task):
        return _task_surrogate(policy, batch, old_task, lr, first_order, inner_loss)

    losses, kls, old = jax.vmap(task)(batches, old)
    return losses.mean(), kls.mean(), old


def trpo_meta_update(
    policy,
    batches: TaskBatch,
    lr: float,
    max_kl: float = 0.01,
    cg_iterations: int = 10,
    cg_damping: float = 1e-5,
    backtrack_factor: float = 0.5,
    line_search_steps: int = 15,
    inner_loss: str = "dice",
):
    """One MAML-TRPO meta-update (pure; jit it or call it inside a jitted step).

    The objective is the surrogate on every task's post-adaptation episodes, differentiated through the
    inner adaptation (DiCE, or the original code's plain loss with ``inner_loss="plain"``) (through every
    step, re-taken on the stored ``train`` episodes, when ``batches`` holds several:
    ``TaskBatch.adapt_steps``, a static property of its structure); the direction is the natural gradient
    (conjugate gradient on the Hessian-vector product of the mean KL, second order through the adaptation,
    plus ``cg_damping``), scaled to the trust region ``max_kl`` and shrunk by ``backtrack_factor`` until the
    surrogate improves with the KL within ``max_kl``.

    Args:
        policy: meta-policy (:class:`DiagNormalPolicy`) that collected ``batches``.
        batches: :class:`TaskBatch` with a leading task axis ``B`` (one or several adaptation steps).
        lr: the adaptation step size the episodes were collected with.
        max_kl: trust-region radius (> 0); cg_iterations, cg_damping: conjugate-gradient settings;
        backtrack_factor: shrink factor in (0, 1); line_search_steps: shrinks tried (static int >= 1).
        inner_loss: ``"dice"`` (unbiased meta-gradient) or ``"plain"`` (without the score-function term,
            as the original MAML code and learn2learn's example; static).

    Compiled once per shape and dtype (``cg_iterations`` and ``line_search_steps`` are static, the other
    settings traced; the settings are checked in Python, so pass numbers, not traced values).

    Returns:
        ``(policy, stats)``: the updated policy (unchanged when no step is accepted) and a dict of 0-d arrays
        ``loss_before``, ``loss_after``, ``kl``, ``accepted`` (bool) and ``gradient [n]``, ``step [n]``
        (the meta-gradient and the full natural step, flattened by ``jax.flatten_util.ravel_pytree``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
        >>> k = jax.random.split(jax.random.key(1), 4)
        >>> e = Episodes(jax.random.normal(k[0], (2, 4, 2, 2)), jax.random.normal(k[1], (2, 4, 2, 2)),
        ...              jnp.zeros((2, 4, 2)), jnp.ones((2, 4, 2)))  # 2 tasks, 4 steps, 2 episodes
        >>> a = jax.random.normal(k[2], (2, 4, 2))
        >>> new, stats = trpo_meta_update(policy, TaskBatch(e, a, e, a), lr=0.1)
        >>> bool(stats["accepted"]), bool(stats["loss_after"] < stats["loss_before"])
        (True, True)
    """
    _check_trpo_settings(max_kl, backtrack_factor, cg_iterations, line_search_steps)
    check_inner_loss(inner_loss)
    return _compiled_update(
        policy,
        batches,
        lr,
        max_kl,
        cg_damping,
        backtrack_factor,
        cg_iterations,
        line_search_steps,
        inner_loss,
    )


def _check_trpo_settings(max_kl, backtrack_factor, cg_iterations, line_search_steps):
    if not max_kl > 0:
        raise ValueError(f"max_kl={max_kl!r} must be > 0")
    if not 0 < backtrack_factor < 1:
        raise ValueError(f"backtrack_factor={backtrack_factor!r} must be in (0, 1)")
    for name, value in (("cg_iterations", cg_iterations), ("line_search_steps", line_search_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")


# One compiled program per shape, shared by every caller (make_maml_trpo_step's iterations, the tests): the
# Hessian-vector products through the adaptation make it the slowest piece to compile.
@functools.partial(jax.jit, static_argnames=("cg_iterations", "line_search_steps", "inner_loss"))
def _compiled_update(
    policy, batches, lr, max_kl, cg_damping, backtrack_factor, cg_iterations, line_search_steps, inner_loss
):
    start, unravel = ravel_pytree(policy)

    def loss_and_old(flat):
        loss, _, old = surrogate_and_kl(unravel(flat), batches, lr, inner_loss=inner_loss)
        return loss, jax.lax.stop_gradient(old)

    (loss_before, old), gradient = jax.value_and_grad(loss_and_old, has_aux=True)(start)
    kl_gradient = jax.grad(
        lambda flat: surrogate_and_kl(unravel(flat), batches, lr, old, False, inner_loss)[1]
    )
    # Forward-over-reverse Hessian-vector products of the mean KL (torch differentiates kl_grad @ v through
    # a graph kept once). Linearised once: each product then runs only the tangent computation instead of
    # recomputing the adaptation and the KL gradient every conjugate-gradient iteration.
    _, kl_hessian_vector = jax.linearize(kl_gradient, start)

    def fisher_vector(vector):
        return kl_hessian_vector(vector) + cg_damping * vector

    direction, curvature = _natural_direction(fisher_vector, -gradient, cg_iterations)
    step = direction * jnp.sqrt(2 * max_kl / jnp.maximum(curvature, 1e-12))
    expected = gradient @ step

    def evaluate(shrink):
        candidate = start + backtrack_factor**shrink * step
        # values only: the inner step needs no second-order graph here
        loss, kl, _ = surrogate_and_kl(unravel(candidate), batches, lr, old, True, inner_loss)
        return candidate, loss, kl, (loss < loss_before) & (kl <= max_kl) & (expected < 0)

    def not_done(carry):
        shrink, accepted = carry[:2]
        return ~accepted & (shrink < line_search_steps)

    def try_next(carry):
        shrink = carry[0]
        candidate, loss, kl, accepted = evaluate(shrink)
        return shrink + 1, accepted, candidate, loss, kl

    zero = jnp.zeros((), loss_before.dtype)
    initial = (0, jnp.asarray(False), start, loss_before, zero)
    _, accepted, candidate, loss_after, kl = jax.lax.while_loop(not_done, try_next, initial)
    stats = {
        "loss_before": loss_before,
        "loss_after": jnp.where(accepted, loss_after, loss_before),
        "kl": jnp.where(accepted, kl, zero),
        "accepted": accepted,
        "gradient": gradient,
        "step": step,
    }
    return unravel(jnp.where(accepted, candidate, start)), stats
