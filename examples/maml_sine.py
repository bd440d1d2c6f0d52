"""MAML on sinusoid regression (Finn, Abbeel and Levine, ICML 2017, Sec. 5.1), torch or jax.

Defaults are the paper's: each task is ``y = A sin(x - phi)`` with amplitude ``A ~ U[0.1, 5.0]``,
phase ``phi ~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``; K = 10 support points; a 1-40-40-1 ReLU
MLP; one inner step of SGD with rate 0.01 on the mean squared error; meta-batches of 25 tasks;
Adam with learning rate 1e-3 on the query loss (K = 10 query points per training task, as in the
authors' code); 70,000 meta-iterations. The paper reports (Fig. 2 and 3, no table) that after one
gradient step the meta-learned initialisation fits a sinusoid from 10 points, and that further
steps keep improving it without overfitting (the pretrained baseline barely moves).

Tasks come from numpy only (``default_rng([stream, seed, iteration])``). One runner serves both
backends: ``l2l.MetaLearner("maml", <the "sine-mlp" spec>, ways=1, loss="mse")``, whose torch MLP
is built after ``torch.manual_seed(seed)`` and converted to the flax model when torch is
installed, so both backends see the same tasks from the same initial weights.

Protocol: ``--test-tasks`` (600) fixed test tasks drawn from ``--test-seed`` (independent of
``--seed``), each with K support points and ``--test-queries`` (100) query points; mean query MSE
with a 95% interval after each number of test-time steps in ``--test-steps`` (0, 1 and 10).
Validation during training uses ``--eval-tasks`` other fixed tasks.

    python examples/maml_sine.py --backend jax                      # the paper's 70,000 iterations
    python examples/maml_sine.py --backend torch --iterations 5000  # shorter
    python examples/maml_sine.py --quick                            # seconds
    python examples/maml_sine.py --backend jax --resume --iterations 100000   # extend that run

Ctrl-C saves a checkpoint between two steps and prints the command that resumes the run.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import numpy as np

from l2l_multi.experiment import Curves, RunFolder, command_line, mean_confidence_interval
from l2l_multi.experiment._cli import (
    DefaultsHelpFormatter,
    add_backend_option,
    check_float,
    check_int,
    parse_run_arguments,
)
from l2l_multi.experiment._faults import fault_point
from l2l_multi.experiment._interrupt import StopRequest, TrainingStopped, exit_interrupted

TRAIN_STREAM, VALID_STREAM, TEST_STREAM = 0, 1, 2
# what --quick changes: a run of a few seconds that still goes through every code path
QUICK = {
    "iterations": 6,
    "meta_batch": 4,
    "eval_every": 3,
    "eval_tasks": 8,
    "test_tasks": 12,
    "eval_batch": 4,
    "test_queries": 20,
}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=DefaultsHelpFormatter
    )
    add = parser.add_argument
    add_backend_option(parser)
    add("--iterations", type=int, default=70000, help="meta-updates (paper: 70,000)")
    add("--meta-batch", type=int, default=25, help="tasks per meta-update (paper: 25)")
    add("--shots", type=int, default=10, help="support points K (paper: 5, 10 or 20; 10 here)")
    add("--queries", type=int, default=10, help="query points per training task")
    add("--lr", type=float, default=0.01, help="inner SGD learning rate (paper: 0.01)")
    add("--meta-lr", type=float, default=1e-3, help="Adam's learning rate (paper: 1e-3)")
    add("--adaptation-steps", type=int, default=1, help="inner steps in training (paper: 1)")
    add("--first-order", action="store_true", help="first-order MAML")
    add("--hidden", type=int, nargs="+", default=[40, 40], help="hidden widths (paper: 40 40)")
    add("--test-steps", type=int, nargs="+", default=[0, 1, 10], help="test-time inner steps to score")
    add("--test-queries", type=int, default=100, help="query points per validation/test task")
    add("--eval-every", type=int, default=1000, help="validate and checkpoint every N updates")
    add("--eval-tasks", type=int, default=100, help="validation tasks (fixed)")
    add("--eval-batch", type=int, default=100, help="tasks per evaluation call")
    add("--test-tasks", type=int, default=600, help="test tasks (the protocol: 600)")
    add("--test-seed", type=int, default=0, help="seed of the fixed test tasks")
    add("--seed", type=int, default=0)
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add("--out", default=None, help="results folder (default: results/maml_sine_<backend>)")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    return parser


MAY_CHANGE = ("iterations", "test_tasks")  # what --resume may change


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses ``argv``: ``--quick`` changes the defaults (flags given still win); with ``--resume``,
    settings not given come from the folder's ``config.json``."""
    parser = argument_parser()
    return parse_run_arguments(parser, argv, QUICK, lambda args: f"results/maml_sine_{args.backend}")


def configure(args: argparse.Namespace) -> dict[str, Any]:
    """Validates every flag (``SystemExit`` naming it) and returns the run's configuration."""
    for name in ("iterations", "meta_batch", "shots", "queries", "test_queries", "eval_every", "eval_batch"):
        check_int(args, name, 1)
    for name in ("eval_tasks", "test_tasks"):
        check_int(args, name, 2, "a 95% interval needs at least 2 tasks")
    for name in ("adaptation_steps", "test_steps", "seed", "test_seed"):
        check_int(args, name, 0)
    check_int(args, "hidden", 1)
    check_float(args, "lr")
    check_float(args, "meta_lr")
    args.test_steps = sorted(set(args.test_steps))
    return {k: v for k, v in vars(args).items() if k not in ("resume", "out", "progress")}


# -- tasks ------------------------------------------------------------------------------------


def sample_tasks(rng: np.random.Generator, count: int, shots: int, queries: int):
    """``count`` sinusoid tasks: ``(support_x, support_y), (query_x, query_y)``, each
    ``[count, points, 1]`` float32."""
    amplitude = rng.uniform(0.1, 5.0, size=(count, 1, 1))
    phase = rng.uniform(0.0, np.pi, size=(count, 1, 1))
    x = rng.uniform(-5.0, 5.0, size=(count, shots + queries, 1))
    y = amplitude * np.sin(x - phase)
    x, y = x.astype(np.float32), y.astype(np.float32)
    return (x[:, :shots], y[:, :shots]), (x[:, shots:], y[:, shots:])


def training_tasks(args, iteration: int):
    """The meta-batch of ``iteration``: a function of (seed, iteration) only, so resuming is exact."""
    rng = np.random.default_rng([TRAIN_STREAM, args.seed, iteration])
    return sample_tasks(rng, args.meta_batch, args.shots, args.queries)


def fixed_tasks(stream: int, seed: int, count: int, args):
    return sample_tasks(np.random.default_rng([stream, seed]), count, args.shots, args.test_queries)


# -- models -------------------------------------------------------------------------------------


class SineRunner:
    """``l2l.MetaLearner("maml", <sine MLP spec>, ways=1, loss="mse")`` on either backend: the
    same code path for torch (autograd, Adam) and jax (one compiled meta-step, optax Adam)."""

    def __init__(self, args):
        import l2l_multi as l2l
        from l2l_multi._registry import model_spec

        spec = model_spec("sine-mlp")
        spec = spec._replace(arguments={**spec.arguments, "sizes": tuple(args.hidden)})
        self.learner = l2l.MetaLearner(
            "maml",
            spec,
            1,
            lr=args.lr,
            meta_lr=args.meta_lr,
            adaptation_steps=args.adaptation_steps,
            first_order=args.first_order,
            seed=args.seed,
            loss="mse",
            backend=args.backend,
        )

    def train_step(self, support, query) -> float:
        return self.learner.train_step(*support, *query)["loss"]

    def task_losses(self, support, query, steps: list[int]) -> dict[int, np.ndarray]:
        """Query MSE per task after each number of inner steps in ``steps``."""
        losses = {}
        for k in steps:
            result = self.learner.evaluate(*support, *query, adaptation_steps=k)
            losses[k] = np.asarray(result["task_losses"], np.float64)
        return losses

    def state_dict(self) -> dict:
        return self.learner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state)


# -- protocol -----------------------------------------------------------------------------------


def evaluate(runner, tasks, args, count: int) -> dict[int, dict[str, Any]]:
    """Mean query MSE and its 95% interval over the first ``count`` of ``tasks``, per step count."""
    (sx, sy), (qx, qy) = tasks
    per_task = {k: [] for k in args.test_steps}
    for start in range(0, count, args.eval_batch):
        stop = min(start + args.eval_batch, count)
        chunk = runner.task_losses(
            (sx[start:stop], sy[start:stop]), (qx[start:stop], qy[start:stop]), args.test_steps
        )
        for k, values in chunk.items():
            per_task[k].extend(values.tolist())
    results = {}
    for k, values in per_task.items():
        mean, half = mean_confidence_interval(values)
        results[k] = {"mse": mean, "ci95": half, "num_tasks": count, "adaptation_steps": k}
    return results


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {device.platform}: {getattr(device, 'device_kind', device.platform)}"
    return f"torch cpu: {platform.processor() or platform.machine()}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parses ``argv``, trains, tests; returns (and writes) ``results.json``'s dict."""
    args = parse_arguments(argv)
    config = configure(args)
    try:
        with RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE) as run:
            with StopRequest(active=False) as stop:
                return train_and_test(args, run, argv, stop)
    except TrainingStopped as stopped:  # Ctrl-C during training: the checkpoint is saved
        exit_interrupted(args.out, stopped.iteration)
    except KeyboardInterrupt:  # Ctrl-C outside the training steps
        exit_interrupted(args.out, None)


def train_and_test(args: argparse.Namespace, run: RunFolder, argv, stop: StopRequest) -> dict[str, Any]:
    import l2l_multi as l2l

    l2l.set_backend(args.backend)
    runner = SineRunner(args)
    run.record_environment(device=device_name(args.backend))
    validation = fixed_tasks(VALID_STREAM, args.seed, args.eval_tasks, args)
    start, elapsed, window = 0, 0.0, []
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        runner.load_state_dict(checkpoint["learner"])
        start, elapsed, window = checkpoint["iteration"], checkpoint["elapsed"], checkpoint["window"]

    from tqdm.auto import tqdm

    began = time.perf_counter() - elapsed
    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc="maml-sine",
        disable=not args.progress,
        dynamic_ncols=True,
    )
    stop.active = True  # from here, a first Ctrl-C stops between two steps
    for iteration in bar:
        fault_point("training")
        if stop.requested:
            bar.close()
            run.save_checkpoint(
                {
                    "iteration": iteration,
                    "learner": runner.state_dict(),
                    "window": window,
                    "elapsed": time.perf_counter() - began,
                }
            )
            raise TrainingStopped(iteration)
        loss = runner.train_step(*training_tasks(args, iteration))
        if not np.isfinite(loss):
            raise FloatingPointError(f"the meta-loss became {loss} at iteration {iteration + 1}")
        window.append(loss)
        done = iteration + 1
        if done % args.eval_every == 0 or done == args.iterations:
            valid = evaluate(runner, validation, args, args.eval_tasks)
            row = {"iteration": done, "train_loss": float(np.mean(window))}
            for k, result in valid.items():
                row[f"valid_mse_{k}"] = result["mse"]
                row[f"valid_ci95_{k}"] = result["ci95"]
            row["elapsed_s"] = round(time.perf_counter() - began, 3)
            run.log_metrics(row)
            bar.set_postfix(
                train=f"{row['train_loss']:.3f}", **{f"mse{k}": f"{r['mse']:.3f}" for k, r in valid.items()}
            )
            window = []
            run.save_checkpoint(
                {
                    "iteration": done,
                    "learner": runner.state_dict(),
                    "window": window,
                    "elapsed": time.perf_counter() - began,
                }
            )
    bar.close()
    stop.active = False
    train_seconds = time.perf_counter() - began
    test = evaluate(
        runner, fixed_tasks(TEST_STREAM, args.test_seed, args.test_tasks, args), args, args.test_tasks
    )
    results = {
        "method": "MAML",
        "problem": f"sinusoid regression, K={args.shots}",
        "backend": args.backend,
        "device": device_name(args.backend),
        "iterations": args.iterations,
        "quick": args.quick,
        "test": {f"{k}_steps": result for k, result in test.items()},
        "test_queries": args.test_queries,
        "paper": "Finn et al. 2017, Fig. 2-3 (qualitative, no table): after 1 step the MAML model fits "
        "the sinusoid from K=10 points; more steps keep lowering the error, no overfitting",
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "command": command_line(argv),
    }
    run.write_results(results)
    steps = lambda k: f"{k} step{'' if k == 1 else 's'}"
    columns = {"train_loss": f"training tasks (after {steps(args.adaptation_steps)})"}
    columns.update({f"valid_mse_{k}": f"validation, after {steps(k)}" for k in args.test_steps})
    bands = {f"valid_mse_{k}": f"valid_ci95_{k}" for k in args.test_steps}
    run.plot(
        "iteration",
        [Curves("query MSE (bands: 95% intervals)", columns, bands)],
        title=f"MAML, sinusoid regression K={args.shots}, {args.backend}",
        xlabel="iteration (meta-updates)",
    )
    for k, result in test.items():
        print(
            f"MAML sine K={args.shots} ({args.backend}): MSE after {k} step{'s' * (k != 1)} "
            f"{result['mse']:.4f} +- {result['ci95']:.4f} over {result['num_tasks']} test tasks"
        )
    print(run.describe_files())
    return results


if __name__ == "__main__":
    main()
