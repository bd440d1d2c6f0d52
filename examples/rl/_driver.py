"""The driver shared by the meta-RL examples (``maml_trpo.py``, ``promp.py``, ``metasgd_a2c.py``,
``maml_pg.py``): command line, settings validation, the results folder's config, dispatch to the torch
loop (``_torch_driver.py``) or the jax loop (``_jax_driver.py``), and the summary of ``results.json``.

A method script states only its published settings (``DEFAULTS``), its own flags and its meta-update on
each backend, and calls :func:`main`. ``config.json`` records every setting and the script's file name
(``script``); ``--resume --out DIR`` alone continues a run with the settings saved there.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np

# What --quick changes: a run of a few seconds that still goes through every code path.
QUICK = {"iterations": 3, "meta_batch": 2, "episodes": 4, "hiddens": [32, 32]}
# Results are averaged over this many of the last iterations (fewer when the run is shorter).
AVERAGE_LAST = 10


def argument_parser(
    defaults: dict[str, Any], description: str, add_method_arguments, backends=("torch", "jax")
) -> argparse.ArgumentParser:
    """The shared flags, the method's (``add_method_arguments(parser)``) and ``--backend`` with the
    choices ``backends`` (those the method script supplies an update for)."""
    from l2l_multi.experiment._cli import DefaultsHelpFormatter, startup_backend

    parser = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
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
    add("--env", default=DEFAULT_ENV, help="gymnasium id of a l2l_multi.gym meta-environment")
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
    add(
        "--policy-init",
        choices=("torch", "xavier"),
        default="torch",
        help="the policy's initial weights: torch.nn.Linear's uniform(+-1/sqrt(fan_in)) weights and biases, "
        "or Glorot-uniform weights and zero biases (learn2learn's examples/rl/policies.py)",
    )
    add("--inner-lr", type=float, help="adaptation step size")
    add("--gamma", type=float, help="discount")
    add("--tau", type=float, help="GAE lambda")
    add_method_arguments(parser)
    add("--workers", type=int, default=1, help="torch: environment processes (AsyncVectorEnv if > 1)")
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
ADDED_SETTINGS = {"backend": "torch", "adapt_steps": 1, "policy_init": "torch", "inner_loss": "dice"}
# Entries of config.json that are no flag, added after runs were made: a folder lacking one resumes, and
# its config stays without it. "script": the method script's file name (maml_pg.py and metasgd_a2c.py
# record the same settings).
ADDED_RECORDS = ("script",)
# what --resume may change: the length of the run, and the worker count (episode i resets with
# seed + i whatever the number of workers, so the numbers do not depend on it)
DEFAULT_ENV = "Particles2D-v1"  # the setting the scripts' DEFAULTS and paper_source describe
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
    return [key for key in _missing_from_folder(args, ADDED_SETTINGS) if hasattr(args, key)]


def _missing_from_folder(args: argparse.Namespace, keys) -> list[str]:
    """On ``--resume``: those of ``keys`` (strings) that the folder's config.json lacks; none for a new run
    or a folder without config.json (which RunFolder refuses to resume, naming it)."""
    from l2l_multi.experiment import RunFolder

    if not args.resume:
        return []
    try:
        saved = RunFolder.saved_config(args.out)
    except FileNotFoundError:
        return []
    return [key for key in keys if key not in saved]


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
        from _torch_driver import env_id

        module, _, name = env_id(args.env).rpartition(":")
        importlib.import_module(module)  # registers the id
        args.horizon = gymnasium.spec(name).max_episode_steps or 100
    args.hiddens = list(args.hiddens)
    unrecorded = ("resume", "out", "progress", *_settings_missing_from_folder(args))
    config = {k: v for k, v in vars(args).items() if k not in unrecorded}
    if not _missing_from_folder(args, ADDED_RECORDS):
        config["script"] = f"{defaults['name']}.py"
    return config


def env_slug(name: str) -> str:
    """``l2l_multi.gym:Particles2D-v1`` -> ``particles2d`` (for default folder names)."""
    return re.sub(r"-v\d+$", "", name.split(":")[-1]).lower()


def summarize(rows: list[dict[str, str]], keys=("pre_return", "post_return")) -> dict[str, Any]:
    """Means of ``keys`` over the last :data:`AVERAGE_LAST` rows of ``metrics.csv`` and of the first row."""
    last = rows[-AVERAGE_LAST:]
    summary = {f"final_{key}": float(np.mean([float(row[key]) for row in last])) for key in keys}
    summary.update({f"first_{key}": float(rows[0][key]) for key in keys})
    summary["final_adaptation_gain"] = summary["final_post_return"] - summary["final_pre_return"]
    summary["averaged_over_last_iterations"] = len(last)
    return summary


# -- pieces of the two training loops (torch: _torch_driver.train, jax: _jax_driver.train) ---------------
def progress_bar(args: argparse.Namespace, defaults: dict[str, Any], start: int):
    """tqdm over the iterations still to run, from ``start`` (0, or the checkpoint's iteration)."""
    from tqdm.auto import tqdm

    return tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=defaults["method"],
        disable=not args.progress,
        dynamic_ncols=True,
    )


def check_returns(iteration: int, pre: float, post: float) -> None:
    """``FloatingPointError`` naming the iteration when a mean return is not finite, raised before anything
    of the iteration is logged or checkpointed."""
    if not (np.isfinite(pre) and np.isfinite(post)):
        raise FloatingPointError(f"the returns became {pre}, {post} at iteration {iteration}")


def metrics_row(iteration: int, pre: float, post: float, stats: dict, env_steps: int, elapsed: float) -> dict:
    """One ``metrics.csv`` row (non-finite returns refused by :func:`check_returns`)."""
    check_returns(iteration, pre, post)
    return {
        "iteration": iteration,
        "pre_return": pre,
        "post_return": post,
        "adaptation_gain": post - pre,
        **stats,
        "env_steps": env_steps,
        "elapsed_s": round(elapsed, 3),
    }


def finish(
    run,
    args: argparse.Namespace,
    defaults: dict[str, Any],
    backend: str,
    device: str,
    env_steps: int,
    wall_seconds: float,
    argv,
) -> dict[str, Any]:
    """Writes ``results.json`` and ``curve.png`` of a finished run and prints its summary; returns the
    results."""
    from l2l_multi.experiment import Curves, command_line

    results = {
        "method": defaults["method"],
        # the defaults' source describes their environment only
        **({"paper_source": defaults["paper_source"]} if args.env == DEFAULT_ENV else {}),
        "env": args.env,
        "backend": backend,
        "device": device,
        "iterations": args.iterations,
        "quick": args.quick,
        "seed": args.seed,
        "env_steps": env_steps,
        **summarize(run.read_metrics()),
        "wall_seconds": round(wall_seconds, 1),
        "command": command_line(argv),
    }
    run.write_results(results)
    returns = Curves(
        "return per episode", {"pre_return": "before adaptation", "post_return": "after adaptation"}
    )
    title = f"{defaults['method']}, {args.env}, {backend}"
    run.plot("iteration", [returns], title=title, xlabel="iteration (meta-updates)")
    print(
        f"{defaults['method']} {args.env} ({backend}): return {results['final_pre_return']:.2f} before and "
        f"{results['final_post_return']:.2f} after adaptation (gain {results['final_adaptation_gain']:+.2f}; "
        f"mean of the last {results['averaged_over_last_iterations']} iterations)"
    )
    print(run.describe_files())
    return results


def main(
    defaults: dict[str, Any],
    description: str,
    add_method_arguments: Callable,
    make_method_learner: Callable,
    method_update: Callable,
    make_optimizer: Callable | None = None,
    argv: list[str] | None = None,
    make_jax_update: Callable | None = None,
) -> dict[str, Any]:
    """Parses ``argv``, meta-trains, writes the results folder; returns ``results.json``'s dict.

    Args:
        defaults: the method's published settings (argparse defaults), with ``iterations``, ``method``
            (its name in results), ``paper_source`` and ``name``: the script's file name without ``.py``
            (config.json's ``script``, and the default results folder's prefix).
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
    if args.workers is not None and args.workers > 1:  # silently running one program would mislead
        raise SystemExit(
            f"--workers {args.workers}: environment processes are the torch backend's; with --backend jax "
            "every task's episodes run vmapped in one compiled program: leave --workers out"
        )
    config = _config(args, defaults)
    env = _jax_driver.make_functional_env(args.env, args.env_kwargs)
    method = make_jax_update(env, args)
    with RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE) as run:
        # Ctrl-C: stop before the next iteration (each one saves a checkpoint), exit 130
        train = lambda stop: _jax_driver.train(args, defaults, run, env, method, argv, stop)  # noqa: E731
        return run_interruptible(args.out, train)


def _torch_main(args: argparse.Namespace, defaults: dict[str, Any], method, argv) -> dict[str, Any]:
    """:func:`main` on the torch backend: gymnasium environments, ``--workers`` processes."""
    import _torch_driver

    import l2l_multi.gym as l2l_gym
    from l2l_multi.experiment import RunFolder
    from l2l_multi.experiment._interrupt import run_interruptible

    config = _config(args, defaults)
    try:  # draws the tasks; the vector env's workers run them
        template = _torch_driver.make_env(args.env, args.horizon, args.env_kwargs)
    except TypeError as error:  # an argument the environment's constructor does not take
        given = json.dumps(args.env_kwargs)
        raise SystemExit(f"--env-kwargs {given} does not suit --env {args.env}: {error}") from None
    try:
        if not isinstance(template.unwrapped, l2l_gym.MetaEnv):
            raise SystemExit(f"--env {args.env} is not a l2l_multi.gym.MetaEnv (it has no task distribution)")
        with RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE) as run:
            run.record_environment(device=_torch_driver.torch_device_name())
            # Ctrl-C: stop before the next iteration (each one saves a checkpoint), exit 130
            sampler = template.unwrapped
            train = functools.partial(_torch_driver.train, args, defaults, run, sampler, method, argv)
            return run_interruptible(args.out, train)  # calls train(stop)
    finally:
        template.close()
