"""The few-shot classification driver behind ``examples/vision/*.py``.

Each example script states its method's published hyper-parameters as ``defaults`` and calls
:func:`main`; everything else (backend, data, training loop, evaluation protocol, results folder,
exact resume) is shared here, so a method's script is a page of cited numbers.

Protocol: validation on the same ``--eval-tasks`` validation tasks at every evaluation; at the end,
``--test-tasks`` (600) test tasks for each of ``--test-ways``, mean accuracy with a 95% interval,
with ``--test-adaptation-steps`` inner steps stated in ``results.json``.

A script offers only the options of its algorithm (``_fewshot_options``: no ``--head`` on MAML,
no inner-loop options on ProtoNets, no ``--algorithm``). ``--download`` fetches missing dataset
files; ``--tensorboard`` also writes the metrics rows as TensorBoard scalars; Ctrl-C stops between
two steps, saves a checkpoint and exits with status 130, naming the ``--resume`` command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._cli import check_float, check_int, explicit_options, restore_arguments, startup_backend
from ._faults import fault_point
from ._fewshot_options import (
    HIDDEN_DEFAULTS,
    adaptation_phrase,
    learning_curves,
    name_the_variant,
    offered_options,
    quick_settings,
    refuse_algorithm_option,
    script_datasets,
    setting_title,
)
from ._interrupt import StopRequest, TrainingStopped, exit_interrupted
from ._processes import Processes, join, launch_local, open_run, script_command
from ._protocol import evaluate_tasks
from ._run import RunFolder, command_line
from ._tensorboard import ScalarLog, summary_writer_class

DATASETS = ("omniglot", "mini-imagenet", "tiered-imagenet", "cifarfs", "fc100")
DEFAULT_MODELS = {
    "omniglot": "omniglot-cnn",
    "mini-imagenet": "cnn4",
    "tiered-imagenet": "cnn4",
    "cifarfs": "cnn4-32",
    "fc100": "cnn4-32",
}
# what --quick changes: a run of a few seconds that still goes through every code path
QUICK = {
    "iterations": 4,
    "meta_batch": 2,
    "eval_every": 2,
    "eval_tasks": 4,
    "test_tasks": 6,
    "queries": 1,
    "test_queries": 1,
    "eval_batch": 3,
    "adaptation_steps": 1,
    "test_adaptation_steps": 1,
    "conv": "xla",  # jax: XLA's convolutions compile several times faster than the matmul ones
}


def argument_parser(defaults: dict[str, Any], description: str) -> argparse.ArgumentParser:
    """The shared command line; ``defaults`` (the method's published settings) fill it in."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--backend", choices=("torch", "jax"), default=startup_backend(),
        help="default: L2L_BACKEND if set, else torch where installed, else jax")
    # only the options that apply to this script's algorithm (see _fewshot_options)
    offered = offered_options(defaults)
    parser.set_defaults(**{k: v for k, v in HIDDEN_DEFAULTS.items() if k not in offered})
    if "dataset" in offered:
        add("--dataset", choices=script_datasets(defaults), default=defaults["dataset"])
    add("--root", default="~/data", help="folder holding the dataset's files")
    add(
        "--download",
        action="store_true",
        help="fetch the dataset's missing files into --root (checksummed) before training",
    )
    add("--model", default=None, help="omniglot-cnn, omniglot-fc, cnn4 or cnn4-32 (default: by dataset)")
    add(
        "--train-splits",
        nargs="+",
        choices=("train", "validation"),
        default=["train"],
        help="splits the training classes come from ('train validation': a final run, as in Snell et al.)",
    )
    add("--ways", type=int, default=5, help="classes per training task")
    add("--shots", type=int, default=1, help="support samples per class")
    add("--queries", type=int, default=None, help="query samples per class in training (default: shots)")
    if "test_ways" in offered:
        add("--test-ways", type=int, nargs="+", default=None, help="classes per test task (default: ways)")
    add(
        "--test-shots", type=int, default=None, help="support samples per class at test time (default: shots)"
    )
    add("--test-queries", type=int, default=None, help="query samples per class at test time")
    add("--meta-batch", type=int, default=32, help="tasks per meta-update")
    add("--iterations", type=int, default=60000, help="meta-updates")
    if "lr" in offered:
        add("--lr", type=float, default=0.4, help="inner-loop learning rate")
    add("--meta-lr", type=float, default=1e-3, help="Adam's learning rate")
    add(
        "--meta-lr-halve-every",
        type=int,
        default=0,
        help="halve the meta learning rate every N updates (0: never)",
    )
    if "adaptation_steps" in offered:
        add("--adaptation-steps", type=int, default=1, help="inner steps in training")
        add(
            "--test-adaptation-steps",
            type=int,
            default=None,
            help="inner steps at test time (default: training)",
        )
    if "first_order" in offered:
        add("--first-order", action="store_true", help="drop the second-order terms of the meta-gradient")
    if "head" in offered:
        add("--head", choices=("svm", "ridge"), default="ridge", help="MetaOptNet's head")
    add("--eval-every", type=int, default=1000, help="validate and checkpoint every N updates")
    add(
        "--max-train-seconds",
        type=float,
        default=0,
        help="stop at the first evaluation after this many seconds of training and validation, "
        "then test (0: no limit)",
    )
    add("--eval-tasks", type=int, default=200, help="validation tasks per evaluation")
    add("--eval-batch", type=int, default=50, help="tasks per evaluation call")
    add("--test-tasks", type=int, default=600, help="test tasks (the protocol: 600)")
    add("--device", default=None, help="torch device (default: cpu)")
    add(
        "--tasks-on-device",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gather the training tasks on the device: the dataset is copied there once and each "
        "meta-batch sends only its sample indices (the same tasks; default: on with an accelerator)",
    )
    add("--conv", choices=("auto", "xla", "matmul"), default="auto", help="jax: how convolutions run")
    add("--seed", type=int, default=0)
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add(
        "--out",
        default=None,
        help="results folder (default: results/<algorithm>_<dataset>_<ways>w<shots>s_<backend>)",
    )
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    add(
        "--tensorboard",
        action="store_true",
        help="also write the metrics as TensorBoard scalars to <out>/tensorboard",
    )
    add(
        "--processes",
        type=int,
        default=1,
        help="run as N local processes sharing each meta-batch (as torchrun --standalone "
        "--nproc-per-node N would; under torchrun leave it out)",
    )
    parser.set_defaults(
        **{k: v for k, v in defaults.items() if k not in ("paper", "by_dataset", "first_order")}
    )
    parser.set_defaults(
        paper=defaults.get("paper", {}),
        paper_source=defaults.get("paper_source", ""),
        method=defaults.get("method", defaults["algorithm"]),
    )
    return parser


# options that choose what is shown or written, not what is trained: not part of config.json
OUTPUT_OPTIONS = (
    *("resume", "out", "progress", "paper", "paper_source", "processes", "download", "tensorboard"),
)
# settings that may differ on --resume: they do not change what was trained so far
MAY_CHANGE = ("iterations", "root", "max_train_seconds", "test_tasks", "device", "tasks_on_device")
METRIC_ALGORITHMS = ("protonet", "metaoptnet")  # the only ones that test with other ways


def default_out(args: argparse.Namespace) -> str:
    """The results folder when ``--out`` is not given."""
    return f"results/{args.algorithm}_{args.dataset}_{args.ways}w{args.shots}s_{args.backend}"


def parse_arguments(defaults: dict[str, Any], description: str, argv: list[str] | None = None):
    """Parses ``argv``; a ``defaults["by_dataset"][name]`` dict overrides the defaults (and the
    paper's numbers) when ``--dataset name`` is chosen. With ``--resume``, every setting not given
    on the command line comes from the folder's ``config.json`` (``--resume --out DIR`` alone
    continues a run); given ones are checked by the results folder (only :data:`MAY_CHANGE` may
    differ). Every flag is validated here, before any work starts (``SystemExit`` naming it)."""
    parser = argument_parser(defaults, description)
    refuse_algorithm_option(parser, defaults, sys.argv[1:] if argv is None else argv)
    chosen, _ = parser.parse_known_args(argv)
    explicit = explicit_options(parser, argv)
    saved: dict[str, Any] = {}
    if chosen.resume:
        try:
            saved = RunFolder.saved_config(chosen.out or default_out(chosen))
        except FileNotFoundError:
            saved = {}  # RunFolder refuses the resume with the folder's name
    dataset = chosen.dataset if "dataset" in explicit else saved.get("dataset", chosen.dataset)
    overrides = defaults.get("by_dataset", {}).get(dataset)
    if overrides is None and defaults.get("by_dataset"):
        parser.error(
            f"--dataset {dataset} has no settings here; choose from {sorted(defaults['by_dataset'])}"
        )
    if overrides:
        parser.set_defaults(**overrides)
    if chosen.quick:  # CI-sized defaults; options given on the command line still win
        parser.set_defaults(**quick_settings(defaults, QUICK))
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args)
    restore_arguments(args, saved, explicit)
    name_the_variant(args, defaults)  # --first-order, MetaOptNet's --head: their own name and numbers
    return args


def _config(args: argparse.Namespace) -> dict[str, Any]:
    """Fills the derived settings, validates every flag (``SystemExit`` naming it) and returns the
    run's configuration (everything but ``--resume``, ``--out``, ``--progress`` and the paper's
    numbers)."""
    args.queries = args.shots if args.queries is None else args.queries
    args.test_queries = args.queries if args.test_queries is None else args.test_queries
    args.test_ways = args.test_ways or [args.ways]
    args.test_shots = args.shots if args.test_shots is None else args.test_shots
    args.model = args.model or DEFAULT_MODELS[args.dataset]
    if args.test_adaptation_steps is None:
        args.test_adaptation_steps = args.adaptation_steps
    interval = "a 95% interval needs at least 2 tasks"
    for name, minimum, why in (
        ("ways", 2, "a task needs 2 classes"),
        ("test_ways", 2, "a task needs 2 classes"),
        ("shots", 1, ""),
        ("test_shots", 1, ""),
        ("queries", 1, ""),
        ("test_queries", 1, ""),
        ("meta_batch", 1, ""),
        ("iterations", 1, ""),
        ("eval_every", 1, ""),
        ("eval_tasks", 2, interval),
        ("eval_batch", 1, ""),
        ("test_tasks", 2, interval),
        ("adaptation_steps", 0, ""),
        ("test_adaptation_steps", 0, ""),
        ("meta_lr_halve_every", 0, "0: never"),
        ("seed", 0, ""),
    ):
        check_int(args, name, minimum, why)
    check_float(args, "lr")
    check_float(args, "meta_lr")
    check_float(args, "max_train_seconds")
    if args.algorithm not in METRIC_ALGORITHMS and set(args.test_ways) != {args.ways}:
        raise SystemExit(
            f"--test-ways {args.test_ways}: {args.algorithm} has a {args.ways}-way output layer, so it tests "
            f"with --ways {args.ways} only; {' and '.join(METRIC_ALGORITHMS)} test with other ways"
        )
    if args.tensorboard:
        summary_writer_class()  # SystemExit naming what to install, before any work
    if args.backend == "jax" and args.device is not None:
        raise SystemExit(
            f"--device {args.device}: only the torch backend takes a device (jax uses its default)"
        )
    config = {
        k: v
        for k, v in vars(args).items()
        if k not in OUTPUT_OPTIONS
    }
    return config


def _tasksets(args, ways: int, queries: int):
    from ..vision.benchmarks import get_tasksets

    return get_tasksets(
        args.dataset,
        train_ways=args.ways,
        train_samples=args.shots + args.queries,
        test_ways=ways,
        test_samples=args.test_shots + queries,
        root=args.root,
        seed=args.seed,
        train_splits=tuple(args.train_splits),
        **({"download": True} if args.download else {}),
    )


def _device_name(args) -> str:
    if args.backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {device.platform}: {getattr(device, 'device_kind', device.platform)}"
    if args.device and args.device.startswith("cuda"):
        import torch

        return f"torch cuda: {torch.cuda.get_device_name(args.device)}"
    return f"torch cpu: {platform.processor() or platform.machine()}"


def main(defaults: dict[str, Any], description: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Parses ``argv``, trains, evaluates; returns (and writes) ``results.json``'s dict."""
    args = parse_arguments(defaults, description, argv)
    config = _config(args)
    check_int(args, "processes", 1, "")
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:  # launch the job, then read its results
        launch_local(args.processes, script_command(argv))
        return json.loads((Path(args.out).expanduser() / "results.json").read_text())
    processes = join(args.backend, args.device)
    args.progress = args.progress and processes.is_main
    try:
        run = open_run(
            processes,
            lambda: RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE),
            args.out,
            args.resume,
        )
        try:
            with StopRequest(active=False) as stop:
                return _train_and_test(args, run, argv, processes, stop)
        except TrainingStopped as stopped:  # Ctrl-C during training: the checkpoint is saved
            exit_interrupted(args.out, stopped.iteration)
        except KeyboardInterrupt:  # Ctrl-C outside the training steps (data, compiling, testing)
            exit_interrupted(args.out, None)
        finally:
            run.close()
    finally:
        processes.close()


def _train_and_test(
    args: argparse.Namespace, run: RunFolder, argv, processes: Processes, stop: StopRequest | None = None
) -> dict[str, Any]:
    import l2l_multi as l2l

    from ._train_tasks import TrainTasks

    l2l.set_backend(args.backend)
    # every test split is built now: a data problem shows before training, not after it
    tasksets = _tasksets(args, args.test_ways[0], args.test_queries)
    test_sets = {args.test_ways[0]: tasksets.test}
    for ways in args.test_ways[1:]:
        test_sets[ways] = _tasksets(args, ways, args.test_queries).test
    options = {"device": args.device} if args.backend == "torch" and args.device else {}
    if args.backend == "jax":
        options["conv"] = args.conv
    if args.algorithm == "metaoptnet":
        options["head"] = args.head
    learner = l2l.MetaLearner(
        args.algorithm,
        args.model,
        args.ways,
        lr=args.lr,
        meta_lr=args.meta_lr,
        adaptation_steps=args.adaptation_steps,
        first_order=args.first_order,
        seed=args.seed,
        backend=args.backend,
        **options,
    )
    run.record_environment(device=_device_name(args))
    train = TrainTasks(tasksets.train, args.backend, args.device, args.tasks_on_device)
    start, elapsed, window = 0, 0.0, []
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        learner.load_state_dict(checkpoint["learner"])
        train.load_state_dict(checkpoint["train_tasks"])
        start, elapsed, window = checkpoint["iteration"], checkpoint["elapsed"], checkpoint["window"]

    from tqdm.auto import tqdm

    stop = stop or StopRequest()  # (one never entered: Ctrl-C raises as usual)
    log = None
    if args.tensorboard and processes.is_main:  # a resumed run drops what followed its checkpoint
        log = ScalarLog(run.path, purge_step=start + 1 if run.checkpoint is not None else None)
    began = time.perf_counter() - elapsed
    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=args.algorithm,
        disable=not args.progress,
        dynamic_ncols=True,
    )

    def record(step: int, metrics: dict) -> None:
        loss, accuracy = float(metrics["loss"]), float(metrics["accuracy"])
        if not np.isfinite(loss):
            raise FloatingPointError(f"the meta-loss became {loss} at iteration {step}")
        window.append([loss, accuracy])

    def checkpoint_state(iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "learner": learner.state_dict(),
            "train_tasks": train.state_dict(),
            "window": window,
            "elapsed": time.perf_counter() - began,
        }

    def stop_training() -> None:
        bar.close()
        train.close()
        if pending is not None:
            record(*pending)
        run.save_checkpoint(checkpoint_state(done))
        raise TrainingStopped(done)

    done, pending, stopped_early = start, None, None
    stop.active = True  # from here, a first Ctrl-C stops between two steps
    for iteration in bar:
        fault_point("training")
        if stop.requested and processes.size == 1:  # (several processes stop at an evaluation)
            stop_training()
        if args.meta_lr_halve_every:
            learner.set_meta_lr(args.meta_lr * 0.5 ** (iteration // args.meta_lr_halve_every))
        (sx, sy), (qx, qy) = train.next(args.meta_batch, args.shots)
        # Read the previous step's metrics only after queueing this one: the host samples the
        # next batch while an accelerator still computes.
        metrics = learner.train_step(sx, sy, qx, qy, wait=False)
        if pending is not None:
            record(*pending)
        done = iteration + 1
        pending = (done, metrics)
        if done % args.eval_every == 0 or done == args.iterations:
            record(*pending)
            pending = None
            valid = evaluate_tasks(
                learner,
                tasksets.validation,
                shots=args.test_shots,
                num_tasks=args.eval_tasks,
                batch_size=args.eval_batch,
                adaptation_steps=args.test_adaptation_steps,
                ways=args.test_ways[0],
            )
            train_loss, train_accuracy = np.mean(window, axis=0)
            row = {
                "iteration": done,
                "train_loss": float(train_loss),
                "train_accuracy": float(train_accuracy),
                "valid_loss": valid["loss"],
                "valid_accuracy": valid["accuracy"],
                "valid_ci95": valid["ci95"],
                "elapsed_s": round(time.perf_counter() - began, 3),
            }
            run.log_metrics(row)
            if log is not None:
                log.write(row)
            bar.set_postfix(valid=f"{valid['accuracy']:.3f}", loss=f"{train_loss:.3f}")
            window = []
            run.save_checkpoint(checkpoint_state(done))
            if processes.size > 1 and processes.any(stop.requested):  # every rank at the same update
                stop_training()
            over = bool(args.max_train_seconds) and time.perf_counter() - began >= args.max_train_seconds
            if processes.any(over):  # every rank stops at the same update
                stopped_early = f"time budget of {args.max_train_seconds:g} s reached after {done} updates"
                break
    bar.close()
    train.close()
    stop.active = False  # testing: Ctrl-C interrupts at once (the last checkpoint stands)
    if log is not None:
        log.close()
    train_seconds = time.perf_counter() - began
    test = {}
    for ways, tasks in test_sets.items():
        result = evaluate_tasks(
            learner,
            tasks,
            shots=args.test_shots,
            num_tasks=args.test_tasks,
            batch_size=args.eval_batch,
            adaptation_steps=args.test_adaptation_steps,
            ways=ways,
            progress=args.progress,
        )
        test[f"{ways}w{args.test_shots}s"] = result
    results = {
        "method": args.method,
        "algorithm": args.algorithm,
        "dataset": args.dataset,
        "model": args.model,
        "backend": args.backend,
        "device": _device_name(args),
        "train_setting": f"{args.ways}w{args.shots}s",
        "train_splits": list(args.train_splits),
        "iterations": done,
        "stopped_early": stopped_early,
        "quick": args.quick,
        "tasks_on_device": train.on_device,
        "test": test,
        "paper": {k: v for k, v in args.paper.items() if k in test},
        "paper_source": args.paper_source,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "command": command_line(argv),
    }
    run.write_results(results)  # rank 0's folder; the other ranks' run writes nothing
    title = setting_title(results["method"], args.dataset, args.ways, args.shots, args.backend)
    published = args.paper.get(f"{args.test_ways[0]}w{args.test_shots}s")  # validation's setting
    curves = learning_curves(args.eval_tasks, args.test_ways[0], published, args.paper_source)
    run.plot("iteration", curves, title=title, xlabel="iteration (meta-updates)")
    for setting, result in test.items() if processes.is_main else ():
        print(
            f"{results['method']} {args.dataset} {setting}: {100 * result['accuracy']:.2f} "
            f"+- {100 * result['ci95']:.2f}% over {result['num_tasks']} test tasks "
            f"({adaptation_phrase(result['adaptation_steps'])})"
        )
    if processes.is_main:
        print(run.describe_files())
    return results
