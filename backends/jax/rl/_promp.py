"""ProMP (Rothfuss et al., ICLR 2019) on jax: a PPO-style clipped outer objective with an inner-KL penalty,
several optax steps per batch, compiled whole and vmapped over tasks.

The torch twin is ``l2l_multi.backends.torch.rl.promp_step(maml, batches, optimizer, ...)``; here the policy
and the optimizer state go in and come out (tests/test_rl_crosscheck_methods.py compares the two in
float64 on the same episodes).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from ._a2c import _adapt_step, check_one_step
from ._maml_trpo import TaskBatch


def lvc_policy_loss(
    log_probs: jax.Array, sampling_log_probs: jax.Array, advantages: jax.Array, masks: jax.Array
) -> jax.Array:
    """ProMP's low-variance-curvature inner loss ``-mean(exp(log_probs - sampling_log_probs) * advantages)``
    over valid steps.

    At the sampling parameters it equals :func:`dice_policy_loss` in value and gradient; its Hessian keeps
    only the importance-weight curvature, trading the DiCE Hessian's unbiasedness for lower variance.

    Args:
        log_probs: ``[T, N]`` differentiable log-probabilities of the taken actions.
        sampling_log_probs: ``[T, N]`` log-probabilities under the policy that sampled them (gradients
            stopped).
        advantages: ``[T, N]`` advantages (gradients stopped).
        masks: ``[T, N]`` step weights (1 for a valid step, 0 after the episode ended).

    Returns:
        A 0-d array.

    Example:
        >>> import jax.numpy as jnp
        >>> zeros, ones = jnp.zeros((2, 3)), jnp.ones((2, 3))
        >>> float(lvc_policy_loss(zeros, zeros, ones, ones))
        -1.0
    """
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(sampling_log_probs))
    weighted = ratio * jax.lax.stop_gradient(advantages) * masks
    return -weighted.sum() / jnp.maximum(masks.sum(), 1e-8)


def _lvc_adapted(policy, batch: TaskBatch, old_pre, lr, first_order):
    """The policy after one LVC step on the task's train episodes, and its distribution there."""
    sampling = old_pre.log_prob(batch.train.actions)

    def inner_loss(params):
        log_probs = params(batch.train.observations).log_prob(batch.train.actions)
        return lvc_policy_loss(log_probs, sampling, batch.train_advantages, batch.train.masks)

    return _adapt_step(policy, inner_loss, lr, first_order)


def _task_objective(policy, batch: TaskBatch, old_pre, old_post, lr, clip, first_order):
    """One task's clipped post-adaptation surrogate and its inner KL(old pre-adaptation || current), the
    latter averaged over all ``T * N`` entries of the train episodes as on torch."""
    kl = (old_pre.kl_divergence(policy(batch.train.observations)) * batch.train.masks).mean()
    adapted = _lvc_adapted(policy, batch, old_pre, lr, first_order)
    actions, masks, advantages = batch.valid.actions, batch.valid.masks, batch.valid_advantages
    ratio = jnp.exp(adapted(batch.valid.observations).log_prob(actions) - old_post.log_prob(actions))
    clipped = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages)
    return -(clipped * masks).sum() / masks.sum(), kl


def promp_objective(
    policy, batches: TaskBatch, old_pre, old_post, lr, clip, inner_kl_coef, first_order=False
):
    """ProMP's outer objective at ``policy``: the task mean of the clipped surrogate plus ``inner_kl_coef``
    times the task mean of the inner KL (differentiable; what :func:`promp_meta_update` descends).

    Args:
        policy: the meta-policy (:class:`DiagNormalPolicy`).
        batches: :class:`TaskBatch` with a leading task axis ``B``.
        old_pre: the sampling policy's distributions on the train observations (``DiagNormal``
            ``[B, T, N, act]``, constants).
        old_post: the adapted sampling policies' distributions on the valid observations (``DiagNormal``
            ``[B, T, N, act]``, constants).
        lr: the inner step size (float).
        clip: the PPO clip range (float > 0).
        inner_kl_coef: the weight of the inner KL (float >= 0).
        first_order: stop gradients through the inner gradient.

    Returns:
        ``(objective, kl)``: two 0-d arrays, the objective and the task-mean inner KL.
    """
    task = lambda batch, pre, post: _task_objective(policy, batch, pre, post, lr, clip, first_order)  # noqa: E731
    objectives, kls = jax.vmap(task)(batches, old_pre, old_post)
    kl = kls.mean()
    return objectives.mean() + inner_kl_coef * kl, kl


def sampling_distributions(policy, batches: TaskBatch, lr):
    """``(old_pre, old_post)``: the distributions of ``policy`` on every task's train observations and of
    its LVC-adapted twins on the valid observations (gradients stopped; ``DiagNormal`` ``[B, T, N, act]``).

    Args:
        policy: the meta-policy that collected ``batches``.
        batches: :class:`TaskBatch` with a leading task axis ``B``.
        lr: the inner step size (float).
    """

    def task(batch):
        old_pre = jax.lax.stop_gradient(policy(batch.train.observations))
        adapted = _lvc_adapted(policy, batch, old_pre, lr, first_order=True)
        return old_pre, jax.lax.stop_gradient(adapted(batch.valid.observations))

    return jax.vmap(task)(batches)


def promp_meta_update(
    policy,
    batches: TaskBatch,
    optimizer,
    opt_state,
    lr: float,
    epochs: int = 5,
    clip: float = 0.2,
    inner_kl_coef: float = 5e-4,
    first_order: bool = False,
):
    """ProMP meta-update (torch's ``promp_step``): ``epochs`` optimizer steps on :func:`promp_objective`.

    The inner step is one gradient step of :func:`lvc_policy_loss` on each task's ``train`` episodes (whose
    sampling log-probabilities are those of ``policy`` at the call); the outer importance ratio compares
    the re-adapted policy with the adapted policy that collected the ``valid`` episodes.

    Compiled once per shape, dtype, ``optimizer`` (static: create it once) and ``first_order``; ``epochs``
    and the other settings are traced (a new value does not recompile).

    Args:
        policy: meta-policy (:class:`DiagNormalPolicy`) that collected ``batches``.
        batches: :class:`TaskBatch` with a leading task axis ``B``.
        optimizer: an optax ``GradientTransformation`` (e.g. ``optax.adam(1e-3)``).
        opt_state: ``optimizer.init(policy)`` or the state this function returned.
        lr: the inner step size (float >= 0; torch: the ``MAML``'s ``lr``).
        epochs: optimizer steps per batch (int >= 1).
        clip: PPO clip range (float > 0).
        inner_kl_coef: weight of the inner-adaptation KL penalty (float >= 0; the paper adapts it).
        first_order: stop gradients through the inner gradient (torch: ``MAML(..., first_order=True)``).

    Returns:
        ``(policy, opt_state, stats)``: the updated policy and optimizer state, and torch's stats keys as
        0-d arrays: ``loss_before``, ``loss_after`` (the objective before the first step and after the last
        one; with ``epochs=1``, as on torch, the one before the step) and ``inner_kl`` (the last epoch's,
        before its step).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(4,), key=jax.random.key(0))
        >>> k = jax.random.split(jax.random.key(1), 3)
        >>> e = Episodes(jax.random.normal(k[0], (1, 3, 2, 2)), jax.random.normal(k[1], (1, 3, 2, 2)),
        ...              jnp.zeros((1, 3, 2)), jnp.ones((1, 3, 2)))  # 1 task, 3 steps, 2 episodes
        >>> batches = TaskBatch(e, jax.random.normal(k[2], (1, 3, 2)), e, jax.random.normal(k[2], (1, 3, 2)))
        >>> optimizer = optax.adam(1e-2)
        >>> policy, state, stats = promp_meta_update(policy, batches, optimizer, optimizer.init(policy), 0.1)
        >>> bool(stats["loss_after"] < stats["loss_before"])
        True
    """
    check_one_step(batches)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not clip > 0:
        raise ValueError(f"clip={clip!r} must be > 0")
    if not inner_kl_coef >= 0:
        raise ValueError(f"inner_kl_coef={inner_kl_coef!r} must be >= 0")
    if not lr >= 0:
        raise ValueError(f"lr={lr!r} must be >= 0")
    if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
        raise TypeError(f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}")
    return _compiled_promp(
        policy,
        batches,
        opt_state,
        lr,
        epochs,
        clip,
        inner_kl_coef,
        optimizer=optimizer,
        first_order=bool(first_order),
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "first_order"))
def _compiled_promp(policy, batches, opt_state, lr, epochs, clip, inner_kl_coef, optimizer, first_order):
    old_pre, old_post = sampling_distributions(policy, batches, lr)

    def objective(params):
        return promp_objective(params, batches, old_pre, old_post, lr, clip, inner_kl_coef, first_order)

    def epoch(index, carry):
        params, state, first, _ = carry
        (total, kl), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, jnp.where(index == 0, total, first), kl

    zero = jnp.zeros((), jax.tree_util.tree_leaves(policy)[0].dtype)
    policy, opt_state, loss_before, inner_kl = jax.lax.fori_loop(
        0, epochs, epoch, (policy, opt_state, zero, zero)
    )
    # torch reports the objective after the last step only when there was more than one
    loss_after = jnp.where(epochs > 1, objective(policy)[0], loss_before)
    return policy, opt_state, {"loss_before": loss_before, "loss_after": loss_after, "inner_kl": inner_kl}
