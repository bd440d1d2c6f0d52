"""MAML-TRPO meta-reinforcement learning (Finn, Abbeel and Levine, ICML 2017), torch or jax backend.

Defaults are the paper's 2D-navigation settings (Sec. 5.3 and Appendix A.2): a Gaussian policy with two
hidden layers of 100 ReLU units, one vanilla policy-gradient adaptation step with step size 0.1 on 20
trajectories per task, 20 tasks per meta-batch, horizon 100, the linear feature baseline, and TRPO as
the meta-optimiser with a trust region of 0.01 (mean KL). The paper trains for up to 500
meta-iterations; discount 0.99 and GAE lambda 1 are rllab's defaults used by the MAML code. (The
authors' released point-mass script, ``maml_trpo_point.py``, instead uses an adaptation step of 0.5,
40 tasks and 100 iterations; its locomotion scripts use horizon 200 and 40 or 80 tasks.) This
implementation's inner step is DiCE, so the meta-gradient includes the score-function term that the
paper's code dropped.

Metrics are measured on the batch each iteration samples before its update, on freshly drawn tasks:
``pre_return`` is the mean undiscounted return of the meta-policy, ``post_return`` that of the
policy after its adaptation steps (``--adapt-steps``, learn2learn's ``adapt_steps``; 1 by default), each
on episodes of the policy adapted by the steps before it.

    python examples/rl/maml_trpo.py                                   # Particles2D-v1, paper settings
    python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1 --meta-batch 40 --workers 8
    python examples/rl/maml_trpo.py --quick                           # seconds
    python examples/rl/maml_trpo.py --out results/run --resume --iterations 800
    python examples/rl/maml_trpo.py --backend jax --env HalfCheetahForwardBackward-v1   # MJX, compiled

``--backend jax`` runs the environment's functional twin (``_jax_driver.JAX_ENVS``: the pure-jax
Particles2D, the MJX HalfCheetah and Ant meta-envs) and
``l2l_multi.backends.jax.rl.make_maml_trpo_step``: rollouts of every task, adaptation and the TRPO
step as compiled programs, vmapped over tasks; the same flags, columns and results folder.

The driver below (:func:`main`) is shared with ``promp.py``, ``metasgd_a2c.py`` and ``maml_pg.py``, which
only state their method's settings and meta-update on each backend (``method_update``, ``make_jax_update``).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULTS = {
    "name": "maml_trpo",
    "method": "MAML-TRPO",
    "paper_source": "Finn, Abbeel and Levine 2017, Sec. 5.3 and Appendix A.2 (2D navigation)",
    "hiddens": [100, 100],
    "episodes": 20,
    "meta_batch": 20,
    "inner_lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "iterations": 500,
    "max_kl": 0.01,
    "cg_iterations": 10,
    "cg_damping": 1e-5,
    "line_search_steps": 15,
}
# What --quick changes: a run of a few seconds that still goes through every code path.
QUICK = {"iterations": 3, "meta_batch": 2, "episodes": 4, "hiddens": [32, 32]}
# Results are averaged over this many of the last iterations (fewer when the run is shorter).
AVERAGE_LAST = 10


# -- environments ----------------------------------------------------------------------------------
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


# -- the method ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--max-kl", type=float, help="TRPO trust region (mean KL of the adapted policies)")
    add("--cg-iterations", type=int, help="conjugate-gradient iterations for the natural gradient")
    add("--cg-damping", type=float, help="damping added to the KL Hessian")
    add("--line-search-steps", type=int, help="backtracking halvings tried before rejecting the step")
    add("--adapt-steps", type=int, default=1, help="adaptation steps per task (learn2learn's adapt_steps)")


def make_learner(policy, args):
    from l2l_multi.backends.torch.algorithms import MAML

    return MAML(policy, lr=args.inner_lr)


def meta_update(learner, batches, optimizer, args) -> dict[str, Any]:
    from l2l_multi.backends.torch import rl

    stats = rl.maml_trpo_step(
        learner,
        batches,
        max_kl=args.max_kl,
        cg_iterations=args.cg_iterations,
        cg_damping=args.cg_damping,
        line_search_steps=args.line_search_steps,
    )
    return {
        "loss_before": stats["loss_before"],
        "loss_after": stats["loss_after"],
        "kl": stats["kl"],
        "accepted": int(stats["accepted"]),
    }


def make_jax_update(env, args):
    """MAML-TRPO on the jax backend: ``l2l_multi.backends.jax.rl.make_maml_trpo_step`` with this run's
    settings (collection and TRPO update, two compiled programs); the state is the policy itself."""
    from _jax_driver import JaxMethod
    from l2l_multi.backends.jax import rl

    maml_trpo_step = rl.make_maml_trpo_step(
        env,
        meta_batch=args.meta_batch,
        episodes=args.episodes,
        horizon=args.horizon,
        lr=args.inner_lr,
        adapt_steps=getattr(args, "adapt_steps", 1),
        gamma=args.gamma,
        tau=args.tau,
        max_kl=args.max_kl,
        cg_iterations=args.cg_iterations,
        cg_damping=args.cg_damping,
        line_search_steps=args.line_search_steps,
    )

    def step(policy, key):
        policy, metrics = maml_trpo_step(policy, key)
        return policy, metrics._asdict()  # loss_before, loss_after, kl, accepted: the torch columns' order

    return JaxMethod(init=lambda policy: policy, step=step)


# -- the shared driver -----------------------------------------------------------------------------
def argument_parser(
    defaults: dict[str, Any], description: str, add_method_arguments, backends=("torch", "jax")
) -> argparse.ArgumentParser:
    """The shared flags, the method's (``add_method_arguments(parser)``) and ``--backend`` with the
    choices ``backends`` (those the method script supplies an update for)."""
    from l2l_multi.experiment._cli import startup_backend

    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    backend = startup_backend()  # L2L_BACKEND, as in the other examples
    add(
        "--backend",
        choices=backends,
        default=backend if backend in backends else backends[0],
        help="framework: torch (gymnasium environments, --workers processes) or jax (the environment's "
        "functional twin; rollouts, adaptation and update compiled)"
        + ("" if "jax" in backends else "; this method has no jax update yet"),
    )
    add("--env", default="Particles2D-v1", help="gymnasium id of a l2l_multi.gym meta-environment")
    add("--seed", type=int, default=0)
    add("--iterations", type=int, default=None, help=f"meta-updates (default: {defaults['iterations']})")
    add("--meta-batch", type=int, help="tasks per meta-update")
    add("--episodes", type=int, help="episodes per task, before and after adaptation each")
    add("--horizon", type=int, default=None, help="episode length (default: the environment's)")
    add(
        "--env-kwargs",
        type=json_object,
        default={},
        help="JSON object of environment constructor arguments, e.g. '{\"ctrl_cost_weight\": 0.05}'",
    )
    add("--hiddens", type=int, nargs="+", help="hidden layer widths of the policy (ReLU)")
    add("--inner-lr", type=float, help="adaptation step size")
    add("--gamma", type=float, help="discount")
    add("--tau", type=float, help="GAE lambda")
    add_method_arguments(parser)
    add("--workers", type=int, default=1, help="environment processes (l2l_multi.gym.AsyncVectorEnv if > 1)")
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add("--out", default=None, help=f"results folder (default: results/{defaults['name']}_<env>)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    parser.set_defaults(**{k: v for k, v in defaults.items() if k not in ("name", "method", "paper_source")})
    parser.set_defaults(iterations=None)
    return parser


def json_object(text: str) -> dict[str, Any]:
    """``--env-kwargs`` parser: a JSON object (``argparse`` reports the ``ValueError`` naming the flag)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"a\": 1}}', got {text!r}")
    return value


# Settings added after runs were made: a folder whose config.json lacks one resumes with the value it ran
# with, and the key stays out of its config (so the folder still matches).
ADDED_SETTINGS = {"backend": "torch", "adapt_steps": 1}
# what --resume may change: the length of the run, and the worker count (episode i resets with
# seed + i whatever the number of workers, so the numbers do not depend on it)
MAY_CHANGE = ("iterations", "workers")
# positive ints, non-negative ints, positive floats, non-negative floats, fractions in [0, 1]
# (method options included; those a method does not have are skipped)
POSITIVE_INTS = ("iterations", "meta_batch", "episodes", "workers", "horizon", "hiddens", "cg_iterations")
POSITIVE_INTS += ("line_search_steps", "promp_steps", "adapt_steps")
POSITIVE_FLOATS = ("max_kl", "clip")
NON_NEGATIVE_FLOATS = ("inner_lr", "cg_damping", "meta_lr", "inner_kl_coef")
FRACTIONS = ("gamma", "tau")


def parse_arguments(
    parser: argparse.ArgumentParser, defaults: dict[str, Any], argv, quick: dict[str, Any] = QUICK
) -> argparse.Namespace:
    """Parses ``argv``: ``--quick`` changes the defaults (flags given still win); with ``--resume``,
    settings not given come from the folder's ``config.json``."""
    from l2l_multi.experiment._cli import parse_run_arguments

    def default_out(args: argparse.Namespace) -> str:
        return f"results/{defaults['name']}_{env_slug(args.env)}"

    args = parse_run_arguments(parser, argv, quick, default_out)
    missing = _settings_missing_from_folder(args)
    if missing:
        from l2l_multi.experiment._cli import explicit_options, flag

        given = explicit_options(parser, argv)
        for key in missing:
            old = ADDED_SETTINGS[key]
            if key in given and getattr(args, key) != old:
                raise SystemExit(
                    f"resume: {args.out} was made before {flag(key)} existed and ran with {flag(key)} {old}; "
                    f"got {flag(key)} {getattr(args, key)}"
                )
            setattr(args, key, old)
    return args


def _settings_missing_from_folder(args: argparse.Namespace) -> list[str]:
    """On ``--resume``: the :data:`ADDED_SETTINGS` this script has that the folder's config.json lacks."""
    from l2l_multi.experiment import RunFolder

    if not args.resume:
        return []
    try:
        saved = RunFolder.saved_config(args.out)
    except FileNotFoundError:
        return []
    return [key for key in ADDED_SETTINGS if hasattr(args, key) and key not in saved]


def check_arguments(args: argparse.Namespace) -> None:
    """Refuses every out-of-range flag (``SystemExit`` naming it) before any work starts."""
    from l2l_multi.experiment._cli import check_float, check_int

    present = lambda names: [name for name in names if getattr(args, name, None) is not None]  # noqa: E731
    for name in present(POSITIVE_INTS):
        check_int(args, name, 1)
    check_int(args, "seed", 0)
    for name in present(POSITIVE_FLOATS):
        check_float(args, name, 0.0, strict=True)
    for name in present(NON_NEGATIVE_FLOATS):
        check_float(args, name)
    for name in present(FRACTIONS):
        check_float(args, name)
        if getattr(args, name) > 1:
            raise SystemExit(f"--{name} must be in [0, 1], got {getattr(args, name)!r}")


def _config(args: argparse.Namespace, defaults: dict[str, Any]) -> dict[str, Any]:
    if args.iterations is None:
        args.iterations = defaults["iterations"]
    check_arguments(args)
    if args.horizon is None:
        import importlib

        import gymnasium

        module, _, name = env_id(args.env).rpartition(":")
        importlib.import_module(module)  # registers the id
        args.horizon = gymnasium.spec(name).max_episode_steps or 100
    args.hiddens = list(args.hiddens)
    unrecorded = ("resume", "out", "progress", *_settings_missing_from_folder(args))
    return {k: v for k, v in vars(args).items() if k not in unrecorded}


def env_slug(name: str) -> str:
    """``l2l_multi.gym:Particles2D-v1`` -> ``particles2d`` (for default folder names)."""
    return re.sub(r"-v\d+$", "", name.split(":")[-1]).lower()


def torch_device_name() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return f"torch {torch.__version__} cpu: {cpu}, {torch.get_num_threads()} threads"


def summarize(rows: list[dict[str, str]], keys=("pre_return", "post_return")) -> dict[str, Any]:
    """Means of ``keys`` over the last :data:`AVERAGE_LAST` rows of ``metrics.csv`` and of the first row."""
    last = rows[-AVERAGE_LAST:]
    summary = {f"final_{key}": float(np.mean([float(row[key]) for row in last])) for key in keys}
    summary.update({f"first_{key}": float(rows[0][key]) for key in keys})
    summary["final_adaptation_gain"] = summary["final_post_return"] - summary["final_pre_return"]
    summary["averaged_over_last_iterations"] = len(last)
    return summary


def main(
    defaults: dict[str, Any],
    description: str,
    add_method_arguments: Callable = add_arguments,
    make_method_learner: Callable = make_learner,
    method_update: Callable = meta_update,
    make_optimizer: Callable | None = None,
    argv: list[str] | None = None,
    make_jax_update: Callable | None = None,
) -> dict[str, Any]:
    """Parses ``argv``, meta-trains, writes the results folder; returns ``results.json``'s dict.

    Args:
        defaults: the method's published settings (argparse defaults), with ``name``, ``method``,
            ``paper_source`` and ``iterations``.
        add_method_arguments: adds the method's own options to the parser.
        make_method_learner: ``(policy, args) -> MAML or MetaSGD`` learner.
        method_update: ``(learner, batches, optimizer, args) -> dict`` of numbers logged per iteration.
        make_optimizer: ``(learner, args) -> torch optimizer`` (its state is checkpointed), or ``None``.
        make_jax_update: ``(functional env, args) -> _jax_driver.JaxMethod``, the method on the jax
            backend; ``None``: the script takes ``--backend torch`` only.
    """
    backends = ("torch", "jax") if make_jax_update is not None else ("torch",)
    parser = argument_parser(defaults, description, add_method_arguments, backends)
    args = parse_arguments(parser, defaults, argv)
    if args.backend not in backends:  # restored from a folder on --resume
        raise SystemExit(f"--backend {args.backend}: {defaults['method']} runs on {', '.join(backends)} only")
    if args.backend == "jax":
        return _jax_main(args, defaults, make_jax_update, argv)
    return _torch_main(args, defaults, (make_method_learner, method_update, make_optimizer), argv)


def _jax_main(args: argparse.Namespace, defaults: dict[str, Any], make_jax_update, argv) -> dict[str, Any]:
    """:func:`main` on the jax backend: the functional twin of ``--env``, compiled iterations."""
    import _jax_driver

    from l2l_multi.experiment import RunFolder
    from l2l_multi.experiment._interrupt import run_interruptible

    _jax_driver.functional_env_name(args.env)  # refuses an id without a jax twin before any work
    config = _config(args, defaults)
    env = _jax_driver.make_functional_env(args.env, args.env_kwargs)
    method = make_jax_update(env, args)
    with RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE) as run:
        # Ctrl-C: stop before the next iteration (each one saves a checkpoint), exit 130
        train = lambda stop: _jax_driver.train(args, defaults, run, env, method, argv, stop)  # noqa: E731
        return run_interruptible(args.out, train)


def _torch_main(args: argparse.Namespace, defaults: dict[str, Any], method, argv) -> dict[str, Any]:
    """:func:`main` on the torch backend: gymnasium environments, ``--workers`` processes."""
    import l2l_multi.gym as l2l_gym
    from l2l_multi.experiment import RunFolder
    from l2l_multi.experiment._interrupt import run_interruptible

    config = _config(args, defaults)
    try:  # draws the tasks; the vector env's workers run them
        template = make_env(args.env, args.horizon, args.env_kwargs)
    except TypeError as error:  # an argument the environment's constructor does not take
        given = json.dumps(args.env_kwargs)
        raise SystemExit(f"--env-kwargs {given} does not suit --env {args.env}: {error}") from None
    try:
        if not isinstance(template.unwrapped, l2l_gym.MetaEnv):
            raise SystemExit(f"--env {args.env} is not a l2l_multi.gym.MetaEnv (it has no task distribution)")
        with RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE) as run:
            run.record_environment(device=torch_device_name())
            # Ctrl-C: stop before the next iteration (each one saves a checkpoint), exit 130
            train = lambda stop: _train(args, defaults, run, template.unwrapped, method, argv, stop)  # noqa: E731
            return run_interruptible(args.out, train)
    finally:
        template.close()


def _train(args, defaults, run, sampler, method, argv, stop) -> dict[str, Any]:
    """The training loop of :func:`main` in an open results folder."""
    import torch
    from l2l_multi.backends.torch import rl
    from tqdm.auto import tqdm

    from l2l_multi.experiment import command_line
    from l2l_multi.experiment._faults import fault_point
    from l2l_multi.experiment._interrupt import stop_if_requested

    make_method_learner, method_update, make_optimizer = method
    obs_size = int(np.prod(sampler.observation_space.shape))
    act_size = int(np.prod(sampler.action_space.shape))
    torch.manual_seed(args.seed)
    learner = make_method_learner(rl.DiagNormalPolicy(obs_size, act_size, hiddens=args.hiddens), args)
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
    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=defaults["method"],
        disable=not args.progress,
        dynamic_ncols=True,
    )
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
            if not (np.isfinite(pre) and np.isfinite(post)):
                raise FloatingPointError(f"the returns became {pre}, {post} at iteration {iteration}")
            stats = method_update(learner, batches, optimizer, args)
            env_steps += steps
            row = {
                "iteration": iteration,
                "pre_return": pre,
                "post_return": post,
                "adaptation_gain": post - pre,
                **stats,
                "env_steps": env_steps,
                "elapsed_s": round(time.perf_counter() - began, 3),
            }
            run.log_metrics(row)
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

    rows = run.read_metrics()
    results = {
        "method": defaults["method"],
        "paper_source": defaults["paper_source"],
        "env": args.env,
        "backend": "torch",
        "device": torch_device_name(),
        "iterations": args.iterations,
        "quick": args.quick,
        "seed": args.seed,
        "env_steps": env_steps,
        **summarize(rows),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "command": command_line(argv),
    }
    run.write_results(results)
    from l2l_multi.experiment import Curves

    columns = {"pre_return": "before adaptation", "post_return": "after adaptation"}
    returns = Curves("return per episode", columns)
    title = f"{defaults['method']}, {args.env}, torch"
    run.plot("iteration", [returns], title=title, xlabel="iteration (meta-updates)")
    print(
        f"{defaults['method']} {args.env}: return {results['final_pre_return']:.2f} before and "
        f"{results['final_post_return']:.2f} after adaptation (gain {results['final_adaptation_gain']:+.2f}; "
        f"mean of the last {results['averaged_over_last_iterations']} iterations)"
    )
    print(run.describe_files())
    return results


if __name__ == "__main__":
    main(DEFAULTS, __doc__.splitlines()[0], make_jax_update=make_jax_update)
