"""ProMP (Rothfuss et al., ICLR 2019): a PPO-style clipped outer objective with an inner-KL penalty."""

from __future__ import annotations

import torch

from ._maml_trpo import TaskBatch


def lvc_policy_loss(
    log_probs: torch.Tensor, sampling_log_probs: torch.Tensor, advantages: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """ProMP's low-variance-curvature inner loss ``-mean(exp(log_probs - sampling_log_probs) * advantages)``.

    At the sampling parameters it equals :func:`dice_policy_loss` in value and gradient; its Hessian keeps
    only the importance-weight curvature, trading the DiCE Hessian's unbiasedness for lower variance.

    Args:
        log_probs: ``[T, N]`` differentiable log-probabilities of the taken actions.
        sampling_log_probs: ``[T, N]`` log-probabilities under the policy that sampled them (constants).
        advantages, masks: ``[T, N]``.

    Returns:
        A 0-d tensor.

    Example:
        >>> import torch
        >>> zeros, ones = torch.zeros(2, 3), torch.ones(2, 3)
        >>> lvc_policy_loss(zeros, zeros, ones, ones).item()
        -1.0
    """
    ratio = torch.exp(log_probs - sampling_log_probs.detach())
    return -(ratio * advantages.detach() * masks).sum() / masks.sum().clamp_min(1e-8)


def _detached(dist):
    base = dist.base_dist
    normal = torch.distributions.Normal(base.loc.detach(), base.scale.detach())
    return torch.distributions.Independent(normal, 1)


def promp_step(
    maml,
    batches: list[TaskBatch],
    optimizer: torch.optim.Optimizer,
    epochs: int = 5,
    clip: float = 0.2,
    inner_kl_coef: float = 5e-4,
) -> dict:
    """ProMP meta-update: ``epochs`` optimizer steps on the clipped post-adaptation surrogate plus
    ``inner_kl_coef`` times the KL between the sampling and the current pre-adaptation policy.

    The inner step is one gradient step of :func:`lvc_policy_loss` on each task's ``train`` episodes (whose
    sampling log-probabilities are those of the parameters at the call); the importance ratio of the outer
    surrogate compares the re-adapted policy with the adapted policy that collected the ``valid`` episodes.

    Args:
        maml: ``MAML`` wrapping a Gaussian policy.
        batches: list of :class:`TaskBatch` collected with the current parameters.
        optimizer: a torch optimizer over ``maml.parameters()``.
        epochs: optimizer steps per batch (int >= 1); clip: PPO clip range (float > 0).
        inner_kl_coef: weight of the inner-adaptation KL penalty (float >= 0; the paper adapts it).

    Returns:
        dict of floats: ``loss_before``, ``loss_after`` (the first and last epochs' objectives) and
        ``inner_kl`` (last epoch).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.algorithms import MAML
        >>> from l2l_multi.backends.torch.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> _ = torch.manual_seed(0)
        >>> maml = MAML(DiagNormalPolicy(2, 2, hiddens=(4,)), lr=0.1)
        >>> e = Episodes(torch.randn(3, 2, 2), torch.randn(3, 2, 2), torch.randn(3, 2), torch.ones(3, 2))
        >>> optimizer = torch.optim.Adam(maml.parameters(), lr=1e-2)
        >>> stats = promp_step(maml, [TaskBatch(e, torch.randn(3, 2), e, torch.randn(3, 2))], optimizer)
        >>> stats["loss_after"] < stats["loss_before"]
        True
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not clip > 0:
        raise ValueError(f"clip={clip!r} must be > 0")
    if not inner_kl_coef >= 0:
        raise ValueError(f"inner_kl_coef={inner_kl_coef!r} must be >= 0")
    steps = sorted({batch.adapt_steps for batch in batches})
    if steps != [1]:
        raise ValueError(f"promp_step takes batches of one adaptation step, got adapt_steps {steps}")
    # Constants of the sampling policies: pre-adaptation on train episodes, adapted on valid episodes.
    with torch.no_grad():
        old_pre = [_detached(maml(batch.train.observations)) for batch in batches]
    old_post = []
    for batch, pre in zip(batches, old_pre):
        learner = maml.clone(first_order=True)
        sampling = pre.log_prob(batch.train.actions)
        log_probs = learner(batch.train.observations).log_prob(batch.train.actions)
        learner.adapt(lvc_policy_loss(log_probs, sampling, batch.train_advantages, batch.train.masks))
        with torch.no_grad():
            old_post.append(_detached(learner(batch.valid.observations)))

    history, inner_kl = [], 0.0
    for _ in range(epochs):
        optimizer.zero_grad()
        objectives, kls = [], []
        for batch, pre, post in zip(batches, old_pre, old_post):
            learner = maml.clone()
            dist = learner(batch.train.observations)
            kls.append((torch.distributions.kl_divergence(pre, dist) * batch.train.masks).mean())
            loss = lvc_policy_loss(
                dist.log_prob(batch.train.actions),
                pre.log_prob(batch.train.actions),
                batch.train_advantages,
                batch.train.masks,
            )
            learner.adapt(loss)
            actions, masks, advantages = batch.valid.actions, batch.valid.masks, batch.valid_advantages
            ratio = torch.exp(learner(batch.valid.observations).log_prob(actions) - post.log_prob(actions))
            clipped = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
            objectives.append(-(clipped * masks).sum() / masks.sum())
        kl = torch.stack(kls).mean()
        total = torch.stack(objectives).mean() + inner_kl_coef * kl
        total.backward()
        optimizer.step()
        history.append(total.item())
        inner_kl = kl.item()
    if epochs > 1:
        history[-1] = _objective(maml, batches, old_pre, old_post, clip, inner_kl_coef)
    return {"loss_before": history[0], "loss_after": history[-1], "inner_kl": inner_kl}


def _objective(maml, batches, old_pre, old_post, clip, inner_kl_coef) -> float:
    """The ProMP objective at the current parameters (after the last optimizer step), for reporting."""
    values = []
    for batch, pre, post in zip(batches, old_pre, old_post):
        learner = maml.clone(first_order=True)
        dist = learner(batch.train.observations)
        kl = (torch.distributions.kl_divergence(pre, dist) * batch.train.masks).mean()
        learner.adapt(
            lvc_policy_loss(
                dist.log_prob(batch.train.actions),
                pre.log_prob(batch.train.actions),
                batch.train_advantages,
                batch.train.masks,
            )
        )
        with torch.no_grad():
            actions, masks, advantages = batch.valid.actions, batch.valid.masks, batch.valid_advantages
            ratio = torch.exp(learner(batch.valid.observations).log_prob(actions) - post.log_prob(actions))
            clipped = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
            values.append(-(clipped * masks).sum() / masks.sum() + inner_kl_coef * kl.detach())
    return torch.stack(values).mean().item()
