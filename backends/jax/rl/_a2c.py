"""MAML and Meta-SGD with an advantage actor-critic (A2C) outer objective on jax, one optax step per batch.

The torch twin is ``l2l_multi.backends.torch.rl.meta_a2c_step(learner, batches, optimizer)``, which steps a
stateful ``MAML``/``MetaSGD`` learner; here the meta-parameters and the optimizer state go in and come out
(tests/test_rl_crosscheck_methods.py compares the two in float64 on the same episodes).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ._episodes import Episodes, rollout_episodes
from ._losses import dice_policy_loss
from ._maml_trpo import TaskBatch, episode_advantages


def metasgd_parameters(policy, lr: float = 0.1) -> dict:
    """Meta-SGD's meta-parameters for a policy: ``{"policy": policy, "lrs": rates}``, ``rates`` a pytree
    shaped like ``policy`` (one inner learning rate per parameter element, all ``lr`` at first, in each
    parameter's dtype), as the vision ``MetaSGD`` keeps them beside its model (``meta_params["lrs"]``).

    Args:
        policy: the policy pytree (e.g. :class:`DiagNormalPolicy`).
        lr: the initial inner learning rate (float >= 0).

    Returns:
        A dict to give :func:`a2c_meta_update` (and its optimizer's ``init``).

    Example:
        >>> import jax
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy
        >>> meta = metasgd_parameters(DiagNormalPolicy(2, 2, hiddens=(4,), key=jax.random.key(0)), 0.1)
        >>> meta["lrs"].log_std.tolist()
        [0.10000000149011612, 0.10000000149011612]
    """
    if not lr >= 0:
        raise ValueError(f"lr={lr!r} must be >= 0")
    return {"policy": policy, "lrs": jax.tree_util.tree_map(lambda p: jnp.full_like(p, lr), policy)}


def _split_meta_parameters(meta_params, lr) -> tuple[Any, Any]:
    """``(policy, rates)`` of either form of meta-parameters: a policy with the fixed step ``lr`` (MAML), or
    :func:`metasgd_parameters`' dict (Meta-SGD, ``lr`` must then be ``None``). Raises naming the argument;
    a traced ``lr`` (inside ``jit``) is not range-checked."""
    if isinstance(meta_params, dict):
        if set(meta_params) != {"policy", "lrs"}:
            raise ValueError(
                f"meta_params as a dict must have exactly the keys 'policy' and 'lrs' (Meta-SGD, see "
                f"metasgd_parameters); got keys {sorted(meta_params)}"
            )
        if lr is not None:
            raise ValueError(
                f"lr={lr!r} must be None with Meta-SGD meta_params: the rates are meta_params['lrs']"
            )
        return meta_params["policy"], meta_params["lrs"]
    if not callable(meta_params):
        raise TypeError(f"meta_params must be a policy or a Meta-SGD dict, got {type(meta_params).__name__}")
    if lr is None or (not isinstance(lr, jax.core.Tracer) and not lr >= 0):
        raise ValueError(f"lr={lr!r} must be a float >= 0 with a policy as meta_params (MAML)")
    return meta_params, lr


def check_one_step(batches) -> None:
    """Refuses a :class:`TaskBatch` of several adaptation steps (its ``train`` a tuple of episodes): ProMP
    and the A2C meta-update adapt with one step, as on torch."""
    if not isinstance(batches.train, Episodes):
        raise ValueError(
            "batches.train must be one Episodes (one adaptation step); these meta-updates take no "
            f"multi-step TaskBatch, got a {type(batches.train).__name__} of {len(batches.train)}"
        )


def _adapt_step(policy, inner_loss, rates, first_order: bool = False):
    """``policy - rates * grad(inner_loss)(policy)``: one inner step, ``rates`` a float (MAML) or a pytree
    shaped like ``policy`` (Meta-SGD); ``first_order`` stops gradients through the inner gradient."""
    grads = jax.grad(inner_loss)(policy)
    if first_order:
        grads = jax.lax.stop_gradient(grads)
    if isinstance(rates, (int, float)) or (hasattr(rates, "ndim") and rates.ndim == 0):
        return jax.tree_util.tree_map(lambda p, g: p - rates * g, policy, grads)
    return jax.tree_util.tree_map(lambda p, rate, g: p - rate * g, policy, rates, grads)


def collect_adapted_batch(
    env, meta_params, baseline, tasks, key, lr, episodes: int, horizon: int, gamma=0.99, tau=1.0
):
    """:func:`collect_task_batch` for either form of meta-parameters: per task (vmapped), episodes with the
    policy, their advantages, one first-order DiCE step with MAML's ``lr`` or Meta-SGD's learned rates
    (``meta_params["lrs"]``), and episodes with the adapted policy (the torch driver's collection with a
    ``MetaSGD`` learner).

    Args:
        env: functional meta-environment (``sample_tasks``/``reset``/``step``).
        meta_params: a policy (MAML) or :func:`metasgd_parameters`' dict (Meta-SGD).
        baseline: :class:`LinearValue` (refitted on every episode batch).
        tasks: pytree of ``B`` tasks (leading axis ``B``).
        key: PRNG key.
        lr: MAML's inner step size (float), ``None`` with Meta-SGD meta-parameters.
        episodes: ``N`` episodes per task and phase (static int).
        horizon: ``T`` steps per episode (static int).
        gamma: discount factor.
        tau: GAE lambda.

    Returns:
        ``(TaskBatch [B, ...], pre_return, post_return)``: the batch and the mean undiscounted returns (0-d)
        before and after adaptation.

    Example:
        >>> import jax
        >>> from l2l_multi.backends.jax.gym import Particles2D
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy, LinearValue
        >>> env = Particles2D()
        >>> meta = metasgd_parameters(DiagNormalPolicy(2, 2, hiddens=(4,), key=jax.random.key(0)), 0.1)
        >>> tasks = env.sample_tasks(jax.random.key(1), 2)
        >>> batch, pre, post = collect_adapted_batch(env, meta, LinearValue(2), tasks, jax.random.key(2),
        ...                                          None, episodes=3, horizon=5)
        >>> batch.valid.rewards.shape  # [tasks, steps, episodes]
        (2, 5, 3)
    """
    policy, rates = _split_meta_parameters(meta_params, lr)

    def one_task(task, task_key):
        train_key, valid_key = jax.random.split(task_key)
        train = rollout_episodes(env, policy, task, train_key, episodes, horizon)
        train_advantages = episode_advantages(baseline, train, gamma, tau)

        def inner_loss(params):
            log_probs = params(train.observations).log_prob(train.actions)
            return dice_policy_loss(log_probs, train_advantages, train.masks)

        learner = _adapt_step(policy, inner_loss, rates, first_order=True)
        valid = rollout_episodes(env, learner, task, valid_key, episodes, horizon)
        valid_advantages = episode_advantages(baseline, valid, gamma, tau)
        batch = TaskBatch(train, train_advantages, valid, valid_advantages)
        return batch, train.mean_return(), valid.mean_return()

    count = jax.tree_util.tree_leaves(tasks)[0].shape[0]
    batch, pre, post = jax.vmap(one_task)(tasks, jax.random.split(key, count))
    return batch, pre.mean(), post.mean()


def a2c_meta_loss(meta_params, batches: TaskBatch, lr=None, first_order: bool = False) -> jax.Array:
    """The task mean of the A2C post-adaptation loss that :func:`a2c_meta_update` descends (differentiable).

    Per task: one DiCE policy-gradient step on the ``train`` episodes (:func:`dice_policy_loss`), then
    :func:`dice_policy_loss` of the ``valid`` episodes under the adapted policy.

    Args:
        meta_params: a policy (MAML) or :func:`metasgd_parameters`' dict (Meta-SGD).
        batches: :class:`TaskBatch` with a leading task axis ``B`` (fields ``[B, T, N, ...]``).
        lr: MAML's inner step size (float), ``None`` with Meta-SGD meta-parameters.
        first_order: stop gradients through the inner gradient.

    Returns:
        A 0-d array of the policy's dtype.
    """
    policy, rates = _split_meta_parameters(meta_params, lr)

    def task(batch):
        def inner_loss(params):
            log_probs = params(batch.train.observations).log_prob(batch.train.actions)
            return dice_policy_loss(log_probs, batch.train_advantages, batch.train.masks)

        adapted = _adapt_step(policy, inner_loss, rates, first_order)
        log_probs = adapted(batch.valid.observations).log_prob(batch.valid.actions)
        return dice_policy_loss(log_probs, batch.valid_advantages, batch.valid.masks)

    return jax.vmap(task)(batches).mean()


def a2c_meta_update(
    meta_params, batches: TaskBatch, optimizer, opt_state, lr=None, first_order: bool = False
):
    """One A2C meta-update (torch's ``meta_a2c_step``): the gradient of :func:`a2c_meta_loss`, through the
    adaptation (second order unless ``first_order``), and one ``optimizer`` step. With Meta-SGD
    meta-parameters the inner learning rates are meta-learned too. The critic is the :class:`LinearValue`
    baseline that gave the batches' advantages, refitted in closed form, not by gradient descent.

    Compiled once per shape, dtype, ``optimizer`` (static: create it once) and ``first_order``.

    Args:
        meta_params: a :class:`DiagNormalPolicy` (MAML) or :func:`metasgd_parameters`' dict (Meta-SGD).
        batches: :class:`TaskBatch` with a leading task axis ``B``, collected with the current policy.
        optimizer: an optax ``GradientTransformation`` (e.g. ``optax.adam(1e-3)``).
        opt_state: ``optimizer.init(meta_params)`` or the state this function returned.
        lr: MAML's inner step size (float >= 0); ``None`` with Meta-SGD meta-parameters.
        first_order: stop gradients through the inner gradient (torch: ``MAML(..., first_order=True)``).

    Returns:
        ``(meta_params, opt_state, stats)``: the updated meta-parameters and optimizer state, and torch's
        stats keys as 0-d arrays: ``loss`` (the task-mean outer loss before the step).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy, Episodes, TaskBatch
        >>> meta = metasgd_parameters(DiagNormalPolicy(2, 2, hiddens=(4,), key=jax.random.key(0)), 0.1)
        >>> k = jax.random.split(jax.random.key(1), 3)
        >>> e = Episodes(jax.random.normal(k[0], (2, 3, 2, 2)), jax.random.normal(k[1], (2, 3, 2, 2)),
        ...              jnp.zeros((2, 3, 2)), jnp.ones((2, 3, 2)))  # 2 tasks, 3 steps, 2 episodes
        >>> a = jax.random.normal(k[2], (2, 3, 2))
        >>> optimizer = optax.adam(1e-3)
        >>> meta, state, stats = a2c_meta_update(meta, TaskBatch(e, a, e, a), optimizer, optimizer.init(meta))
        >>> sorted(stats)
        ['loss']
    """
    _split_meta_parameters(meta_params, lr)  # refuse bad arguments in Python, before tracing
    check_one_step(batches)
    if not hasattr(optimizer, "update") or not hasattr(optimizer, "init"):
        raise TypeError(f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}")
    return _compiled_a2c(
        meta_params, batches, opt_state, lr, optimizer=optimizer, first_order=bool(first_order)
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "first_order"))
def _compiled_a2c(meta_params, batches, opt_state, lr, optimizer, first_order):
    loss, grads = jax.value_and_grad(a2c_meta_loss)(meta_params, batches, lr, first_order)
    updates, opt_state = optimizer.update(grads, opt_state, meta_params)
    return optax.apply_updates(meta_params, updates), opt_state, {"loss": loss}
