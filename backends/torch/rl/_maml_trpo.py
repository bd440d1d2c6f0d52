"""MAML-TRPO (Finn et al. 2017): policy-gradient inner loop (DiCE, or the original code's plain loss),
TRPO outer loop."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ...._adaptation_steps import adaptation_steps as _adaptation_steps
from ...._adaptation_steps import task_batch_from_steps, task_batch_steps
from ...._inner_losses import check_inner_loss
from ._episodes import Episodes, collect_episodes, set_task
from ._losses import INNER_LOSS_FUNCTIONS
from ._policy import discounted_returns, generalized_advantages


def episode_advantages(baseline, episodes: Episodes, gamma: float, tau: float, normalize: bool = True):
    """Fits ``baseline`` (e.g. :class:`LinearValue`) on the discounted returns of ``episodes`` and returns GAE
    advantages ``[T, N]`` (normalised to zero mean, unit variance over valid steps when ``normalize``).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.rl import Episodes, LinearValue
        >>> e = Episodes(torch.randn(4, 2, 2), torch.randn(4, 2, 2), torch.randn(4, 2), torch.ones(4, 2))
        >>> episode_advantages(LinearValue(2), e, 0.99, 1.0).shape
        torch.Size([4, 2])
    """
    returns = discounted_returns(episodes.rewards, episodes.masks, gamma)
    baseline.fit(episodes.observations, returns, episodes.masks)
    values = baseline(episodes.observations).detach()
    advantages = generalized_advantages(episodes.rewards, values, episodes.masks, gamma, tau)
    if normalize:
        count = episodes.masks.sum()
        mean = advantages.sum() / count
        std = (((advantages - mean) * episodes.masks) ** 2).sum().div(count).sqrt()
        advantages = (advantages - mean) / (std + 1e-8) * episodes.masks
    return advantages


def conjugate_gradient(matrix_vector, vector: torch.Tensor, iterations: int = 10, tol: float = 1e-10):
    """Solves ``A x = b`` for a symmetric positive-definite ``A`` given only ``matrix_vector(v) = A v``.

    Args:
        matrix_vector: callable from a 1-d tensor ``[n]`` to ``[n]``.
        vector: ``b``, 1-d tensor ``[n]``.
        iterations: at most this many CG iterations (exact after ``n`` in exact arithmetic).
        tol: stop once the squared residual norm falls below it.

    Returns:
        ``x``, ``[n]`` tensor of ``vector``'s dtype.

    Example:
        >>> import torch
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0])).tolist()  # doctest: +ELLIPSIS
        [0.0909..., 0.6363...]
    """
    solution = torch.zeros_like(vector)
    residual = vector.clone()
    direction = vector.clone()
    residual_norm = residual @ residual
    for _ in range(iterations):
        if residual_norm < tol:
            break
        product = matrix_vector(direction)
        step = residual_norm / (direction @ product)
        solution = solution + step * direction
        residual = residual - step * product
        new_norm = residual @ residual
        direction = residual + (new_norm / residual_norm) * direction
        residual_norm = new_norm
    return solution


class TaskBatch(NamedTuple):
    """One task's data for the outer loop: the episodes the adaptation steps were taken on (``train``) and
    the episodes of the adapted policy (``valid``), with their fixed advantages (``[T, N]`` each).

    With one adaptation step, ``train`` is an :class:`Episodes` and ``train_advantages`` a tensor. With
    ``S`` steps (learn2learn's ``adapt_steps``) both are tuples of length ``S`` in the order of the steps:
    step ``k``'s episodes were collected by the policy after ``k`` steps (see :func:`sample_meta_batch`).

    Example:
        >>> import torch
        >>> e = Episodes(torch.randn(3, 2, 2), torch.randn(3, 2, 2), torch.randn(3, 2), torch.ones(3, 2))
        >>> a = torch.randn(3, 2)
        >>> TaskBatch(e, a, e, a).adapt_steps, TaskBatch((e, e), (a, a), e, a).adapt_steps
        (1, 2)
    """

    train: Episodes | tuple[Episodes, ...]
    train_advantages: torch.Tensor | tuple[torch.Tensor, ...]
    valid: Episodes
    valid_advantages: torch.Tensor

    # the container logic is backend-neutral (l2l_multi._adaptation_steps)
    adapt_steps = property(task_batch_steps, doc="The number of adaptation steps ``S`` (int >= 1).")
    from_steps = classmethod(task_batch_from_steps)


def adapt_policy(maml, episodes, advantages, first_order=None, inner_loss: str = "dice"):
    """A ``maml.clone()`` adapted by one policy-gradient step per episode batch, on
    :func:`dice_policy_loss` (``inner_loss="dice"``) or :func:`plain_policy_loss` (``"plain"``).

    Args:
        maml: a ``MAML`` (or ``MetaSGD``) wrapping a Gaussian policy, or a clone of one.
        episodes: one :class:`Episodes` ``[T, N, ...]``, or a list/tuple of them: one step on each, in
            order (each step's loss under the policy the previous steps produced).
        advantages: ``[T, N]`` tensor, or a list/tuple of them matching ``episodes``.
        first_order: passed to ``clone`` and ``adapt``.
        inner_loss: ``"dice"`` or ``"plain"`` (they differ in the meta-gradient only).

    Returns:
        The adapted clone.

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.algorithms import MAML
        >>> from l2l_multi.backends.torch.rl import DiagNormalPolicy, Episodes
        >>> maml = MAML(DiagNormalPolicy(2, 2, hiddens=(4,)), lr=0.1)
        >>> e = Episodes(torch.randn(3, 2, 2), torch.randn(3, 2, 2), torch.randn(3, 2), torch.ones(3, 2))
        >>> learner = adapt_policy(maml, e, torch.randn(3, 2))
        >>> bool((learner.module.log_std != maml.module.log_std).any())
        True
    """
    policy_loss = INNER_LOSS_FUNCTIONS[check_inner_loss(inner_loss)]
    learner = maml.clone(first_order=first_order)
    for step_episodes, step_advantages in _adaptation_steps(episodes, advantages):
        log_probs = learner(step_episodes.observations).log_prob(step_episodes.actions)
        loss = policy_loss(log_probs, step_advantages, step_episodes.masks)
        learner.adapt(loss, first_order=first_order)
    return learner


def _check_adapt_steps(adapt_steps) -> None:
    """Refuses an ``adapt_steps`` that is not an int >= 1, naming the argument."""
    if isinstance(adapt_steps, bool) or not isinstance(adapt_steps, int) or adapt_steps < 1:
        raise ValueError(f"adapt_steps must be an int >= 1, got {adapt_steps!r}")


def sample_meta_batch(
    maml, env, tasks, baseline, max_steps: int, gamma=0.99, tau=1.0, generator=None, seed=None, adapt_steps=1
):
    """Collects, for each task, ``adapt_steps`` rounds of episodes, each with the policy adapted on the
    rounds before it (the first with the meta-policy itself), then the episodes of the fully adapted policy.

    Args:
        maml: a ``MAML`` wrapping a policy such as :class:`DiagNormalPolicy`.
        env: gymnasium vector env (``N`` workers = episodes per task) whose workers accept :func:`set_task`.
        tasks: list of tasks (e.g. ``env.unwrapped``-level ``sample_tasks`` output).
        baseline: a :class:`LinearValue` (refitted per episode batch).
        max_steps: episode length cap.
        gamma, tau: discount and GAE lambda.
        generator: torch generator for action noise; seed: passed to each ``env.reset``.
        adapt_steps: adaptation steps per task (int >= 1, learn2learn's ``adapt_steps``).

    Returns:
        ``(list of TaskBatch, pre-adaptation mean return, post-adaptation mean return)``; the pre-adaptation
        return is that of the meta-policy's (first) episodes.
    """
    _check_adapt_steps(adapt_steps)
    batches, pre, post = [], [], []
    for task in tasks:
        set_task(env, task)
        learner, train, train_advantages = maml, [], []
        for _ in range(adapt_steps):
            episodes = collect_episodes(env, learner, max_steps, seed=seed, generator=generator)
            advantages = episode_advantages(baseline, episodes, gamma, tau)
            # the data only: the meta-gradient re-adapts through these steps in maml_trpo_step
            learner = adapt_policy(learner, episodes, advantages, first_order=True)
            train.append(episodes)
            train_advantages.append(advantages)
        valid = collect_episodes(env, learner, max_steps, seed=seed, generator=generator)
        valid_advantages = episode_advantages(baseline, valid, gamma, tau)
        batches.append(TaskBatch.from_steps(train, train_advantages, valid, valid_advantages))
        pre.append(train[0].mean_return())
        post.append(valid.mean_return())
    return batches, sum(pre) / len(pre), sum(post) / len(post)


def _surrogate_and_kl(maml, batches, old_distributions=None, first_order=None, inner_loss="dice"):
    """Mean over tasks of the importance-weighted surrogate loss and of KL(old || new) on valid episodes."""
    losses, kls, distributions = [], [], []
    for index, batch in enumerate(batches):
        learner = adapt_policy(maml, batch.train, batch.train_advantages, first_order, inner_loss)
        dist = learner(batch.valid.observations)
        old = old_distributions[index] if old_distributions is not None else _detached(dist)
        distributions.append(old)
        masks = batch.valid.masks
        ratio = torch.exp(dist.log_prob(batch.valid.actions) - old.log_prob(batch.valid.actions))
        losses.append(-(ratio * batch.valid_advantages * masks).sum() / masks.sum())
        kls.append((torch.distributions.kl_divergence(old, dist) * masks).sum() / masks.sum())
    return torch.stack(losses).mean(), torch.stack(kls).mean(), distributions


def _detached(dist):
    base = dist.base_dist
    return torch.distributions.Independent(
        torch.distributions.Normal(base.loc.detach(), base.scale.detach()), 1
    )


def maml_trpo_step(
    maml,
    batches,
    max_kl: float = 0.01,
    cg_iterations: int = 10,
    cg_damping: float = 1e-5,
    backtrack_factor: float = 0.5,
    line_search_steps: int = 15,
    inner_loss: str = "dice",
) -> dict:
    """One MAML-TRPO meta-update of ``maml.module``'s parameters, in place.

    The objective is the surrogate on the post-adaptation episodes of every task, differentiated through
    the inner adaptation (DiCE, or with ``inner_loss="plain"`` the original code's loss) (through every
    step, re-taken on each batch's stored ``train`` episodes, when the batches hold several:
    ``TaskBatch.adapt_steps``, learn2learn's ``adapt_steps``); the step is the natural gradient
    (conjugate gradient on the Hessian-vector product of the mean KL, second order through the
    adaptation), scaled to the trust region ``max_kl`` and shrunk by a backtracking line search until
    the surrogate improves and the KL stays below ``max_kl``.

    Args:
        maml: ``MAML`` wrapping a Gaussian policy (``first_order=False`` for the full meta-gradient).
        batches: list of :class:`TaskBatch` from :func:`sample_meta_batch`, collected with the current
            parameters (one or several adaptation steps each).
        max_kl: trust-region radius (float > 0).
        cg_iterations, cg_damping: conjugate-gradient settings (damping is added to the KL Hessian).
        backtrack_factor: step shrink factor in (0, 1); line_search_steps: how many shrinks to try.
        inner_loss: ``"dice"`` (unbiased meta-gradient) or ``"plain"`` (without the score-function
            term, as the original MAML code and learn2learn's example).

    Returns:
        dict with ``loss_before``, ``loss_after``, ``kl`` (floats) and ``accepted`` (bool; the parameters are
        unchanged when no step was accepted).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.algorithms import MAML
        >>> from l2l_multi.backends.torch.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> _ = torch.manual_seed(0)
        >>> maml = MAML(DiagNormalPolicy(2, 2, hiddens=(4,)), lr=0.1)
        >>> e = Episodes(torch.randn(3, 2, 2), torch.randn(3, 2, 2), torch.randn(3, 2), torch.ones(3, 2))
        >>> stats = maml_trpo_step(maml, [TaskBatch(e, torch.randn(3, 2), e, torch.randn(3, 2))])
        >>> stats["accepted"], stats["loss_after"] < stats["loss_before"]
        (True, True)
    """
    if not max_kl > 0:
        raise ValueError(f"max_kl={max_kl!r} must be > 0")
    if not 0 < backtrack_factor < 1:
        raise ValueError(f"backtrack_factor={backtrack_factor!r} must be in (0, 1)")
    if not batches:
        raise ValueError("batches must hold at least one TaskBatch")
    check_inner_loss(inner_loss)
    params = [p for p in maml.module.parameters() if p.requires_grad]
    loss, kl, old_distributions = _surrogate_and_kl(maml, batches, inner_loss=inner_loss)
    gradient = torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss, params, retain_graph=True))
    kl_gradient = torch.autograd.grad(kl, params, create_graph=True)
    kl_gradient = torch.nn.utils.parameters_to_vector(kl_gradient)

    def fisher_vector(vector):
        product = torch.autograd.grad(kl_gradient @ vector, params, retain_graph=True)
        return torch.nn.utils.parameters_to_vector(product).detach() + cg_damping * vector

    direction = conjugate_gradient(fisher_vector, -gradient.detach(), cg_iterations)
    curvature = direction @ fisher_vector(direction)
    step = direction * torch.sqrt(2 * max_kl / curvature.clamp_min(1e-12))
    expected = float(gradient @ step)
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    loss_before = loss.item()
    result = {"loss_before": loss_before, "loss_after": loss_before, "kl": 0.0, "accepted": False}
    for shrink in range(line_search_steps):
        fraction = backtrack_factor**shrink
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(start + fraction * step, params)
        # The inner step needs autograd even here; first order suffices since nothing is backpropagated.
        new_loss, new_kl, _ = _surrogate_and_kl(maml, batches, old_distributions, True, inner_loss)
        if new_loss.item() < loss_before and new_kl.item() <= max_kl and expected < 0:
            return {
                "loss_before": loss_before,
                "loss_after": new_loss.item(),
                "kl": new_kl.item(),
                "accepted": True,
            }
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(start, params)
    return result
