"""MAML-TRPO (Finn et al. 2017): policy-gradient inner loop with DiCE, TRPO outer loop."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._functions import magic_box
from ._episodes import Episodes, collect_episodes, set_task
from ._policy import discounted_returns, generalized_advantages


def dice_policy_loss(log_probs: torch.Tensor, advantages: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Policy-gradient loss through DiCE's magic box:
    ``-sum(magic_box(log_probs) * advantages) / sum(masks)``.

    Its gradient is the REINFORCE estimator's, and, unlike ``-(log_probs * advantages)``, its second
    derivative keeps the score-function term ``grad log pi grad log pi^T``, which MAML needs to
    differentiate through an adaptation step on sampled episodes.

    Args:
        log_probs: ``[T, N]`` log-probabilities of the taken actions (differentiable).
        advantages: ``[T, N]`` advantages (treated as constants).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d tensor.

    Example:
        >>> import torch
        >>> log_probs = torch.zeros(3, 2, requires_grad=True)
        >>> dice_policy_loss(log_probs, torch.ones(3, 2), torch.ones(3, 2)).item()
        -1.0
    """
    weighted = magic_box(log_probs) * advantages.detach() * masks
    return -weighted.sum() / masks.sum().clamp_min(1e-8)


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
    """One task's data for the outer loop: pre-adaptation (``train``) and post-adaptation (``valid``)
    episodes with their fixed advantages (``[T, N]`` each)."""

    train: Episodes
    train_advantages: torch.Tensor
    valid: Episodes
    valid_advantages: torch.Tensor


def adapt_policy(maml, episodes: Episodes, advantages: torch.Tensor, first_order=None):
    """A ``maml.clone()`` adapted by one policy-gradient step on :func:`dice_policy_loss`.

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
    learner = maml.clone(first_order=first_order)
    log_probs = learner(episodes.observations).log_prob(episodes.actions)
    learner.adapt(dice_policy_loss(log_probs, advantages, episodes.masks), first_order=first_order)
    return learner


def sample_meta_batch(
    maml, env, tasks, baseline, max_steps: int, gamma=0.99, tau=1.0, generator=None, seed=None
):
    """Collects, for each task, episodes with the policy, adapts a clone on them, and collects episodes with
    the adapted clone.

    Args:
        maml: a ``MAML`` wrapping a policy such as :class:`DiagNormalPolicy`.
        env: gymnasium vector env (``N`` workers = episodes per task) whose workers accept :func:`set_task`.
        tasks: list of tasks (e.g. ``env.unwrapped``-level ``sample_tasks`` output).
        baseline: a :class:`LinearValue` (refitted per episode batch).
        max_steps: episode length cap.
        gamma, tau: discount and GAE lambda.
        generator: torch generator for action noise; seed: passed to each ``env.reset``.

    Returns:
        ``(list of TaskBatch, pre-adaptation mean return, post-adaptation mean return)``.
    """
    batches, pre, post = [], [], []
    for task in tasks:
        set_task(env, task)
        train = collect_episodes(env, maml, max_steps, seed=seed, generator=generator)
        train_advantages = episode_advantages(baseline, train, gamma, tau)
        learner = adapt_policy(maml, train, train_advantages, first_order=True)
        valid = collect_episodes(env, learner, max_steps, seed=seed, generator=generator)
        valid_advantages = episode_advantages(baseline, valid, gamma, tau)
        batches.append(TaskBatch(train, train_advantages, valid, valid_advantages))
        pre.append(train.mean_return())
        post.append(valid.mean_return())
    return batches, sum(pre) / len(pre), sum(post) / len(post)


def _surrogate_and_kl(maml, batches, old_distributions=None, first_order=None):
    """Mean over tasks of the importance-weighted surrogate loss and of KL(old || new) on valid episodes."""
    losses, kls, distributions = [], [], []
    for index, batch in enumerate(batches):
        learner = adapt_policy(maml, batch.train, batch.train_advantages, first_order=first_order)
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
) -> dict:
    """One MAML-TRPO meta-update of ``maml.module``'s parameters, in place.

    The objective is the surrogate on the post-adaptation episodes of every task, differentiated through the
    inner DiCE adaptation; the step is the natural gradient (conjugate gradient on the Hessian-vector product
    of the mean KL, second order through the adaptation), scaled to the trust region ``max_kl`` and shrunk by
    a backtracking line search until the surrogate improves and the KL stays below ``max_kl``.

    Args:
        maml: ``MAML`` wrapping a Gaussian policy (``first_order=False`` for the full meta-gradient).
        batches: list of :class:`TaskBatch` from :func:`sample_meta_batch`, collected with the current
            parameters.
        max_kl: trust-region radius (float > 0).
        cg_iterations, cg_damping: conjugate-gradient settings (damping is added to the KL Hessian).
        backtrack_factor: step shrink factor in (0, 1); line_search_steps: how many shrinks to try.

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
    params = [p for p in maml.module.parameters() if p.requires_grad]
    loss, kl, old_distributions = _surrogate_and_kl(maml, batches)
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
        new_loss, new_kl, _ = _surrogate_and_kl(maml, batches, old_distributions, first_order=True)
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
