"""The whole MAML-TRPO meta-iteration as one compiled function (jax backend): task sampling, rollouts of
every task (vmapped), baseline fits and advantages, adaptation, post-adaptation rollouts, TRPO update."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax

from ...._inner_losses import check_inner_loss
from ._episodes import check_environment, rollout_episodes
from ._maml_trpo import (
    TaskBatch,
    _adaptation_steps,
    _check_adapt_steps,
    _check_trpo_settings,
    adapted_policy,
    episode_advantages,
    trpo_meta_update,
)


def collect_task_batch(
    env, policy, baseline, tasks, key, lr, episodes, horizon, gamma=0.99, tau=1.0, adapt_steps=1
):
    """For each task (leading axis ``B`` of ``tasks``, vmapped): ``adapt_steps`` rounds of episodes, each
    with the policy after the first-order adaptation steps (size ``lr``) on the rounds before it (the first
    with ``policy`` itself), their advantages, then episodes with the fully adapted policy.

    Args:
        env: functional meta-environment (``sample_tasks``/``reset``/``step``).
        policy: :class:`DiagNormalPolicy`.
        baseline: :class:`LinearValue` (refitted on every episode batch).
        tasks: pytree of ``B`` tasks.
        key: PRNG key.
        lr: adaptation step size.
        episodes: ``N`` episodes per task and phase.
        horizon: ``T`` steps per episode.
        gamma: discount factor.
        tau: GAE lambda.
        adapt_steps: adaptation steps per task (static int >= 1, learn2learn's ``adapt_steps``); with
            more than one, the batch's ``train`` fields are tuples (see :class:`TaskBatch`).

    Returns:
        ``(TaskBatch [B, ...], pre_return, post_return)``: the batch and the mean undiscounted returns (0-d)
        before adaptation (of ``policy``'s episodes) and after it.
    """
    _check_adapt_steps(adapt_steps)

    def one_task(task, task_key):
        *step_keys, valid_key = jax.random.split(task_key, adapt_steps + 1)
        learner, train, train_advantages = policy, [], []
        for step_key in step_keys:
            step_episodes = rollout_episodes(env, learner, task, step_key, episodes, horizon)
            step_advantages = episode_advantages(baseline, step_episodes, gamma, tau)
            # the data only: trpo_meta_update re-adapts through these steps with second-order terms
            learner = adapted_policy(learner, step_episodes, step_advantages, lr, first_order=True)
            train.append(step_episodes)
            train_advantages.append(step_advantages)
        valid = rollout_episodes(env, learner, task, valid_key, episodes, horizon)
        valid_advantages = episode_advantages(baseline, valid, gamma, tau)
        batch = TaskBatch.from_steps(train, train_advantages, valid, valid_advantages)
        return batch, train[0].mean_return(), valid.mean_return()

    count = jax.tree_util.tree_leaves(tasks)[0].shape[0]
    batch, pre, post = jax.vmap(one_task)(tasks, jax.random.split(key, count))
    return batch, pre.mean(), post.mean()


class MamlTrpoMetrics(NamedTuple):
    """One meta-iteration's numbers (0-d arrays): mean returns before/after adaptation, the surrogate before
    and after the update, its KL, whether the step was accepted, and the env steps taken (valid steps)."""

    pre_return: jax.Array
    post_return: jax.Array
    loss_before: jax.Array
    loss_after: jax.Array
    kl: jax.Array
    accepted: jax.Array
    env_steps: jax.Array


def make_maml_trpo_step(
    env,
    meta_batch: int = 20,
    episodes: int = 20,
    horizon: int = 100,
    lr: float = 0.1,
    adapt_steps: int = 1,
    gamma: float = 0.99,
    tau: float = 1.0,
    max_kl: float = 0.01,
    cg_iterations: int = 10,
    cg_damping: float = 1e-5,
    backtrack_factor: float = 0.5,
    line_search_steps: int = 15,
    reg: float = 1e-5,
    inner_loss: str = "dice",
    on_trace: Callable[[], None] | None = None,
):
    """Builds ``step(policy, key) -> (policy, MamlTrpoMetrics)``: a whole MAML-TRPO iteration in two
    compiled programs, collection then update. It is the torch example's iteration: ``meta_batch`` tasks
    from ``env.sample_tasks``, ``episodes`` episodes of ``horizon`` steps per task before each of
    ``adapt_steps`` DiCE adaptation steps of size ``lr`` and after the last, the linear baseline, GAE, and
    :func:`trpo_meta_update` (second order through every step).

    Args:
        env: functional meta-environment; its observations and actions are flat vectors.
        meta_batch: tasks per iteration (static positive int).
        episodes: episodes per task and phase (static positive int).
        horizon: steps per episode (static positive int).
        lr: adaptation step size, as in :func:`collect_task_batch`.
        adapt_steps: adaptation steps per task (static int >= 1), as in :func:`collect_task_batch`.
        gamma: discount factor, as in :func:`collect_task_batch`.
        tau: GAE lambda, as in :func:`collect_task_batch`.
        max_kl: trust-region radius, as in :func:`trpo_meta_update`.
        cg_iterations: conjugate-gradient iterations, as in :func:`trpo_meta_update`.
        cg_damping: damping added to the KL Hessian, as in :func:`trpo_meta_update`.
        backtrack_factor: line-search shrink factor, as in :func:`trpo_meta_update`.
        line_search_steps: line-search tries, as in :func:`trpo_meta_update`.
        reg: the baseline's ridge.
        inner_loss: ``"dice"`` or ``"plain"``, as in :func:`trpo_meta_update` (the collection's first-order
            steps are the same with either).
        on_trace: called each time the collection is traced (lets tests check it compiles once).

    The returned ``step`` also has ``step.collect(policy, key) -> (TaskBatch, pre_return, post_return)`` and
    ``step.update(policy, batches) -> (policy, stats)``, the two programs it runs.

    Example:
        >>> import jax
        >>> from l2l_multi.backends.jax.gym import Particles2D
        >>> from l2l_multi.backends.jax.rl import DiagNormalPolicy
        >>> step = make_maml_trpo_step(Particles2D(), meta_batch=2, episodes=2, horizon=4)
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
        >>> policy, metrics = step(policy, jax.random.key(1))
        >>> metrics.pre_return.shape
        ()
    """
    check_environment(env)
    for name, value in (("meta_batch", meta_batch), ("episodes", episodes), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name, value in (("gamma", gamma), ("tau", tau)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name}={value!r} must be in [0, 1]")
    if not lr >= 0:
        raise ValueError(f"lr={lr!r} must be >= 0")
    _check_adapt_steps(adapt_steps)
    check_inner_loss(inner_loss)
    from ._policy import LinearValue

    @jax.jit
    def collect(policy, key):
        if on_trace is not None:
            on_trace()  # runs while tracing only
        task_key, rollout_key = jax.random.split(key)
        tasks = env.sample_tasks(task_key, meta_batch)
        baseline = LinearValue(policy.layers[0][0].shape[0], reg)
        return collect_task_batch(
            env, policy, baseline, tasks, rollout_key, lr, episodes, horizon, gamma, tau, adapt_steps
        )

    settings = {
        "max_kl": max_kl,
        "cg_iterations": cg_iterations,
        "cg_damping": cg_damping,
        "backtrack_factor": backtrack_factor,
        "line_search_steps": line_search_steps,
    }
    _check_trpo_settings(max_kl, backtrack_factor, cg_iterations, line_search_steps)
    # Two compiled programs per iteration (collection, update): the update's is cached per shape and shared
    # with every other caller of trpo_meta_update; the episodes never leave the device in between.
    update = functools.partial(trpo_meta_update, lr=lr, inner_loss=inner_loss, **settings)

    def step(policy, key):
        batches, pre, post = collect(policy, key)
        policy, stats = update(policy, batches)
        steps = _adaptation_steps(batches.train, batches.train_advantages)
        env_steps = sum(episodes.masks.sum() for episodes, _ in steps) + batches.valid.masks.sum()
        names = ("loss_before", "loss_after", "kl", "accepted")
        return policy, MamlTrpoMetrics(pre, post, *(stats[name] for name in names), env_steps)

    # the two programs, for callers that time or reuse them apart
    step.collect, step.update = collect, update
    return step
