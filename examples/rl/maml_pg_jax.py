"""MAML with policy-gradient adaptation (Finn, Abbeel and Levine, ICML 2017) in pure jax on Particles2D.

The whole meta-update is one jit-compiled function (``l2l_multi.backends.jax.gym.make_maml_pg_step``):
for each task (``vmap``) it rolls out the policy in a jax port of Particles2D (``lax.scan``), takes one
DiCE policy-gradient step, rolls out the adapted policy, and differentiates the post-adaptation loss
through the inner step. No environment processes: episodes are simulated inside the compiled step.

Defaults follow the MAML paper's 2D navigation (Sec. 5.3, Appendix A.2): goals uniform in
``[-0.5, 0.5]^2``, horizon 100, 20 trajectories per task, 20 tasks per meta-batch, one adaptation step
of size 0.1, a Gaussian policy with two hidden layers of 100 ReLU units and initial standard deviation
1, discount 0.99, up to 500 meta-iterations. Not the paper's: the meta-optimiser is Adam (learning
rate 1e-3) instead of TRPO, and the advantages are the normalised rewards-to-go minus their per-step
mean over the task's episodes instead of a linear-baseline estimate (what ``make_maml_pg_step`` does).

    python examples/rl/maml_pg_jax.py
    python examples/rl/maml_pg_jax.py --quick                            # seconds
    python examples/rl/maml_pg_jax.py --out results/run --resume --iterations 1000

Metrics (``pre_return``, ``post_return``: mean undiscounted returns before and after adaptation, on the
tasks each iteration draws) and the results folder are as in ``maml_trpo.py``.
"""

from __future__ import annotations

import argparse
import time

import maml_trpo
import numpy as np

from l2l_multi.experiment._cli import check_float

DEFAULTS = {
    "name": "maml_pg_jax",
    "method": "MAML-PG (jax)",
    "paper_source": "Finn, Abbeel and Levine 2017, Sec. 5.3 and Appendix A.2 (2D navigation); Adam is ours",
    "hiddens": [100, 100],
    "episodes": 20,
    "meta_batch": 20,
    "inner_lr": 0.1,
    "meta_lr": 1e-3,
    "gamma": 0.99,
    "horizon": 100,
    "init_std": 1.0,
    "iterations": 500,
}
QUICK = {"iterations": 3, "meta_batch": 2, "episodes": 4, "hiddens": [16, 16], "horizon": 20}
GOAL_LOW, GOAL_HIGH = -0.5, 0.5  # Particles2D's goal distribution (l2l_multi.gym._particles)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--env", choices=("Particles2D-v1",), default="Particles2D-v1", help="the jax port of Particles2D")
    add("--seed", type=int, default=0)
    add("--iterations", type=int, default=None, help=f"meta-updates (default: {DEFAULTS['iterations']})")
    add("--meta-batch", type=int, help="tasks per meta-update")
    add("--episodes", type=int, help="episodes per task, before and after adaptation each")
    add("--horizon", type=int, help="episode length")
    add("--hiddens", type=int, nargs="+", help="hidden layer widths of the policy (ReLU)")
    add("--init-std", type=float, help="initial standard deviation of the Gaussian policy")
    add("--inner-lr", type=float, help="adaptation step size")
    add("--meta-lr", type=float, help="Adam learning rate")
    add("--gamma", type=float, help="discount")
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add("--out", default=None, help="results folder (default: results/maml_pg_jax_<env>)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    parser.set_defaults(**{k: v for k, v in DEFAULTS.items() if k not in ("name", "method", "paper_source")})
    parser.set_defaults(iterations=None)
    return parser


def _config(args: argparse.Namespace) -> dict:
    """Validates every flag (``SystemExit`` naming it) and returns the run's configuration."""
    if args.iterations is None:
        args.iterations = DEFAULTS["iterations"]
    maml_trpo.check_arguments(args)
    check_float(args, "init_std", 0.0, strict=True)
    args.hiddens = list(args.hiddens)
    return {k: v for k, v in vars(args).items() if k not in ("resume", "out", "progress")}


def main(argv: list[str] | None = None) -> dict:
    """Parses ``argv``, meta-trains, writes the results folder; returns ``results.json``'s dict."""
    from l2l_multi.experiment import RunFolder
    from l2l_multi.experiment._interrupt import run_interruptible

    args = maml_trpo.parse_arguments(argument_parser(), DEFAULTS, argv, QUICK)
    config = _config(args)
    with RunFolder(args.out, config, resume=args.resume, may_change=("iterations",)) as run:
        # Ctrl-C: stop before the next iteration (each one saves a checkpoint), exit 130
        return run_interruptible(args.out, lambda stop: _train(args, run, argv, stop))


def _train(args: argparse.Namespace, run, argv, stop) -> dict:
    """The training loop of :func:`main` in an open results folder."""
    import jax
    import jax.numpy as jnp
    import optax
    from l2l_multi.backends.jax import gym as jax_gym
    from tqdm.auto import tqdm

    from l2l_multi.experiment import command_line
    from l2l_multi.experiment._faults import fault_point
    from l2l_multi.experiment._interrupt import stop_if_requested

    device = jax.devices()[0]
    device_kind = getattr(device, "device_kind", device.platform)
    run.record_environment(device=f"jax {jax.__version__} {device.platform}: {device_kind}")
    optimizer = optax.adam(args.meta_lr)
    params = jax_gym.init_policy(
        jax.random.key(args.seed), hiddens=tuple(args.hiddens), init_std=args.init_std
    )
    opt_state = optimizer.init(params)
    step = jax_gym.make_maml_pg_step(
        optimizer, inner_lr=args.inner_lr, episodes=args.episodes, horizon=args.horizon, gamma=args.gamma
    )
    start, elapsed = 0, 0.0
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        # The checkpoint holds numpy copies (NamedTuples as tuples): the structures come from the
        # live trees, and the same values give the compiled step the same results.
        restore = lambda live, saved: jax.tree_util.tree_unflatten(  # noqa: E731
            jax.tree_util.tree_structure(live), [jnp.asarray(a) for a in jax.tree_util.tree_leaves(saved)]
        )
        params = restore(params, checkpoint["params"])
        opt_state = restore(opt_state, checkpoint["opt_state"])
        start, elapsed = checkpoint["iteration"], checkpoint["elapsed"]

    root = jax.random.key(args.seed)
    began = time.perf_counter() - elapsed
    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=DEFAULTS["method"],
        disable=not args.progress,
        dynamic_ncols=True,
    )
    stop.active = True
    for index in bar:
        fault_point("training")
        stop_if_requested(stop, index)
        iteration = index + 1
        # Every random draw of the iteration comes from (seed, iteration): a resumed run repeats it.
        goal_key, step_key = jax.random.split(jax.random.fold_in(root, iteration))
        goals = jax.random.uniform(goal_key, (args.meta_batch, 2), minval=GOAL_LOW, maxval=GOAL_HIGH)
        params, opt_state, metrics = step(params, opt_state, goals, step_key)
        pre, post, loss = float(metrics.pre_return), float(metrics.post_return), float(metrics.loss)
        if not np.isfinite([pre, post, loss]).all():
            raise FloatingPointError(f"loss {loss}, returns {pre}, {post} at iteration {iteration}")
        row = {
            "iteration": iteration,
            "pre_return": pre,
            "post_return": post,
            "adaptation_gain": post - pre,
            "loss": loss,
            "env_steps": iteration * 2 * args.meta_batch * args.episodes * args.horizon,
            "elapsed_s": round(time.perf_counter() - began, 3),
        }
        run.log_metrics(row)
        run.save_checkpoint(
            {
                "iteration": iteration,
                "params": jax.device_get(params),
                "opt_state": jax.device_get(opt_state),
                "elapsed": time.perf_counter() - began,
            }
        )
        bar.set_postfix(pre=f"{pre:.1f}", post=f"{post:.1f}")
    bar.close()
    stop.active = False

    results = {
        "method": DEFAULTS["method"],
        "paper_source": DEFAULTS["paper_source"],
        "env": args.env,
        "backend": "jax",
        "device": f"jax {jax.__version__} {device.platform}: {device_kind}",
        "iterations": args.iterations,
        "quick": args.quick,
        "seed": args.seed,
        # Simulated steps, including those masked after an episode reached its goal.
        "env_steps": args.iterations * 2 * args.meta_batch * args.episodes * args.horizon,
        **maml_trpo.summarize(run.read_metrics()),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "command": command_line(argv),
    }
    run.write_results(results)
    from l2l_multi.experiment import Curves

    columns = {"pre_return": "before adaptation", "post_return": "after adaptation"}
    returns = Curves("return per episode", columns)
    title = f"{DEFAULTS['method']}, {args.env}, jax"
    run.plot("iteration", [returns], title=title, xlabel="iteration (meta-updates)")
    print(
        f"{DEFAULTS['method']} {args.env}: return {results['final_pre_return']:.2f} before and "
        f"{results['final_post_return']:.2f} after adaptation (gain {results['final_adaptation_gain']:+.2f}; "
        f"mean of the last {results['averaged_over_last_iterations']} iterations)"
    )
    print(run.describe_files())
    return results


if __name__ == "__main__":
    main()
