"""The torch path of the meta-RL driver (:func:`_driver.main` with ``--backend torch``): gymnasium
environments, episode collection in rounds over ``--workers`` processes, the per-iteration seeds and the
training loop of a method's torch meta-update.

Every random stream of iteration ``i`` derives from ``(seed, i)`` alone (:func:`iteration_seeds`) and
episode ``k`` of a phase resets from its own seed whatever the number of workers, so a resumed run
repeats an uninterrupted one. :func:`make_env` is a module-level function so that ``functools.partial``
of it pickles into the spawned worker processes of ``l2l_multi.gym.AsyncVectorEnv``.
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any

import numpy as np


# -- environments ---------------------------------------------------------------------------------
def env_id(name: str) -> str:
    """``Particles2D-v1`` -> ``l2l_multi.gym:Particles2D-v1`` (gymnasium imports the module first)."""
    return name if ":" in name else f"l2l_multi.gym:{name}"


def make_env(name: str, horizon: int | None, env_kwargs: dict | None = None):
    """One environment: the registered meta-environment with actions clipped to its action space.

    ``env_kwargs`` go to the environment's constructor (``gymnasium.make``), e.g. ``ctrl_cost_weight``.
    Module level (and wrapped in ``functools.partial``) so that spawned worker processes can unpickle it.
    """
    import gymnasium

    from l2l_multi.gym import Particles2DEnv

    options = dict(env_kwargs or {})
    if horizon is not None:
        options["max_episode_steps"] = horizon
    env = gymnasium.make(env_id(name), **options)
    if isinstance(env.action_space, gymnasium.spaces.Box) and not isinstance(env.unwrapped, Particles2DEnv):
        # collect_episodes sends the sampled actions unclipped; Particles2D clips them itself (skipping
        # the wrapper saves ~10% of its sampling time), MuJoCo robots need it here.
        env = gymnasium.wrappers.ClipAction(env)
    return env


def make_vector_env(name: str, horizon: int | None, episodes: int, workers: int, env_kwargs=None):
    """``workers <= 1``: a ``SyncVectorEnv`` with one environment per episode of a task, in this process;
    otherwise ``l2l_multi.gym.AsyncVectorEnv`` with ``workers`` processes, run in rounds."""
    import gymnasium

    import l2l_multi.gym as l2l_gym

    factory = functools.partial(make_env, name, horizon, env_kwargs)
    if workers <= 1:
        return gymnasium.vector.SyncVectorEnv([factory] * episodes)
    return l2l_gym.AsyncVectorEnv([factory] * workers)


def _pad_time(tensor, steps: int):
    import torch

    missing = steps - tensor.shape[0]
    if missing == 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))])


def collect(env, policy, episodes: int, horizon: int, seed: int, generator):
    """``episodes`` episodes of ``policy`` in rounds of ``env.num_envs``; episode ``i`` starts from
    ``reset(seed=seed + i)`` whatever the number of workers."""
    from l2l_multi.backends.torch import rl

    parts = []
    for start in range(0, episodes, env.num_envs):
        parts.append(rl.collect_episodes(env, policy, horizon, seed=seed + start, generator=generator))
    if len(parts) == 1 and parts[0].masks.shape[1] == episodes:
        return parts[0]
    steps = max(part.masks.shape[0] for part in parts)
    fields = zip(*[[_pad_time(t, steps) for t in part] for part in parts])
    import torch

    return rl.Episodes(*[torch.cat(list(field), dim=1)[:, :episodes] for field in fields])


def sample_meta_batch(learner, env, tasks, baseline, args, seed: int, generator):
    """Per task: ``args.adapt_steps`` rounds of episodes (1 when the method has no such flag), each of the
    policy adapted on the rounds before it (the first of the meta-policy), then episodes of the adapted
    policy.

    The same as ``l2l_multi.backends.torch.rl.sample_meta_batch`` except that episodes are collected in
    rounds (more episodes than workers) with a distinct reset seed per task and phase (for one adaptation
    step the seeds of the runs made before ``--adapt-steps`` existed).

    Returns:
        ``(list of TaskBatch, pre-adaptation mean return, post-adaptation mean return, env steps)``.
    """
    from l2l_multi.backends.torch import rl

    adapt_steps = getattr(args, "adapt_steps", 1)
    batches, pre, post, steps = [], [], [], 0
    for index, task in enumerate(tasks):
        rl.set_task(env, task)
        offset = seed + (adapt_steps + 1) * index * args.episodes  # phase k resets from offset + k * episodes
        adapted, train, train_advantages = learner, [], []
        for phase in range(adapt_steps):
            phase_seed = offset + phase * args.episodes
            episodes = collect(env, adapted, args.episodes, args.horizon, phase_seed, generator)
            advantages = rl.episode_advantages(baseline, episodes, args.gamma, args.tau)
            adapted = rl.adapt_policy(adapted, episodes, advantages, first_order=True)
            train.append(episodes)
            train_advantages.append(advantages)
        valid_seed = offset + adapt_steps * args.episodes
        valid = collect(env, adapted, args.episodes, args.horizon, valid_seed, generator)
        valid_advantages = rl.episode_advantages(baseline, valid, args.gamma, args.tau)
        batches.append(rl.TaskBatch.from_steps(train, train_advantages, valid, valid_advantages))
        pre.append(train[0].mean_return())
        post.append(valid.mean_return())
        steps += int(sum(episodes.masks.sum() for episodes in train) + valid.masks.sum())
    return batches, float(np.mean(pre)), float(np.mean(post)), steps


# -- seeds -----------------------------------------------------------------------------------------
def iteration_seeds(seed: int, iteration: int) -> dict[str, Any]:
    """Every random stream of one iteration, derived from ``(seed, iteration)`` alone, so that a resumed
    run draws exactly what an uninterrupted one would: the task sampler's generator, the action-noise
    generator's seed and the base of the environments' reset seeds."""
    tasks, noise, resets = np.random.SeedSequence([seed, iteration]).spawn(3)
    return {
        "tasks": np.random.default_rng(tasks),
        "noise": int(noise.generate_state(1, np.uint64)[0] >> np.uint64(1)),
        "reset": int(resets.generate_state(1)[0] >> 2),  # < 2**30: room for the per-episode offsets
    }


def torch_device_name() -> str:
    """``torch <version> cpu: <processor>, <threads> threads``: results.json's ``device``."""
    import torch

    cpu = platform.processor() or platform.machine()
    return f"torch {torch.__version__} cpu: {cpu}, {torch.get_num_threads()} threads"


# -- the training loop -----------------------------------------------------------------------------
def train(args, defaults, run, sampler, method, argv, stop) -> dict[str, Any]:
    """The torch training loop of ``method`` (``(make_learner, meta_update, make_optimizer)``, see
    :func:`_driver.main`) on the meta-environment ``sampler`` (it draws the tasks; the vector env's
    workers run them) in an open results folder ``run``; returns ``results.json``'s dict."""
    import torch
    from _driver import check_returns, finish, metrics_row, progress_bar
    from l2l_multi.backends.torch import rl

    from l2l_multi.experiment._faults import fault_point
    from l2l_multi.experiment._interrupt import stop_if_requested

    make_method_learner, method_update, make_optimizer = method
    obs_size = int(np.prod(sampler.observation_space.shape))
    act_size = int(np.prod(sampler.action_space.shape))
    torch.manual_seed(args.seed)
    policy = rl.DiagNormalPolicy(obs_size, act_size, hiddens=args.hiddens, init=args.policy_init)
    learner = make_method_learner(policy, args)
    baseline = rl.LinearValue(obs_size)
    optimizer = make_optimizer(learner, args) if make_optimizer is not None else None

    start, elapsed, env_steps = 0, 0.0, 0
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        learner.load_state_dict(checkpoint["learner"])
        baseline.load_state_dict(checkpoint["baseline"])
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer"])
        torch.set_rng_state(checkpoint["torch_rng"])
        np.random.set_state(checkpoint["numpy_rng"])
        start, elapsed, env_steps = checkpoint["iteration"], checkpoint["elapsed"], checkpoint["env_steps"]

    env = make_vector_env(args.env, args.horizon, args.episodes, args.workers, args.env_kwargs)
    began = time.perf_counter() - elapsed
    bar = progress_bar(args, defaults, start)
    stop.active = True
    try:
        for index in bar:
            fault_point("training")
            stop_if_requested(stop, index)
            iteration = index + 1
            seeds = iteration_seeds(args.seed, iteration)
            tasks = sampler.sample_tasks(args.meta_batch, seed=seeds["tasks"])
            generator = torch.Generator().manual_seed(seeds["noise"])
            batches, pre, post, steps = sample_meta_batch(
                learner, env, tasks, baseline, args, seeds["reset"], generator
            )
            check_returns(iteration, pre, post)  # before the update changes the policy
            stats = method_update(learner, batches, optimizer, args)
            env_steps += steps
            run.log_metrics(metrics_row(iteration, pre, post, stats, env_steps, time.perf_counter() - began))
            run.save_checkpoint(
                {
                    "iteration": iteration,
                    "learner": learner.state_dict(),
                    "baseline": baseline.state_dict(),
                    "optimizer": None if optimizer is None else optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                    "env_steps": env_steps,
                    "elapsed": time.perf_counter() - began,
                }
            )
            bar.set_postfix(pre=f"{pre:.1f}", post=f"{post:.1f}")
    finally:
        bar.close()
        env.close()
    stop.active = False

    return finish(
        run, args, defaults, "torch", torch_device_name(), env_steps, time.perf_counter() - began, argv
    )
