"""Meta-SGD / MAML with an advantage actor-critic (A2C) outer objective, optimised by gradient descent."""

from __future__ import annotations

import torch

from ._losses import dice_policy_loss
from ._maml_trpo import TaskBatch, adapt_policy


def meta_a2c_step(learner, batches: list[TaskBatch], optimizer: torch.optim.Optimizer) -> dict:
    """One meta-update: per task, adapt a clone with one DiCE policy-gradient step on the ``train`` episodes,
    take the advantage-weighted policy-gradient loss of the ``valid`` episodes under the adapted policy,
    and step ``optimizer`` on the task mean, differentiated through the adaptation.

    With a ``MetaSGD`` learner the per-parameter inner learning rates are meta-learned too (include them in
    the optimizer: ``learner.parameters()`` does). The critic is the :class:`LinearValue` baseline that
    produced the batches' advantages, refitted in closed form rather than by gradient descent.

    Args:
        learner: ``MAML`` or ``MetaSGD`` wrapping a Gaussian policy (second order for the full gradient).
        batches: list of :class:`TaskBatch` collected with the current parameters.
        optimizer: torch optimizer over ``learner.parameters()``.

    Returns:
        dict with the float ``loss`` (task-mean outer loss before the step).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.algorithms import MetaSGD
        >>> from l2l_multi.backends.torch.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> learner = MetaSGD(DiagNormalPolicy(2, 2, hiddens=(4,)), lr=0.1)
        >>> e = Episodes(torch.randn(3, 2, 2), torch.randn(3, 2, 2), torch.randn(3, 2), torch.ones(3, 2))
        >>> optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
        >>> sorted(meta_a2c_step(learner, [TaskBatch(e, torch.randn(3, 2), e, torch.randn(3, 2))], optimizer))
        ['loss']
    """
    if not batches:
        raise ValueError("batches must hold at least one TaskBatch")
    optimizer.zero_grad()
    losses = []
    for batch in batches:
        adapted = adapt_policy(learner, batch.train, batch.train_advantages)
        log_probs = adapted(batch.valid.observations).log_prob(batch.valid.actions)
        losses.append(dice_policy_loss(log_probs, batch.valid_advantages, batch.valid.masks))
    loss = torch.stack(losses).mean()
    loss.backward()
    optimizer.step()
    return {"loss": loss.item()}
